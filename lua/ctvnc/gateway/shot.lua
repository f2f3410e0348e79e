-- luacheck: std max+ngx_lua
--- ctvnc.gateway.shot: GET /console/<vm>/screenshot.png[?width=N].
--
-- The content phase authorizes (a view-only grant may look), counts the
-- request against the user's SHOT_RATE, asks CloudTower once for the
-- target (tower.plan, as a console open does) and hands the plan, marked
-- `shot`, to the relay's named location of its hop (that location's CA
-- verifies the target). There `take` opens the target's websocket
-- (wsclient), drives the core's RFB client (rfb.c: ClientInit with the
-- shared flag set, so an open session is never disconnected) over the
-- cosocket until one whole frame is in, and answers it as a PNG
-- (png.c, scaled down to `width`). Nothing blocks the worker but the
-- decoding and the PNG encoding of that one frame.
--
-- A screenshot is neither a console session nor a slot holder: the book
-- never sees it. It is one audit line, event "screenshot" (who looked at
-- which VM, how, and the outcome).
local core = require "ctvnc.core"
local api = require "ctvnc.api"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"
local auth = require "ctvnc.gateway.auth"
local tower = require "ctvnc.gateway.tower"
local routes = require "ctvnc.gateway.routes"
local relay = require "ctvnc.gateway.relay"
local audit = require "ctvnc.gateway.audit"
local wsclient = require "ctvnc.gateway.wsclient"

local ngx = ngx
local tostring, tonumber, type, pcall = tostring, tonumber, type, pcall
local floor = math.floor
local ws_parse, ws_frame = core.ws_parse, core.ws_frame
local reply, fail, deny = respond.reply, respond.fail, respond.deny

local _M = {}

--- Largest websocket payload read from a target (servers send a frame
-- per read; this bounds the buffer a hostile one could make us keep).
_M.MAX_PAYLOAD = 16 * 1024 * 1024
--- Widest thumbnail asked for.
_M.MAX_WIDTH = 4096

--- The width of ?width=: nil (full size) | integer | false when bad.
local function width_arg(w)
  if w == nil then return nil end
  local n = type(w) == "string" and w:match("^%d+$") and tonumber(w)
  if not n or n < 1 or n > _M.MAX_WIDTH then return false end
  return n
end

--- GET /console/<vm>/screenshot.png (the authorize hook: X-API-Key, JWT).
function _M.screenshot(vm_id)
  if not respond.method_is("GET") then return respond.not_allowed("GET") end
  vm_id = vm_id or routes.vm_of("/screenshot%.png")
  if not vm_id or vm_id == "" then
    return fail(nil, "the path is not a console URL", "invalid")
  end
  local args = ngx.req.get_uri_args(8)
  local width = width_arg(args.width)
  if width == false or args.key ~= nil then
    return reply(400, { error = ("width must be an integer 1-%d"):format(_M.MAX_WIDTH),
                        kind = "invalid", vm_id = vm_id })
  end
  local ok, user, view = auth.authorize(vm_id)
  if not ok then return deny(vm_id, user) end
  user = tostring(user or "")
  local rate = state.conf.shot_rate
  if not routes.budget("shot:" .. user, 1, rate / 60, 60) then
    return reply(429, { error = ("at most %d screenshots a minute per user"):format(rate),
                        kind = "busy", vm_id = vm_id })
  end
  local plan, msg, kind = tower.plan(vm_id, user, view)
  if not plan then return fail(vm_id, msg, kind) end
  plan.shot, plan.width = true, width
  return relay.hand_over(plan)
end

--- The values of the target path's query (the console token): redacted
-- from any reason the target gives.
local function query_values(path)
  local out = {}
  for v in (path:match("%?(.*)$") or ""):gmatch("=([^&]*)") do out[#out + 1] = v end
  return out
end

--- The first frame of the target as a PNG: png, width, height |
-- nil, message, kind (connect, tls, timeout, http, rfb, system).
local function shoot(plan, sock)
  local client = core.rfb_client()
  local deadline = ngx.now() + 3 * state.conf.target_timeout
  local buf = ""
  while true do
    local frame, size = ws_parse(buf, "server", _M.MAX_PAYLOAD)
    if frame == nil then return nil, "bad websocket frame: " .. tostring(size), "rfb" end
    if frame then
      buf = buf:sub(size + 1)
      local op = frame.opcode
      if op == "close" then
        return nil, "the target closed the websocket before a whole frame", "rfb"
      elseif op == "ping" then
        sock:send(ws_frame("pong", frame.payload, true))
      elseif op == "text" then
        return nil, "the target sent a text message (RFB is binary)", "rfb"
      elseif op ~= "pong" then
        local out, st, kind = client:feed(frame.payload)
        if not out then
          return nil, api.clean(st, 160, query_values(plan.path)), kind
        end
        if #out > 0 then
          local sent, e = sock:send(ws_frame("binary", out, true))
          if not sent then return nil, "target send: " .. tostring(e), "connect" end
        end
        if st == "done" then
          local png, w, h = client:png(plan.width)
          client:close()
          return png, w, h
        end
      end
    else
      ngx.update_time()
      local left = deadline - ngx.now()
      if left <= 0 then return nil, "no whole frame in time", "timeout" end
      sock:settimeout(left * 1000)
      -- once a frame's header is in, the rest of it in one read
      local data, e
      if size then data, e = sock:receive(size - #buf) else data, e = sock:receiveany(65536) end
      if not data then
        return nil, "target " .. tostring(e), e == "timeout" and "timeout" or "connect"
      end
      buf = buf .. data
    end
  end
end

--- content_by_lua of the relay's named location, for a plan marked shot.
function _M.take(plan)
  local conf = state.conf
  local fields = { user = plan.user, vm_id = plan.vm_id, mode = plan.mode,
    view_only = plan.view_only, client = ngx.var.remote_addr, start = ngx.now() }
  local png, w, h
  local sock, kind, err = wsclient.connect(plan, "binary", conf.target_timeout)
  if sock then
    local ok
    ok, png, w, h = pcall(shoot, plan, sock)
    if not ok then png, w, h = nil, tostring(png), "error" end
    sock:send(ws_frame("close", "\3\232", true))
    sock:close()
    err, kind = w, h
  end
  ngx.update_time()
  fields["end"] = ngx.now()
  fields.duration = floor((fields["end"] - fields.start) * 1000 + 0.5) / 1000
  if not png then
    log(ngx.ERR, "ctvnc: screenshot of ", tostring(plan.vm_id), " from ", relay.where(plan),
      " failed: ", tostring(err), " (", kind, ")")
    fields.reason = "target: " .. kind
    audit.write("screenshot", fields)
    ngx.header["X-Ctvnc-Error"] = kind
    return reply(kind == "timeout" and 504 or 502,
      { error = "the console's screen could not be read", kind = kind, vm_id = plan.vm_id })
  end
  fields.reason = "ok"
  audit.write("screenshot", fields)
  ngx.status = 200
  respond.common_headers(false)
  ngx.header["Content-Type"] = "image/png"
  ngx.header["X-Screenshot-Size"] = w .. "x" .. h
  ngx.print(png)
  return respond.finish(200)
end

return _M
