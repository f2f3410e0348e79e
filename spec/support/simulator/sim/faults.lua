-- CloudTower simulator: the VM catalogue and its fault table. dispatch(id)
-- answers the `vnc` query for one VM id: vm-<n> and vm6-<n> are healthy VMs,
-- fault-* and flaky-* ids are the faults listed in README.md (the hostile
-- ones for spec/hostile_spec.lua), anything else is unknown.

local cjson = require "cjson.safe"
local util = require "sim.util"

local ngx = ngx
local print_, flush, sleep, exit = ngx.print, ngx.flush, ngx.sleep, ngx.exit
local format, rep, sub, find, match = string.format, string.rep, string.sub,
  string.find, string.match
local concat = table.concat
local tonumber, type, pairs, ipairs = tonumber, type, pairs, ipairs

local dict, encode, send, send_json, html, incr = util.dict, util.encode, util.send,
  util.send_json, util.html, util.incr
local random_bytes, to_hex, leave_in_flight = util.random_bytes, util.to_hex, util.leave_in_flight
local conf = util.conf

local _M = {}

local VNC_TTL = 60
local FIELDS = { vm_uuid = true, host_ip = true, cluster_ip = true, raw_token = true, token = true }

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

function _M.dispatch(id)
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


_M.fresh_info = fresh_info
_M.faults = faults

return _M
