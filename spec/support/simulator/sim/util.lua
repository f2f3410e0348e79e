-- CloudTower simulator: what every module shares (config, shared dicts,
-- JSON, answers, counting, auth). Loopback only; tokens are never logged.
--
-- Shared dicts:
--   sim        config (latency), login tokens, token generation, flaky counters, in-flight
--   sim_stats  counters reported by /_sim/stats (flushed by /_sim/reset)
--   sim_conn   connection serials already counted (not flushed: a kept-alive
--              connection is counted once, when it carries its first API request)
--   sim_vnc    console credentials handed out: "raw:<raw_token>" and "tok:<token>" -> vm id (60 s)

local cjson = require "cjson.safe"

local ngx = ngx
local print_, sleep, exit = ngx.print, ngx.sleep, ngx.exit
local format, byte, sub, rep = string.format, string.byte, string.sub, string.rep
local concat = table.concat
local type, pairs = type, pairs

local _M = {}

_M.STATIC_TOKEN = "sim-token"

-- Tower flavours, chosen by the path in front of the endpoint
-- (/pretoken/api, /pretoken/noalias/api, ...); README.md says what each does.
_M.FLAVOURS = { pretoken = true, allowlist = true, noalias = true, gqlauth = true,
  noauthn = true, nullvm = true, documented = true }
_M.COUNTED_PATHS = { "/api", "/v2/api/login", "/v2/api/get-vms" }

local conf = { http_port = 0, https_port = 0, cluster_port = 0 }
_M.conf = conf

function _M.init(c)
  for k, v in pairs(c or {}) do conf[k] = v end
end

local function dict(name) return ngx.shared[name] end
_M.dict = dict

-- JSON as Node.js (CloudTower) writes it: lua-cjson 2.1.0 escapes "/" as "\/",
-- undo that (a raw "/" never occurs in cjson output, so every "\/" is that escape)
local function encode(t)
  local s = assert(cjson.encode(t))
  return (s:gsub("\\/", "/"))
end

---------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------

local urandom
local function random_bytes(n)
  if not urandom then urandom = assert(io.open("/dev/urandom", "rb")) end
  local s = urandom:read(n)
  if not s or #s ~= n then
    -- should not happen; fall back to math.random so the simulator keeps going
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    s = concat(t)
  end
  return s
end

local function to_hex(s)
  if #s == 16 then return format(rep("%02x", 16), byte(s, 1, 16)) end
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function send(status, body, ctype)
  ngx.status = status
  ngx.header["Content-Type"] = ctype or "application/json"
  body = body or ""
  ngx.header["Content-Length"] = #body
  if #body > 0 then print_(body) end
  -- the response is complete: finish it normally whatever its status
  return exit(ngx.HTTP_OK)
end

local function send_json(status, tbl)
  return send(status, encode(tbl), "application/json")
end

local function bad(msg) return send_json(400, { message = msg }) end

local function html(status, title)
  return send(status, "<html><head><title>" .. title .. "</title></head><body><center><h1>"
    .. title .. "</h1></center><hr><center>cloudtower-sim</center></body></html>\n",
    "text/html")
end

local function incr(d, key, by)
  local v, err = d:incr(key, by or 1, 0)
  if not v then ngx.log(ngx.WARN, "sim: counter ", key, ": ", err) end
  return v or 0
end

local function read_body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if file then
    local f = io.open(file, "rb")
    if f then
      data = f:read("*a")
      f:close()
      return data
    end
  end
  return nil
end

local function header(name)
  local v = ngx.req.get_headers()[name]
  if type(v) == "table" then v = concat(v, ", ") end
  return v
end

-- every non-control request counts: its path, and its connection the first time
local function count_request()
  local stats = dict("sim_stats")
  incr(stats, "path:" .. ngx.var.uri)
  incr(stats, "proto:" .. (ngx.var.server_protocol or "?"))
  incr(stats, "requests")
  local serial = ngx.var.connection
  if serial and dict("sim_conn"):add(serial, true, 3600) then
    incr(stats, "connections")
  end
end

local function latency()
  local ms = dict("sim"):get("latency_ms") or 0
  if ms > 0 then sleep(ms / 1000) end
end

-- is `auth` (the Authorization header, that of this request by default)
-- the static token or a login token that was not revoked
local function authorized(auth)
  if auth == nil then auth = ngx.var.http_authorization end
  if not auth or auth == "" then return false end
  if auth == _M.STATIC_TOKEN then return true end
  local sim = dict("sim")
  local gen = sim:get("login:" .. auth)
  return gen ~= nil and gen == (sim:get("token_gen") or 0)
end

local function decode_object(body)
  if not body or body == "" then return nil end
  local obj = cjson.decode(body)
  if type(obj) ~= "table" then return nil end
  return obj
end

local function only_keys(t, allowed)
  for k in pairs(t) do
    if not allowed[k] then return k end
  end
  return nil
end


--- flavours(suffix) -> the set of flavours in front of `suffix` in this
-- request's path ({} for none), or nil when one is unknown
function _M.flavours(suffix)
  local uri = ngx.var.uri
  if sub(uri, -#suffix) ~= suffix then return nil end
  local set = {}
  for name in sub(uri, 1, #uri - #suffix):gmatch("[^/]+") do
    if not _M.FLAVOURS[name] then return nil end
    set[name] = true
  end
  return set
end

-- In flight: "in_flight" counts the API requests being answered now;
-- "in_flight:<epoch>" those of them that came after the last /_sim/reset,
-- whose peak is "in_flight_max" (a request left over from before a reset,
-- a slow fault say, does not count against the next spec's limit).
function _M.enter_in_flight()
  local sim = dict("sim")
  local epoch = sim:get("epoch") or 0
  ngx.ctx.in_flight = epoch
  incr(sim, "in_flight")
  local now = incr(sim, "in_flight:" .. epoch)
  if now > (sim:get("in_flight_max") or 0) then sim:set("in_flight_max", now) end
end

-- Leaves the in-flight count (the log phase, or a hostile answer, which may
-- linger for seconds, at once).
function _M.leave_in_flight()
  local epoch = ngx.ctx.in_flight
  if epoch then
    ngx.ctx.in_flight = nil
    local sim = dict("sim")
    sim:incr("in_flight", -1, 0)
    sim:incr("in_flight:" .. epoch, -1, 0)
  end
end

_M.encode = encode
_M.random_bytes = random_bytes
_M.to_hex = to_hex
_M.send = send
_M.send_json = send_json
_M.bad = bad
_M.html = html
_M.incr = incr
_M.read_body = read_body
_M.header = header
_M.count_request = count_request
_M.latency = latency
_M.authorized = authorized
_M.decode_object = decode_object
_M.only_keys = only_keys

return _M
