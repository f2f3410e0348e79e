-- luacheck: std max+ngx_lua
--- ctvnc.gateway.health: GET /health, no auth and nothing secret. Plain,
-- {"status":"ok"} (200) says this worker serves; ?ready=1 also asks
-- CloudTower (any HTTP answer through the internal location will do) and
-- the store (its ping), and answers 503 naming each part that is down
-- with the kind of its failure: {"status":"down","down":{"tower":"connect"}}.
local resty = require "ctvnc.resty"
local state = require "ctvnc.gateway.state"
local respond = require "ctvnc.gateway.respond"

local ngx = ngx
local math_min, next = math.min, next

local _M = {}

-- seconds the tower has to answer a readiness check
local READY_TIMEOUT = 5

function _M.health()
  if ngx.var.arg_ready ~= "1" then return respond.reply(200, { status = "ok" }) end
  local conf, down = state.conf, {}
  local transport = resty.transport({ location = conf.location, tls = conf.tower_scheme ~= "http",
    timeout = math_min(conf.tower_timeout, READY_TIMEOUT) })
  transport.request_many({ { method = "GET", path = "/" } }, 1, function(_, status, _, kind)
    if not status then down.tower = kind or "connect" end
  end)
  local ok = state.store:ping()
  if not ok then down.store = "store" end
  if next(down) then return respond.reply(503, { status = "down", down = down }) end
  return respond.reply(200, { status = "ok", ready = true })
end

return _M
