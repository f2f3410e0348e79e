--- ctvnc.gateway: a console gateway for OpenResty (ngx_lua), built on ctvnc.
-- examples/openresty/nginx.conf is the reference configuration; an
-- operator's own nginx.conf can call the same handlers from its locations.
--
--   GET|HEAD /console/<vm>/url     -> {"url": ..., "mode": ...}       (X-API-Key)
--   POST     /console/<vm>/ticket  -> {"ticket", "url", "expires_in"} (X-API-Key)
--   GET|HEAD /console/<vm>?ticket= -> 303 to /console/<vm>, the ticket in a cookie
--   GET|HEAD /console/<vm>         -> noVNC's full page               (cookie ticket or X-API-Key)
--   GET      /console/<vm>/ws      -> the websocket, relayed by the gateway itself to the
--                                     target ctvnc chose (cookie ticket, used up; or the
--                                     authorize hook: X-API-Key, JWT)
--   POST     /console/batch        -> client:batch's results          (X-API-Key)
--   GET      /admin/sessions       -> the open sessions               (admin_authorize)
--   POST     /admin/sessions/<id>/kill, /admin/vms/<vm>/kill           (admin_authorize)
--   GET      /metrics              -> Prometheus text                 (loopback, metrics_allow)
--
-- Every route first passes the operator's authorize(vm_id, ngx) hook (or a
-- ticket it minted); no hook, no access. VM ids are read from the raw
-- request URI and decoded exactly once.
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local resty = require "ctvnc.resty"
local tickets = require "ctvnc.ticket"
local sessions = require "ctvnc.sessions"
local viewonly = require "ctvnc.viewonly"
local cjson = require "cjson.safe"
local logsafe = require("ctvnc.logsafe").line

local ngx = ngx
local type, tostring, tonumber, pairs, ipairs, pcall, select = type, tostring, tonumber, pairs,
  ipairs, pcall, select
local concat, floor, setmetatable = table.concat, math.floor, setmetatable
local spawn, wait, kill_thread = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill

local _M = {}

local conf, client, ticket

-- ctvnc error kinds as HTTP statuses.
local STATUS = {
  invalid = 400, not_found = 404, timeout = 504, denied = 403, busy = 429,
  auth = 502, http = 502, graphql = 502, decode = 502,
  connect = 502, tls = 502, too_large = 502,
}

local REASON = {
  invalid = "bad VM id or option", not_found = "no such VM", timeout = "CloudTower timed out",
  auth = "CloudTower refused the gateway's credentials", http = "CloudTower answered with an error",
  graphql = "CloudTower reported an error", decode = "CloudTower's answer was unusable",
  connect = "CloudTower is unreachable", tls = "TLS with CloudTower failed",
  too_large = "CloudTower's answer was too large", denied = "denied",
  busy = "too many requests", method = "method not allowed",
}

-- What a person reads on an error page.
local SENTENCE = {
  invalid = "This console address is not valid. Check the link you followed.",
  not_found = "There is no virtual machine with this id.",
  denied = "You may not open this console. The link may have expired or been used "
    .. "already: ask for a new one.",
  busy = "Too many consoles were asked for at once. Wait a moment and try again.",
  timeout = "CloudTower did not answer in time. Please try again in a moment.",
  tls = "The gateway could not verify CloudTower's certificate. Please try again later "
    .. "or tell your administrator.",
  method = "This address only opens consoles.",
}
local SENTENCE_TOWER = "The gateway could not get the console from CloudTower. "
  .. "Please try again in a moment."

local TITLE = {
  [400] = "Bad request", [403] = "Access denied", [404] = "No such VM",
  [405] = "Method not allowed", [429] = "Too many requests", [401] = "Sign-in needed",
  [502] = "CloudTower unreachable", [504] = "CloudTower timed out",
}

-- Logging. A line written by ngx.log in a request carries nginx's request
-- line, which may hold a query string; the gateway's own lines go through
-- a zero-delay timer instead, whose log has no request attached, and
-- name what they need explicitly.
local function log_now(premature, level, msg)
  if not premature then ngx.log(level, msg) end
end
local function log(level, ...)
  local msg = logsafe(concat({ ... }, "", 1, select("#", ...)))
  local ok = ngx.timer.at(0, log_now, level, msg)
  if not ok then ngx.log(level, msg) end  -- no timer left: still no query in msg
end
_M.log = log

--- The lines of a key file (`what` names it in the error when it cannot
-- be read).
local function file_lines(path, what)
  local f = assert(io.open(path, "r"), "cannot read the " .. what .. " " .. path)
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

--- The shipped authorize hook: a file of "<api key> <vm id>[,<vm id>...]"
-- lines ("*" allows every VM; "#" starts a comment); "<vm id>:view" (or
-- "*:view") grants a view-only console. The key comes in the X-API-Key
-- header, never in a URL (browsers use tickets). The user named in
-- tickets, limits and logs is "key#<line number>", never the key.
-- The hook returns true, user, view_only | false, reason, status[, given]
-- (given: the request carried a key).
function _M.key_file(path)
  local keys = {}
  for n, line in ipairs(file_lines(path, "key file")) do
    local key, vms = line:match("^%s*([^#%s]+)%s+(%S+)")
    if key then
      local allowed = { [" user"] = "key#" .. n }
      for vm in vms:gmatch("[^,]+") do
        local id = vm:match("^(.*):view$")
        if id and id ~= "" then allowed[id] = "view" else allowed[vm] = "full" end
      end
      keys[key] = allowed
    end
  end
  return function(vm_id, ngx_)
    local key = ngx_.req.get_headers()["x-api-key"]
    if type(key) ~= "string" then return false, "no key", 403 end
    local allowed = keys[key]
    local grant = allowed and (allowed[vm_id] or allowed["*"])
    if grant then return true, allowed[" user"], grant == "view" end
    return false, "the key does not grant this VM", 403, true
  end
end

--- An admin_authorize hook: a file of admin keys, one a line ("#"
-- starts a comment), given in the X-API-Key header. The admin named in
-- the audit trail is "admin#<line number>".
function _M.admin_keys(path)
  local keys = {}
  for n, line in ipairs(file_lines(path, "admin key file")) do
    local key = line:match("^%s*([^#%s]+)")
    if key then keys[key] = "admin#" .. n end
  end
  return function(ngx_)
    local key = ngx_.req.get_headers()["x-api-key"]
    local who = type(key) == "string" and keys[key]
    if who then return true, who end
    return false
  end
