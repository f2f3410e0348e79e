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

---------------------------------------------------------------------------
-- hostile answers (spec/hostile_spec.lua): lying framing, endless or
-- dribbling answers, odd JSON. The raw ones take the downstream socket
-- (the request body is already read) and write status line and headers
-- themselves, so nginx adds nothing.
---------------------------------------------------------------------------

local hostile = {}

local JSON_HEAD = "Content-Type: application/json\r\n"

-- The in-flight count of /_sim/stats is for real answers: a hostile one,
-- which may linger for seconds, leaves it at once.
local function leave_in_flight()
  if ngx.ctx.in_flight then
    ngx.ctx.in_flight = nil
    dict("sim"):incr("in_flight", -1, 0)
  end
end

-- waits `seconds` on the raw socket: false as soon as the client leaves
local function linger(sock, seconds)
  local deadline = ngx.now() + seconds
  while true do
    local left = deadline - ngx.now()
    if left <= 0 then return true end
    sock:settimeout(math.max(1, math.floor(left * 1000)))
    local _, err = sock:receive(1)
    -- a byte is a request nobody answers: wait on
    if err and err ~= "timeout" then return false end
  end
end

-- writes the pieces of `parts` raw (a number is a pause in seconds), then
-- closes the connection; stops when the client leaves
local function raw_answer(what, parts)
  leave_in_flight()
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.WARN, "sim: ", what, ": no raw socket: ", err)
    return exit(444)
  end
  for _, p in ipairs(parts) do
    local ok, e
    if type(p) == "number" then ok, e = linger(sock, p), "the client left"
    else ok, e = sock:send(p) end
    if not ok then
      ngx.log(ngx.INFO, "sim: ", what, " stopped: ", e)
      break
    end
  end
  return exit(444)
end

local function vnc_body(id)
  return encode({ data = { vnc = fresh_info(1, id) } })
end

-- a valid JSON object text with `fields` (raw JSON texts, in this order)
local function vnc_raw(fields)
  return '{"data":{"vnc":{' .. concat(fields, ",") .. "}}}"
end

