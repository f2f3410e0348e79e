-- luacheck: std max+ngx_lua
--- ctvnc.gateway.respond: what the gateway answers. One table (KINDS) from
-- a kind to its HTTP status, the title and sentence of its HTML page, the
-- short reason of its JSON body, and for the ways a session ends the last
-- word sent to the page (close) and the audit trail's words (ended).
local cjson = require "cjson.safe"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"

local ngx = ngx
local type, tostring, tonumber, pairs, pcall, select = type, tostring, tonumber, pairs, pcall,
  select
local getmetatable, setmetatable, concat = getmetatable, setmetatable, table.concat
local io_open = io.open

local _M = {}

local UNREACHABLE = "CloudTower unreachable"

-- status: HTTP status; title, sentence: the HTML page (the kinds the page
-- routes answer: the page itself asks CloudTower nothing); reason: the JSON
-- body's error; canonical: the kind a bare status is counted as in
-- /metrics; close, ended: a session's end (the page's last word, the audit).
local KINDS = {
  invalid = { status = 400, title = "Bad request", reason = "bad VM id or option",
    canonical = true,
    sentence = "This console address is not valid. Check the link you followed." },
  unauthorized = { status = 401, title = "Sign-in needed", reason = "denied", canonical = true },
  denied = { status = 403, title = "Access denied", reason = "denied", canonical = true,
    sentence = "You may not open this console. The link may have expired or been used "
      .. "already: ask for a new one." },
  locked = { status = 403, title = "Console locked", reason = "locked by an administrator",
    sentence = "An administrator closed your console of this VM and locked it for a while. "
      .. "Ask them, or try again later." },
  not_found = { status = 404, title = "No such VM", reason = "no such VM", canonical = true },
  method = { status = 405, title = "Method not allowed", reason = "method not allowed",
    canonical = true, sentence = "This address only opens consoles." },
  batch_max = { status = 413, title = "Too many VM ids", reason = "too many VM ids",
    canonical = true },
  busy = { status = 429, title = "Too many requests", reason = "too many requests",
    canonical = true,
    sentence = "Too many consoles were asked for at once. Wait a moment and try again." },
  in_use = { status = 429, title = "Console in use", reason = "the console is in use" },
  timeout = { status = 504, title = "CloudTower timed out", reason = "CloudTower timed out",
    canonical = true },
  no_route = { status = 404, title = "Not found", reason = "no such route",
    sentence = "There is nothing at this address." },
  misdirected = { status = 421, title = "Wrong host name", reason = "not served here",
    canonical = true, sentence = "This gateway does not answer for that host name." },
  tls = { status = 502, title = UNREACHABLE, reason = "TLS with CloudTower failed" },
  http = { status = 502, title = UNREACHABLE, reason = "CloudTower answered with an error",
    canonical = true },
  auth = { status = 502, title = UNREACHABLE,
    reason = "CloudTower refused the gateway's credentials" },
  graphql = { status = 502, title = UNREACHABLE, reason = "CloudTower reported an error" },
  decode = { status = 502, title = UNREACHABLE, reason = "CloudTower's answer was unusable" },
  schema = { status = 502, title = UNREACHABLE, reason = "CloudTower's answer was unusable" },
  connect = { status = 502, title = UNREACHABLE, reason = "CloudTower is unreachable" },
  too_large = { status = 502, title = UNREACHABLE,
    reason = "CloudTower's answer was too large" },
  system = { status = 503, title = "Service unavailable", reason = "the gateway cannot do "
    .. "this right now" },
  store = { status = 503, title = "Service unavailable",
    reason = "the console service cannot check access right now; try again",
    sentence = "The console service cannot check access right now; try again." },
  unrecordable = { status = 503, title = "Recording unavailable",
    reason = "the session cannot be recorded",
    sentence = "This console must be recorded, and the gateway cannot write its recording "
      .. "right now. Please tell your administrator." },
  full = { status = 503, title = "The gateway is full", reason = "the gateway is full",
    sentence = "The gateway is full: it holds as many consoles as it may. Try again in a few "
      .. "minutes, or tell your administrator." },
  novnc = { status = 502, title = "Console unavailable", reason = "noVNC is missing",
    sentence = "The console viewer is missing on this gateway. Please tell your "
      .. "administrator." },
  -- how a session ends
  max_session = { close = "the console's time limit of %d s is reached", ended = "time limit" },
  idle = { close = "closed after %d s without input", ended = "idle timeout" },
  handshake = { close = "the console did not start within %d s", ended = "handshake timeout" },
  killed = { close = "closed by an administrator", ended = "killed" },
  shutdown = { close = "the gateway is restarting", ended = "gateway shutdown" },
  browser = { ended = "the browser closed" },
  target = { ended = "the target closed" },
  protocol = { ended = "view-only violation" },
  error = { ended = "error" },
}
_M.KINDS = KINDS

local KIND_OF = {}   -- status -> the kind counted for it
for kind, k in pairs(KINDS) do
  if k.canonical then KIND_OF[k.status] = kind end
end

--- The kind /metrics counts an answer of `status` as, when no kind was set.
function _M.kind_of(status)
  if status < 400 then return "ok" end
  return KIND_OF[status] or tostring(status)
end