end

--- The shipped JWT authorize hook: gateway.jwt{ secret = ... (HS256) |
-- public_key = PEM (RS256), alg, audience, issuer, leeway, cookie }. The
-- token comes in "Authorization: Bearer" or the cookie named `cookie`;
-- `sub` is the user, `vms` ("*" or a list) grants VMs and `view_only`
-- (true, or a list of VM ids) makes them view-only (ctvnc.jwt.grant).
-- No or a bad token: 401 with the reason; a good one without this VM: 403.
function _M.jwt(opts)
  local jwt = require "ctvnc.jwt"
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local cookie = o.cookie
  o.cookie = nil
  if o.secret == "" then o.secret = nil end
  local v = assert(jwt.new(o))
  opts.secret = nil
  return function(vm_id, ngx_)
    local token = jwt.token_from(ngx_.var.http_authorization, ngx_.var.http_cookie, cookie)
    if not token then return false, "no token", 401 end
    local claims, why = v:verify(token)
    if not claims then return false, why, 401, true end
    local user, view_only = jwt.grant(claims, vm_id)
    if not user then return false, view_only, 403, true end
    return true, user, view_only
  end
end

--- Several authorize hooks: the first that allows wins; else the refusal
-- of the first hook that was given its kind of credential (a hook says so
-- with a fourth value, true: a key, a token), else the first refusal. So a
-- bad token is answered as such even when no key came with it.
function _M.either(...)
  local hooks = { ... }
  return function(vm_id, ngx_)
    local reason, status, given
    for _, h in ipairs(hooks) do
      local ok, a, b, c = h(vm_id, ngx_)
      if ok == true then return true, a, b end
      if not status or (c == true and not given) then reason, status, given = a, b, c == true end
    end
    return false, reason, status
  end
end

local function origins(list)
  local set = {}
  if type(list) == "string" then
    for o in list:gmatch("[^%s,]+") do set[o:lower()] = true end
  elseif type(list) == "table" then
    for _, o in ipairs(list) do set[o:lower()] = true end
  end
  return set
end

--- noVNC's full page (vnc.html) with its assets under `novnc_url`.
local function load_page(dir, url)
  local f = io.open(dir .. "/vnc.html", "r")
  if not f then return nil end
  local html = f:read("*a")
  f:close()
  return html, url
end

