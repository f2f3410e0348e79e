-- CloudTower simulator: the VM catalogue and its fault table, for the `vnc`
-- field of /api. vm-<n> and vm6-<n> are healthy VMs; fault-* and flaky-*
-- ids are the faults listed in README.md (the hostile ones for
-- spec/hostile_spec.lua); anything else is unknown.
--
-- Two kinds of fault:
--   per VM  vm(id, sel) -> outcome, the answer to one `vnc` field: its value
--           as JSON text ({value=}), an error at its path ({error={message,
--           code}}, value null), no key at all ({omit=true}), or the key
--           twice ({value=, dup=}). Other fields of the same query are
--           answered as usual.
--   whole   whole(id) -> handler(ctx): the fault answers the whole request
--           (an HTTP status, a lying framing, a late second answer...).
--           ctx.key is the response key of the field (its alias, or "vnc");
--           ctx.normal() is the complete answer the request would have had
--           with this VM healthy.
-- `sel` is the field's selection: an array of {key=, name=} (subfield
-- aliases and __typename included).

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

-- the downstream socket, raw; nil and why over HTTP/2 (which ngx_lua
-- raises on)
local function raw_socket()
  local ok, sock, err = pcall(ngx.req.socket, true)
  if not ok then return nil, sock end
  return sock, err
