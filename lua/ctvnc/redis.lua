--- ctvnc.redis: a Redis client on ngx_lua cosockets, its API close to
-- lua-resty-redis's (which no Debian package or reachable registry has), so
-- either can stand in for the other.
--
--   local redis = require "ctvnc.redis"
--   local red = redis.new()
--   red:set_timeouts(1000, 1000, 1000)
--   local ok, err, kind = red:connect_url("redis://127.0.0.1:6379/0")
--   local v = red:get("key")               -- any command: red:<name>(args...)
--   red:set_keepalive(10000, 32)
--
-- Replies are read by ctvnc.core's resp_reader (C, bounded, fuzzed) from
-- what receiveany gives; commands go out as RESP arrays. Every socket
-- step has a timeout (1 s each unless set_timeouts says otherwise), so
-- nothing waits for ever and nothing blocks the worker.
--
-- Results: a reply's value (a Redis nil is ngx.null); false, message for an
-- error reply (an error inside an array is { false, message }); nil, message,
-- kind when the call failed: "connect" (refused, reset, closed), "timeout",
-- "tls", "auth" (AUTH refused), "protocol" (a reply the reader refused),
-- "invalid" (a bad value or a call in the wrong state). After any failure
-- but a read timeout while subscribed the connection is closed: its stream
-- can no longer be trusted. No message, log line or tostring() ever holds
-- the password.
--
-- parse_url works in any Lua; everything else needs nginx (ngx.socket.tcp).
local core = require "ctvnc.core"

local ngx = ngx -- luacheck: ignore (nil outside nginx)
local type, tostring, select, setmetatable, rawset, error = type, tostring, select,
  setmetatable, rawset, error
local concat, remove, floor, format = table.concat, table.remove, math.floor, string.format
local unpack = table.unpack or unpack -- luacheck: ignore
local mtype = math.type -- luacheck: ignore (nil before Lua 5.3)

local _M = { _VERSION = "ctvnc.redis 0.1", null = ngx and ngx.null }
local mt = { __index = _M }

local TIMEOUT = 1000     -- ms, each of connect, send and read by default
local CHUNK = 65536      -- most bytes taken from the socket at once

--- Command arguments: strings as they are, numbers in a form Redis reads
-- back exactly (integers in full, never 1e+15). Other types raise.
local function arg_string(a, i, cmd)
  local t = type(a)
  if t == "string" then return a end
  if t ~= "number" then
    error(format("bad argument #%d to '%s' (string or number expected, got %s)", i, cmd, t), 5)
  end
  if mtype and mtype(a) == "integer" then return tostring(a) end
  if a == floor(a) then return format("%.0f", a) end
  return format("%.17g", a)
end

