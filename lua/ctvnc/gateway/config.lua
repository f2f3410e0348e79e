--- ctvnc.gateway.config: every setting of the console gateway, declared
-- once (name, type, default, bounds, the run.sh variable that sets it, one
-- line of doc), and the check of a configure{} table against them. Pure
-- Lua, no ngx: `ctvnc.gateway.config.check` runs anywhere. docs/gateway.md
-- lists the same settings; spec/settings_spec.lua keeps the two, and
-- examples/openresty/run.sh, equal.
--
local type, tostring, tonumber, ipairs, pairs = type, tostring, tonumber, ipairs, pairs
local concat = table.concat

local _M = {}

-- Every setting (as Kong's kong.conf.default): a line with its name in
-- configure{}, its type, its default ("-": none) and the run.sh variable
-- that sets it ("-": none), then an indented line that says what it is.
-- Types: string (string!: required), secret (a string removed from the
-- table once used), hook (a function),
-- list (a string of items between spaces or commas, or a table of
-- strings), port, numberMIN..MAX (either bound may be left out), {a,b}
-- (one of these words).
local DECLARED = [[
endpoint         string!              -                  CTVNC_ENDPOINT
    the tower as browsers and ctvnc address it (https://host[:port][/prefix])
token            secret               -                  CTVNC_TOKEN
    CloudTower token or API key (else username and password)
username         string               -                  -
    CloudTower user, with password, when there is no token
password         secret               -                  -
    CloudTower password of username
tower_timeout    number0.001..        10                 TOWER_TIMEOUT
    seconds for a whole console request to CloudTower, retries included
retry_delay      number0..            -                  -
    seconds between CloudTower retries (unset: ctvnc.new's default)
tower_scheme     {https,http}         https              TOWER_SCHEME
    scheme of the /_ctvnc/ location's proxy_pass to CloudTower
tower_tls        {verify,insecure}    verify             TOWER_TLS
    verify CloudTower's certificate; insecure warns at every start
tower_name       string               -                  TOWER_NAME
    the name checked in CloudTower's certificate on its console proxy
credential_ttl   number0..10          0                  CREDENTIAL_TTL
    seconds console credentials are cached (0: never; they may be single use)
location         string               /_ctvnc            -
    the internal location that proxies requests to CloudTower
mode             {auto,direct,proxy}  auto               MODE
    direct to the cluster, through CloudTower's proxy, or auto (a probe decides)
scheme           {wss,ws}             wss                SCHEME
    scheme of the cluster's websocket (direct mode only)
port             port                 -                  CLUSTER_PORT
    the cluster's websocket port (unset: 443 for wss, 80 for ws)
proxy_scheme     {wss,ws}             -                  PROXY_SCHEME
    scheme of CloudTower's console proxy (unset: the tower's; ws refused for an https tower)
probe_timeout    number0..            0.5                PROBE_TIMEOUT
    seconds the auto mode's probe of a cluster waits
probe_ttl        number0..            30                 PROBE_TTL
    seconds a probe verdict is kept, for every worker
authorize        hook                 -                  KEYS
    hook(vm_id, ngx) -> true, user, view_only | false, refusal (none: every request 403)
admin_authorize  hook                 -                  ADMIN_KEYS
    hook(ngx) -> true, admin: who may use /admin/ (none: 403)
ticket_secret    secret               -                  CTVNC_TICKET_SECRET
    HMAC secret of tickets, 32+ bytes (unset: random per start, one node only)
ticket_ttl       number1..60          60                 TICKET_TTL
    seconds a ticket lives
ticket_lifetime  number1..            3600               TICKET_LIFETIME
    seconds a ticket and its renewals are good for from its first mint (at most max_session)
kill_lock        number1..            300                KILL_LOCK
    seconds a kill locks the session's user out of its VM (lifted under /admin/locks)
raw_target_urls  {off,on}             off                RAW_TARGET_URLS
    on: /url and /console/batch give the target's URL and console token, past the relay
trusted_proxies  list                 -                  TRUSTED_PROXIES
    addresses or IPv4 CIDRs of TLS terminators whose X-Forwarded-Proto is believed
allowed_origins  list                 -                  ALLOWED_ORIGINS
    websocket Origins allowed besides the gateway's own
frame_ancestors  string               'self'             FRAME_ANCESTORS
    who may frame the pages (CSP frame-ancestors)
metrics_allow    list                 -                  METRICS_ALLOW
    addresses or IPv4 CIDRs allowed /metrics besides loopback
batch_max        number1..            100                BATCH_MAX
    VM ids in one /console/batch
id_rate          number0..            100                ID_RATE
    batch VM ids per second and client, at least batch_max (0: off)
user_rate        number0..            0                  USER_RATE
    console requests per second of one authenticated user, a second's worth at once (0: none)
shot_rate        number0..            120                SHOT_RATE
    screenshots a minute per user, a minute's worth at once (0: no limit)
wall_refresh     number1..3600        30                 WALL_REFRESH
    seconds between the refreshes of /wall's thumbnails
wall_still       number1..            600                WALL_STILL
    seconds a screen stays unchanged before /wall marks it
wall_vms         list                 -                  WALL_VMS
    VM ids /wall shows when no vms= is given (each one the hook allows)
max_per_vm       number0..            0                  MAX_PER_VM
    concurrent consoles of one VM (0: no limit)
max_per_user     number0..            0                  MAX_PER_USER
    concurrent consoles of one user (0: no limit)
max_session      number0..            0                  MAX_SESSION
    seconds a console may stay open (0: no cap)
idle_timeout     number0..            0                  IDLE_TIMEOUT
    seconds without keys, pointer or clipboard from the browser (0: none)
max_sessions     number1..1000000     1000               MAX_SESSIONS
    console sessions this node holds at once (sizes nginx's connections, file limit and book)
slot_ttl         number1..600         10                 SLOT_TTL
    seconds a session's slots outlive its relay: a crashed worker's heal after it
target_timeout   number0.1..120       10                 TARGET_TIMEOUT
    seconds for the whole websocket handshake with the target (connect, TLS, answer)
handshake_timeout number1..3600       60                 HANDSHAKE_TIMEOUT
    seconds a session has for the browser's RFB handshake (to ClientInit)
exclusive_consoles {off,on}           off                EXCLUSIVE_CONSOLES
    on: a full session may ask for the console alone (ClientInit shared 0 drops the others)
cluster_tls      {verify,insecure}    verify             CLUSTER_TLS
    verify the clusters' certificates; insecure warns at every start
store            secret               shdict             STORE
    sessions, slots, kill flags, used tickets: shdict (this node) or redis[s]://... (a URL: secret)
store_ca         string               -                  STORE_CA
    PEM bundle a rediss:// store's certificate is verified with (unset: the system store)
node_name        string               -                  NODE_NAME
    this node's name in sessions, audit lines and metrics (unset: the host name)
audit_log        string               -                  AUDIT_LOG
    audit trail: a path, error_log or off (unset: <nginx prefix>/audit.log)
audit_key        secret               -                  CTVNC_AUDIT_KEY
    HMAC key of the audit log's hash chain, 32+ bytes (unset: SHA-256, forgeable by its writers)
novnc_dir        string               /usr/share/novnc   -
    where noVNC's vnc.html is read from
novnc_url        string               /novnc/            -
    where the page loads noVNC's assets from
prefix           string               /console/          -
    the console routes' prefix
record           {off,on,grant}       off                RECORD
    record consoles: off, on (every session) or grant (grants with :record or a record claim)
record_dir       string               -                  RECORD_DIR
    where recordings are written, mode 0700, writable by the workers (unset: <prefix>/recordings)
record_keep_days number0..            0                  RECORD_KEEP_DAYS
    days a recording is kept, oldest removed first (0: no limit)
record_max_mb    number0..            0                  RECORD_MAX_MB
    megabytes all recordings may take, oldest removed first (0: no limit)
record_required  {off,on}             off                RECORD_REQUIRED
    on: a session that cannot be recorded is refused (else it goes on, marked incomplete)
record_keyframe  number0..            10                 RECORD_KEYFRAME
    seconds between a recording's keyframes (0: the first only; no encodings cut down)
record_key       secret               -                  RECORD_KEY
    HMAC secret (32+ bytes) that signs each recording's final hash
ws_cluster       string               @ctvnc_ws_cluster  -
    the named location relaying to clusters
ws_tower         string               @ctvnc_ws_tower    -
    the named location relaying through CloudTower's proxy
]]

--- A declared type word into s: s.type ("number" with s.min and s.max,
-- "enum" with s.values, else the word itself). ctvnc.gateway.service
-- declares its own settings with the same words.
function _M.type_of(kind, s)
  s.type = kind
  local min, max = kind:match("^number([%d.]*)%.%.([%d.]*)$")
  if min then s.type, s.min, s.max = "number", tonumber(min), tonumber(max) end
  local words = kind:match("^{(.*)}$")
  if words then
    s.type, s.values = "enum", {}
    for w in words:gmatch("[^,]+") do s.values[#s.values + 1] = w end
  end
  return s
end

local SETTINGS = {}
for line in DECLARED:gmatch("[^\n]+") do
  local doc = line:match("^%s+(.-)%s*$")
  if doc then
    SETTINGS[#SETTINGS].doc = doc
  else
    local name, kind, default, env = line:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)$")
    local s = _M.type_of(kind, { name = name, env = env ~= "-" and env or nil })
    if kind == "string!" then s.type, s.required = "string", true end
    if default ~= "-" then s.default = s.type == "number" and tonumber(default) or default end
    SETTINGS[#SETTINGS + 1] = s
  end
end
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
  for _, name in ipairs({ "ticket_secret", "audit_key" }) do
    if conf[name] and #conf[name] < 32 then return fail(name, "must be at least 32 bytes") end
  end
  if conf.record_key and #conf.record_key < 32 then
    return fail("record_key", "must be at least 32 bytes")
  end
  if conf.id_rate ~= 0 and conf.id_rate < conf.batch_max then
    return fail("id_rate", "must be 0 (off) or at least batch_max")
  end
  if conf.store ~= "shdict" then
    if not conf.store:match("^rediss?://") then
      return fail("store", "must be shdict or a redis:// or rediss:// URL")
    end
    local ok, why = require("ctvnc.redis").parse_url(conf.store, "-")
    if not ok then return fail("store", why) end
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
