-- luacheck: std max+ngx_lua
--- ctvnc.gateway.wsclient: the websocket client handshake with a console's
-- target (as lua-resty-websocket's client.lua), over TCP or TLS verified
-- against the location's lua_ssl_trusted_certificate with the plan's
-- server name checked. Only the handshake's own headers are sent: nothing
-- of the browser's request.
local random_bytes = require("ctvnc.core").random_bytes

local ngx = ngx
local tostring, tonumber, pcall, concat = tostring, tonumber, pcall, table.concat

local _M = {}

_M.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

--- The Sec-WebSocket-Accept of a key (RFC 6455, 4.2.2).
function _M.accept(key)
  return ngx.encode_base64(ngx.sha1_bin(key .. _M.GUID))
end

local function failed(sock, err, kind, msg)
  if sock then sock:close() end
  return nil, err == "timeout" and "timeout" or kind, msg or err
end

--- connect(plan, protocol, timeout): sock, subprotocol | nil, kind
-- (connect, tls, timeout, http, system), message. `timeout` (seconds) is
-- one deadline for the whole handshake: the connect, TLS, the request and
-- every line of the answer (a target that dribbles its headers is cut at
-- it). A host name's lookup is bounded by nginx's resolver_timeout.
function _M.connect(plan, protocol, timeout)
  local nonce, no_bytes, kind = random_bytes(16)
  if not nonce then return nil, kind, no_bytes end
  local sock = ngx.socket.tcp()
  ngx.update_time()
  local deadline = ngx.now() + timeout
  --- The socket's timeouts set to what is left of the deadline | nil.
  local function left()
    ngx.update_time()
    local ms = (deadline - ngx.now()) * 1000
    if ms < 1 then return nil end
    sock:settimeouts(ms, ms, ms)
    return true
  end
  left()
  local ok, err = sock:connect(plan.host, plan.port)
  if not ok then return failed(nil, err, "connect") end
  if plan.tls then
    if not left() then return failed(sock, "timeout") end
    -- lua-resty-core 0.1.25 (Debian 12) asserts when a handshake fails at
    -- once rather than after a yield: a raised error is a failed handshake
    -- too, never a pass
    local done, sess
    done, sess, err = pcall(sock.sslhandshake, sock, nil, plan.server_name, plan.verify)
    if not done or not sess then
      return failed(sock, done and err or "the TLS handshake failed", "tls")
    end
  end
  local key = ngx.encode_base64(nonce)
  local req = { "GET " .. plan.path .. " HTTP/1.1", "Host: " .. plan.host_header,
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
    "Sec-WebSocket-Version: 13" }
  if protocol and protocol:match("^[%w%-%._, ]+$") then
    req[#req + 1] = "Sec-WebSocket-Protocol: " .. protocol
  end
  if not left() then return failed(sock, "timeout") end
  ok, err = sock:send(concat(req, "\r\n") .. "\r\n\r\n")
  if not ok then return failed(sock, err, "connect") end
  local line
  if not left() then return failed(sock, "timeout") end
  line, err = sock:receive("*l")
  if not line then
    return failed(sock, err, "http", "no answer to the handshake: " .. tostring(err))
  end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)") or "")
  local headers = {}
  for _ = 1, 100 do
    local h
    if not left() then return failed(sock, "timeout") end
    h, err = sock:receive("*l")
    if not h then return failed(sock, err, "http", "the handshake's answer broke off") end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local why
  if status ~= 101 then
    why = "the target answered HTTP " .. tostring(status)
  elseif (headers.upgrade or ""):lower() ~= "websocket" then
    why = "the target did not upgrade to a websocket"
  elseif headers["sec-websocket-accept"] ~= _M.accept(key) then
    why = "the target's Sec-WebSocket-Accept is wrong"
  elseif headers["sec-websocket-extensions"] then
    why = "the target negotiated an extension it was not offered"
  end
  if why then return failed(sock, nil, "http", why) end
  return sock, headers["sec-websocket-protocol"]
end

--- Sends bytes on a cosocket another light thread may be writing to:
-- retried while it is busy (a second at most). sent | nil, err.
function _M.send_between(sock, bytes)
  local sent, err
  for _ = 1, 100 do
    sent, err = sock:send(bytes)
    if sent or err ~= "socket busy writing" then break end
    ngx.sleep(0.01)
  end
  return sent, err
end

return _M