end
local FIELD_ORDER = { "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }
local FIELDS = { vm_uuid = true, host_ip = true, cluster_ip = true, raw_token = true, token = true }

-- the selection `{ vm_uuid host_ip cluster_ip raw_token token }`
local ALL = {}
for i, f in ipairs(FIELD_ORDER) do ALL[i] = { key = f, name = f } end
_M.ALL = ALL

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
_M.fresh_info = fresh_info

-- a value as JSON; plain strings (names, addresses, hex, base64) quoted
-- as they are, the cheap way
local function json(v)
  if type(v) == "string" and not find(v, "[^%w%.%-_:+/=]") then return '"' .. v .. '"' end
  return encode(v)
end

-- `"key":<json>` pairs of `info` as `sel` asks (a field the info lacks is
-- left out); `replace` gives raw JSON texts by field name
local function fields_of(info, sel, replace)
  local out = {}
  for _, s in ipairs(sel or ALL) do
    local text
    if s.name == "__typename" then text = '"Vnc"'
    elseif replace and replace[s.name] then text = replace[s.name]
    elseif info[s.name] ~= nil then text = json(info[s.name]) end
    if text then out[#out + 1] = json(s.key) .. ":" .. text end
  end
  return out
end

local function object_text(info, sel, replace)
  return "{" .. concat(fields_of(info, sel, replace), ",") .. "}"
end
_M.object_text = object_text

-- the response key `sel` gives the field `name` (the name when not selected)
local function key_of(sel, name)
  for _, s in ipairs(sel or ALL) do
    if s.name == name then return s.key end
  end
  return name
end

local function value(text) return { value = text } end

local function not_found(id)
  return { error = { message = "VM " .. id .. " does not exist", code = "VM_NOT_FOUND" } }
end

-- a VM the tower does not know (the nullvm flavour answers it with a bare null)
local function unknown(id)
  local out = not_found(id)
  out.unknown = true
  return out
end

local function healthy(id, sel)
  return value(object_text(fresh_info(1, id), sel))
end

---------------------------------------------------------------------------
-- per-VM faults: fn(id, sel) -> outcome
---------------------------------------------------------------------------

local per_vm = {
  ["fault-graphql"] = function(id) return not_found(id) end,
  ["fault-null"] = function() return value("null") end,
  ["fault-inject"] = function(id, sel)
    local info = fresh_info(1, id); info.cluster_ip = "127.0.0.1/evil?x=1#"
    return value(object_text(info, sel))
  end,
  ["fault-inject-host"] = function(id, sel)
    local info = fresh_info(1, id); info.host_ip = "127.0.0.1&token=stolen"
    return value(object_text(info, sel))
  end,

  -- hostile (spec/hostile_spec.lua): odd JSON in one answer

  -- invalid UTF-8 (and a NUL) inside the strings of a well-formed answer
  ["fault-badutf8"] = function(id, sel)
    local info = fresh_info(1, id)
    info.raw_token = "\255\254" .. info.raw_token .. "\192\128\237\160\128"
    info.token = "\128" .. info.token .. "\0\244\144\128\128"
    info.vm_uuid = "\226\130" .. info.vm_uuid
    return value(object_text(info, sel))
  end,
  -- invalid UTF-8 in the host fields
  ["fault-badutf8-host"] = function(id, sel)
    local info = fresh_info(1, id)
    info.cluster_ip = "127.0.0.2\255"
    return value(object_text(info, sel))
  end,
  -- a GraphQL error whose message has invalid UTF-8, a line break and 8 KiB
  ["fault-badutf8-graphql"] = function()
    return { error = { code = "VM_NOT_FOUND",
      message = "VM \255\254\192\128 does not exist\r\nsecond line " .. rep("\200", 8192) } }
  end,
  -- a long GraphQL error message in Chinese (3 bytes a character)
  ["fault-zh-graphql"] = function()
    return { error = { code = "VM_NOT_FOUND",
      message = rep("\232\153\154\230\139\159\230\156\186\228\184\141\229\173\152\229\156\168", 40) } }
  end,
  -- the value nested 100,000 arrays deep
  ["fault-deep"] = function() return value(rep("[", 100000) .. rep("]", 100000)) end,
  -- duplicate keys in the value: the injection last, or first
  ["fault-dupkey"] = function(id, sel)
    local f = fields_of(fresh_info(1, id), sel)
    f[#f + 1] = encode(key_of(sel, "cluster_ip")) .. ':"evil.example/x?y=1#"'
    return value("{" .. concat(f, ",") .. "}")
  end,
  ["fault-dupkey-first"] = function(id, sel)
    local f = fields_of(fresh_info(1, id), sel)
    table.insert(f, 1, encode(key_of(sel, "cluster_ip")) .. ':"evil.example/x?y=1#"')
    return value("{" .. concat(f, ",") .. "}")
  end,
  -- the key twice: the second value has an injected host_ip
  ["fault-dupkey-vnc"] = function(id, sel)
    return { value = object_text(fresh_info(1, id), sel),
      dup = object_text(fresh_info(1, id), sel, { host_ip = '"127.0.0.1&token=stolen"' }) }
  end,
  -- hosts that only JSON escapes can carry: a NUL, an escaped "/"
  ["fault-nul-host"] = function(id, sel)
    return value(object_text(fresh_info(1, id), sel, { cluster_ip = '"127.0.0.2\\u0000.evil.example"' }))
  end,
  ["fault-escaped-host"] = function(id, sel)
    return value(object_text(fresh_info(1, id), sel, { host_ip = '"127.0.0.1\\u002fevil\\u003fx"' }))
  end,
  -- the value of the wrong type, or no key at all
  ["fault-vnc-string"] = function() return value('"x"') end,
  ["fault-vnc-array"] = function() return value("[1,2]") end,
  ["fault-vnc-missing"] = function() return { omit = true } end,
}

-- a non-string token: {}, [], 1e309, true, null
for name, text in pairs({ object = "{}", array = '["a"]', bignum = "1e309", ["true"] = "true",
                          null = "null" }) do
  per_vm["fault-token-" .. name] = function(id, sel)
    return value(object_text(fresh_info(1, id), sel, { token = text }))
  end
end

---------------------------------------------------------------------------
-- whole-request faults: fn(ctx)
---------------------------------------------------------------------------

local function fault_close(ctx)
  -- status line + Content-Length: 1000, about 20 bytes of body, then the
  -- connection goes away (raw downstream socket, so nginx adds nothing).
  local sock, err = raw_socket()
  if not sock then
    ngx.log(ngx.WARN, "sim: fault-close: no raw socket: ", err)
    return exit(444)
  end
  sock:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    .. "Connection: keep-alive\r\n\r\n{\"data\":{" .. encode(ctx.key) .. ":{\"vm")
  return exit(444)
end

local function fault_endless(ctx)
  ngx.status = 200
  ngx.header["Content-Type"] = "application/json"
  local chunk = rep("x", 65536)
  local deadline = ngx.now() + 60
  local ok, err = print_('{"data":{' .. encode(ctx.key) .. ':null},"padding":"')
  while ok and ngx.now() < deadline do
    ok, err = print_(chunk)
    if ok then ok, err = flush(true) end
    -- about 13 MB/s: endless, yet the one worker still serves the others
    if ok then sleep(0.005) end
  end
  if not ok then ngx.log(ngx.INFO, "sim: fault-endless stopped: ", err) end
  return exit(444)
end

local function fault_huge(ctx)
  local head = ctx.normal()
  -- {"data":...,"padding":"xxx"} of exactly 3 MiB
  local prefix = sub(head, 1, -2) .. ',"padding":"'
  local pad = 3 * 1024 * 1024 - #prefix - 2
  return send(200, prefix .. rep("x", pad) .. '"}', "application/json")
end

local whole = {
  ["fault-401"] = function() return send_json(401, { message = "unauthorized" }) end,
  ["fault-403"] = function() return send_json(403, { message = "forbidden" }) end,
  ["fault-500"] = function() return html(500, "500 Internal Server Error") end,
  ["fault-502"] = function() return html(502, "502 Bad Gateway") end,
  ["fault-503"] = function() return html(503, "503 Service Temporarily Unavailable") end,
  ["fault-307"] = function()
    ngx.header["Location"] = "http://127.0.0.1:" .. conf.http_port .. "/api"
    return send(307, "", "text/html")
  end,
  ["fault-nonjson"] = function() return send(200, "<html>not json</html>", "text/html") end,
  ["fault-huge"] = fault_huge,
  ["fault-endless"] = fault_endless,
  -- the whole request waits (one slow VM delays its group)
  ["fault-slow"] = function(ctx)
    sleep(3)
    return send(200, ctx.normal(), "application/json")
  end,
  ["fault-close"] = fault_close,
}

---------------------------------------------------------------------------
-- hostile answers (spec/hostile_spec.lua): lying framing, endless or
-- dribbling answers. The raw ones take the downstream socket (the request
-- body is already read) and write status line and headers themselves, so
-- nginx adds nothing. HTTP/1.x only: over HTTP/2 there is no raw socket and
-- the stream is reset.
---------------------------------------------------------------------------

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
  local sock, err = raw_socket()
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

-- one byte a second after the headers (of 1000 announced), for two minutes
-- or until the client leaves
whole["fault-dribble"] = function()
  local parts = { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: 1000\r\n\r\n{" }
  for i = 1, 120 do parts[2 * i], parts[2 * i + 1] = 1, " " end
  return raw_answer("fault-dribble", parts)
end

-- the status line, then one byte of an endless header a second
whole["fault-dribble-head"] = function()
  local parts = { "HTTP/1.1 200 OK\r\nX-Pad: " }
  for i = 1, 120 do parts[2 * i], parts[2 * i + 1] = 1, "a" end
  return raw_answer("fault-dribble-head", parts)
end

-- headers without end: 1000-byte header lines as fast as the client reads
-- them, for 60 s at most
whole["fault-headers-endless"] = function()
  leave_in_flight()
  local sock, err = raw_socket()
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
whole["fault-header-huge"] = function()
  return raw_answer("fault-header-huge", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "X-Pad: "
    .. rep("h", 1048576) .. "\r\nContent-Length: 2\r\n\r\n{}" })
end

-- HTTP/1.0, no Content-Length: the body ends when the connection does
whole["fault-http10"] = function(ctx)
  return raw_answer("fault-http10", { "HTTP/1.0 200 OK\r\n" .. JSON_HEAD .. "\r\n" .. ctx.normal() })
end

whole["fault-http10-trunc"] = function(ctx)
  local body = ctx.normal()
  return raw_answer("fault-http10-trunc", { "HTTP/1.0 200 OK\r\n" .. JSON_HEAD .. "\r\n"
    .. sub(body, 1, #body - 40) })
end

local CHUNKED = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Transfer-Encoding: chunked\r\n\r\n"

-- a chunk announced 1000 bytes longer than what comes (a complete JSON answer)
whole["fault-chunk-short"] = function(ctx)
  local body = ctx.normal()
  return raw_answer("fault-chunk-short", { CHUNKED .. format("%x\r\n", #body + 1000) .. body })
end

-- a complete JSON answer in one chunk, then the connection closes without
-- the last chunk
whole["fault-chunk-noend"] = function(ctx)
  local body = ctx.normal()
  return raw_answer("fault-chunk-noend", { CHUNKED .. format("%x\r\n", #body) .. body .. "\r\n" })
end

-- a chunk size that is not hexadecimal
whole["fault-chunk-bad"] = function(ctx)
  return raw_answer("fault-chunk-bad", { CHUNKED .. "zz\r\n" .. ctx.normal() .. "\r\n0\r\n\r\n" })
end

-- a chunk size of 2^80 - 1
whole["fault-chunk-overflow"] = function(ctx)
  return raw_answer("fault-chunk-overflow", { CHUNKED .. rep("f", 20) .. "\r\n" .. ctx.normal()
    .. "\r\n0\r\n\r\n" })
end

-- Content-Length: 2 GiB, a few bytes, then silence for 10 s (or until the client leaves)
whole["fault-length-2g"] = function(ctx)
  return raw_answer("fault-length-2g", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD
    .. "Content-Length: 2147483648\r\n\r\n{\"data\":{" .. encode(ctx.key) .. ":", 10 })
end

-- Content-Length larger than 2^64, a complete answer, then close
whole["fault-length-overflow"] = function(ctx)
  return raw_answer("fault-length-overflow", { "HTTP/1.1 200 OK\r\n" .. JSON_HEAD
    .. "Content-Length: 99999999999999999999999\r\n\r\n" .. ctx.normal() })
end

-- Content-Length: 2 for "{}", then a second answer nobody asked for (an
-- injected answer for VM 999 under the same key) on the same connection,
-- at once or 0.1 s later; the connection stays open 3 s (or until the
-- client leaves)
local function smuggle(what, ctx, pause)
  local evil = '{"data":{' .. encode(ctx.key) .. ":" .. encode({
    vm_uuid = "000003e7-0000-4000-8000-0000000003e7", host_ip = "127.0.0.1",
    cluster_ip = "smuggled.example", raw_token = rep("e", 32), token = "c211Z2dsZWQ=",
  }) .. "}}"
  local second = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: " .. #evil .. "\r\n\r\n"
    .. evil
  local first = "HTTP/1.1 200 OK\r\n" .. JSON_HEAD .. "Content-Length: 2\r\n\r\n{}"
  if pause then return raw_answer(what, { first, pause, second, 3 }) end
  return raw_answer(what, { first .. second, 3 })
end
whole["fault-smuggle"] = function(ctx) return smuggle("fault-smuggle", ctx) end
whole["fault-smuggle-late"] = function(ctx) return smuggle("fault-smuggle-late", ctx, 0.1) end

-- an HTTP 500 whose JSON message is one ASCII byte, then long Chinese text
whole["fault-zh-500"] = function()
  return send_json(500, { message = "x" .. rep("\230\156\141\229\138\161\229\153\168", 80) })
end
-- objects 100,000 deep in a 500
whole["fault-deep-500"] = function()
  return send(500, rep('{"a":', 100000) .. "1" .. rep("}", 100000))
end
-- data of the wrong type, a top-level string
whole["fault-data-array"] = function() return send(200, '{"data":[]}') end
whole["fault-toplevel-string"] = function() return send(200, '"{}"') end

---------------------------------------------------------------------------
-- the late second answer (issue 14): a complete, well-framed answer on a
-- kept-alive HTTP/1.1 connection, then 100 ms later a second complete
-- answer to the same request (fresh credentials of this VM, under the same
-- key), while the next request on the connection waits on a slow tower
-- (answered 1 s after the first, then the connection closes). A client
-- that sends its next request within the 100 ms reads the late answer as
-- the next one's. Over HTTP/2 (no raw socket, and streams cannot be mixed
-- up) it is a normal answer.
---------------------------------------------------------------------------

-- reads one line (CRLF) before `deadline`; keeps what came so far in buf
local function read_line(sock, deadline, buf)
  while true do
    local left = deadline - ngx.now()
    if left <= 0 then return nil, "timeout" end
    sock:settimeout(math.max(1, math.floor(left * 1000)))
    local line, err, partial = sock:receive("*l")
    if line then
      local l = buf.partial .. line
      buf.partial = ""
      return l
    end
    buf.partial = buf.partial .. (partial or "")
    if err ~= "timeout" then return nil, err end
  end
end

-- the next HTTP/1.1 request on the raw socket: {method, uri, headers, body}
-- or nil (none before the deadline, or the client left)
local function read_request(sock, deadline, buf)
  local line, err = read_line(sock, deadline, buf)
  if not line then return nil, err end
  local method, uri = match(line, "^(%u+) (%S+) HTTP/1%.%d$")
  if not method then return nil, "not a request line" end
  local headers = {}
  while true do
    local h = read_line(sock, deadline, buf)
    if not h then return nil, "headers cut" end
    if h == "" then break end
    local name, v = match(h, "^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = v end
  end
  local body = ""
  local n = tonumber(headers["content-length"] or "0")
  if n and n > 0 then
    sock:settimeout(2000)
    local b = sock:receive(n)
    if not b then return nil, "body cut" end
    body = b
  end
  return { method = method, uri = uri, headers = headers, body = body }
end

local function framed(status, body, close)
  return format("HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\nConnection: %s\r\n\r\n%s", status,
    status == 200 and "OK" or "Error", JSON_HEAD, #body, close and "close" or "keep-alive", body)
end

whole["fault-late"] = function(ctx)
  local sock = raw_socket()
  if not sock then return send(200, ctx.normal(), "application/json") end
  leave_in_flight()
  if not sock:send(framed(200, ctx.normal())) then return exit(444) end
  local t0 = ngx.now()
  local buf = { partial = "" }
  -- the next request, if it comes within 100 ms
  local nxt = read_request(sock, t0 + 0.1, buf)
  local left = t0 + 0.1 - ngx.now()
  if left > 0 then sleep(left) end
  if not sock:send(framed(200, ctx.normal())) then return exit(444) end
  if not nxt then nxt = read_request(sock, t0 + 3, buf) end
  if nxt then
    -- answered (and counted) as it arrives, written later: the counters
    -- of a spec that resets them meanwhile never see it
    local status, body = ctx.answer(nxt)
    left = t0 + 1 - ngx.now()
    if left > 0 then sleep(left) end
    sock:send(framed(status, body, true))
  end
  linger(sock, 0.5)
  return exit(444)
end

---------------------------------------------------------------------------
-- dispatch
---------------------------------------------------------------------------

--- whole(id) -> the handler of a whole-request fault for this VM id, or nil
function _M.whole(id)
  local f = whole[id]
  if f then return f end
  local k = match(id, "^flaky%-(%d)%-.+$")
  if k then
    -- the first k requests asking for it: 503, then normal
    return function(ctx)
      local seen = incr(dict("sim"), "flaky:" .. id)
      if seen <= tonumber(k) then return html(503, "503 Service Temporarily Unavailable") end
      return send(200, ctx.normal(), "application/json")
    end
  end
  return nil
end

--- vm(id, sel) -> the outcome of one `vnc` field (whole-request faults
-- answer as healthy VMs here)
function _M.vm(id, sel)
  local n = match(id, "^vm%-(%d+)$")
  local v6 = false
  if not n then
    n = match(id, "^vm6%-(%d+)$")
    v6 = n ~= nil
  end
  if n then
    n = tonumber(n)
    if n and n >= 1 and n < 2 ^ 48 then return value(object_text(fresh_info(n, id, v6), sel)) end
    return unknown(id)
  end

  local f = per_vm[id]
  if f then return f(id, sel) end
  if _M.whole(id) then return healthy(id, sel) end

  local how, field = match(id, "^fault%-(%a+)%-([%a_]+)$")
  if how and FIELDS[field] and (how == "missing" or how == "empty" or how == "type") then
    local info = fresh_info(1, id)
    if how == "missing" then info[field] = nil
    elseif how == "empty" then info[field] = ""
    else info[field] = 12345 end
    return value(object_text(info, sel))
  end

  -- fault-code-<CODE>: a GraphQL error with that code for this VM
  local code = match(id, "^fault%-code%-([%u_]+)$")
  if code then
    return { error = { message = "VM " .. id .. ": " .. code, code = code } }
  end

  return unknown(id)
end

-- a VM id of the local_id form "local-<n>" -> "vm-<n>"
function _M.from_local_id(local_id)
  local n = match(local_id, "^local%-(%d+)$")
  return n and ("vm-" .. n) or nil
end

_M.null = cjson.null
return _M
