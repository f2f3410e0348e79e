-- CloudTower simulator: the console desktop (spec/e2e_spec.lua): CloudTower's
-- /websockify/ proxy and the token check of the cluster's websockify, both
-- leading to the one VNC desktop the spec runs.

local util = require "sim.util"
local control = require "sim.control"

local ngx = ngx
local sub, match, find = string.sub, string.match, string.find
local tonumber, type = tonumber, type

local dict, encode, send_json, bad = util.dict, util.encode, util.send_json, util.bad
local read_body, decode_object, need = util.read_body, util.decode_object, control.need
local exit = ngx.exit

local _M = {}


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
-- Behind the pretoken flavour (/pretoken/websockify/) the raw token is
-- accepted too: the 2022 form of the link.
function _M.websockify_access()
  local uri = ngx.var.uri
  local at = find(uri, "/websockify/", 1, true)
  local fl = {}
  for name in sub(uri, 1, at - 1):gmatch("[^/]+") do
    if not util.FLAVOURS[name] then return deny(404, "not found") end
    fl[name] = true
  end
  local token = websockify_token(ngx.var.args)
  if not token then return deny(401, "no token") end
  local issued = dict("sim_vnc")
  if not issued:get("tok:" .. token) and not (fl.pretoken and issued:get("raw:" .. token)) then
    return deny(403, "unknown token")
  end
  local target = dict("sim"):get("desktop:ws")
  if not target then return deny(503, "no desktop registered (POST /_sim/desktop)") end
  ngx.var.sim_ws_target = target
end

return _M