--- gateway.configure{ endpoint, token (or username, password), mode, scheme,
-- port, authorize, probe_timeout (0.5 s), probe_ttl (30 s), credential_ttl
-- (0), tower_timeout (10 s, a whole console request), ticket_secret (random
-- per start: single node), ticket_ttl (60 s at most), allowed_origins,
-- frame_ancestors ("'self'"), batch_max (100), id_rate (ids per second and
-- client in batches, 100), tower_tls, cluster_tls ("verify" | "insecure":
-- checked by the relay, warned at start), tower_name (the name checked in
-- CloudTower's certificate on the console proxy), novnc_dir, novnc_url,
-- max_per_vm, max_per_user (concurrent sessions; 0: no limit),
-- max_session, idle_timeout (seconds; 0: none), admin_authorize (hook
-- (ngx) -> true, admin; none: the admin routes answer 403), audit_log (a
-- path, "error_log" or "off"; default <nginx prefix>/audit.log),
-- metrics_allow (addresses or IPv4 CIDRs besides loopback) }
function _M.configure(c)
  conf = c
  for _, k in ipairs({ "max_per_vm", "max_per_user", "max_session", "idle_timeout" }) do
    conf[k] = conf[k] or 0
    assert(type(conf[k]) == "number" and conf[k] >= 0, k .. " must be a number >= 0")
  end
  conf.metrics_allow = _M.address_set(conf.metrics_allow)
  local audit = conf.audit_log
  if audit == nil or audit == "" then audit = ngx.config.prefix() .. "audit.log" end
  sessions.audit_to(audit)
  conf.credential_ttl = conf.credential_ttl or 0
  assert(type(conf.credential_ttl) == "number" and conf.credential_ttl >= 0
    and conf.credential_ttl <= 10, "credential_ttl must be 0-10 seconds")
  conf.tower_timeout = conf.tower_timeout or 10
  assert(type(conf.tower_timeout) == "number" and conf.tower_timeout > 0,
    "tower_timeout must be a number of seconds")
  conf.batch_max = conf.batch_max or 100
  conf.id_rate = conf.id_rate or 100
  assert(conf.id_rate == 0 or conf.id_rate >= conf.batch_max,
    "id_rate (ids per second) must be 0 (off) or at least batch_max")
  conf.frame_ancestors = conf.frame_ancestors or "'self'"
  conf.origins = origins(conf.allowed_origins)
  conf.prefix = conf.prefix or "/console/"
  local secret = conf.ticket_secret
  if secret == "" then secret = nil end
  if not secret then
    secret = tickets.random_secret()
    ngx.log(ngx.NOTICE, "ctvnc: no ticket secret given: a random one for this start "
      .. "(tickets are valid on this node only)")
  end
  ticket = tickets.new({ secret = secret, ttl = conf.ticket_ttl or 60 })
  conf.ticket_secret = nil
  for _, hop in ipairs({ { "tower_tls", "CloudTower (TOWER_TLS)" },
                         { "cluster_tls", "the clusters (CLUSTER_TLS)" } }) do
    if conf[hop[1]] == "insecure" then
      ngx.log(ngx.WARN, "ctvnc: TLS certificates of ", hop[2],
        " are NOT verified: anyone on the path can read the console credentials")
    end
  end
  conf.page_html, conf.novnc_url = load_page(conf.novnc_dir or "/usr/share/novnc",
    conf.novnc_url or "/novnc/")
  client = assert(ctvnc.new({
    endpoint = c.endpoint, token = c.token, username = c.username, password = c.password,
    timeout = conf.tower_timeout, retry_delay = conf.retry_delay,
    transport = resty.transport({ location = conf.location or "/_ctvnc",
                                  timeout = conf.tower_timeout,
                                  tls = conf.tower_scheme ~= "http" }),
  }))
  c.token, c.password = nil, nil
end

--- Headers of every answer the gateway writes.
local function common_headers(html)
  local h = ngx.header
  h["Cache-Control"] = "no-store"
  h["X-Content-Type-Options"] = "nosniff"
  h["Referrer-Policy"] = "no-referrer"
  h["Content-Security-Policy"] = "frame-ancestors " .. conf.frame_ancestors
  if html then h["X-Frame-Options"] = conf.frame_ancestors == "'self'" and "SAMEORIGIN" or nil end
end

local function finish(status)
  ngx.eof()
  -- ngx.exit refuses while a subrequest is pending: ctvnc.resty stops
  -- waiting for a hostile endless answer, nginx finishes it later.
  pcall(ngx.exit, status)
end

local function reply(status, body)
  ngx.ctx.ctvnc_kind = type(body) == "table" and body.kind or nil
  ngx.status = status
  common_headers(false)
  ngx.header["Content-Type"] = "application/json"
  if ngx.req.get_method() ~= "HEAD" then ngx.say(cjson.encode(body)) end
  return finish(status)
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local ERROR_PAGE = [[
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
body { font: 18px/1.5 system-ui, sans-serif; background: #f4f4f4; color: #222; margin: 0; }
main { max-width: 36em; margin: 15vh auto; padding: 2em; background: #fff;
       border-left: 6px solid #b03030; }
h1 { font-size: 1.4em; margin: 0 0 .5em; }
p.code { color: #666; font-size: .8em; }
</style>
</head>
<body>
<main>
<h1>@TITLE@</h1>
<p id="message">@SENTENCE@</p>
<p class="code">HTTP @STATUS@@VM@</p>
</main>
</body>
</html>
]]

--- An HTML error page: the status, its title and a sentence.
local function error_page(status, kind, vm_id, sentence)
  ngx.status = status
  common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  if ngx.req.get_method() ~= "HEAD" then
    local values = {
      TITLE = TITLE[status] or "Error", STATUS = tostring(status),
      SENTENCE = html_escape(sentence or SENTENCE[kind] or SENTENCE_TOWER),
      VM = vm_id and vm_id ~= "" and (" · VM " .. html_escape(vm_id)) or "",
    }
    ngx.print((ERROR_PAGE:gsub("@(%u+)@", values)))
  end
  return finish(status)
end
_M.error_page = error_page

local function fail(vm_id, msg, kind, html)
  -- CloudTower tells a missing VM with a GraphQL error (VM_NOT_FOUND)
  if kind == "graphql" and msg and (msg:find("NOT_FOUND", 1, true)
    or msg:lower():find("does not exist", 1, true) or msg:lower():find("not found", 1, true)) then
    kind = "not_found"
  end
  log(ngx.WARN, "ctvnc: ", msg, " (", kind, ")")   -- ctvnc's messages hold no secrets
  ngx.ctx.ctvnc_kind = kind
  local status = STATUS[kind] or 502
  if html then return error_page(status, kind, vm_id) end
  return reply(status, { error = REASON[kind] or "failed", kind = kind, vm_id = vm_id })
end

local function not_allowed(allow, html)
  ngx.header["Allow"] = allow
  if html then return error_page(405, "method") end
  return reply(405, { error = "method not allowed", allow = allow })
end

--- The VM id of this request: the path segment after the prefix, taken
-- from the raw request URI and decoded exactly once (nginx's own $uri and
-- location captures are decoded already). nil when the raw path does not
-- have the expected shape (a dot segment, an encoded slash).
--- What a refused person reads: who holds the console, since when.
function _M.in_use_sentence(which, holder)
  if which == "vm" then
    if holder then
      return ("This console is in use by %s since %s UTC. Try again when they are done.")
        :format(tostring(holder.user), os.date("!%Y-%m-%d %H:%M:%S", floor(holder.start or 0)))
    end
    return "This console is in use. Try again when it is free."
  end
  return "You have as many consoles open as this gateway allows. Close one and try again."
end

--- %XX decoded, once; in a path "+" is a plus (ngx.unescape_uri would make
-- it a space)
local function unpercent(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function vm_of(suffix)
  local path = ngx.var.request_uri:match("^[^?#]*")
  local prefix = conf.prefix
  if path:sub(1, #prefix) ~= prefix then return nil end
  local rest = path:sub(#prefix + 1)
  local raw = rest:match("^([^/]*)" .. suffix .. "$")
  if not raw then return nil end
    local vm_id = unpercent(raw)
  if vm_id:find("/", 1, true) or vm_id == "." or vm_id == ".." then return nil end
  return vm_id
end
_M.vm_of = vm_of

--- The operator's hook: true, user, view_only | false, reason, status
-- (401 or 403). No hook, no access.
local function authorize(vm_id)
  local hook = conf and conf.authorize
  if type(hook) ~= "function" then return false, "no authorize hook", 403 end
  local ok, yes, user, view = pcall(hook, vm_id, ngx)
  if not ok then
    log(ngx.ERR, "ctvnc: authorize hook failed: ", tostring(yes))
    return false, "authorize hook failed", 403
  end
  if yes == true then return true, user, view == true end
  return false, type(user) == "string" and user or "denied", view == 401 and 401 or 403
end

local function deny(vm_id, why, status, html)
  if status == 401 then ngx.header["WWW-Authenticate"] = "Bearer" end
  if html then return _M.error_page(status or 403, "denied", vm_id) end
  return reply(status or 403, { error = "denied", reason = why, vm_id = vm_id })
end

local function client_key()
  return ngx.var.binary_remote_addr or ngx.var.remote_addr or "?"
end

--- Counts n more VM ids against this client's budget of id_rate per
-- second (GCRA: the budget refills continuously, one second's worth at
-- most). Workers share it through a shared dict; two of them deciding at
-- the same instant may each let one batch through.
local function id_budget(n)
  local dict = ngx.shared.ctvnc_rate
  if not dict or conf.id_rate <= 0 then return true end
  local key = "ids:" .. client_key()
  local t = ngx.now()
  local tat = dict:get(key) or t
  if tat < t then tat = t end
  local new = tat + n / conf.id_rate
  if new - t > 1 then return false end
  dict:set(key, new, floor(new - t) + 2)
  return true
end

--- Probe verdicts cached in the ctvnc_probe shared dict, for all workers.
local function shared_probe(host, port, timeout)
  local dict = ngx.shared.ctvnc_probe
  local key = host .. " " .. port
  local v = dict:get(key)
  if v ~= nil then return v end
  local ok = resty.probe(host, port, timeout)
  dict:set(key, ok, conf.probe_ttl or 30)
  return ok
end

--- VNC credentials, from the short-lived cache when credential_ttl > 0.
local function credentials(vm_id)
  local ttl = conf.credential_ttl
  local dict = ngx.shared.ctvnc_creds
  if ttl > 0 then
    local cached = dict:get(vm_id)
    if cached then return cjson.decode(cached) end
  end
  ngx.update_time()
  local t0 = ngx.now()
  local info, msg, kind = client:vnc(vm_id)
  ngx.update_time()
  sessions.observe("ctvnc_tower_request_seconds", ngx.now() - t0)
  if info and ttl > 0 then dict:set(vm_id, cjson.encode(info), ttl) end
  return info, msg, kind
end

--- The URL ctvnc chooses for vm_id: url, mode, info | nil, message, kind.
--- The console options of every URL the gateway hands out, single or
-- batch: built once per configuration.
local function url_opts()
  if not conf.url_opts then
    conf.url_opts = { scheme = conf.scheme, port = conf.port, mode = conf.mode or "auto",
                      probe = shared_probe, probe_timeout = conf.probe_timeout,
                      probe_ttl = conf.probe_ttl }
  end
  return conf.url_opts
end

local function choose(vm_id)
  if vm_id == "" then return nil, "the VM id is empty", "invalid" end
  resty.deadline(conf.tower_timeout)
  local info, msg, kind = credentials(vm_id)
  if not info then return nil, msg, kind end
  local url, mode
  url, mode, kind = client:console_url_for(info, url_opts())
  if not url then return nil, mode, kind end
  return url, mode, info
end

local function method_is(...)
  local m = ngx.req.get_method()
  for i = 1, select("#", ...) do
    if m == select(i, ...) then return true end
  end
  return false
end

--- GET|HEAD /console/<vm>/url (X-API-Key). HEAD checks access only.
function _M.url(vm_id)
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD") end
  vm_id = vm_id or vm_of("/url")
  if not vm_id or vm_id == "" then
    return fail(nil, "the path is not a console URL", "invalid")
  end
  local allowed, why, status = authorize(vm_id)
  if not allowed then return deny(vm_id, why, status) end
  local view_only = status          -- allowed: true, user, view_only
  -- a view-only grant never gets the target's URL: it connects straight to
  -- the VM, past the relay that enforces view-only
  if view_only then return deny(vm_id, "view-only: open the console page", 403) end
  if ngx.req.get_method() == "HEAD" then return reply(200, {}) end
  local url, mode, kind = choose(vm_id)
  if not url then return fail(vm_id, mode, kind) end
  return reply(200, { url = url, mode = mode })
end

local function page_path(vm_id)
  return conf.prefix .. ctvnc.encode_uri_component(vm_id)
end

--- POST /console/<vm>/ticket (X-API-Key): a ticket for the browser.
function _M.ticket(vm_id)
  if not method_is("POST") then return not_allowed("POST") end
  vm_id = vm_id or vm_of("/ticket")
  if not vm_id or vm_id == "" then return fail(nil, "the path is not a console URL", "invalid") end
  local ok, user, view = authorize(vm_id)
  if not ok then return deny(vm_id, user, view) end
  local t, ttl = ticket.mint(vm_id, user, view)
  return reply(200, { ticket = t, expires_in = ttl,
                      url = page_path(vm_id) .. "?ticket=" .. t })
end

local COOKIE = "ctvnc_ticket"

local function ticket_cookie(value, max_age, vm_id)
  local secure = ngx.var.scheme == "https" and "; Secure" or ""
  return ("%s=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Lax%s"):format(COOKIE, value,
    page_path(vm_id), max_age, secure)
end

local function cookie_ticket()
  local v = ngx.var["cookie_" .. COOKIE]
  if v == nil or v == "" then return nil end
  return v
end

--- The page, noVNC's vnc.html with its assets under novnc_url, the
-- ticketed websocket of this VM, and a status line.
local function page_html(vm_id)
  local html = conf.page_html
  if not html then return nil end
  local js = cjson.encode(vm_id):gsub("</", "<\\/")
  local head = ([[<head>
<base href="@NOVNC@">
<script>
/* ctvnc: noVNC's settings in the fragment, never a secret in the URL */
(function () {
  var vm = @VM@;
  var path = "@PREFIX@".slice(1) + encodeURIComponent(vm) + "/ws";
  var hash = "#autoconnect=1&reconnect=0&resize=scale&shared=1&path=" + encodeURIComponent(path);
  history.replaceState(null, "", location.pathname + hash);
  /* the gateway's last word when it ends a session (time limit, idle,
     kill, view-only): the reason of its close frame, for the status line */
  var W = window.WebSocket;
  var Wrapped = function (url, protocols) {
    var ws = protocols === undefined ? new W(url) : new W(url, protocols);
    ws.addEventListener("close", function (e) { window.ctvncCloseReason = e.reason || ""; });
    return ws;
  };
  Wrapped.prototype = W.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (k) { Wrapped[k] = W[k]; });
  window.WebSocket = Wrapped;
})();
</script>
<style>
#ctvnc_status { position: fixed; left: 0; right: 0; bottom: 0; z-index: 1000;
  font: 14px/1.6 system-ui, sans-serif; padding: 2px 10px; color: #fff;
  background: rgba(40, 40, 40, .85); }
#ctvnc_status.connected { background: rgba(30, 110, 50, .85); }
#ctvnc_status.failed { background: rgba(160, 40, 40, .9); }
</style>
<script type="module">
import UI from "@NOVNC@app/ui.js";
const vm = @VM@;
const bar = document.createElement("div");
bar.id = "ctvnc_status";
const say = (text, state) => {
  bar.textContent = text;
  bar.className = state;
  document.documentElement.dataset.ctvnc = state;
};
say("Console of " + vm + ": connecting…", "connecting");
document.addEventListener("DOMContentLoaded", () => document.body.appendChild(bar));
if (document.body) document.body.appendChild(bar);
const connected = UI.connectFinished, disconnected = UI.disconnectFinished;
UI.connectFinished = (e) => {
  say("Console of " + vm + ": connected", "connected");
  return connected(e);
};
UI.disconnectFinished = (e) => {
  const why = window.ctvncCloseReason;
  if (why) {
    say("Console of " + vm + ": " + why + ". Open a new console link to continue.", "failed");
    return disconnected(e);
  }
  say("Console of " + vm + (e.detail.clean
    ? ": disconnected. Press Connect within a minute, or open a new console link."
    : ": the connection failed. Open a new console link to try again."), "failed");
  return disconnected(e);
};
</script>
]]):gsub("@(%u+)@", function(name)
    if name == "VM" then return js end
    if name == "NOVNC" then return html_escape(conf.novnc_url) end
    if name == "PREFIX" then return html_escape(conf.prefix) end
  end)
  return (html:gsub("<head>", function() return head end, 1))
end

--- GET|HEAD /console/<vm>[?ticket=]: noVNC's page, or an error page.
function _M.page(vm_id)
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD", true) end
  vm_id = vm_id or vm_of("")
  if not vm_id then return error_page(400, "invalid") end
  if vm_id == "" then return error_page(400, "invalid", vm_id) end
  local args = ngx.req.get_uri_args(8)
  if args.key ~= nil then
    -- keys never travel in URLs; nothing is asked for such a request
    return error_page(400, "invalid", vm_id)
  end
  local given = args.ticket
  if given ~= nil then
    -- the link's ticket goes into a cookie for this console's path, and
    -- the browser comes back without it in the URL
    local doc = type(given) == "string" and ticket.check(given, vm_id)
    if not doc then return error_page(403, "denied", vm_id) end
    ngx.header["Set-Cookie"] = ticket_cookie(given, floor(doc.e - ngx.now()), vm_id)
    ngx.header["Location"] = page_path(vm_id)
    ngx.status = 303
    common_headers(true)
    return finish(303)
  end
  local t = cookie_ticket()
  local user
  if t then
    local doc = ticket.check(t, vm_id)
    if not doc then return error_page(403, "denied", vm_id) end
    user = doc.u
  else
    local ok, who, status = authorize(vm_id)
    if not ok then return deny(vm_id, who, status, true) end
    user = who
  end
  -- a console that is full is told before anything is asked of CloudTower
  local fits, which, holder = sessions.fits(vm_id, tostring(user or ""), conf)
  if not fits then
    sessions.count("ctvnc_sessions_refused_total", { limit = which })
    sessions.audit("refused", { user = user, vm_id = vm_id, client = ngx.var.remote_addr,
      reason = "limit " .. which }, log)
    return error_page(429, "in_use", vm_id, _M.in_use_sentence(which, holder))
  end
  if ngx.req.get_method() == "HEAD" then
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    common_headers(true)
    return finish(200)
  end
  -- the VM must exist and CloudTower answer, or the person gets a sentence
  local url, msg, kind = choose(vm_id)
  if not url then return fail(vm_id, msg, kind, true) end
  local html = page_html(vm_id)
  if not html then
    log(ngx.ERR, "ctvnc: noVNC's vnc.html is missing (novnc_dir)")
    return error_page(502, "novnc", vm_id)
  end
  ngx.status = 200
  common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.print(html)
  return finish(200)
end

--- Is the websocket's Origin the gateway's own or an allowed one? No
-- Origin (not a browser) is fine: the key or ticket decides.
local function origin_ok()
  local origin = ngx.var.http_origin
  if origin == nil then return true end
  origin = origin:lower()
  local own = (ngx.var.scheme .. "://" .. (ngx.var.http_host or "")):lower()
  return origin == own or conf.origins[origin] == true
end

--- access_by_lua of the websocket location: checks the method, Origin,
-- the handshake, the key, ticket or JWT, then sets the $ctvnc_*
-- variables (the target and its checked name, the VM, the user, view-only)
-- and hands the request to the named location of the target's hop
-- (@ctvnc_ws_cluster or @ctvnc_ws_tower), whose content handler is
-- gateway.relay with that hop's CA (lua_ssl_trusted_certificate).
function _M.ws(vm_id)
  if not method_is("GET") then return not_allowed("GET") end
  vm_id = vm_id or vm_of("/ws")
  if not vm_id or vm_id == "" then return fail(nil, "the path is not a console URL", "invalid") end
  local upgrade = ngx.var.http_upgrade
  if not upgrade or upgrade:lower() ~= "websocket" then
    return reply(400, { error = "a websocket upgrade is expected", vm_id = vm_id })
  end
  local wskey = ngx.var.http_sec_websocket_key
  if ngx.var.http_sec_websocket_version ~= "13" or not wskey
    or not wskey:match("^[%w+/]+=*$") or #wskey ~= 24 then
    return reply(400, { error = "a websocket handshake (version 13) is expected", vm_id = vm_id })
  end
  if not origin_ok() then
    log(ngx.WARN, "ctvnc: websocket for ", vm_id, " from a foreign origin refused")
    return reply(403, { error = "foreign origin", vm_id = vm_id })
  end
  local t = cookie_ticket()
  local key = ngx.var.http_x_api_key
  local user, view
  if (key and key ~= "") or not t then
    local ok, who, status = authorize(vm_id)
    if not ok then return deny(vm_id, who, status) end
    user, view = who, status
  else
    local doc, why = ticket.consume(t, vm_id)
    if not doc then
      log(ngx.WARN, "ctvnc: websocket ticket for ", vm_id, " refused: ", why)
      return reply(403, { error = "denied", vm_id = vm_id })
    end
    user, view = doc.u, doc.r == 1
    ngx.var.ctvnc_renew = "1"   -- a new ticket rides on the 101
  end
  local url, mode, info = choose(vm_id)
  if not url then return fail(vm_id, mode, info) end
  -- variables outlive the internal redirects below (ngx.ctx does not)
  local var = ngx.var
  var.ctvnc_vm = vm_id
  var.ctvnc_user = tostring(user or "")
  var.ctvnc_view = view and "1" or ""
  var.ctvnc_mode = mode
  var.ctvnc_target = url
  if mode == "direct" then
    var.ctvnc_ssl_name = info.cluster_ip
    return ngx.exec(conf.ws_cluster or "@ctvnc_ws_cluster")
  end
  return ngx.exec(conf.ws_tower or "@ctvnc_ws_tower")
end

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

--- The websocket client handshake with the target, over TCP or TLS
-- (verified against the location's lua_ssl_trusted_certificate, with
-- ssl_name checked): sock, subprotocol | nil, kind, message. Only the
-- handshake's own headers are sent: nothing of the browser's request.
local function connect_target(url, ssl_name, verify, protocol)
  local scheme, hostport, path = url:match("^(wss?)://([^/?#]+)(.*)$")
  if not scheme then return nil, "http", "the target URL is not a websocket URL" end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  local host, port = hostport:match("^%[(.-)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  if not host then return nil, "http", "the target URL has no host" end
  port = tonumber(port) or (scheme == "wss" and 443 or 80)
  local sock = ngx.socket.tcp()
  sock:settimeouts(5000, 10000, 10000)
  local ok, err = sock:connect(host, port)
  if not ok then return nil, err == "timeout" and "timeout" or "connect", err end
  if scheme == "wss" then
    -- lua-resty-core 0.1.25 (Debian 12) asserts when a handshake fails at
    -- once rather than after a yield: a raised error is a failed handshake
    -- too, never a pass
    local done, sess
    done, sess, err = pcall(sock.sslhandshake, sock, nil, ssl_name or host, verify)
    if not done or not sess then
      sock:close()
      if not done then err = "the TLS handshake failed" end
      return nil, err == "timeout" and "timeout" or "tls", err
    end
  end
  local key = ngx.encode_base64(tickets.random_bytes(16))
  local req = { "GET " .. path .. " HTTP/1.1", "Host: " .. hostport, "Upgrade: websocket",
    "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13" }
  if protocol and protocol:match("^[%w%-%._, ]+$") then
    req[#req + 1] = "Sec-WebSocket-Protocol: " .. protocol
  end
  ok, err = sock:send(concat(req, "\r\n") .. "\r\n\r\n")
  if not ok then
    sock:close()
    return nil, err == "timeout" and "timeout" or "connect", err
  end
  local line
  line, err = sock:receive("*l")
  if not line then
    sock:close()
    return nil, err == "timeout" and "timeout" or "http", "no answer to the handshake: " .. err
  end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)") or "")
  local headers = {}
  for _ = 1, 100 do
    local h
    h, err = sock:receive("*l")
    if not h then
      sock:close()
      return nil, err == "timeout" and "timeout" or "http", "the handshake's answer broke off"
    end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local why
  if status ~= 101 then
    why = "the target answered HTTP " .. tostring(status)
  elseif (headers.upgrade or ""):lower() ~= "websocket" then
    why = "the target did not upgrade to a websocket"
  elseif headers["sec-websocket-accept"] ~= ngx.encode_base64(ngx.sha1_bin(key .. GUID)) then
    why = "the target's Sec-WebSocket-Accept is wrong"
  elseif headers["sec-websocket-extensions"] then
    why = "the target negotiated an extension it was not offered"
  end
  if why then
    sock:close()
    return nil, "http", why
  end
  return sock, headers["sec-websocket-protocol"]
end

local CLOSE_TEXT = {
  max_session = "the console's time limit of %d s is reached",
  idle = "closed after %d s without input",
  killed = "closed by an administrator",
  shutdown = "the gateway is restarting",
}

--- One relayed session, from the 101 to the end: reason, message.
local function run_session(rec, up, protocol)
  local var = ngx.var
  -- the browser's side: the gateway answers the upgrade itself
  ngx.status = 101
  ngx.header["Upgrade"] = "websocket"
  ngx.header["Sec-WebSocket-Accept"] =
    ngx.encode_base64(ngx.sha1_bin(var.http_sec_websocket_key .. GUID))
  if protocol then ngx.header["Sec-WebSocket-Protocol"] = protocol end
  if var.ctvnc_renew == "1" and rec.user ~= "" then
    local t, ttl = ticket.mint(rec.vm_id, rec.user, rec.view_only)
    ngx.header["Set-Cookie"] = ticket_cookie(t, ttl, rec.vm_id)
  end
  local ok, err = ngx.send_headers()
  if ok then ok, err = ngx.flush(true) end
  if not ok then return "browser", "the 101 could not be sent: " .. tostring(err) end
  local down
  down, err = ngx.req.socket(true)
  if not down then return "error", "no raw socket: " .. tostring(err) end
  down:settimeout(30000)
  up:settimeouts(5000, 30000, 30000)

  local filter
  if rec.view_only then filter, err = viewonly.new() else filter, err = viewonly.watch() end
  if not filter then return "error", "no filter: " .. tostring(err) end
  rec.filter = filter
  local now = ngx.now
  rec.last_input = now()
  -- st.reason: why the gateway ends the session, once decided; a thread
  -- that decides sends the browser its close frame itself (killing the
  -- thread that reads the browser closes that side at once).
  local st = {}

  --- The last word to the page: a close frame (retried while the other
  -- pump is writing to the browser).
  local function last_word(frame)
    for _ = 1, 100 do
      local sent, e = down:send(frame)
      if sent or e ~= "socket busy writing" then return end
      ngx.sleep(0.01)
    end
  end

  --- Reads `sock` until `handle(data)` returns what ended the session (and
  -- why), or the socket fails: then `ended(err)` says so.
  local function pump(sock, handle, ended)
    while true do
      local data, e = sock:receiveany(65536)
      if data then
        local what, why = handle(data)
        if what then return what, why end
      elseif e ~= "timeout" then
        return ended(e)
      end
    end
  end

  local function from_browser()
    return pump(down, function(data)
      rec.bytes_in = rec.bytes_in + #data
      local out, inputs, _, close = viewonly.from_browser(filter, data)
      if not out then
        st.reason = st.reason or "protocol"
        last_word(close)
        -- a moment for the browser's answer to the close frame
        down:settimeout(1000)
        for _ = 1, 64 do
          if not down:receiveany(4096) then break end
        end
        return "protocol", "view-only: " .. tostring(inputs)
      end
      if inputs > 0 then rec.last_input = now() end
      if #out > 0 and not st.reason then
        local sent, e2 = up:send(out)
        if not sent then return "target", "target send: " .. tostring(e2) end
      end
    end, function(e)
      st.browser_done = true
      return "browser", "browser " .. tostring(e)
    end)
  end

  local function from_target()
    return pump(up, function(data)
      local fine, msg = filter:from_target(data)
      if not fine then
        st.reason = st.reason or "protocol"
        down:send(viewonly.close_frame(viewonly.CLOSE_POLICY, "view-only: session closed"))
        return "protocol", "view-only: " .. tostring(msg)
      end
      if st.reason then return st.reason end
      local sent, e2 = down:send(data)
      if not sent then return "browser", "browser send: " .. tostring(e2) end
      rec.bytes_out = rec.bytes_out + #data
    end, function(e)
      return "target", "target " .. tostring(e)
    end)
  end

  local function ticker()
    local last_refresh = now()
    while true do
      ngx.sleep(0.25)
      local t = now()
      local why
      if sessions.killed(rec.id) then
        why = "killed"
      elseif conf.max_session > 0 and t - rec.start >= conf.max_session then
        why = "max_session"
      elseif conf.idle_timeout > 0 and t - rec.last_input >= conf.idle_timeout then
        why = "idle"
      elseif ngx.worker.exiting() then
        why = "shutdown"
      end
      if why then
        local text = CLOSE_TEXT[why]:format(why == "idle" and conf.idle_timeout or conf.max_session)
        st.reason = why
        last_word(viewonly.close_frame(viewonly.CLOSE_GOING_AWAY, text))
        -- a moment for the browser's answer, then the end
        for _ = 1, 20 do
          if st.browser_done then break end
          ngx.sleep(0.05)
        end
        return why, text
      end
      if t - last_refresh >= 2 then
        last_refresh = t
        sessions.refresh(rec)
        sessions.count("ctvnc_relay_bytes_total", { direction = "from_browser" },
          rec.bytes_in - rec.published_in)
        sessions.count("ctvnc_relay_bytes_total", { direction = "to_browser" },
          rec.bytes_out - rec.published_out)
        rec.published_in, rec.published_out = rec.bytes_in, rec.bytes_out
      end
    end
  end

  rec.published_in, rec.published_out = 0, 0
  local threads = { spawn(from_browser), spawn(from_target), spawn(ticker) }
  local done, reason, msg = wait(threads[1], threads[2], threads[3])
  for _, th in ipairs(threads) do kill_thread(th) end
  if not done then reason, msg = "error", tostring(reason) end
  if st.reason and st.reason ~= reason then reason, msg = st.reason, CLOSE_TEXT[st.reason] end
  if reason ~= "target" then
    up:send(core.ws_frame("close", "\3\232", true))
  end
  return reason, msg
end

local END_TEXT = {
  browser = "the browser closed", target = "the target closed", max_session = "time limit",
  idle = "idle timeout", killed = "killed", shutdown = "gateway shutdown",
  protocol = "view-only violation", error = "error",
}

--- content_by_lua of the websocket's named locations (hop "cluster" or
-- "tower"): takes the session's slots (max_per_vm, max_per_user),
-- connects to the target (TLS verified unless cluster_tls/tower_tls is
-- insecure), answers the browser's upgrade, and relays until one side
-- closes, the time cap or idle timeout is reached, an admin kills it, or
-- a view-only session breaks its rules. Every way out releases the slots.
function _M.relay(hop)
  local var = ngx.var
  local rec = { user = var.ctvnc_user or "", vm_id = var.ctvnc_vm, mode = var.ctvnc_mode,
    view_only = var.ctvnc_view == "1", client = var.remote_addr, start = ngx.now() }
  local opened, which, holder = sessions.open(rec, conf)
  if not opened then
    sessions.count("ctvnc_sessions_refused_total", { limit = which })
    sessions.audit("refused", { user = rec.user, vm_id = rec.vm_id, mode = rec.mode,
      view_only = rec.view_only, client = rec.client, reason = "limit " .. tostring(which) }, log)
    local body = { error = _M.in_use_sentence(which, type(holder) == "table" and holder or nil),
      kind = "busy", limit = which, vm_id = rec.vm_id }
    if type(holder) == "table" then
      body.in_use_by, body.since = holder.user, sessions.iso(holder.start or 0)
    end
    return reply(429, body)
  end
  local target = var.ctvnc_target
  local verify, ssl_name
  if hop == "cluster" then
    verify, ssl_name = conf.cluster_tls ~= "insecure", var.ctvnc_ssl_name
  else
    verify, ssl_name = conf.tower_tls ~= "insecure", conf.tower_name
  end
  if ssl_name == "" then ssl_name = nil end
  local up, kind, err = connect_target(target, ssl_name, verify, var.http_sec_websocket_protocol)
  local protocol = up and kind or nil
  if not up then
    sessions.close(rec)
    log(ngx.ERR, "ctvnc: websocket of ", tostring(rec.vm_id), " to ", target:match("^[^?#]*"),
      " failed: ", tostring(err), " (", kind, ")")
    sessions.audit("refused", { user = rec.user, vm_id = rec.vm_id, mode = rec.mode,
      view_only = rec.view_only, client = rec.client, reason = "target: " .. kind }, log)
    ngx.header["X-Ctvnc-Error"] = kind
    return reply(kind == "timeout" and 504 or 502,
      { error = "the console's websocket could not be opened", kind = kind })
  end
  sessions.refresh(rec)
  sessions.audit("open", { session = rec.id, user = rec.user, vm_id = rec.vm_id, mode = rec.mode,
    view_only = rec.view_only, client = rec.client, start = rec.start }, log)
  local ok, reason, msg = pcall(run_session, rec, up, protocol)
  if not ok then reason, msg = "error", tostring(reason) end
  up:close()
  local killed_by = reason == "killed" and sessions.killer(rec.id)
  sessions.close(rec)
  if rec.filter then
    if rec.view_only then
      log(ngx.NOTICE, "ctvnc: view-only session ", rec.id, ": ", viewonly.summary(rec.filter))
    end
    rec.filter:close()
  end
  ngx.update_time()
  local t = ngx.now()
  sessions.count("ctvnc_sessions_ended_total", { reason = reason })
  sessions.count("ctvnc_relay_bytes_total", { direction = "from_browser" },
    rec.bytes_in - (rec.published_in or 0))
  sessions.count("ctvnc_relay_bytes_total", { direction = "to_browser" },
    rec.bytes_out - (rec.published_out or 0))
  if reason == "protocol" or reason == "error" then
    log(ngx.WARN, "ctvnc: session ", rec.id, " of ", tostring(rec.vm_id), " ended: ", tostring(msg))
  end
  sessions.audit(reason == "killed" and "killed" or "close", { session = rec.id, user = rec.user,
    vm_id = rec.vm_id, mode = rec.mode, view_only = rec.view_only, client = rec.client,
    start = rec.start, ["end"] = t, duration = floor((t - rec.start) * 1000 + 0.5) / 1000,
    bytes_in = rec.bytes_in, bytes_out = rec.bytes_out,
    reason = killed_by and ("killed by " .. killed_by) or END_TEXT[reason] or reason }, log)
end

local function admin_ok()
  local hook = conf and conf.admin_authorize
  if type(hook) ~= "function" then return false end
  local ok, yes, who = pcall(hook, ngx)
  if not ok then
    log(ngx.ERR, "ctvnc: admin_authorize hook failed: ", tostring(yes))
    return false
  end
  return yes == true, tostring(who or "admin")
end

local function array(t)
  if cjson.empty_array_mt then setmetatable(t, cjson.empty_array_mt) end
  return t
end

--- The admin routes (admin_authorize; none: 403):
--   GET  /admin/sessions              -> {"sessions": [{id, user, vm_id, mode, view_only,
--                                         client, start, bytes_in, bytes_out}]}
--   POST /admin/sessions/<id>/kill    -> {"killed": [id]} | 404
--   POST /admin/vms/<vm_id>/kill      -> {"killed": [ids]}
-- Killed sessions end within a second (their relays poll the flag).
function _M.admin()
  ngx.ctx.ctvnc_route = "admin"
  local ok, who = admin_ok()
  if not ok then return reply(403, { error = "denied", kind = "denied" }) end
  local path = ngx.var.request_uri:match("^[^?#]*")
  if path == "/admin/sessions" then
    if not method_is("GET") then return not_allowed("GET") end
    local list = {}
    for i, r in ipairs(sessions.list()) do
      list[i] = { id = r.id, user = r.user, vm_id = r.vm_id, mode = r.mode,
        view_only = r.view_only == true, client = r.client, start = sessions.iso(r.start or 0),
        bytes_in = r.bytes_in, bytes_out = r.bytes_out }
    end
    return reply(200, { sessions = array(list) })
  end
  local id = path:match("^/admin/sessions/(%x+)/kill$")
  local raw_vm = path:match("^/admin/vms/([^/]+)/kill$")
  if not id and not raw_vm then return reply(404, { error = "no such admin route" }) end
  if not method_is("POST") then return not_allowed("POST") end
  if id then
    if not sessions.kill(id, who) then
      return reply(404, { error = "no such session", kind = "not_found" })
    end
    log(ngx.NOTICE, "ctvnc: session ", id, " killed by ", who)
    return reply(200, { killed = { id } })
  end
  local vm_id = unpercent(raw_vm)
  local ids = sessions.kill_vm(vm_id, who)
  log(ngx.NOTICE, "ctvnc: ", #ids, " session(s) of ", vm_id, " killed by ", who)
  return reply(200, { killed = array(ids), vm_id = vm_id })
end

_M.address_set, _M.address_allowed = sessions.address_set, sessions.address_allowed

--- GET /metrics: the Prometheus text format, every name ctvnc_*; from
-- loopback and metrics_allow only.
function _M.metrics()
  ngx.ctx.ctvnc_route = "metrics"
  if not _M.address_allowed(conf.metrics_allow, ngx.var.remote_addr) then
    return reply(403, { error = "denied", kind = "denied" })
  end
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD") end
  ngx.status = 200
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(sessions.prometheus())
  return finish(200)
end

local ROUTES = {
  { "^/console/batch$", "batch" }, { "^/console/[^/]*/url$", "url" },
  { "^/console/[^/]*/ticket$", "ticket" }, { "^/console/[^/]*/ws$", "ws" },
  { "^/console/[^/]*$", "page" }, { "^/admin/", "admin" }, { "^/metrics$", "metrics" },
  { "^/novnc/", "novnc" }, { "^/health$", "health" },
}
local KIND_OF = { [400] = "invalid", [401] = "unauthorized", [403] = "denied",
  [404] = "not_found", [405] = "method", [413] = "too_large", [429] = "busy", [502] = "http",
  [504] = "timeout" }

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
  local status = ngx.status
  local kind = ngx.ctx.ctvnc_kind
  if not kind then
    if status < 400 then kind = "ok" else kind = KIND_OF[status] or tostring(status) end
  end
  sessions.count("ctvnc_requests_total", { route = route, result = kind })
end

--- error_page 429 of the JSON routes (limit_req).
function _M.busy()
  return reply(429, { error = REASON.busy, kind = "busy" })
end

--- The request body, also when nginx buffered it to a file.
local function body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return nil end
  local f = io.open(file, "rb")
  if not f then return nil end
  data = f:read("*a")
  f:close()
  return data
end

--- POST /console/batch with a JSON array of VM ids (at most batch_max):
-- the results of client:batch, each VM authorized on its own.
function _M.batch()
  if not method_is("POST") then return not_allowed("POST") end
  local ids = cjson.decode(body() or "")
  if type(ids) ~= "table" or #ids == 0 then
    return reply(400, { error = "the body must be a JSON array of 1 or more VM ids" })
  end
  if #ids > conf.batch_max then
    return reply(413, { error = ("at most %d VM ids per batch, got %d"):format(conf.batch_max,
                          #ids),
                        batch_max = conf.batch_max })
  end
  if not id_budget(#ids) then
    return reply(429, { error = ("at most %d VM ids per second per client"):format(conf.id_rate) })
  end
  local results, allowed_ids, where = {}, {}, {}
  for i, id in ipairs(ids) do
    local allowed, view_only = false, false
    if type(id) == "string" and id ~= "" then
      local _
      allowed, _, view_only = authorize(id)
    end
    if allowed and not view_only then   -- view-only grants never get target URLs
      allowed_ids[#allowed_ids + 1] = id
      where[#allowed_ids] = i
    else
      results[i] = { vm_id = id, ok = false, kind = "denied", message = "denied" }
    end
  end
  resty.deadline(conf.tower_timeout)
  for j, r in ipairs((client:batch(allowed_ids, url_opts()))) do
    results[where[j]] = { vm_id = r.vm_id, ok = r.ok, url = r.url, mode = r.mode, kind = r.kind,
                          message = r.ok and nil or REASON[r.kind] }
  end
  return reply(200, results)
end

_M.STATUS, _M.REASON, _M.SENTENCE = STATUS, REASON, SENTENCE
return _M
