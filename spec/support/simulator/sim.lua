-- CloudTower simulator: request handlers for nginx + ngx_lua (see nginx.conf.in).
-- One handler per location. Loopback only; tokens are never logged.
--
-- Shared dicts:
--   sim        config (latency), login tokens, token generation, flaky counters, in-flight
--   sim_stats  counters reported by /_sim/stats (flushed by /_sim/reset)
--   sim_conn   connection serials already counted (not flushed: a kept-alive
--              connection is counted once, when it carries its first API request)
--   sim_vnc    console credentials handed out: "raw:<raw_token>" and "tok:<token>" -> vm id (60 s)

local cjson = require "cjson.safe"

local ngx = ngx
local print_, flush, sleep, exit = ngx.print, ngx.flush, ngx.sleep, ngx.exit
local format, byte, rep, sub, find, match = string.format, string.byte, string.rep, string.sub,
  string.find, string.match
local concat = table.concat
local tonumber, type, pairs, ipairs = tonumber, type, pairs, ipairs

local _M = {}

local STATIC_TOKEN = "sim-token"
local LOGIN_USER, LOGIN_PASS, LOGIN_SOURCE = "admin", "sim-pass", "LOCAL"
local VNC_QUERY = "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token token } }"
local VNC_TTL = 60
local FIELDS = { vm_uuid = true, host_ip = true, cluster_ip = true, raw_token = true, token = true }
local COUNTED_PATHS = { "/api", "/v2/api/login", "/v2/api/get-vms" }

local conf = { http_port = 0, https_port = 0, cluster_port = 0 }

function _M.init(c)
  for k, v in pairs(c or {}) do conf[k] = v end
end

local function dict(name) return ngx.shared[name] end

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
  local serial = ngx.var.connection
  if serial and dict("sim_conn"):add(serial, true, 3600) then
    incr(stats, "connections")
  end
end

local function latency()
  local ms = dict("sim"):get("latency_ms") or 0
  if ms > 0 then sleep(ms / 1000) end
end

local function authorized()
  local auth = ngx.var.http_authorization
  if not auth or auth == "" then return false end
  if auth == STATIC_TOKEN then return true end
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

---------------------------------------------------------------------------
-- vnc answers
---------------------------------------------------------------------------

local function fresh_info(n, vm_id, v6)
  local raw = to_hex(random_bytes(16))
  -- "\251\239\255" encodes to "++//"; 37 bytes in all leave "==" padding
  local token = ngx.encode_base64("\251\239\255" .. raw .. "\255\254")
  assert(find(token, "+", 1, true) and find(token, "/", 1, true) and find(token, "=", 1, true))
  local vnc = dict("sim_vnc")
  vnc:set("raw:" .. raw, vm_id, VNC_TTL)
  vnc:set("tok:" .. token, vm_id, VNC_TTL)
  local cluster
  if v6 then cluster = "::1"
  elseif n % 2 == 1 then cluster = "127.0.0.2"
  else cluster = "127.0.0.3" end
  return {
    vm_uuid = format("%08x-0000-4000-8000-%012x", n % 0x100000000, n),
    host_ip = v6 and "::1" or "127.0.0.1",
    cluster_ip = cluster,
    raw_token = raw,
    token = token,
  }
end

local function answer_vnc(info)
  return send_json(200, { data = { vnc = info } })
end

local function graphql_not_found(id)
  return send_json(200, { data = cjson.null, errors = { {
    message = "VM " .. id .. " does not exist",
    extensions = { code = "VM_NOT_FOUND" },
  } } })
end

local function fault_close()
  -- status line + Content-Length: 1000, about 20 bytes of body, then the
  -- connection goes away (raw downstream socket, so nginx adds nothing).
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.WARN, "sim: fault-close: no raw socket: ", err)
    return exit(444)
  end
  sock:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    .. "Connection: keep-alive\r\n\r\n{\"data\":{\"vnc\":{\"vm")
  return exit(444)
end

local function fault_endless()
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  local chunk = rep("x", 65536)
  local deadline = ngx.now() + 60
  local ok, err = print_('{"data":{"vnc":null},"padding":"')
  while ok and ngx.now() < deadline do
    ok, err = print_(chunk)
    if ok then ok, err = flush(true) end
    -- about 13 MB/s: endless, yet the one worker still serves the others
    if ok then sleep(0.005) end
  end
  if not ok then ngx.log(ngx.INFO, "sim: fault-endless stopped: ", err) end
  return exit(444)
end

local function fault_huge()
  local info = fresh_info(1, "fault-huge")
  local head = encode({ data = { vnc = info } })
  -- {"data":...,"padding":"xxx"} of exactly 3 MiB
  local prefix = sub(head, 1, -2) .. ',"padding":"'
  local pad = 3 * 1024 * 1024 - #prefix - 2
  return send(200, prefix .. rep("x", pad) .. '"}', "application/json")