local function info_fields(id, replace)
  local info = fresh_info(1, id)
  local out = {}
  for _, k in ipairs({ "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }) do
    out[#out + 1] = format('"%s":%s', k, replace and replace[k] or encode(info[k]))
  end
  return out
end

-- one byte a second after the headers (of 1000 announced), for two minutes
-- or until the client leaves
hostile["fault-dribble"] = function()
  local parts = { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: 1000\r\n\r\n{" }
  for i = 1, 120 do parts[2 * i], parts[2 * i + 1] = 1, " " end
  return raw_answer("fault-dribble", parts)
end

-- the status line, then one byte of an endless header a second
hostile["fault-dribble-head"] = function()
  local parts = { "HTTP/1.1 200 OK\r\nX-Pad: " }
  for i = 1, 120 do parts[2 * i], parts[2 * i + 1] = 1, "a" end
  return raw_answer("fault-dribble-head", parts)
end

-- headers without end: 1000-byte header lines as fast as the client reads
-- them, for 60 s at most
hostile["fault-headers-endless"] = function()
  leave_in_flight()
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.WARN, "sim: fault-headers-endless: no raw socket: ", err)
    return exit(444)
  end
  local line = "X-Pad: " .. rep("h", 991) .. "\r\n"
  local block = rep(line, 64)
  local deadline = ngx.now() + 60
  local ok = sock:send("HTTP/1.1 200 OK\r\n" .. JSON_HEAD)
  while ok and ngx.now() < deadline do
    ok = sock:send(block)
    if ok then sleep(0.001) end
  end
  return exit(444)
end

-- one header line of 1 MiB
hostile["fault-header-huge"] = function()
  return raw_answer("fault-header-huge", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "X-Pad: "
    .. rep("h", 1048576) .. "\r\nContent-Length: 2\r\n\r\n{}" })
end

-- HTTP/1.0, no Content-Length: the body ends when the connection does
hostile["fault-http10"] = function(id)
  return raw_answer("fault-http10", { "HTTP/1.0 200 OK\r\n" .. JSON_HEAD .. "\r\n" .. vnc_body(id) })
end

hostile["fault-http10-trunc"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-http10-trunc", { "HTTP/1.0 200 OK\r\n" .. JSON_HEAD .. "\r\n"
    .. sub(body, 1, #body - 40) })
end

local CHUNKED = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Transfer-Encoding: chunked\r\n\r\n"

-- a chunk announced 1000 bytes longer than what comes (a complete JSON answer)
hostile["fault-chunk-short"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-chunk-short", { CHUNKED .. format("%x\r\n", #body + 1000) .. body })
end

-- a complete JSON answer in one chunk, then the connection closes without
-- the last chunk
hostile["fault-chunk-noend"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-chunk-noend", { CHUNKED .. format("%x\r\n", #body) .. body .. "\r\n" })
end

-- a chunk size that is not hexadecimal
hostile["fault-chunk-bad"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-chunk-bad", { CHUNKED .. "zz\r\n" .. body .. "\r\n0\r\n\r\n" })
end

-- a chunk size of 2^80 - 1
hostile["fault-chunk-overflow"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-chunk-overflow", { CHUNKED .. rep("f", 20) .. "\r\n" .. body .. "\r\n0\r\n\r\n" })
end

-- Content-Length: 2 GiB, a few bytes, then silence for 10 s (or until the client leaves)
hostile["fault-length-2g"] = function()
  return raw_answer("fault-length-2g", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD
    .. "Content-Length: 2147483648\r\n\r\n{\"data\":{\"vnc\":", 10 })
end

-- Content-Length larger than 2^64, a complete answer, then close
hostile["fault-length-overflow"] = function(id)
  local body = vnc_body(id)
  return raw_answer("fault-length-overflow", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD
    .. "Content-Length: 99999999999999999999999\r\n\r\n" .. body })
end

-- Content-Length: 2 for "{}", then a second answer nobody asked for (an
-- injected vnc answer for VM 999) on the same connection, at once or 0.1 s
-- later; the connection stays open 3 s (or until the client leaves)
local function smuggle(what, pause)
  local evil = encode({ data = { vnc = {
    vm_uuid = "000003e7-0000-4000-8000-0000000003e7", host_ip = "127.0.0.1",
    cluster_ip = "smuggled.example", raw_token = rep("e", 32), token = "c211Z2dsZWQ=",
  } } })
  local second = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: " .. #evil .. "\r\n\r\n"
    .. evil
  local first = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: 2\r\n\r\n{}"
  if pause then return raw_answer(what, { first, pause, second, 3 }) end
  return raw_answer(what, { first .. second, 3 })
end
hostile["fault-smuggle"] = function() return smuggle("fault-smuggle") end
hostile["fault-smuggle-late"] = function() return smuggle("fault-smuggle-late", 0.1) end

-- invalid UTF-8 (and a NUL) inside the strings of a well-formed answer
hostile["fault-badutf8"] = function(id)
  local info = fresh_info(1, id)
  info.raw_token = "\255\254" .. info.raw_token .. "\192\128\237\160\128"
  info.token = "\128" .. info.token .. "\0\244\144\128\128"
  info.vm_uuid = "\226\130" .. info.vm_uuid
  return answer_vnc(info)
end

-- invalid UTF-8 in the host fields
hostile["fault-badutf8-host"] = function(id)
  local info = fresh_info(1, id)
  info.cluster_ip = "127.0.0.2\255"
  return answer_vnc(info)
end

-- a GraphQL error whose message has invalid UTF-8, a line break and 8 KiB
hostile["fault-badutf8-graphql"] = function()
  return send_json(200, { data = cjson.null, errors = { {
    message = "VM \255\254\192\128 does not exist\r\nsecond line " .. rep("\200", 8192),
    extensions = { code = "VM_NOT_FOUND" },
  } } })
end

-- a long GraphQL error message in Chinese (3 bytes a character)
hostile["fault-zh-graphql"] = function()
  return send_json(200, { data = cjson.null, errors = { {
    message = rep("\232\153\154\230\139\159\230\156\186\228\184\141\229\173\152\229\156\168", 40),
    extensions = { code = "VM_NOT_FOUND" },
  } } })
end

-- an HTTP 500 whose JSON message is one ASCII byte, then long Chinese text
hostile["fault-zh-500"] = function()
  return send_json(500, { message = "x" .. rep("\230\156\141\229\138\161\229\153\168", 80) })
end

-- JSON nested 100,000 deep (arrays), and objects 100,000 deep in a 500
hostile["fault-deep"] = function()
  return send(200, '{"data":{"vnc":' .. rep("[", 100000) .. rep("]", 100000) .. "}}")
end
hostile["fault-deep-500"] = function()
  return send(500, rep('{"a":', 100000) .. "1" .. rep("}", 100000))
end

-- duplicate keys in data.vnc: the injection last, or first
hostile["fault-dupkey"] = function(id)
  local f = info_fields(id)
  f[#f + 1] = '"cluster_ip":"evil.example/x?y=1#"'
  return send(200, vnc_raw(f))
end
hostile["fault-dupkey-first"] = function(id)
  local f = info_fields(id)
  table.insert(f, 1, '"cluster_ip":"evil.example/x?y=1#"')
  return send(200, vnc_raw(f))
end
-- two data.vnc objects: the second has an injected host_ip
hostile["fault-dupkey-vnc"] = function(id)
  local good = concat(info_fields(id), ",")
  local evil = concat(info_fields(id, { host_ip = '"127.0.0.1&token=stolen"' }), ",")
  return send(200, '{"data":{"vnc":{' .. good .. '},"vnc":{' .. evil .. "}}}")
end

-- hosts that only JSON escapes can carry: a NUL, an escaped "/"
hostile["fault-nul-host"] = function(id)
  return send(200, vnc_raw(info_fields(id, { cluster_ip = '"127.0.0.2\\u0000.evil.example"' })))
end
hostile["fault-escaped-host"] = function(id)
  return send(200, vnc_raw(info_fields(id, { host_ip = '"127.0.0.1\\u002fevil\\u003fx"' })))
end

-- a non-string token: {}, [], 1e309, true, null
for name, text in pairs({ object = "{}", array = '["a"]', bignum = "1e309", ["true"] = "true",
                          null = "null" }) do
  hostile["fault-token-" .. name] = function(id)
    return send(200, vnc_raw(info_fields(id, { token = text })))
  end
end

-- data.vnc of the wrong type or missing, data of the wrong type
hostile["fault-vnc-string"] = function() return send(200, '{"data":{"vnc":"x"}}') end
hostile["fault-vnc-array"] = function() return send(200, '{"data":{"vnc":[1,2]}}') end
hostile["fault-data-array"] = function() return send(200, '{"data":[]}') end
hostile["fault-vnc-missing"] = function() return send(200, '{"data":{}}') end
hostile["fault-toplevel-string"] = function() return send(200, '"{}"') end

for k, f in pairs(hostile) do faults[k] = f end

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

---------------------------------------------------------------------------
-- the console desktop (spec/e2e_spec.lua): CloudTower's /websockify/ proxy
-- and the token check of the cluster's websockify, both leading to the one
-- VNC desktop the spec runs
---------------------------------------------------------------------------

-- POST /_sim/desktop {"ws":"http://127.0.0.1:<port>","vnc":"127.0.0.1:<port>"}
-- registers it: "ws" is a plain websockify in front of the desktop (where
-- /websockify/ carries the console websocket), "vnc" the desktop's VNC
-- address (what GET /_sim/desktop/<raw_token> tells the cluster's websockify).
-- A field left out is unregistered ({} clears both). Loopback only.
local function desktop_ws_ok(s)
  return type(s) == "string"
    and (match(s, "^http://127%.%d+%.%d+%.%d+:%d+$") or match(s, "^http://%[::1%]:%d+$")) ~= nil
end

function _M.desktop()
  if not need("POST") then return end
  local body = read_body()
  local obj = decode_object((body == nil or body == "") and "{}" or body)
  if not obj then return bad("body must be a JSON object") end
  local ws, vnc = obj.ws, obj.vnc
  local host, port
  if vnc ~= nil then
    host, port = match(type(vnc) == "string" and vnc or "", "^(127%.%d+%.%d+%.%d+):(%d+)$")
    port = tonumber(port)
    if not host or port < 1 or port > 65535 then
      return bad('"vnc" must be "127.x.y.z:<port>"')
    end
  end
  if ws ~= nil and not desktop_ws_ok(ws) then
    return bad('"ws" must be "http://127.x.y.z:<port>" or "http://[::1]:<port>"')
  end
  local sim = dict("sim")
  if ws then sim:set("desktop:ws", ws) else sim:delete("desktop:ws") end
  if host then sim:set("desktop:vnc", host .. ":" .. port) else sim:delete("desktop:vnc") end
  return send_json(200, { ok = true })
end

-- GET /_sim/desktop/<raw_token>: the cluster's websockify asks this
-- (--token-plugin JSONTokenApi) where the raw token of the query leads:
-- {"host":..,"port":..} for a raw token handed out in the last 60 s, else 404.
function _M.desktop_token()
  if not need("GET") then return end
  local raw = sub(ngx.var.uri, #"/_sim/desktop/" + 1)
  local vnc = dict("sim"):get("desktop:vnc")
  if raw == "" or not vnc or not dict("sim_vnc"):get("raw:" .. raw) then
    return send_json(404, { message = "unknown raw token or no desktop" })
  end
  local host, port = match(vnc, "^(.*):(%d+)$")
  return send_json(200, { host = host, port = tonumber(port) })
end

-- The token as websockify 0.10 reads it (websocketproxy.py get_target:
-- parse_qs(urlparse(path).query)["token"][0].rstrip("\n")): the query split
-- on "&"; a part without "=" or with an empty value is skipped; in name and
-- value "+" becomes a space, then %XX is decoded (urllib's unquote: a bad
-- sequence stays as it is; bytes that are not UTF-8 become U+FFFD there,
-- and stay bytes here, which matches no issued token either way); the first
-- "token" wins.
local function py_unquote_plus(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function websockify_token(args)
  if not args or args == "" then return nil end
  for part in (args .. "&"):gmatch("([^&]*)&") do
    local name, value = match(part, "^([^=]*)=(.*)$")
    if name and value ~= "" and py_unquote_plus(name) == "token" then
      return (py_unquote_plus(value):gsub("\n+$", ""))
    end
  end
  return nil
end

local function deny(status, msg)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(encode({ message = msg }))
  return exit(status)
end

-- access_by_lua of /websockify/ (CloudTower's proxy): the base64 token of
-- the query must be one handed out in the last 60 s (401 none, 403 unknown);
-- then $sim_ws_target is the registered desktop websockify (503 none).
function _M.websockify_access()
  local token = websockify_token(ngx.var.args)
  if not token then return deny(401, "no token") end
  if not dict("sim_vnc"):get("tok:" .. token) then return deny(403, "unknown token") end
  local target = dict("sim"):get("desktop:ws")
  if not target then return deny(503, "no desktop registered (POST /_sim/desktop)") end
  ngx.var.sim_ws_target = target
end

return _M