--- The RESP array of a command.
local function encode(cmd, ...)
  local n = select("#", ...)
  local parts = { "*", n + 1, "\r\n$", #cmd, "\r\n", cmd, "\r\n" }
  local k = #parts
  for i = 1, n do
    local a = arg_string((select(i, ...)), i, cmd)
    parts[k + 1], parts[k + 2], parts[k + 3], parts[k + 4] = "$", #a, "\r\n", a
    parts[k + 5] = "\r\n"
    k = k + 5
  end
  return concat(parts)
end

--- Every occurrence of `secret` in `s` replaced by "***".
local function scrub(s, secret)
  if type(s) ~= "string" or not secret or secret == "" then return s end
  local out, i = {}, 1
  while true do
    local a, b = s:find(secret, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1) .. "***"
    i = b + 1
  end
  out[#out + 1] = s:sub(i)
  return concat(out)
end

--- Ends the connection after a failure; returns nil, message, kind.
local function fail(self, msg, kind)
  self:close()
  return nil, format("redis %s: %s", self._where, msg), kind
end

local function socket_fail(self, step, err, keep)
  local kind = err == "timeout" and "timeout" or "connect"
  if keep then return nil, format("redis %s: %s: %s", self._where, step, err), kind end
  return fail(self, step .. ": " .. tostring(err), kind)
end

--- One whole reply: value | false, message | nil, message, kind. `keep`:
-- a read timeout leaves the connection open (waiting for pushed messages).
local function read_reply(self, keep)
  local reader = self._reader
  if not reader then return nil, format("redis %s: not connected", self._where), "invalid" end
  while true do
    local v, a, kind = reader:read()
    if v ~= nil then return v, a end
    if kind ~= "more" then return fail(self, a, "protocol") end
    local data, err = self._sock:receiveany(CHUNK)
    if not data then return socket_fail(self, "read", err, keep and err == "timeout") end
    local ok, ferr = reader:feed(data)
    if not ok then return fail(self, ferr, "protocol") end
  end
end

--- Counts subscriptions from the server's confirmations.
local function track(self, res)
  if type(res) ~= "table" then return end
  local what, n = res[1], self._channels
  if what == "subscribe" or what == "psubscribe" then
    local k = what == "subscribe" and "unsubscribe" or "punsubscribe"
    n[k] = n[k] + 1
  elseif what == "unsubscribe" or what == "punsubscribe" then
    n[what] = n[what] > 0 and n[what] - 1 or 0
    if res[3] == 0 then self._subscribed = false end
  end
end

local function is_message(res)
  return type(res) == "table" and (res[1] == "message" or res[1] == "pmessage")
end

--- Sends one command (or queues it in a pipeline) and reads its reply;
-- messages that arrive first on a subscribed connection are kept for
-- read_reply.
local function do_cmd(self, cmd, ...)
  local req = encode(cmd, ...)
  if self._reqs then
    self._reqs[#self._reqs + 1] = req
    return true
  end
  if not self._reader then return nil, format("redis %s: not connected", self._where), "invalid" end
  local ok, err = self._sock:send(req)
  if not ok then return socket_fail(self, "send", err) end
  local res, rerr, kind = read_reply(self)
  while self._subscribed and is_message(res) do
    self._queue[#self._queue + 1] = res
    res, rerr, kind = read_reply(self)
  end
  if res == nil then return nil, rerr, kind end
  if rerr == nil then return res end
  return res, rerr      -- false, an error reply's message
end

--- redis.new([opts]) or redis:new([opts]): opts are the reply limits of
-- core.resp_reader (max_depth, max_bulk, max_elements, max_size).
function _M.new(a, b)
  local opts = a
  if a == _M then opts = b end
  local limits = {}
  for k, v in pairs(opts or {}) do limits[k] = v end
  local probe, err, kind = core.resp_reader(limits)
  if not probe then return nil, "redis.new: " .. err, kind end
  probe:close()
  local sock, serr = ngx.socket.tcp()
  if not sock then return nil, "redis.new: " .. tostring(serr), "connect" end
  sock:settimeouts(TIMEOUT, TIMEOUT, TIMEOUT)
  return setmetatable({ _sock = sock, _limits = limits, _reader = false, _reqs = false,
    _subscribed = false, _queue = {}, _channels = { unsubscribe = 0, punsubscribe = 0 },
    _where = "(not connected)" }, mt)
end

mt.__tostring = function(self) return "ctvnc.redis: " .. self._where end

--- Milliseconds for connect, send and each read.
function _M:set_timeouts(connect, send, read)
  self._sock:settimeouts(connect, send, read)
end

function _M:set_timeout(ms)
  self._sock:settimeout(ms)
end

local pool_key
--- A tag for the password in a pool name: the same password gives the
-- same tag in this worker; the tag tells nothing about it.
local function secret_tag(s)
  if not pool_key then
    local f = assert(io.open("/dev/urandom", "rb"))
    pool_key = f:read(32)
    f:close()
  end
  return ngx.encode_base64(ngx.hmac_sha1(pool_key, s)):sub(1, 12)
end

--- connect(host, port [, opts]) or connect("unix:/path" [, opts]).
-- opts: ssl, server_name, insecure (skip certificate checks; ssl_verify =
-- false is refused without it), pool, pool_size, backlog; password,
-- username, db: AUTH and SELECT on a new connection (the default pool
-- name then tells them apart, never showing the password).
function _M:connect(host, port, opts)
  if type(host) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(host) .. ")", 2)
  end
  if type(port) == "table" then port, opts = nil, port end
  opts = opts or {}
  self._where = port and (host .. ":" .. tostring(port)) or host
  if opts.ssl_verify == false and not opts.insecure then
    return nil, format("redis %s: ssl_verify = false needs insecure = true", self._where),
      "invalid"
  end
  if self._reader then self:close() end
  local password, db = opts.password ~= "" and opts.password or nil, opts.db
  local pool = opts.pool
  if not pool then
    pool = self._where .. (opts.ssl and ("/tls:" .. tostring(opts.server_name)) or "")
      .. "/" .. tostring(opts.username or "") .. "/" .. tostring(db or 0)
      .. (password and ("/" .. secret_tag(password)) or "")
  end
  local copts = { pool = pool, pool_size = opts.pool_size, backlog = opts.backlog }
  local sock = self._sock
  local ok, err
  if port then
    ok, err = sock:connect(host, port, copts)
  else
    ok, err = sock:connect(host, copts)
  end
  if not ok then return socket_fail(self, "connect", err, true) end
  self._reader = core.resp_reader(self._limits)
  self._subscribed, self._reqs, self._queue = false, false, {}
  self._channels = { unsubscribe = 0, punsubscribe = 0 }
  if opts.ssl then
    ok, err = sock:sslhandshake(false, opts.server_name, not opts.insecure)
    -- ngx_lua 0.10.23 answers true when a handshake that ended at once
    -- failed its checks; it has closed the socket, which tells.
    if ok and not sock:getreusedtimes() then
      ok, err = nil, "certificate refused (nginx's error log says why)"
    end
    if not ok then
      return fail(self, "TLS handshake: " .. tostring(err), err == "timeout" and "timeout" or "tls")
    end
  end
  if sock:getreusedtimes() > 0 then return true end
  if password then
    local res, aerr, kind = self:auth(opts.username, password)
    if res == nil then return nil, aerr, kind end
    if not res then return fail(self, "AUTH refused: " .. aerr, "auth") end
  end
  if db and tostring(db) ~= "0" then
    local res, serr, kind = do_cmd(self, "select", db)
    if res == nil then return nil, serr, kind end
    if not res then
      return fail(self, "SELECT " .. tostring(db) .. " refused: " .. serr, "invalid")
    end
  end
  return true
end

--- AUTH [username] password; an error reply comes back with the
-- arguments scrubbed out of it.
function _M:auth(a, b)
  local res, err, kind
  if b ~= nil and a ~= nil then res, err, kind = do_cmd(self, "auth", a, b)
  else res, err, kind = do_cmd(self, "auth", b == nil and a or b) end
  if res == false then err = scrub(scrub(err, b), a) end
  return res, err, kind
end

--- Puts the connection back in its pool (cosocket setkeepalive). Refused,
-- and the connection closed, when it is subscribed or holds unread bytes.
function _M:set_keepalive(idle, size)
  local reader = self._reader
  if not reader then return nil, format("redis %s: not connected", self._where), "invalid" end
  if self._subscribed then return fail(self, "set_keepalive while subscribed", "invalid") end
  if self._reqs or reader:buffered() > 0 then
    return fail(self, "set_keepalive with a pipeline or unread bytes", "invalid")
  end
  reader:close()
  self._reader = false
  local ok, err = self._sock:setkeepalive(idle, size)
  if not ok then return nil, format("redis %s: set_keepalive: %s", self._where, err), "connect" end
  return ok
end

function _M:get_reused_times()
  return self._sock:getreusedtimes()
end

--- Closes the connection (again: nothing happens).
function _M:close()
  if self._reader then
    self._reader:close()
    self._reader = false
  end
  self._subscribed, self._reqs = false, false
  self._sock:close()
  return true
end

--- Pipelines: commands are queued (each returns true) and sent at once.
function _M:init_pipeline()
  self._reqs = {}
end

function _M:cancel_pipeline()
  self._reqs = false
end

--- The replies in order; an error reply is { false, message }.
function _M:commit_pipeline()
  local reqs = self._reqs
  if not reqs then return nil, format("redis %s: no pipeline", self._where), "invalid" end
  self._reqs = false
  if #reqs == 0 then return {} end
  if not self._reader then return nil, format("redis %s: not connected", self._where), "invalid" end
  local ok, err = self._sock:send(reqs)
  if not ok then return socket_fail(self, "send", err) end
  local vals = {}
  for i = 1, #reqs do
    local res, rerr, kind = read_reply(self)
    if res == nil then return nil, rerr, kind end
    vals[i] = res == false and { false, rerr } or res
  end
  return vals
end

--- subscribe/psubscribe/unsubscribe/punsubscribe: the confirmation (one
-- channel) or the array of confirmations, as lua-resty-redis.
local function subscription(cmd)
  local unsub = cmd:find("^p?unsub") ~= nil
  return function(self, ...)
    local nargs = select("#", ...)
    if unsub and not self._subscribed then
      return nil, format("redis %s: not subscribed", self._where), "invalid"
    end
    local was = self._subscribed
    if not unsub then self._subscribed = true end
    local res, err, kind = do_cmd(self, cmd, ...)
    if res == false then self._subscribed = was end
    if not res then return res, err, kind end
    local results = { res }
    track(self, res)
    while (nargs > 0 and #results < nargs) or (nargs == 0 and (self._channels[cmd] or 0) > 0) do
      res, err, kind = read_reply(self)
      if not res then return res, err, kind end
      if is_message(res) then
        self._queue[#self._queue + 1] = res
      else
        track(self, res)
        results[#results + 1] = res
      end
    end
    if #results == 1 then return results[1] end
    return results
  end
end
for _, cmd in ipairs({ "subscribe", "psubscribe", "unsubscribe", "punsubscribe" }) do
  _M[cmd] = subscription(cmd)
end

--- The next message (or confirmation) of a subscribed connection; a read
-- timeout returns nil, message, "timeout" and leaves it open.
function _M:read_reply()
  if not self._subscribed then
    return nil, format("redis %s: not subscribed", self._where), "invalid"
  end
  if #self._queue > 0 then return remove(self._queue, 1) end
  local res, err, kind = read_reply(self, true)
  if res then
    track(self, res)
    return res
  end
  return res, err, kind
end

--- hmset(key, { field = value, ... }) or hmset(key, field, value, ...).
function _M:hmset(key, ...)
  local t = ...
  if select("#", ...) ~= 1 or type(t) ~= "table" then return do_cmd(self, "hmset", key, ...) end
  local list = {}
  for k, v in pairs(t) do
    list[#list + 1] = k
    list[#list + 1] = v
  end
  return do_cmd(self, "hmset", key, unpack(list))
end

--- { k1, v1, k2, v2 } -> { [k1] = v1, [k2] = v2 } (HGETALL's reply).
function _M.array_to_hash(a, b)
  local t, h = b or a, {}
  for i = 1, #t, 2 do h[t[i]] = t[i + 1] end
  return h
end

--- The SHA1 of a script in hex, as EVALSHA names it.
function _M.script_sha(source)
  return (ngx.sha1_bin(source):gsub(".", function(c) return format("%02x", c:byte()) end))
end

--- EVALSHA sha #keys keys... args...; on NOSCRIPT (a restarted or
-- flushed server) EVAL once with the source, which caches it again.
-- sha may be nil (computed from source).
function _M:eval_cached(sha, source, keys, args)
  if self._reqs then
    return nil, format("redis %s: eval_cached inside a pipeline", self._where), "invalid"
  end
  keys, args = keys or {}, args or {}
  local list = { sha or _M.script_sha(source), #keys }
  for i = 1, #keys do list[#list + 1] = keys[i] end
  for i = 1, #args do list[#list + 1] = args[i] end
  local res, err, kind = do_cmd(self, "evalsha", unpack(list))
  if res ~= false or not err:find("^NOSCRIPT") then return res, err, kind end
  list[1] = source
  return do_cmd(self, "eval", unpack(list))
end

-- The STORE setting's URL: redis://[[user]:password@]host[:port][/db] or
-- rediss://... (TLS, the certificate verified and its name checked).
local url_mt = {
  __tostring = function(c)
    return format("%s://%s%s:%d/%d", c.ssl and "rediss" or "redis",
      c.password and ((c.username or "") .. ":***@") or "", c.host, c.port, c.db)
  end,
}

local function unescape(s)
  if s:find("%%%X") or s:find("%%%x%X") or s:find("%%.?$") then return nil end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- parse_url(url [, password]) -> config | nil, message, "invalid".
-- The password is `password`, else $CTVNC_REDIS_PASSWORD, else the URL's;
-- messages never quote the URL. config: host, port (6379), db (0), ssl,
-- server_name (the host), username, password; tostring() hides the password.
function _M.parse_url(url, password)
  if type(url) ~= "string" then
    error("bad argument #1 to 'parse_url' (string expected, got " .. type(url) .. ")", 2)
  end
  local function bad(what) return nil, "STORE: " .. what, "invalid" end
  local scheme, rest = url:match("^(rediss?)://(.*)$")
  if not scheme then return bad("not a redis:// or rediss:// URL") end
  local userinfo, hostpart = rest:match("^([^/?#]*)@(.*)$")
  hostpart = hostpart or rest
  local authority, path = hostpart:match("^([^/?#]*)(.*)$")
  local host, port = authority:match("^(%[[^%]]*%])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  local bare = host:match("^%[(.*)%]$") or host
  if core.host_kind(bare) == nil or (bare ~= host) ~= (core.host_kind(bare) == "ipv6") then
    return bad("no valid host in the URL")
  end
  if port ~= "" then
    port = port:match("^:([1-9]%d*)$")
    port = port and #port <= 5 and tonumber(port)
    if not port or port > 65535 then return bad("the port must be 1-65535") end
  end
  local db = path == "" and "0" or path:match("^/(%d*)$")
  if not db or #db > 9 then return bad("the path must be /<db number>, nothing after it") end
  local cfg = { host = host, port = port == "" and 6379 or port, db = tonumber(db) or 0,
    ssl = scheme == "rediss", server_name = bare }
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):(.*)$")
    user, pass = user and unescape(user), pass and unescape(pass)
    if not user or not pass then
      return bad("the user info must be [user]:password, %XX escaped")
    end
    cfg.username, cfg.password = user ~= "" and user or nil, pass ~= "" and pass or nil
  end
  local env = password or os.getenv("CTVNC_REDIS_PASSWORD")
  if env and env ~= "" then cfg.password = env end
  return setmetatable(cfg, url_mt)
end

--- connect_url(url or config [, opts]): parse_url's config, then connect
-- with its TLS, AUTH and SELECT; opts adds server_name, pool_size,
-- backlog, insecure.
function _M:connect_url(url, opts)
  local cfg, err, kind = url, nil, nil
  if type(url) == "string" then cfg, err, kind = _M.parse_url(url) end
  if not cfg then return nil, err, kind end
  opts = opts or {}
  return self:connect(cfg.host, cfg.port, { ssl = cfg.ssl,
    server_name = opts.server_name or cfg.server_name, insecure = opts.insecure,
    username = cfg.username, password = cfg.password, db = cfg.db,
    pool_size = opts.pool_size, backlog = opts.backlog })
end

-- Any other name is a command: red:get(k), red:set(k, v), red:eval(...).
setmetatable(_M, { __index = function(_, cmd)
  if type(cmd) ~= "string" or cmd:sub(1, 1) == "_" then return nil end
  local method = function(self, ...) return do_cmd(self, cmd, ...) end
  rawset(_M, cmd, method)
  return method
end })

return _M
