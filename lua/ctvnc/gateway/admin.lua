-- luacheck: std max+ngx_lua
--- ctvnc.gateway.admin: the admin routes (admin_authorize; none: 403),
-- /metrics and the count of every request.
--
--   GET  /admin/sessions              -> {"sessions": [{id, user, vm_id, mode, view_only,
--                                         client, start, node, bytes_in, bytes_out}]}
--   POST /admin/sessions/<id>/kill    -> {"killed": [id]} | 404
--   POST /admin/vms/<vm_id>/kill      -> {"killed": [ids]}
--   GET  /metrics                     -> Prometheus text  (loopback, metrics_allow)
-- Killed sessions end within a second (their relays poll the flag).
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"
local auth = require "ctvnc.gateway.auth"
local metrics = require "ctvnc.gateway.metrics"
local audit = require "ctvnc.gateway.audit"
local routes = require "ctvnc.gateway.routes"

local ngx = ngx
local ipairs, tostring = ipairs, tostring
local reply, array, not_allowed, method_is = respond.reply, respond.array, respond.not_allowed,
  respond.method_is

local _M = {}

local function denied()
  return reply(403, { error = "denied", kind = "denied" })
end

--- The store failed: 503 (logged).
local function store_failed(err)
  log(ngx.ERR, "ctvnc: admin: ", tostring(err), " (store)")
  return reply(503, { error = respond.reason("store"), kind = "store" })
end

local function sessions()
  local list = {}
  local open, err = state.book:list()
  if not open then return store_failed(err) end
  for i, r in ipairs(open) do
    list[i] = { id = r.id, user = r.user, vm_id = r.vm_id, mode = r.mode,
      view_only = r.view_only == true, client = r.client, start = audit.iso(r.start or 0),
      bytes_in = r.bytes_in, bytes_out = r.bytes_out, node = r.node }
  end
  return reply(200, { sessions = array(list) })
end

function _M.admin()
  ngx.ctx.ctvnc_route = "admin"
  local ok, who = auth.admin()
  if not ok then return denied() end
  local path = ngx.var.request_uri:match("^[^?#]*")
  if path == "/admin/sessions" then
    if not method_is("GET") then return not_allowed("GET") end
    return sessions()
  end
  local id = path:match("^/admin/sessions/(%x+)/kill$")
  local raw_vm = path:match("^/admin/vms/([^/]+)/kill$")
  if not id and not raw_vm then
    return reply(404, { error = "no such admin route", kind = "not_found" })
  end
  if not method_is("POST") then return not_allowed("POST") end
  if id then
    local asked, err = state.book:kill(id, who)
    if err then return store_failed(err) end
    if not asked then
      return reply(404, { error = "no such session", kind = "not_found" })
    end
    log(ngx.NOTICE, "ctvnc: session ", id, " killed by ", who)
    return reply(200, { killed = array({ id }) })
  end
  local vm_id = routes.unpercent(raw_vm)
  local ids, err = state.book:kill_vm(vm_id, who)
  if not ids then return store_failed(err) end
  log(ngx.NOTICE, "ctvnc: ", #ids, " session(s) of ", vm_id, " killed by ", who)
  return reply(200, { killed = array(ids), vm_id = vm_id })
end

--- GET /metrics: the Prometheus text format, every name ctvnc_*; from
-- loopback and metrics_allow only.
function _M.metrics()
  ngx.ctx.ctvnc_route = "metrics"
  if not metrics.address_allowed(state.metrics_allow, ngx.var.remote_addr) then
    return denied()
  end
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD") end
  ngx.status = 200
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(metrics.prometheus(state.book:list() or {}))
  return respond.finish(200)
end

local ROUTES = {
  { "^/console/batch$", "batch" }, { "^/console/[^/]*/url$", "url" },
  { "^/console/[^/]*/ticket$", "ticket" }, { "^/console/[^/]*/ws$", "ws" },
  { "^/console/[^/]*/screenshot%.png$", "screenshot" }, { "^/wall$", "wall" },
  { "^/console/[^/]*$", "page" }, { "^/admin/", "admin" }, { "^/metrics$", "metrics" },
  { "^/novnc/", "novnc" }, { "^/health$", "health" },
}

--- log_by_lua of the server: counts the request by route and result kind.
function _M.log_request()
  local path = (ngx.var.request_uri or ""):match("^[^?#]*")
  local route = "other"
  for _, r in ipairs(ROUTES) do
    if path:find(r[1]) then
      route = r[2]
      break
    end
  end
  local kind = ngx.ctx.ctvnc_kind or respond.kind_of(ngx.status)
  metrics.count("ctvnc_requests_total", { route = route, result = kind })
end

return _M