--- The HTTP status of a kind (502 for a kind of CloudTower's not listed).
function _M.status(kind)
  return KINDS[kind] and KINDS[kind].status or 502
end

--- The JSON body's error words for a kind.
function _M.reason(kind)
  return KINDS[kind] and KINDS[kind].reason or "failed"
end

--- The file `name` beside this module (the templates the rock installs).
function _M.template(name)
  local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local f = assert(io_open(dir .. "/" .. name, "r"), "ctvnc: the template " .. name
    .. " is missing beside ctvnc/gateway/respond.lua")
  local text = f:read("*a")
  f:close()
  return text
end
local ERROR_PAGE = _M.template("error.html")

function _M.html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end
local html_escape = _M.html_escape

--- Headers of every answer the gateway writes.
function _M.common_headers(html)
  local h = ngx.header
  local ancestors = state.conf.frame_ancestors
  h["Cache-Control"] = "no-store"
  h["X-Content-Type-Options"] = "nosniff"
  h["Referrer-Policy"] = "no-referrer"
  h["Content-Security-Policy"] = "frame-ancestors " .. ancestors
  if html then h["X-Frame-Options"] = ancestors == "'self'" and "SAMEORIGIN" or nil end
end
local common_headers = _M.common_headers

function _M.finish(status)
  ngx.eof()
  -- ngx.exit refuses while a subrequest is pending: ctvnc.resty stops
  -- waiting for a hostile endless answer, nginx finishes it later.
  pcall(ngx.exit, status)
end
local finish = _M.finish

local ARRAY = {}   -- the metatable of tables that are JSON arrays even when empty

--- Marks t as a JSON array, so that an empty one is [] (lua-cjson 2.1.0
-- writes every empty table as {}).
function _M.array(t)
  return setmetatable(t, ARRAY)
end

--- JSON text of v: a table is an array when marked or when t[1] is set.
local function json(v)
  if type(v) ~= "table" then return cjson.encode(v) end
  local parts = {}
  if getmetatable(v) == ARRAY or v[1] ~= nil then
    for i = 1, #v do parts[i] = json(v[i]) end
    return "[" .. concat(parts, ",") .. "]"
  end
  for k, x in pairs(v) do parts[#parts + 1] = cjson.encode(tostring(k)) .. ":" .. json(x) end
  return "{" .. concat(parts, ",") .. "}"
end
_M.json = json

--- A JSON answer.
function _M.reply(status, body)
  ngx.ctx.ctvnc_kind = type(body) == "table" and body.kind or nil
  ngx.status = status
  common_headers(false)
  ngx.header["Content-Type"] = "application/json"
  if ngx.req.get_method() ~= "HEAD" then ngx.say(json(body)) end
  return finish(status)
end
local reply = _M.reply

--- An HTML error page: the status of `kind`, its title and a sentence.
function _M.error_page(status, kind, vm_id, sentence)
  ngx.status = status
  common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  if ngx.req.get_method() ~= "HEAD" then
    local k = KINDS[kind] or {}
    local values = {
      TITLE = k.status == status and k.title or (KINDS[KIND_OF[status]] or {}).title or "Error",
      STATUS = tostring(status),
      SENTENCE = html_escape(sentence or k.sentence or "The console cannot be opened."),
      VM = vm_id and vm_id ~= "" and (" · VM " .. html_escape(vm_id)) or "",
    }
    ngx.print((ERROR_PAGE:gsub("@(%u+)@", values)))
  end
  return finish(status)
end
local error_page = _M.error_page

--- content_by_lua of nginx's error_page location: an error nginx itself
-- found (a bad request, an unknown path, a wrong Host, a limit) as the
-- gateway's HTML page, with its headers.
function _M.nginx_error()
  local status = tonumber(ngx.var.status) or 500
  local kind = status == 404 and "no_route" or _M.kind_of(status)
  ngx.ctx.ctvnc_kind = kind
  return error_page(status, kind)
end

--- A failure of kind (from ctvnc or the gateway): logged, then answered
-- as JSON. ctvnc's messages hold no secrets. failed: the same, logged,
-- as status and body for the caller to answer.
function _M.failed(vm_id, msg, kind)
  log(ngx.WARN, "ctvnc: ", msg, " (", kind, ")")
  return _M.status(kind), { error = _M.reason(kind), kind = kind, vm_id = vm_id }
end

function _M.fail(vm_id, msg, kind)
  return reply(_M.failed(vm_id, msg, kind))
end

--- A refusal record of ctvnc.gateway.auth ({ status, message, kind }) as
-- status and JSON body (a 401's WWW-Authenticate header set).
function _M.refused(vm_id, refusal)
  local status = refusal.status or 403
  if status == 401 then ngx.header["WWW-Authenticate"] = "Bearer" end
  return status, { error = "denied", kind = refusal.kind, reason = refusal.message,
                   vm_id = vm_id }
end

--- A refusal record answered (html: as the error page).
function _M.deny(vm_id, refusal, html)
  local status, body = _M.refused(vm_id, refusal)
  if html then return error_page(status, "denied", vm_id) end
  return reply(status, body)
end

function _M.not_allowed(allow, html)
  ngx.header["Allow"] = allow
  if html then return error_page(405, "method") end
  return reply(405, { error = "method not allowed", kind = "method", allow = allow })
end

--- Is the request's method one of these?
function _M.method_is(...)
  local m = ngx.req.get_method()
  for i = 1, select("#", ...) do
    if m == select(i, ...) then return true end
  end
  return false
end


return _M
