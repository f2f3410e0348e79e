-- luacheck: std max+ngx_lua
--- ctvnc.gateway: a console gateway for OpenResty (ngx_lua), built on ctvnc.
-- ctvnc/gateway/nginx.tpl is the reference configuration; an
-- operator's own nginx.conf calls the same handlers from its locations:
--
--   init_by_lua      gateway.configure{ ... }          (config: every setting)
--   init_worker_by_lua gateway.init_worker()           (recordings kept; a stop ends sessions)
--   content_by_lua   gateway.url(), .ticket(), .page(), .about(), .batch()   (routes)
--   content_by_lua   gateway.screenshot(), gateway.wall()   (shot, wall)
--   access_by_lua    gateway.ws()        the websocket: its plan, to the relay
--   content_by_lua   gateway.relay(hop)  in @ctvnc_ws_cluster / @ctvnc_ws_tower
--   content_by_lua   gateway.admin(), .metrics()        (admin)
--   content_by_lua   gateway.health()                   GET /health[?ready=1]
--   log_by_lua       gateway.log_request()
--   error_page 429   gateway.busy(), gateway.error_page(429, "busy")
--
-- Hooks: gateway.key_file(path), gateway.jwt{...}, gateway.either(...),
-- gateway.admin_keys(path) (auth). Every route first passes the operator's
-- authorize hook (or a ticket it minted); no hook, no access.
local tickets = require "ctvnc.ticket"
local state = require "ctvnc.gateway.state"
local config = require "ctvnc.gateway.config"
local auth = require "ctvnc.gateway.auth"
local respond = require "ctvnc.gateway.respond"
local tower = require "ctvnc.gateway.tower"
local page = require "ctvnc.gateway.page"
local book = require "ctvnc.gateway.book"
local audit = require "ctvnc.gateway.audit"
local metrics = require "ctvnc.gateway.metrics"
local routes = require "ctvnc.gateway.routes"
local relay = require "ctvnc.gateway.relay"
local shot = require "ctvnc.gateway.shot"
local wall = require "ctvnc.gateway.wall"
local admin = require "ctvnc.gateway.admin"
local health = require "ctvnc.gateway.health"
local recorder = require "ctvnc.gateway.recorder"
local watch = require "ctvnc.gateway.watch"

local ngx = ngx
local ipairs, tostring = ipairs, tostring

local _M = {}

--- This machine's name (NODE_NAME's default).
local function host_name()
  local f = io.open("/proc/sys/kernel/hostname")
  local name = f and f:read("*l")
  if f then f:close() end
  return name or "gateway"
end

--- The store of sessions and the store of used tickets: one Redis for
-- both, or two of this node's shared dicts. sessions, used | nil, message.
local function open_store(conf)
  if conf.store == "shdict" then
    local shdict = require "ctvnc.gateway.store.shdict"
    local sessions, why = shdict.new({ dict = "ctvnc_sessions" })
    local used = sessions and shdict.new({ dict = "ctvnc_tickets" })
    if not used then return nil, why or "no lua_shared_dict ctvnc_tickets" end
    return sessions, used
  end
  local ca = conf.store:match("^rediss:") and conf.store_ca
  local f = ca and io.open(ca)
  if ca and not f then return nil, "STORE_CA " .. ca .. " cannot be read" end
  if f then f:close() end
  local s, why = require("ctvnc.gateway.store.redis").new({ url = conf.store,
    node = conf.node_name })
  if not s then return nil, why end
  return s, s
end

