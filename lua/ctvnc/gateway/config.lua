--- ctvnc.gateway.config: every setting of the console gateway, declared
-- once (name, type, default, bounds, the run.sh variable that sets it, one
-- line of doc), and the check of a configure{} table against them. Pure
-- Lua, no ngx: `ctvnc.gateway.config.check` runs anywhere. docs/gateway.md
-- lists the same settings; spec/settings_spec.lua keeps the two, and
-- examples/openresty/run.sh, equal.
--
-- Types: string, secret (a string removed from the table once used),
-- number (min, max), enum (values), hook (a function), list (a string of
-- items separated by spaces or commas, or a table of strings), port.
local type, tostring, ipairs, pairs, concat = type, tostring, ipairs, pairs, table.concat

local _M = {}

local SETTINGS = {
  -- CloudTower
  { name = "endpoint", type = "string", env = "CTVNC_ENDPOINT", required = true,
    doc = "the tower as browsers and ctvnc address it (https://host[:port][/prefix])" },
  { name = "token", type = "secret", env = "CTVNC_TOKEN",
    doc = "CloudTower token or API key (else username and password)" },
  { name = "username", type = "string", doc = "CloudTower user, with password, when no token" },
  { name = "password", type = "secret", doc = "CloudTower password of username" },
  { name = "tower_timeout", type = "number", default = 10, min = 0.001, env = "TOWER_TIMEOUT",
    doc = "seconds for a whole console request to CloudTower, retries included" },
  { name = "retry_delay", type = "number", min = 0,
    doc = "seconds between CloudTower retries (ctvnc.new's default when unset)" },
  { name = "tower_scheme", type = "enum", values = { "https", "http" }, default = "https",
    env = "TOWER_SCHEME", doc = "scheme of the /_ctvnc/ location's proxy_pass to CloudTower" },
  { name = "tower_tls", type = "enum", values = { "verify", "insecure" }, default = "verify",
    env = "TOWER_TLS", doc = "verify CloudTower's certificate; insecure warns at every start" },
  { name = "tower_name", type = "string", env = "TOWER_NAME",
    doc = "the name checked in CloudTower's certificate on its console proxy" },
  { name = "credential_ttl", type = "number", default = 0, min = 0, max = 10,
    env = "CREDENTIAL_TTL", doc = "seconds console credentials are cached (0: never)" },
  { name = "location", type = "string", default = "/_ctvnc",
    doc = "the internal location that proxies requests to CloudTower" },
  -- console URLs
  { name = "mode", type = "enum", values = { "auto", "direct", "proxy" }, default = "auto",
    env = "MODE", doc = "direct to the cluster, through CloudTower's proxy, or auto (a probe)" },
  { name = "scheme", type = "enum", values = { "wss", "ws" }, default = "wss", env = "SCHEME",
    doc = "scheme of the cluster's websocket (direct mode only)" },
  { name = "port", type = "port", env = "CLUSTER_PORT",
    doc = "the cluster's websocket port (unset: 443 for wss, 80 for ws)" },
  { name = "proxy_scheme", type = "enum", values = { "wss", "ws" }, env = "PROXY_SCHEME",
    doc = "scheme of CloudTower's console proxy (unset: the tower's, https gives wss; "
      .. "ws is refused for an https tower)" },
  { name = "probe_timeout", type = "number", default = 0.5, min = 0, env = "PROBE_TIMEOUT",
    doc = "seconds the auto mode's probe of a cluster waits" },
  { name = "probe_ttl", type = "number", default = 30, min = 0, env = "PROBE_TTL",
    doc = "seconds a probe verdict is kept, for every worker" },
  -- who may do what
  { name = "authorize", type = "hook", env = "KEYS",
    doc = "hook(vm_id, ngx) -> true, user, view_only | false, reason, status (none: 403)" },
  { name = "admin_authorize", type = "hook", env = "ADMIN_KEYS",
    doc = "hook(ngx) -> true, admin of the /admin/ routes (none: 403)" },
  { name = "ticket_secret", type = "secret", env = "CTVNC_TICKET_SECRET",
    doc = "HMAC secret of tickets, 32+ bytes (unset: random per start, one node only)" },
  { name = "ticket_ttl", type = "number", default = 60, min = 1, max = 60, env = "TICKET_TTL",
    doc = "seconds a ticket lives" },
  { name = "allowed_origins", type = "list", env = "ALLOWED_ORIGINS",
    doc = "websocket Origins allowed besides the gateway's own" },
  { name = "frame_ancestors", type = "string", default = "'self'", env = "FRAME_ANCESTORS",
    doc = "who may frame the pages (CSP frame-ancestors)" },
  { name = "metrics_allow", type = "list", env = "METRICS_ALLOW",
    doc = "addresses or IPv4 CIDRs allowed /metrics besides loopback" },
  -- bounded work
  { name = "batch_max", type = "number", default = 100, min = 1, env = "BATCH_MAX",
    doc = "VM ids in one /console/batch" },
  { name = "id_rate", type = "number", default = 100, min = 0, env = "ID_RATE",
    doc = "batch VM ids per second and client, at least batch_max (0: off)" },
  -- console sessions
  { name = "max_per_vm", type = "number", default = 0, min = 0, env = "MAX_PER_VM",
    doc = "concurrent consoles of one VM (0: no limit)" },
  { name = "max_per_user", type = "number", default = 0, min = 0, env = "MAX_PER_USER",
    doc = "concurrent consoles of one user (0: no limit)" },
  { name = "max_session", type = "number", default = 0, min = 0, env = "MAX_SESSION",
    doc = "seconds a console may stay open (0: no cap)" },
  { name = "idle_timeout", type = "number", default = 0, min = 0, env = "IDLE_TIMEOUT",
    doc = "seconds without keys, pointer or clipboard from the browser (0: none)" },
  { name = "slot_ttl", type = "number", default = 10, min = 1, max = 600, env = "SLOT_TTL",
    doc = "seconds a session's slots outlive its relay (a crashed worker's heal after it)" },
  { name = "target_timeout", type = "number", default = 10, min = 0.1, max = 120,
    env = "TARGET_TIMEOUT", doc = "seconds for each step of the target's websocket handshake" },
  { name = "cluster_tls", type = "enum", values = { "verify", "insecure" }, default = "verify",
    env = "CLUSTER_TLS", doc = "verify the clusters' certificates; insecure warns at start" },
  { name = "store", type = "enum", values = { "shdict" }, default = "shdict", env = "STORE",
    doc = "where sessions, slots, kill flags and used tickets live (shdict: this node)" },
  { name = "audit_log", type = "string", env = "AUDIT_LOG",
    doc = "audit trail: a path, error_log or off (unset: <nginx prefix>/audit.log)" },
  -- the page and the routes
  { name = "novnc_dir", type = "string", default = "/usr/share/novnc",
    doc = "where noVNC's vnc.html is read from" },
  { name = "novnc_url", type = "string", default = "/novnc/",
    doc = "where the page loads noVNC's assets from" },
  { name = "prefix", type = "string", default = "/console/", doc = "the console routes' prefix" },
  { name = "ws_cluster", type = "string", default = "@ctvnc_ws_cluster",
    doc = "the named location relaying to clusters" },
  { name = "ws_tower", type = "string", default = "@ctvnc_ws_tower",
    doc = "the named location relaying through CloudTower's proxy" },
}
_M.SETTINGS = SETTINGS

