--- ctvnc.client: talks to CloudTower. Bodies are built with lua-cjson,
-- answers are checked field by field, every failure gets one of the kinds
-- of the API contract, and no message ever carries a secret.
local core = require "ctvnc.core"
local fallback = require "ctvnc.fallback"
local json = require("cjson.safe").new()

local type, tostring, ipairs, next, setmetatable, error = type, tostring, ipairs, next,
  setmetatable, error
local floor, random = math.floor, math.random
local byte, find, sub, gsub, format = string.byte, string.find, string.sub, string.gsub,
  string.format
local concat = table.concat

json.decode_max_depth(64)

local VNC_QUERY = "query vnc($input: VncInput!) { vnc(input: $input) "
  .. "{ vm_uuid host_ip cluster_ip raw_token token } }"
local INFO_FIELDS = { "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }
local LANGUAGES = { ["en-US"] = true, ["zh-CN"] = true }

local _M = {}
local Client = {}
Client.__index = Client

--- Text from a server or a caller, made safe for a one-line message:
-- valid UTF-8 (a zh-CN tower's errors) is kept, control bytes and invalid
-- sequences become "?", and it is cut at a character boundary after at
-- most `max` bytes.
local function clean(s, max)
  s = tostring(s)
  max = max or 120
  local out, n, i, len = {}, 0, 1, #s
  while i <= len do
    local c = byte(s, i)
    local size = c < 0x80 and 1 or c >= 0xC2 and c <= 0xDF and 2
      or c >= 0xE0 and c <= 0xEF and 3 or c >= 0xF0 and c <= 0xF4 and 4 or 0
    local ok = size > 0 and i + size - 1 <= len
    for k = i + 1, i + size - 1 do
      local b = ok and byte(s, k)
      if not b or b < 0x80 or b > 0xBF then ok = false end
    end
    if ok and size == 3 then      -- no overlong forms, no surrogates
      local b = byte(s, i + 1)
      ok = not (c == 0xE0 and b < 0xA0) and not (c == 0xED and b > 0x9F)
    elseif ok and size == 4 then  -- no overlong forms, nothing past U+10FFFF
      local b = byte(s, i + 1)
      ok = not (c == 0xF0 and b < 0x90) and not (c == 0xF4 and b > 0x8F)
    end
    local piece = (not ok or c < 32 or c == 127) and "?" or sub(s, i, i + size - 1)
    if n + #piece > max then
      out[#out + 1] = "..."
      break
    end
    out[#out + 1] = piece
    n = n + #piece
    i = i + (ok and size or 1)
  end
  return concat(out)
end
_M.clean = clean

--- Replaces every occurrence of each secret by "<redacted>".
local function redact(msg, secrets)
  for _, secret in ipairs(secrets) do
    if #secret >= 4 then
      local i = find(msg, secret, 1, true)
      while i do
        msg = sub(msg, 1, i - 1) .. "<redacted>" .. sub(msg, i + #secret)
        i = find(msg, secret, i + 10, true)
      end
    end
  end
  return msg
end

function Client:_fail(msg, kind)
  local secrets = { self.password or "" }
  if self.token then secrets[#secrets + 1] = self.token end
  if self.login_token then secrets[#secrets + 1] = self.login_token end
  return nil, redact(msg, secrets), kind
end

local function argcheck(cond, n, fname, msg)
  if not cond then error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3) end
end

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

--- The default transport: libcurl through ctvnc.core.
local function curl_transport(o)
  local session = core.session(o)
  return {
    request = function(req) return session:request(req) end,
    request_many = function(reqs, concurrency, on_done)
      return session:request_many(reqs, concurrency, on_done)
    end,
    probe = core.probe,
    sleep = core.sleep,
    now = core.now,
    close = function() session:close() end,
  }
end
_M.curl_transport = curl_transport

--- ctvnc.new(opts) -> client | nil, message, "invalid"
function _M.new(opts)
  argcheck(type(opts) == "table", 1, "new", "table expected, got " .. type(opts))
  local function invalid(msg) return nil, "new: " .. msg, "invalid" end
  if type(opts.endpoint) ~= "string" then return invalid("endpoint must be a string") end
  local ep, err = core.endpoint(opts.endpoint)
  if not ep then return invalid(err) end
  for _, key in ipairs({ "token", "username", "password", "source", "ca_file", "language" }) do
    local v = opts[key]
    if v ~= nil and (type(v) ~= "string" or v == "") then
      return invalid(key .. " must be a non-empty string")
    end
  end
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    return invalid("insecure must be a boolean")
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
    endpoint = opts.endpoint,
    token = opts.token,
    username = opts.username,
    password = opts.password,
    source = opts.source or "LOCAL",
    language = language,
  }, Client)
  local nums = {
    { "timeout", 10, false, 0.001 }, { "connect_timeout", 5, false, 0.001 },
    { "retries", 2, true, 0 }, { "concurrency", 16, true, 1 },
    { "max_body", 1048576, true, 1 }, { "retry_delay", 0.2, false, 0 },
  }
  for _, n in ipairs(nums) do
    local v, msg = check_number(opts, n[1], n[2], n[3], n[4])
    if v == nil then return nil, msg, "invalid" end
    self[n[1]] = v
  end
  local host = ep.ipv6 and "[" .. ep.host .. "]" or ep.host
  self.base = (ep.scheme or "https") .. "://" .. host .. (ep.port and ":" .. ep.port or "")
    .. ep.prefix
  if opts.transport ~= nil then
    argcheck(type(opts.transport) == "table", 1, "new", "transport must be a table")
    self.transport = opts.transport
  else
    self.transport = curl_transport({
      timeout = self.timeout, connect_timeout = self.connect_timeout,
      insecure = opts.insecure, ca_file = opts.ca_file, max_body = self.max_body,
    })
  end
  return self
end

function Client:close()
  if self.transport.close then self.transport.close() end
end

function Client:_headers(token)
  local h = {
    ["Content-Type"] = "application/json",
    ["accept"] = "application/json",
    ["content-language"] = self.language,
  }
  if token then h["Authorization"] = token end
  return h
end

--- What an HTTP answer means: body | nil, message, kind, retryable.
local function judge(what, url, status, body, kind)
  if not status then
    return nil, format("%s: %s (%s)", what, clean(body, 200), url), kind,
      kind == "connect" or kind == "timeout"
  end
  if status >= 200 and status < 300 then return body end
  local detail = ""
  local doc = json.decode(body)
  if type(doc) == "table" and type(doc.message) == "string" then
    detail = ": " .. clean(doc.message)
  end
  if status == 401 or status == 403 then
    return nil, format("%s: HTTP %d from %s%s", what, status, url, detail), "auth", false
  end
  return nil, format("%s: HTTP %d from %s%s", what, status, url, detail), "http",
    status >= 500
end

--- One call with retries: body | nil, message, kind.
function Client:_post(path, payload, what, token)
  local url = self.base .. path
  local req = {
    method = "POST", url = url, headers = self:_headers(token), body = json.encode(payload),
  }
  local t = self.transport
  local attempt = 0
  while true do
    local body, msg, kind, retry = judge(what, url, t.request(req))
    if body or not retry or attempt >= self.retries then return body, msg, kind end
    -- exponential backoff with full jitter
    t.sleep(self.retry_delay * 2 ^ attempt * (0.5 + random() / 2))
    attempt = attempt + 1
  end
end

--- client:login() -> token | nil, message, kind
function Client:login()
  if not (self.username and self.password) then
    return self:_fail("login: no username and password given", "invalid")
  end
  local body, msg, kind = self:_post("/v2/api/login", {
    username = self.username, password = self.password, source = self.source,
  }, "login")
  if not body then
    if kind == "http" and not find(msg, "HTTP 5", 1, true) then kind = "auth" end
    return self:_fail(kind == "auth" and gsub(msg, "^login:", "login rejected:") or msg, kind)
  end
  local doc = json.decode(body)
  local token = type(doc) == "table" and type(doc.data) == "table" and doc.data.token
  if type(token) ~= "string" or token == "" then
    return self:_fail("login: the answer has no data.token", "decode")
  end
  self.login_token = token
  return token
end

--- The token to send: the given one, or one from a (lazy) login.
function Client:_token()
  if self.token then return self.token end
  if self.login_token then return self.login_token end
  return self:login()
end

--- A call that needs a token; one fresh login and one more try when a
-- login-obtained token is refused.
function Client:_call(path, payload, what)
  local token, msg, kind = self:_token()
  if not token then return nil, msg, kind end
  local body
  body, msg, kind = self:_post(path, payload, what, token)
  if not body and kind == "auth" and not self.token then
    self.login_token = nil
    token, msg, kind = self:login()
    if not token then return self:_fail(msg, kind) end
    body, msg, kind = self:_post(path, payload, what, token)
  end
  if not body then return self:_fail(msg, kind) end
  return body
end

local function quote_id(vm_id) return clean(vm_id, 64) end

--- Reads a vnc answer: info | nil, message, kind.
local function read_vnc(what, body)
  local doc = json.decode(body)
  if type(doc) ~= "table" then return nil, what .. ": the answer is not a JSON object", "decode" end
  local errors = doc.errors
  if errors ~= nil and errors ~= json.null then
    local first = type(errors) == "table" and errors[1]
    local m = type(first) == "table" and type(first.message) == "string" and first.message
      or "no message"
    return nil, what .. ": GraphQL error: " .. clean(m, 200), "graphql"
  end
  if type(doc.data) ~= "table" or doc.data[1] ~= nil then
    return nil, what .. ": the answer has no data object", "decode"
  end
  local vnc = doc.data.vnc
  if vnc == json.null then return nil, what .. ": no such VM", "not_found" end
  if vnc == nil then return nil, what .. ": the answer has no data.vnc", "decode" end
  if type(vnc) ~= "table" then return nil, what .. ": data.vnc is not an object", "decode" end
  local info = {}
  for _, k in ipairs(INFO_FIELDS) do
    local v = vnc[k]
    if type(v) ~= "string" or v == "" then
      return nil, format("%s: field %s is %s", what, k,
        v == nil and "missing" or v == "" and "empty" or "not a string"), "decode"
    end
    info[k] = v
  end
  for _, k in ipairs({ "cluster_ip", "host_ip" }) do
    if not core.host_kind(info[k]) then
      return nil, format("%s: field %s is not a valid host", what, k), "decode"
    end
  end
  return info
end
_M.read_vnc = read_vnc

local function vnc_payload(vm_id)
  return {
    operationName = "vnc",
    variables = { input = { vm = { id = vm_id } } },
    query = VNC_QUERY,
  }
end
_M.vnc_payload = vnc_payload
_M.encode = json.encode

local function check_vm_id(vm_id, fname)
  argcheck(type(vm_id) == "string", 1, fname, "string expected, got " .. type(vm_id))
  if vm_id == "" then return nil, fname .. ": the VM id is empty", "invalid" end
  return true
end

--- client:vnc(vm_id) -> info | nil, message, kind
function Client:vnc(vm_id)
  local ok, msg, kind = check_vm_id(vm_id, "vnc")
  if not ok then return nil, msg, kind end
  local what = "vnc " .. quote_id(vm_id)
  local body
  body, msg, kind = self:_call("/api", vnc_payload(vm_id), what)
  if not body then return nil, msg, kind end
  local info
  info, msg, kind = read_vnc(what, body)
  if not info then return self:_fail(msg, kind) end
  return info
end

--- The options for the two URL builders: `scheme` applies to both, `port`
-- is the cluster's websocket port and so only reaches the direct URL.
function Client:_build(info, opts, mode)
  if mode == "direct" then
    return core.direct_url(info, { scheme = opts.scheme, port = opts.port })
  end
  return core.proxy_url(self.endpoint, info, { scheme = opts.scheme })
end

--- client:urls(vm_id, opts) -> {direct=, proxy=, info=} | nil, message, kind
function Client:urls(vm_id, opts)
  argcheck(opts == nil or type(opts) == "table", 2, "urls", "table expected")
  opts = opts or {}
  local info, msg, kind = self:vnc(vm_id)
  if not info then return nil, msg, kind end
  local direct, proxy
  direct, msg, kind = self:_build(info, opts, "direct")
  if not direct then return nil, msg, kind end
  proxy, msg, kind = self:_build(info, opts, "proxy")
  if not proxy then return nil, msg, kind end
  return { direct = direct, proxy = proxy, info = info }
end

--- client:console_url(vm_id, opts) -> url, mode | nil, message, kind
function Client:console_url(vm_id, opts)
  argcheck(opts == nil or type(opts) == "table", 2, "console_url", "table expected")
  opts = opts or {}
  local ok, msg, kind = fallback.check("console_url", opts)
  if not ok then return nil, msg, kind end
  local info
  info, msg, kind = self:vnc(vm_id)
  if not info then return nil, msg, kind end
  local mode = opts.mode or "auto"
  if mode == "auto" then mode = fallback.choose(self, info, opts) end
  local url
  url, msg, kind = self:_build(info, opts, mode)
  if not url then return nil, msg, kind end
  return url, mode
end

--- client:batch(vm_ids, opts) -> results, summary (see ctvnc.batch)
function Client:batch(vm_ids, opts)
  return require("ctvnc.batch").run(self, vm_ids, opts)
end

--- client:find_vms(name) -> array | nil, message, kind
function Client:find_vms(name)
  argcheck(type(name) == "string", 1, "find_vms", "string expected, got " .. type(name))
  if name == "" then return nil, "find_vms: the name is empty", "invalid" end
  local what = "find_vms " .. clean(name, 64)
  local body, msg, kind = self:_call("/v2/api/get-vms", { where = { name = name } }, what)
  if not body then return nil, msg, kind end
  local doc = json.decode(body)
  if type(doc) ~= "table" or (doc[1] == nil and next(doc) ~= nil) then
    return self:_fail(what .. ": the answer is not a JSON array", "decode")
  end
  local vms = {}
  for i, vm in ipairs(doc) do
    if type(vm) ~= "table" or type(vm.id) ~= "string" then
      return self:_fail(format("%s: item %d has no id", what, i), "decode")
    end
    local out = {}
    for _, k in ipairs({ "id", "name", "local_id", "status" }) do
      if type(vm[k]) == "string" then out[k] = vm[k] end
    end
    vms[i] = out
  end
  return vms
end

_M.Client = Client
_M.judge = judge
return _M
