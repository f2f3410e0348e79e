-- luacheck: std max+ngx_lua
--- ctvnc.gateway.admin: the admin routes (admin_authorize; none: 403),
-- /metrics and the count of every request.
--
--   GET  /admin/sessions[?vm_id=&user=&limit=&cursor=]
--                                     -> {"sessions": [{id, user, vm_id, mode, view_only,
--                                         client, start, node, bytes_in, bytes_out}], "next": id}
--                                        one page in id order; next: the cursor of the
--                                        next page (none: the last page)
--   POST /admin/sessions/<id>/kill    -> {"killed": [id]} | 404
--   POST /admin/vms/<vm_id>/kill      -> {"killed": [ids]}
--   GET  /admin/locks                 -> {"locks": [{id, user, vm_id, by, since, until}]}
--   DELETE /admin/locks/<id>          -> {"lifted": [id]} | 404
--   GET  /admin/recordings...         -> ctvnc.gateway.recadmin
--   GET  /metrics                     -> Prometheus text  (loopback, metrics_allow)
-- Killed sessions end within a second (their relays poll the flag), and
-- each kill locks the session's user out of its VM for kill_lock seconds
-- (no renewal, no new session) unless the lock is lifted. A failed admin
-- authentication is logged (the address, never the key).
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"
local auth = require "ctvnc.gateway.auth"
local metrics = require "ctvnc.gateway.metrics"
local audit = require "ctvnc.gateway.audit"
local routes = require "ctvnc.gateway.routes"
local recadmin = require "ctvnc.gateway.recadmin"
local watch = require "ctvnc.gateway.watch"

local ngx = ngx
local ipairs, type, tonumber, tostring = ipairs, type, tonumber, tostring
local reply, array, not_allowed, method_is = respond.reply, respond.array, respond.not_allowed,
  respond.method_is

local _M = {}

_M.LIMIT = 100       -- sessions in a page of /admin/sessions unless limit says
_M.LIMIT_MAX = 1000  -- at most

--- 403; `why` "off": no admin_authorize hook, and how to set one.
local function denied(why)
  return reply(403, { error = "denied", kind = "denied", reason = why == "off"
    and "the admin routes are off: give admin keys (ADMIN_KEYS, a file of keys, one a line) "
      .. "or an admin_authorize hook" or nil })
end

--- GET /admin/sessions[?vm_id=&user=&limit=&cursor=]: one page.
local function sessions()
  local args = ngx.req.get_uri_args(8)
  local limit = tonumber(args.limit or _M.LIMIT)
  if not limit or limit < 1 or limit % 1 ~= 0 then
    return reply(400, { error = "limit must be a whole number of 1 or more", kind = "invalid" })
  end
  local match = {}
  for _, field in ipairs({ "vm_id", "user", "cursor" }) do
    if type(args[field]) ~= "string" and args[field] ~= nil then
      return reply(400, { error = field .. " must be given once, with a value", kind = "invalid" })
    end
    match[field] = args[field]
  end
  local cursor = match.cursor
  match.cursor = nil
  local page, next_id = state.book:page(match, cursor, math.min(limit, _M.LIMIT_MAX))
  if not page then
    log(ngx.ERR, "ctvnc: the session book cannot be read: ", tostring(next_id), " (store)")
    return reply(503, { error = respond.reason("store"), kind = "store" })
  end
  local list = {}
  for i, r in ipairs(page) do
    list[i] = { id = r.id, user = r.user, vm_id = r.vm_id, mode = r.mode,
      view_only = r.view_only == true, client = r.client, start = audit.iso(r.start or 0),
      bytes_in = r.bytes_in, bytes_out = r.bytes_out, node = r.node }
  end
  return reply(200, { sessions = array(list), next = next_id })
end

local function store_failed(what, err)
  return respond.fail(nil, what .. ": " .. tostring(err), "store")
end

--- GET /admin/locks, DELETE /admin/locks/<id>.
local function locks(path, who)
  if path == "/admin/locks" then
    if not method_is("GET") then return not_allowed("GET") end
    local list, err = state.book:locks()
    if not list then return store_failed("the locks cannot be read", err) end
    for _, l in ipairs(list) do
      l.since, l["until"] = audit.iso(l.since or 0), audit.iso(l["until"] or 0)
    end
    return reply(200, { locks = array(list) })
  end
  local id = path:match("^/admin/locks/(%x+)$")
  if not id then return reply(404, { error = "no such admin route", kind = "not_found" }) end
  if not method_is("DELETE") then return not_allowed("DELETE") end
  local lifted, err = state.book:unlock(id)
  if lifted == nil then return store_failed("the lock cannot be lifted", err) end
  if not lifted then return reply(404, { error = "no such lock", kind = "not_found" }) end
  log(ngx.NOTICE, "ctvnc: lock ", id, " lifted by ", who)
  return reply(200, { lifted = array({ id }) })
end

function _M.admin()
  ngx.ctx.ctvnc_route = "admin"
  local ok, who = auth.admin()
  if not ok then
    log(ngx.WARN, "ctvnc: admin authentication failed from ", tostring(ngx.var.remote_addr),
      ngx.var.http_x_api_key and " (a key was given)" or " (no key)")
    return denied(who)
  end
  local path = ngx.var.request_uri:match("^[^?#]*")
  if recadmin.owns(path) then return recadmin.route(path, who) end
  if path == "/admin/sessions" then
    if not method_is("GET") then return not_allowed("GET") end
    return sessions()
  end
  if path:find("^/admin/locks") then return locks(path, who) end
  local id = path:match("^/admin/sessions/(%x+)/kill$")
  local raw_vm = path:match("^/admin/vms/([^/]+)/kill$")
  if not id and not raw_vm then
    return reply(404, { error = "no such admin route", kind = "not_found" })
  end
  if not method_is("POST") then return not_allowed("POST") end
  if id then
    local killed, err = state.book:kill(id, who)
    if not killed then
      if not err then return reply(404, { error = "no such session", kind = "not_found" }) end
      log(ngx.ERR, "ctvnc: session ", id, " cannot be killed: ", tostring(err), " (store)")
      return reply(503, { error = respond.reason("store"), kind = "store" })
    end
    watch.kick()
    log(ngx.NOTICE, "ctvnc: session ", id, " killed by ", who)
    return reply(200, { killed = array({ id }) })
  end
  local vm_id = routes.unpercent(raw_vm)
  local ids, err = state.book:kill_vm(vm_id, who)
  if not ids then
    log(ngx.ERR, "ctvnc: the sessions of ", vm_id, " cannot be killed: ", tostring(err), " (store)")
    return reply(503, { error = respond.reason("store"), kind = "store" })
  end
  if #ids > 0 then watch.kick() end
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
  respond.common_headers(false)
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  local _, by_kind = watch.node()
  ngx.print(metrics.prometheus(by_kind, state.conf.max_sessions))
  return respond.finish(200)
end

local ROUTES = {
  { "^/console/batch$", "batch" }, { "^/console/[^/]*/url$", "url" },
  { "^/console/[^/]*/ticket$", "ticket" }, { "^/console/[^/]*/ws$", "ws" },
  { "^/console/[^/]*/about$", "about" },
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