--- gateway.configure{ settings }: checks them against the declared
-- settings (ctvnc.gateway.config; an error names the setting), then makes
-- the CloudTower client, the ticket minter, the session book on its store
-- and the audit trail. Secrets are removed from the table given.
function _M.configure(c)
  local conf, err = config.check(c)
  if not conf then error(err, 0) end
  conf.node_name = conf.node_name or host_name()
  local sessions, used = open_store(conf)
  if not sessions then error("ctvnc: setting store: " .. tostring(used), 0) end
  conf.store, c.store = sessions.cfg and tostring(sessions.cfg) or conf.store, nil
  if not ngx.shared[watch.DICT] then
    error("ctvnc: no lua_shared_dict " .. watch.DICT .. " (the workers' open sessions)", 0)
  end
  local secret = conf.ticket_secret
  if not secret then
    secret = assert(tickets.random_secret())
    ngx.log(ngx.NOTICE, "ctvnc: no ticket secret given: a random one for this start "
      .. "(tickets are valid on this node only)")
  end
  conf.ticket_secret, c.ticket_secret = nil, nil
  for _, hop in ipairs({ { "tower_tls", "CloudTower (TOWER_TLS)" },
                         { "cluster_tls", "the clusters (CLUSTER_TLS)" } }) do
    if conf[hop[1]] == "insecure" then
      ngx.log(ngx.WARN, "ctvnc: TLS certificates of ", hop[2],
        " are NOT verified: anyone on the path can read the console credentials")
    end
  end
  if type(conf.authorize) ~= "function" then
    ngx.log(ngx.WARN, "ctvnc: no authorize hook (KEYS, JWT or authorize): the gateway "
      .. "denies every console request")
  end
  local no_audit = audit.to(conf.audit_log or (ngx.config.prefix() .. "audit.log"),
    conf.audit_key, conf.node_name)
  conf.audit_key, c.audit_key = nil, nil
  if no_audit then error("ctvnc: setting audit_log: " .. no_audit, 0) end
  state.conf = conf
  state.store = sessions
  -- this configuration's number: a reload runs configure again in the
  -- master before its old workers quit (relay: their sessions stay)
  state.generation = ngx.shared.ctvnc_sessions:incr("generation", 1, 0)
  state.client = tower.client(conf, c)
  state.url_options = tower.url_options(conf)
  state.ticket = tickets.new({ secret = secret, ttl = conf.ticket_ttl, store = used })
  -- while a session opens its slots live open_ttl: past the target's
  -- handshake (one deadline) and a host name's lookup (RESOLVE_MAX)
  state.book = book.new(sessions, { slot_ttl = conf.slot_ttl, node = conf.node_name,
    open_ttl = conf.target_timeout + book.RESOLVE_MAX + conf.slot_ttl,
    kill_lock = conf.kill_lock })
  state.novnc_html = page.load(conf.novnc_dir)
  state.metrics_allow = metrics.address_set(conf.metrics_allow)
  state.trusted_proxies = metrics.address_set(conf.trusted_proxies, true)
  state.origins = {}
  for _, o in ipairs(config.items(conf.allowed_origins)) do state.origins[o:lower()] = true end
end

--- gateway.init_worker(): recording retention (worker 0, once a minute),
-- and a worker of the newest configuration that exits marks the gateway as
-- stopping (a reload's old workers then end their sessions too; see watch).
-- Its timer fires early only when the worker exits.
function _M.init_worker()
  recorder.init_worker()
  local generation = state.generation
  local ok, err = ngx.timer.at(31536000, function(premature)
    local dict = ngx.shared.ctvnc_sessions
    if premature and dict:get("generation") == generation then
      dict:safe_set("stopping", generation)
    end
  end)
  if not ok then ngx.log(ngx.ERR, "ctvnc: no exit timer: ", err) end
end

-- the hooks
_M.key_file, _M.admin_keys, _M.jwt, _M.either = auth.key_file, auth.admin_keys, auth.jwt,
  auth.either
-- the routes and phases
_M.url, _M.ticket, _M.page, _M.about, _M.ws, _M.batch, _M.busy = routes.url, routes.ticket,
  routes.page, routes.about, routes.ws, routes.batch, routes.busy
_M.relay = relay.relay
_M.screenshot, _M.wall = shot.screenshot, wall.wall
_M.admin, _M.metrics, _M.log_request = admin.admin, admin.metrics, admin.log_request
_M.error_page, _M.nginx_error = respond.error_page, respond.nginx_error
_M.health = health.health

return _M
