--- ctvnc.client: options, auth state and the one fetch engine. Every call
-- to CloudTower, one VM or a thousand, a login or a search, goes through
-- Client:_fetch: rounds of requests over the runtime's request_many, and
-- for each answer one decision (a value, a retry with backoff, a re-login,
-- or a failure). The protocol itself is ctvnc.api's; the direct-or-proxy
-- choice ctvnc.console's; batch assembly ctvnc.batch's.
local core = require "ctvnc.core"
local api = require "ctvnc.api"
local console = require "ctvnc.console"
local batch = require "ctvnc.batch"
local shot = require "ctvnc.shot"
local argcheck = require("ctvnc.args").check

local type, ipairs, pairs, setmetatable = type, ipairs, pairs, setmetatable
local floor, random, max = math.floor, math.random, math.max
local find, lower, format = string.find, string.lower, string.format
local redact = api.redact

local LANGUAGES = { ["en-US"] = true, ["zh-CN"] = true }

local _M = {}
local Client = {}
Client.__index = Client

for k, f in pairs(console) do Client[k] = f end
Client.batch = batch
Client.screenshots = shot.screenshots
Client.screenshot = shot.screenshot

local function check_number(opts, key, default, integer, minimum)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < minimum or v == 1 / 0
    or (integer and floor(v) ~= v) then
    return nil, format("new: %s must be %s >= %s", key, integer and "an integer" or "a number",
      minimum)
  end
  return v
end

--- Headers a caller may not set, by lower-case name.
local RESERVED = { authorization = true, ["content-type"] = true, ["content-length"] = true }

--- Why a caller's extra header is refused, or nil. The value is never
-- quoted: it may be a secret.
local function header_problem(name, value)
  if type(name) ~= "string" or type(value) ~= "string" then
    return "headers must map strings to strings"
  end
  if name == "" or find(name, "[%c:%s]") then
    return "header names must be non-empty, without spaces, colons or control characters"
  end
  if find(value, "[\r\n%z]") then
    return "header " .. name .. ": the value has a CR, LF or NUL"
  end
  if RESERVED[lower(name)] then return "header " .. name .. " cannot be replaced" end
end

--- The default runtime: libcurl through ctvnc.core. Requests carry a path;
-- the session puts the API base in front of it. It honours req.tag (never
-- after a request of the same tag on a kept-alive HTTP/1.x connection) and
-- tells the HTTP version of each answer.
local function curl_transport(o)
  local session = core.session(o)
  local shooter
  return {
    tags = true,
    -- console websockets (screenshots, probe = "rfb"): connect-only libcurl
    -- with the same TLS options, made on first use
    shoot = function(jobs, concurrency, on_done)
      shooter = shooter or core.shooter({ timeout = o.timeout, connect_timeout = o.connect_timeout,
        insecure = o.insecure, ca_file = o.ca_file })
      return shooter:run(jobs, concurrency, on_done)
    end,
    request_many = function(reqs, concurrency, on_done)
      return session:request_many(reqs, concurrency, on_done)
    end,
    probe = core.probe,
    sleep = core.sleep,
    now = core.now,
    close = function()
      session:close()
      if shooter then shooter:close() end
    end,
  }
end

