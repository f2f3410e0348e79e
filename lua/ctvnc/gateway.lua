--- ctvnc.gateway: a console gateway for OpenResty (ngx_lua), built on ctvnc.
-- examples/openresty/nginx.conf is the reference configuration; an
-- operator's own nginx.conf can call the same handlers from its locations.
--
--   GET|HEAD /console/<vm>/url     -> {"url": ..., "mode": ...}       (X-API-Key)
--   POST     /console/<vm>/ticket  -> {"ticket", "url", "expires_in"} (X-API-Key)
--   GET|HEAD /console/<vm>?ticket= -> 303 to /console/<vm>, the ticket in a cookie
--   GET|HEAD /console/<vm>         -> noVNC's full page               (cookie ticket or X-API-Key)
--   GET      /console/<vm>/ws      -> the websocket, carried to the target ctvnc chose
--                                     (cookie ticket, used up; or X-API-Key)
--   POST     /console/batch        -> client:batch's results          (X-API-Key)
--
-- Every route first passes the operator's authorize(vm_id, ngx) hook (or a
-- ticket it minted); no hook, no access. VM ids are read from the raw
-- request URI and decoded exactly once.
local ctvnc = require "ctvnc"
local resty = require "ctvnc.resty"
local tickets = require "ctvnc.ticket"
local cjson = require "cjson.safe"

local ngx = ngx
local type, tostring, tonumber, ipairs, pcall, select = type, tostring, tonumber, ipairs, pcall,
  select
local concat, floor = table.concat, math.floor

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
  [405] = "Method not allowed", [429] = "Too many requests",
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
  local msg = concat({ ... }, "", 1, select("#", ...))
  local ok = ngx.timer.at(0, log_now, level, msg)
  if not ok then ngx.log(level, msg) end  -- no timer left: still no query in msg
end
_M.log = log

