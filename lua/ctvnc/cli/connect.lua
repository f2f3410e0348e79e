--- ctvnc.cli.connect: from the flags and the environment to a client.
-- Secrets come from the environment only; a refusal names what the user
-- typed (the flag or the variable), never a secret's value.
local core = require "ctvnc.core"
local usage_error = require("ctvnc.cli.flags").usage_error
local printable = require("ctvnc.cli.output").printable

local ipairs, tostring, setmetatable = ipairs, tostring, setmetatable

local _M = {}

-- Options of ctvnc.new: the flag, the environment variable, the key.
local CONNECTION = {
  { flag = "--endpoint", env = "CTVNC_ENDPOINT", key = "endpoint" },
  { env = "CTVNC_TOKEN", key = "token" },
  { flag = "--username", env = "CTVNC_USERNAME", key = "username" },
  { env = "CTVNC_PASSWORD", key = "password" },
  { flag = "--source", env = "CTVNC_SOURCE", key = "source" },
  { flag = "--auth-config-id", key = "auth_config_id" },
  { flag = "--ca-file", env = "CTVNC_CA_FILE", key = "ca_file" },
}

local function truthy(s) return s == "1" or s == "true" or s == "yes" end

--- The flags and the environment -> ctvnc.new options, with the name the
-- user typed for each (labels) | nil, usage error.
function _M.options(flags, env)
  local opts, labels = {}, {}
  for _, o in ipairs(CONNECTION) do
    local v, label
    local fv = o.flag and flags[o.flag:sub(3)]
    if fv ~= nil then v, label = fv, o.flag
    elseif o.env and env(o.env) ~= nil then v, label = env(o.env), o.env end
    if v ~= nil then
      if v == "" then return nil, usage_error(label .. " is empty") end
      opts[o.key], labels[o.key] = v, label
    end
  end
  if not opts.endpoint then
    return nil, usage_error("no endpoint: set CTVNC_ENDPOINT or --endpoint")
  end
  local ep, why = core.endpoint(opts.endpoint)   -- the value may hold a password: never quoted
  if not ep then return nil, usage_error(labels.endpoint .. ": " .. tostring(why)) end
  if not opts.token and not (opts.username and opts.password) then
    return nil, usage_error("no credentials: set CTVNC_TOKEN, or CTVNC_USERNAME (or --username)"
      .. " and CTVNC_PASSWORD")
  end
  if opts.ca_file then
    local f = io.open(opts.ca_file, "rb")
    if not f then return nil, usage_error(labels.ca_file .. " " .. printable(opts.ca_file)
      .. ": cannot read it") end
    f:close()
  end
  local src = opts.source
  if src and src ~= "LOCAL" and src ~= "LDAP" and src ~= "AUTHN" then
    return nil, usage_error(labels.source .. " " .. printable(opts.source)
      .. ": must be LOCAL, LDAP or AUTHN")
  end
  if flags.header then
    opts.headers = {}
    for _, h in ipairs(flags.header) do
      local token = "^[!#$%%&'*+%-.^_`|~%w]*"     -- a header name's characters
      local name, value = h:match("^([!#$%%&'*+%-.^_`|~%w]+):%s*(.-)%s*$")
      if not name then    -- what looks like its name only: the rest may be a secret
        return nil, usage_error("--header " .. h:match(token) .. ": must be 'Name: value'")
      end
      opts.headers[name] = value
    end
  end
  opts.insecure = flags.insecure or truthy(env("CTVNC_INSECURE")) or nil
  opts.timeout = flags.timeout
  opts.concurrency = flags.concurrency
  opts.per_request = flags["per-request"]
  if flags["no-http2"] then opts.http2 = false end
  opts.transport = _M.interruptible     -- Ctrl-C and SIGTERM: see below
  return opts, labels
end

--- A ctvnc.new refusal in the words of the command line.
function _M.new_error(msg, labels)
  local key = msg:match("^new: ([%w_]+)")
  local label = key and labels[key]
  if label then return (msg:gsub("^new: [%w_]+", label)) end
  return (msg:gsub("^new: ", ""))
end

--- What to do about a TLS failure with the tower, in the flags' words.
function _M.tls_hint(opts)
  if opts.ca_file then
    return "TLS with the tower failed: does the --ca-file (CTVNC_CA_FILE) bundle hold the CA "
      .. "of its certificate? --insecure skips verification (not for production)"
  end
  return "TLS with the tower failed: if a private CA signed its certificate, give that CA "
    .. "with --ca-file FILE (or CTVNC_CA_FILE); --insecure skips verification (not for "
    .. "production)"
end

--- Requests through the client's transport stop at once after SIGINT or
-- SIGTERM (core.catch_signals): the answers that arrive after the signal
-- and every later call come back as kind "interrupted", backoffs are
-- skipped. The transfers in flight are cut by the signal itself.
function _M.interruptible(t)
  local w = setmetatable({}, { __index = t })
  local stopped = core.interrupted
  local function over() core.release_signals() end
  function w.request_many(reqs, concurrency, on_done)
    if stopped() then   -- the signal came before: nothing goes out
      for i = 1, #reqs do on_done(i, nil, "interrupted", "interrupted") end
      return
    end
    t.request_many(reqs, concurrency, function(i, status, body, kind)
      if not status and stopped() then return on_done(i, nil, "interrupted", "interrupted") end
      return on_done(i, status, body, kind)
    end)
    if stopped() then over() end
  end
  function w.sleep(s)
    if not stopped() then return t.sleep(s) end
  end
  -- screenshots: the signal cuts their connections too; the first job to
  -- end after it stops the run, and every job not done is interrupted
  function w.shoot(jobs, concurrency, on_done)
    local done, STOP = {}, {}
    local ok, err = true, nil
    if not stopped() then
      ok, err = pcall(t.shoot, jobs, concurrency, function(i, r)
        done[i] = true
        if stopped() then r = { ok = false, kind = "interrupted", message = "interrupted",
                                stage = r.stage, times = r.times } end
        on_done(i, r)
        if stopped() then error(STOP) end
      end)
    end
    if not ok and err ~= STOP then error(err, 0) end
    if stopped() then
      for i = 1, #jobs do
        if not done[i] then on_done(i, { ok = false, kind = "interrupted",
          message = "interrupted", stage = "none", times = {} }) end
      end
      over()
    end
  end
  return w
end

return _M