--- ctvnc.new(opts) -> client | nil, message, "invalid"
function _M.new(opts)
  argcheck(type(opts) == "table", 1, "new", "table expected, got " .. type(opts))
  local function invalid(msg) return nil, "new: " .. msg, "invalid" end
  if type(opts.endpoint) ~= "string" then return invalid("endpoint must be a string") end
  local ep, err = core.endpoint(opts.endpoint)
  if not ep then return invalid(err) end
  for _, key in ipairs({ "token", "username", "password", "source", "ca_file", "language",
                         "auth_config_id" }) do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      return invalid(key .. " must be a non-empty string")
    end
  end
  for _, key in ipairs({ "insecure", "http2" }) do
    if opts[key] ~= nil and type(opts[key]) ~= "boolean" then
      return invalid(key .. " must be a boolean")
    end
  end
  if opts.source == "AUTHN" and not opts.auth_config_id then
    return invalid('source "AUTHN" needs auth_config_id')
  end
  if not opts.token and not (opts.username and opts.password) then
    return invalid("give a token, or a username and a password")
  end
  local language = opts.language or "en-US"
  if not LANGUAGES[language] then return invalid('language must be "en-US" or "zh-CN"') end
  if opts.ca_file then
    local f = io.open(opts.ca_file, "rb")
    if not f then return invalid("ca_file cannot be read") end
    f:close()
  end
  local self = setmetatable({
    ep = ep,
    base = ep:base(),
    token = opts.token,
    username = opts.username,
    password = opts.password,
    source = opts.source or "LOCAL",
    auth_config_id = opts.auth_config_id,
    headers = {
      ["Content-Type"] = "application/json",
      ["accept"] = "application/json",
      ["content-language"] = language,
    },
    probe_cache = {},
  }, Client)
  if opts.headers ~= nil then
    if type(opts.headers) ~= "table" then return invalid("headers must be a table") end
    for name, value in pairs(opts.headers) do
      local why = header_problem(name, value)
      if why then return invalid(why) end
      self.headers[name] = value
    end
  end
  local nums = {
    { "timeout", 10, false, 0.001 }, { "connect_timeout", 5, false, 0.001 },
    { "retries", 2, true, 0 }, { "concurrency", 16, true, 1 },
    { "max_body", 1048576, true, 1 }, { "retry_delay", 0.2, false, 0 },
    { "per_request", 1, true, 1 },
  }
  for _, n in ipairs(nums) do
    local v, msg = check_number(opts, n[1], n[2], n[3], n[4])
    if v == nil then return nil, msg, "invalid" end
    self[n[1]] = v
  end
  -- the vnc aliases' nonce: this client's random prefix, then a count
  local prefix, msg, kind = core.random_bytes(6)
  if not prefix then return nil, "new: " .. msg, kind end
  self.nonce_prefix = prefix:gsub(".", function(c) return format("%02x", c:byte()) end)
  -- the runtime: a table, or a function given the default (libcurl) one
  -- that returns the one to use (a wrapper: the ctvnc command's Ctrl-C)
  local t = opts.transport
  argcheck(t == nil or type(t) == "table" or type(t) == "function", 1, "new",
    "transport must be a table or a function")
  if type(t) ~= "table" then
    local default = curl_transport({
      base = self.base, timeout = self.timeout, connect_timeout = self.connect_timeout,
      insecure = opts.insecure, ca_file = opts.ca_file, max_body = self.max_body,
      http2 = opts.http2 ~= false,
    })
    t = t and t(default) or default
  end
  self.transport = t
  return self
end

--- client:close(); also the client's __close, so `local c <close> = ...`.
function Client:close()
  if self.transport.close then self.transport.close() end
end
Client.__close = Client.close

--- Everything this client must never let out in a message.
function Client:_secrets()
  local s = {}
  for _, k in ipairs({ "password", "token", "login_token" }) do
    if self[k] then s[#s + 1] = self[k] end
  end
  return s
end

--- The token to send: the given one, or one from a (lazy) login.
function Client:_token()
  if self.token then return self.token end
  if self.login_token then return self.login_token end
  return self:login()
end

--- The one fetch engine. calls[i] = { path=, body=, what=, read= } (see
-- ctvnc.api); on_result(i, value) or on_result(i, nil, message, kind,
-- status) as each call settles, at most `concurrency` in flight.
--   * a login-obtained token that is refused is replaced by one new login
--     per run, and the refused calls asked again;
--   * retries back off exponentially with full jitter;
--   * an answer for another request (aliases that are not the call's) is
--     a retry on a fresh connection, and its own connection is dropped;
--   * a vnc answer saying the tower has no token field turns the client to
--     the pre-token query, for its lifetime; one refusing an aliased field
--     (a validation error) to the vendor document's request, likewise;
--   * the HTTP version of the answers says whether streams bind them
--     (HTTP/2: no nonce needed, see _vnc_call);
--   * every retry of a vnc call asks anew, with another nonce.
function Client:_fetch(calls, concurrency, on_result)
  local t = self.transport
  local login = calls[1] and calls[1].login
  local token, msg, kind
  if not login then
    token, msg, kind = self:_token()
    if not token then
      for i = 1, #calls do on_result(i, nil, msg, kind) end
      return
    end
  end
  local secrets = self:_secrets()
  local pending, tries, fresh, relogged, wheres = {}, {}, {}, false, {}
  for i = 1, #calls do pending[i] = i end
  while #pending > 0 do
    local headers = {}
    for k, v in pairs(self.headers) do headers[k] = v end
    headers.Authorization = token
    local reqs = {}
    for k, i in ipairs(pending) do
      local c = calls[i]
      reqs[k] = { method = "POST", path = c.path, headers = headers, body = c.body,
                  fresh = fresh[i], tag = c.tag }
    end
    local retry, refused, wait = {}, {}, -1
    t.request_many(reqs, concurrency, function(k, status, body, tkind)
      local i = pending[k]
      local c = calls[i]
      if status then self.multiplexed = tkind == 2 end   -- tkind: the HTTP version
      local where = wheres[c.path]
      if not where then
        where = self.base .. c.path
        wheres[c.path] = where
      end
      local v, m, kd, again = api.classify(c, where, status, body, tkind, secrets)
      if v then v, m, kd, again = c.read(c.what, v, secrets, c) end
      if v ~= nil then
        if c.aliased then self.aliased = true end
        on_result(i, v)
      elseif kd == "schema" or kd == "form" then
        if kd == "schema" then self.no_token_field = true else self.documented = true end
        retry[#retry + 1] = i
      elseif again and (tries[i] or 0) < self.retries then
        wait = max(wait, tries[i] or 0)
        tries[i] = (tries[i] or 0) + 1
        fresh[i] = again == "fresh"
        retry[#retry + 1] = i
      elseif kd == "auth" and not login and not self.token and not relogged then
        refused[#refused + 1] = i
      else
        on_result(i, nil, redact(m, secrets), kd, status)
      end
      if again == "fresh" then return "drop" end
    end)
    if #refused > 0 then
      relogged = true
      self.login_token = nil
      token, msg, kind = self:login()
      secrets = self:_secrets()
      for _, i in ipairs(refused) do
        if token then retry[#retry + 1] = i else on_result(i, nil, msg, kind) end
      end
    end
    if wait >= 0 then t.sleep(self.retry_delay * 2 ^ wait * (0.5 + random() / 2)) end
    for _, i in ipairs(retry) do      -- a vnc call asks anew, another nonce
      local ids = calls[i].vm_ids
      if ids then calls[i] = self:_vnc_call(ids, calls[i].spread) end
    end
    pending = retry
  end
end

--- One call through the engine: value | nil, message, kind.
function Client:_one(call)
  local v, m, k
  self:_fetch({ call }, 1, function(_, value, msg, kind) v, m, k = value, msg, kind end)
  return v, m, k
end

--- client:login() -> token | nil, message, kind. An LDAP login goes the
-- way of the official SDKs: the tower's strategies first, then AUTHN with
-- the LDAP strategy's id when there is one.
function Client:login()
  if not (self.username and self.password) then
    return nil, redact("login: no username and password given", self:_secrets()), "invalid"
  end
  local source, config = self.source, self.auth_config_id
  if source == "LDAP" and not config then
    local id, msg, kind = self:_one(api.strategies_call())
    if id == nil then return nil, msg, kind end
    if id then source, config = "AUTHN", id end
  end
  local token, msg, kind = self:_one(api.login_call(self.username, self.password, source, config))
  self.login_token = token
  return token, msg, kind
end

local function check_vm_id(vm_id, fname)
  argcheck(type(vm_id) == "string", 1, fname, "string expected, got " .. type(vm_id))
  if vm_id == "" then return nil, fname .. ": the VM id is empty", "invalid" end
  return true
end

--- The vnc call for the VMs `vm_ids`, in the form this client's tower
-- takes, tagged for the runtime (req.tag). What binds its answer to it:
--   * over HTTP/2 (the answers so far came that way), the stream: no
--     nonce, so the tower sees one query text a size (one VM: the vendor
--     document's request);
--   * on a tower that takes only the vendor document's request, nothing
--     in the text: all share tag 0, so the libcurl runtime sends each on a
--     fresh HTTP/1.x connection;
--   * else (HTTP/1.x) the aliases' nonce, drawn in turn from `spread`
--     (default twice the concurrency) values, the tag telling which: the
--     runtime never sends it after a request with the same nonce on a
--     kept-alive connection, where that request's late answer could
--     arrive, and a foreign nonce is refused (a fresh connection, that one
--     closed). A runtime without tags gets a nonce never used before:
--     this client's random prefix (core.random_bytes) and a count.
function Client:_vnc_call(vm_ids, spread)
  spread = spread or 2 * self.concurrency
  local nonce, tag = nil, 0
  if not (self.documented or self.multiplexed) then
    self.seq = (self.seq or -1) + 1
    if self.transport.tags then
      nonce = format("%x", self.seq % spread)
      tag = self.seq % spread + 1
    else
      nonce, tag = format("%s_%x", self.nonce_prefix, self.seq), nil
    end
  end
  local call = api.vnc_call(vm_ids, nonce, self.no_token_field)
  call.tag, call.spread = tag, spread
  return call
end

--- Is something about the tower still to learn (its token field, whether
-- its answers come over HTTP/2, whether it takes aliased fields)?
function Client:_learning()
  return self.no_token_field == nil or self.multiplexed == nil
    or not (self.aliased or self.documented)
end

--- client:vnc(vm_id) -> info | nil, message, kind
function Client:vnc(vm_id)
  local ok, msg, kind = check_vm_id(vm_id, "vnc")
  if not ok then return nil, msg, kind end
  local out
  out, msg, kind = self:_one(self:_vnc_call({ vm_id }))
  if not out then return nil, msg, kind end
  out = out[1]
  if out.info and self.no_token_field == nil then self.no_token_field = false end
  return out.info, out.message, out.kind
end

--- client:urls(vm_id [, opts]) -> {direct=, proxy=, info=} | nil, message, kind
function Client:urls(vm_id, opts)
  argcheck(opts == nil or type(opts) == "table", 2, "urls", "table expected")
  opts = opts or {}
  local info, msg, kind = self:vnc(vm_id)
  if not info then return nil, msg, kind end
  local direct, proxy
  direct, msg, kind = self:_url(info, opts, "direct")
  if not direct then return nil, msg, kind end
  proxy, msg, kind = self:_url(info, opts, "proxy")
  if not proxy then return nil, msg, kind end
  return { direct = direct, proxy = proxy, info = info }
end

--- client:console_url(vm_id [, opts]) -> url, mode | nil, message, kind
function Client:console_url(vm_id, opts)
  argcheck(opts == nil or type(opts) == "table", 2, "console_url", "table expected")
  opts = opts or {}
  local ok, msg, kind = core.check_options("console_url", opts)
  if not ok then return nil, msg, kind end
  local info
  info, msg, kind = self:vnc(vm_id)
  if not info then return nil, msg, kind end
  return self:console_url_for(info, opts)
end

--- client:find_vms(query [, opts]) -> array | nil, message, kind
function Client:find_vms(query, opts)
  local tq = type(query)
  argcheck(tq == "string" or tq == "table", 1, "find_vms", "string or table expected, got " .. tq)
  argcheck(opts == nil or type(opts) == "table", 2, "find_vms", "table expected")
  opts = opts or {}
  if query == "" then return nil, "find_vms: the name is empty", "invalid" end
  for _, k in ipairs({ "first", "skip" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v < 0 or v % 1 ~= 0) then
      return nil, "find_vms: opts." .. k .. " must be an integer >= 0", "invalid"
    end
  end
  if opts.order_by ~= nil and type(opts.order_by) ~= "string" then
    return nil, "find_vms: opts.order_by must be a string such as \"name_ASC\"", "invalid"
  end
  return self:_one(api.vms_call(query, opts))
end

_M.Client = Client
return _M