--- The shipped authorize hook: a file of "<api key> <vm id>[,<vm id>...]"
-- lines ("*" allows every VM; "#" starts a comment). The key comes in the
-- X-API-Key header, never in a URL (browsers use tickets). The user named
-- in tickets and logs is "key#<line number>", never the key.
function _M.key_file(path)
  local keys = {}
  local f = assert(io.open(path, "r"), "cannot read the key file " .. path)
  local n = 0
  for line in f:lines() do
    n = n + 1
    local key, vms = line:match("^%s*([^#%s]+)%s+(%S+)")
    if key then
      local allowed = { [" user"] = "key#" .. n }
      for vm in vms:gmatch("[^,]+") do allowed[vm] = true end
      keys[key] = allowed
    end
  end
  f:close()
  return function(vm_id, ngx_)
    local key = ngx_.req.get_headers()["x-api-key"]
    if type(key) ~= "string" then return false end
    local allowed = keys[key]
    if allowed ~= nil and (allowed["*"] or allowed[vm_id]) == true then
      return true, allowed[" user"]
    end
    return false
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
-- what nginx.conf does, for the start-up warning), novnc_dir, novnc_url }
function _M.configure(c)
  conf = c
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
local function error_page(status, kind, vm_id)
  ngx.status = status
  common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  if ngx.req.get_method() ~= "HEAD" then
    local values = {
      TITLE = TITLE[status] or "Error", STATUS = tostring(status),
      SENTENCE = html_escape(SENTENCE[kind] or SENTENCE_TOWER),
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
local function vm_of(suffix)
  local path = ngx.var.request_uri:match("^[^?#]*")
  local prefix = conf.prefix
  if path:sub(1, #prefix) ~= prefix then return nil end
  local rest = path:sub(#prefix + 1)
  local raw = rest:match("^([^/]*)" .. suffix .. "$")
  if not raw then return nil end
  -- %XX only: in a path "+" is a plus (ngx.unescape_uri would make it a space)
  local vm_id = raw:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  if vm_id:find("/", 1, true) or vm_id == "." or vm_id == ".." then return nil end
  return vm_id
end
_M.vm_of = vm_of

--- The operator's hook: allowed, user. No hook, no access.
local function authorize(vm_id)
  local hook = conf and conf.authorize
  if type(hook) ~= "function" then return false end
  local ok, yes, user = pcall(hook, vm_id, ngx)
  if not ok then log(ngx.ERR, "ctvnc: authorize hook failed: ", tostring(yes)) end
  if ok and yes == true then return true, user end
  return false
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
  local info, msg, kind = client:vnc(vm_id)
  if info and ttl > 0 then dict:set(vm_id, cjson.encode(info), ttl) end
  return info, msg, kind
end

--- The URL ctvnc chooses for vm_id: url, mode, info | nil, message, kind.
local function choose(vm_id)
  if vm_id == "" then return nil, "the VM id is empty", "invalid" end
  resty.deadline(conf.tower_timeout)
  local info, msg, kind = credentials(vm_id)
  if not info then return nil, msg, kind end
  local opts = { scheme = conf.scheme, port = conf.port, mode = conf.mode or "auto",
                 probe = shared_probe, probe_timeout = conf.probe_timeout,
                 probe_ttl = conf.probe_ttl }
  local url, mode
  url, mode, kind = client:console_url_for(info, opts)
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
  if not vm_id then return fail(nil, "the path is not a console URL", "invalid") end
  if not authorize(vm_id) then return reply(403, { error = "denied", vm_id = vm_id }) end
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
  local ok, user = authorize(vm_id)
  if not ok then return reply(403, { error = "denied", vm_id = vm_id }) end
  local t, ttl = ticket.mint(vm_id, user)
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
  if not ((t and ticket.check(t, vm_id)) or (not t and authorize(vm_id))) then
    return error_page(403, "denied", vm_id)
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
-- the key or ticket, then sets $ctvnc_target and $ctvnc_ssl_name and hands
-- the request to the named location of the target's hop
-- (@ctvnc_ws_cluster or @ctvnc_ws_tower).
function _M.ws(vm_id)
  if not method_is("GET") then return not_allowed("GET") end
  vm_id = vm_id or vm_of("/ws")
  if not vm_id or vm_id == "" then return fail(nil, "the path is not a console URL", "invalid") end
  local upgrade = ngx.var.http_upgrade
  if not upgrade or upgrade:lower() ~= "websocket" then
    return reply(400, { error = "a websocket upgrade is expected", vm_id = vm_id })
  end
  if not origin_ok() then
    log(ngx.WARN, "ctvnc: websocket for ", vm_id, " from a foreign origin refused")
    return reply(403, { error = "foreign origin", vm_id = vm_id })
  end
  local t = cookie_ticket()
  local key = ngx.var.http_x_api_key
  if key and key ~= "" then
    if not authorize(vm_id) then return reply(403, { error = "denied", vm_id = vm_id }) end
  elseif t then
    local doc, why = ticket.consume(t, vm_id)
    if not doc then
      log(ngx.WARN, "ctvnc: websocket ticket for ", vm_id, " refused: ", why)
      return reply(403, { error = "denied", vm_id = vm_id })
    end
    ngx.var.ctvnc_renew = doc.u or ""   -- a new ticket rides on the 101
  else
    return reply(403, { error = "denied", vm_id = vm_id })
  end
  local url, mode, info = choose(vm_id)
  if not url then return fail(vm_id, mode, info) end
  -- variables outlive the internal redirects below (ngx.ctx does not)
  ngx.var.ctvnc_vm = vm_id
  -- nginx proxies websockets over http(s): wss -> https, ws -> http
  ngx.var.ctvnc_target = (url:gsub("^ws", "http", 1))
  if mode == "direct" then
    ngx.var.ctvnc_ssl_name = info.cluster_ip
    return ngx.exec(conf.ws_cluster or "@ctvnc_ws_cluster")
  end
  return ngx.exec(conf.ws_tower or "@ctvnc_ws_tower")
end

--- header_filter_by_lua of the websocket's named locations: a console
-- opened with a ticket gets a fresh one with its 101 (a cookie again, 60 s
-- at most), so noVNC's Connect button can connect again after a drop.
function _M.ws_header_filter()
  local user = ngx.var.ctvnc_renew
  if ngx.status ~= 101 or user == nil or user == "" then return end
  local vm_id = ngx.var.ctvnc_vm
  local t, ttl = ticket.mint(vm_id, user)
  ngx.header["Set-Cookie"] = ticket_cookie(t, ttl, vm_id)
end

--- error_page of the websocket's named locations (502, 504): the
-- failure in the error log with the target's scheme, host and path, never
-- its query (the console token) nor the request line (the named locations
-- log nginx's own upstream errors only at crit for that reason), and a
-- JSON answer with the kind: tls, connect, timeout or http.
function _M.ws_failed()
  local var = ngx.var
  local status = tonumber((var.upstream_status or ""):match("(%d+)%s*$") or "")
  if status ~= 504 then status = 502 end
  local connect = (var.upstream_connect_time or "-"):match("([^%s,]+)%s*$")
  local kind = "http"
  if status == 504 then
    kind = "timeout"
  elseif connect == "-" or connect == nil then
    local tls = (var.ctvnc_target or ""):find("^https:") ~= nil
    kind = tls and resty.takes_connections(var.upstream_addr) and "tls" or "connect"
  end
  local target = (var.ctvnc_target or ""):match("^[^?#]*")
  log(ngx.ERR, "ctvnc: websocket of ", tostring(var.ctvnc_vm), " to ", target, " failed: HTTP ",
    tostring(status), " (", kind, ")")
  ngx.header["X-Ctvnc-Error"] = kind
  return reply(status, { error = "the console's websocket could not be opened", kind = kind })
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
    if type(id) == "string" and id ~= "" and authorize(id) then
      allowed_ids[#allowed_ids + 1] = id
      where[#allowed_ids] = i
    else
      results[i] = { vm_id = id, ok = false, kind = "denied", message = "denied" }
    end
  end
  resty.deadline(conf.tower_timeout)
  local opts = { mode = conf.mode, scheme = conf.scheme, port = conf.port, probe = shared_probe }
  for j, r in ipairs((client:batch(allowed_ids, opts))) do
    results[where[j]] = { vm_id = r.vm_id, ok = r.ok, url = r.url, mode = r.mode, kind = r.kind,
                          message = r.ok and nil or REASON[r.kind] }
  end
  return reply(200, results)
end

_M.STATUS, _M.REASON, _M.SENTENCE = STATUS, REASON, SENTENCE
return _M