end

local faults = {
  ["fault-401"] = function() return send_json(401, { message = "unauthorized" }) end,
  ["fault-403"] = function() return send_json(403, { message = "forbidden" }) end,
  ["fault-500"] = function() return html(500, "500 Internal Server Error") end,
  ["fault-502"] = function() return html(502, "502 Bad Gateway") end,
  ["fault-503"] = function() return html(503, "503 Service Temporarily Unavailable") end,
  ["fault-307"] = function()
    ngx.header["Location"] = "http://127.0.0.1:" .. conf.http_port .. "/api"
    return send(307, "", "text/html")
  end,
  ["fault-graphql"] = function(id) return graphql_not_found(id) end,
  ["fault-null"] = function() return send_json(200, { data = { vnc = cjson.null } }) end,
  ["fault-nonjson"] = function() return send(200, "<html>not json</html>", "text/html") end,
  ["fault-inject"] = function(id)
    local info = fresh_info(1, id); info.cluster_ip = "127.0.0.1/evil?x=1#"; return answer_vnc(info)
  end,
  ["fault-inject-host"] = function(id)
    local info = fresh_info(1, id); info.host_ip = "127.0.0.1&token=stolen"; return answer_vnc(info)
  end,
  ["fault-huge"] = fault_huge,
  ["fault-endless"] = fault_endless,
  ["fault-slow"] = function(id)
    sleep(3)
    return answer_vnc(fresh_info(1, id))
  end,
  ["fault-close"] = fault_close,
}

local function dispatch_vnc(id)
  local n = match(id, "^vm%-(%d+)$")
  local v6 = false
  if not n then
    n = match(id, "^vm6%-(%d+)$")
    v6 = n ~= nil
  end
  if n then
    n = tonumber(n)
    if n and n >= 1 and n < 2 ^ 48 then return answer_vnc(fresh_info(n, id, v6)) end
    return graphql_not_found(id)
  end

  local f = faults[id]
  if f then return f(id) end

  local how, field = match(id, "^fault%-(%a+)%-([%a_]+)$")
  if how and FIELDS[field] and (how == "missing" or how == "empty" or how == "type") then
    local info = fresh_info(1, id)
    if how == "missing" then info[field] = nil
    elseif how == "empty" then info[field] = ""
    else info[field] = 12345 end
    return answer_vnc(info)
  end

  local k = match(id, "^flaky%-(%d)%-.+$")
  if k then
    local seen = incr(dict("sim"), "flaky:" .. id)
    if seen <= tonumber(k) then return html(503, "503 Service Temporarily Unavailable") end
    return answer_vnc(fresh_info(1, id))
  end

  return graphql_not_found(id)
end

---------------------------------------------------------------------------
-- locations
---------------------------------------------------------------------------

local function lenient_vm_id(obj)
  local v = obj and obj.variables
  v = type(v) == "table" and v.input
  v = type(v) == "table" and v.vm
  v = type(v) == "table" and v.id
  if type(v) == "string" and v ~= "" and #v <= 256 then return v end
  return nil
end

function _M.api()
  count_request()
  local sim = dict("sim")
  local now = incr(sim, "in_flight")
  ngx.ctx.in_flight = true
  if now > (sim:get("in_flight_max") or 0) then sim:set("in_flight_max", now) end

  local body = read_body()
  local obj = decode_object(body)
  local id = lenient_vm_id(obj)
  if id then incr(dict("sim_stats"), "vm:" .. id) end

  latency()

  if not authorized() then return send_json(401, { message = "unauthorized" }) end
  if ngx.req.get_method() ~= "POST" then return bad("method must be POST") end

  local ctype = ngx.var.http_content_type
  if not ctype then return bad("missing Content-Type") end
  local lc = ctype:lower()
  if lc ~= "application/json" and not match(lc, "^application/json;%s*charset=utf%-8$") then
    return bad("Content-Type must be application/json")
  end
  local accept = header("accept")
  if not accept or not find(accept, "application/json", 1, true) then
    return bad("accept must include application/json")
  end
  local lang = header("content-language")
  if lang ~= "en-US" and lang ~= "zh-CN" then
    return bad("content-language must be en-US or zh-CN")
  end

  if not body or body == "" then return bad("empty body") end
  if not obj then return bad("body is not a JSON object") end
  local extra = only_keys(obj, { operationName = true, query = true, variables = true })
  if extra then return bad("unexpected field " .. extra) end
  if obj.operationName ~= "vnc" then return bad("operationName must be vnc") end
  if obj.query ~= VNC_QUERY then return bad("query is not the vnc query") end
  local vars = obj.variables
  if type(vars) ~= "table" or only_keys(vars, { input = true }) then
    return bad("variables must be {input}")
  end
  if type(vars.input) ~= "table" or only_keys(vars.input, { vm = true }) then
    return bad("variables.input must be {vm}")
  end
  local vm = vars.input.vm
  if type(vm) ~= "table" or only_keys(vm, { id = true }) then
    return bad("variables.input.vm must be {id}")
  end
  if type(vm.id) ~= "string" or vm.id == "" then
    return bad("variables.input.vm.id must be a non-empty string")
  end
  return dispatch_vnc(vm.id)