local BY_NAME = {}
for _, s in ipairs(SETTINGS) do BY_NAME[s.name] = s end

local function fail(name, msg) return nil, ("ctvnc: setting %s: %s"):format(name, msg) end

local CHECK = {
  string = function(v) return type(v) == "string", "must be a string" end,
  secret = function(v) return type(v) == "string", "must be a string" end,
  hook = function(v) return type(v) == "function", "must be a function" end,
  number = function(v, s)
    if type(v) ~= "number" or v ~= v then return false, "must be a number" end
    if s.min and v < s.min then return false, "must be at least " .. tostring(s.min) end
    if s.max and v > s.max then return false, "must be at most " .. tostring(s.max) end
    return true
  end,
  port = function(v)
    return type(v) == "number" and v % 1 == 0 and v >= 1 and v <= 65535,
      "must be an integer 1-65535"
  end,
  enum = function(v, s)
    for _, ok in ipairs(s.values) do if v == ok then return true end end
    return false, "must be one of " .. concat(s.values, ", ")
  end,
  list = function(v)
    if type(v) == "string" then return true end
    if type(v) ~= "table" then return false, "must be a string or a list of strings" end
    for _, item in ipairs(v) do
      if type(item) ~= "string" then return false, "must list strings only" end
    end
    return true
  end,
}

--- The items of a list setting (a string split on spaces and commas, or
-- the table itself).
function _M.items(v)
  if type(v) ~= "string" then return v or {} end
  local out = {}
  for item in v:gmatch("[^%s,]+") do out[#out + 1] = item end
  return out
end

--- check(c): a new table of every declared setting, the defaults filled
-- in, "" taken as unset | nil, message naming the setting ("ctvnc:
-- setting <name>: ..."). Unknown names are refused (a typo must not pass
-- unseen).
function _M.check(c)
  if type(c) ~= "table" then return nil, "ctvnc: configure expects a table of settings" end
  for k in pairs(c) do
    if not BY_NAME[k] then return fail(tostring(k), "no such setting") end
  end
  local conf = {}
  for _, s in ipairs(SETTINGS) do
    local v = c[s.name]
    if v == "" then v = nil end
    if v == nil then v = s.default end
    if v == nil and s.required then return fail(s.name, "is required") end
    if v ~= nil then
      local ok, why = CHECK[s.type](v, s)
      if not ok then return fail(s.name, why) end
    end
    conf[s.name] = v
  end
  if conf.id_rate ~= 0 and conf.id_rate < conf.batch_max then
    return fail("id_rate", "must be 0 (off) or at least batch_max")
  end
  if conf.proxy_scheme == "ws" and not conf.endpoint:lower():match("^http://") then
    return fail("proxy_scheme", "ws would send console tokens in clear to a tower reached "
      .. "over https")
  end
  return conf
end

--- The websocket scheme of CloudTower's console proxy: proxy_scheme, else
-- the tower's own (an endpoint with no scheme is https).
function _M.proxy_scheme(conf)
  return conf.proxy_scheme or (conf.endpoint:lower():match("^http://") and "ws" or "wss")
end

return _M