end

function _M.login()
  count_request()
  latency()
  if ngx.req.get_method() ~= "POST" then
    return send_json(400, { code = "BAD_REQUEST", message = "method must be POST" })
  end
  local obj = decode_object(read_body())
  if not obj then
    return send_json(400, { code = "BAD_REQUEST", message = "body is not a JSON object" })
  end
  if obj.username == LOGIN_USER and obj.password == LOGIN_PASS and obj.source == LOGIN_SOURCE then
    local token = "login-" .. to_hex(random_bytes(12))
    local sim = dict("sim")
    sim:set("login:" .. token, sim:get("token_gen") or 0)
    return send_json(200, { data = { token = token } })
  end
  return send_json(400, { code = "USER_PASSWORD_INCORRECT", message = "username or password incorrect" })
end

function _M.get_vms()
  count_request()
  latency()
  if not authorized() then return send_json(401, { message = "unauthorized" }) end
  if ngx.req.get_method() ~= "POST" then return bad("method must be POST") end
  local obj = decode_object(read_body())
  local where = obj and obj.where
  local name = type(where) == "table" and where.name
  if type(name) ~= "string" then return bad('body must be {"where":{"name":<string>}}') end
  local s = match(name, "^web%-(%d+)$")
  if s and tonumber(s) >= 1 then
    return send(200, encode({ {
      id = "vm-" .. s, name = name, local_id = "local-" .. s, status = "RUNNING",
    } }), "application/json")
  end
  return send(200, "[]", "application/json")
end

function _M.not_found()
  count_request()
  return send_json(404, { message = "not found" })
end

function _M.log()
  if ngx.ctx.in_flight then
    ngx.ctx.in_flight = nil
    dict("sim"):incr("in_flight", -1, 0)
  end
end

-- the reachable cluster's websocket endpoint (a placeholder for now)
function _M.cluster()
  if ngx.var.uri == "/websockify/" and ngx.req.get_method() == "GET" then
    return send(200, "cluster websockify placeholder", "text/plain")
  end
  return send_json(404, { message = "not found" })
end

---------------------------------------------------------------------------
-- control endpoints (not counted)
---------------------------------------------------------------------------

local function need(method)
  if ngx.req.get_method() ~= method then
    send_json(405, { message = "method must be " .. method })
    return false
  end
  return true
end

function _M.stats()
  if not need("GET") then return end
  local stats, sim = dict("sim_stats"), dict("sim")
  local requests, vms = {}, {}
  for _, p in ipairs(COUNTED_PATHS) do requests[p] = 0 end
  for _, key in ipairs(stats:get_keys(0)) do
    local v = stats:get(key)
    if v then
      if sub(key, 1, 5) == "path:" then requests[sub(key, 6)] = v
      elseif sub(key, 1, 3) == "vm:" then vms[sub(key, 4)] = v end
    end
  end
  return send(200, encode({
    requests = requests,
    vm = vms,
    connections = stats:get("connections") or 0,
    in_flight = sim:get("in_flight") or 0,
    in_flight_max = sim:get("in_flight_max") or 0,
    latency_ms = sim:get("latency_ms") or 0,
  }), "application/json")
end

function _M.reset()
  if not need("POST") then return end
  local sim = dict("sim")
  dict("sim_stats"):flush_all()
  dict("sim_stats"):flush_expired()
  for _, key in ipairs(sim:get_keys(0)) do
    if sub(key, 1, 6) == "flaky:" then sim:delete(key) end
  end
  sim:set("in_flight_max", sim:get("in_flight") or 0)
  sim:set("latency_ms", 0)
  return send_json(200, { ok = true })
end

function _M.config()
  if not need("POST") then return end
  local obj = decode_object(read_body())
  local ms = obj and obj.latency_ms
  if type(ms) ~= "number" or ms < 0 or ms > 600000 then
    return bad('body must be {"latency_ms":<number 0..600000>}')
  end
  dict("sim"):set("latency_ms", ms)
  return send_json(200, { ok = true, latency_ms = ms })
end

function _M.revoke()
  if not need("POST") then return end
  local sim = dict("sim")
  sim:incr("token_gen", 1, 0)
  -- drop the stale entries too (the generation check already refuses them)
  for _, key in ipairs(sim:get_keys(0)) do
    if sub(key, 1, 6) == "login:" then sim:delete(key) end
  end
  return send_json(200, { ok = true })
end

return _M
