-- luacheck: std max+ngx_lua
--- ctvnc.gateway.routes: the console routes.
--
--   GET|HEAD /console/<vm>/url     -> {"url", "mode": "gateway", "expires_in"}: the
--                                     console page's ticketed link (X-API-Key);
--                                     RAW_TARGET_URLS=on: the target's URL, mode
--   POST     /console/<vm>/ticket  -> {"ticket", "url", "expires_in"} (X-API-Key)
--   GET|HEAD /console/<vm>?ticket= -> 303 to /console/<vm>, the ticket in a cookie
--   GET|HEAD /console/<vm>         -> noVNC's full page, no CloudTower call
--                                     (cookie ticket or X-API-Key)
--   GET|HEAD /console/<vm>/about   -> {"vm_id", "name", "view_only"}: the
--                                     page's status line (cookie ticket)
--   GET      /console/<vm>/ws      -> access phase: the plan, handed to the relay
--   POST     /console/batch        -> a link (as /url) per VM          (X-API-Key)
--
-- VM ids are read from the raw request URI and decoded exactly once.
local cjson = require "cjson.safe"
local resty = require "ctvnc.resty"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"
local auth = require "ctvnc.gateway.auth"
local cookie = require "ctvnc.gateway.cookie"
local tower = require "ctvnc.gateway.tower"
local page = require "ctvnc.gateway.page"
local relay = require "ctvnc.gateway.relay"
local metrics = require "ctvnc.gateway.metrics"
local audit = require "ctvnc.gateway.audit"
local recorder = require "ctvnc.gateway.recorder"
local watch = require "ctvnc.gateway.watch"

local ngx = ngx
local type, tostring, tonumber, ipairs = type, tostring, tonumber, ipairs
local floor, char = math.floor, string.char
local reply, fail, deny, error_page = respond.reply, respond.fail, respond.deny,
  respond.error_page
local not_allowed, method_is = respond.not_allowed, respond.method_is

local _M = {}

--- %XX decoded, once; in a path "+" is a plus (ngx.unescape_uri would make
-- it a space)
function _M.unpercent(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- The VM id of this request: the path segment after the prefix, taken
-- from the raw request URI and decoded exactly once (nginx's own $uri and
-- location captures are decoded already). nil when the raw path does not
-- have the expected shape (a dot segment, an encoded slash).
function _M.vm_of(suffix)
  local path = ngx.var.request_uri:match("^[^?#]*")
  local prefix = state.conf.prefix
  if path:sub(1, #prefix) ~= prefix then return nil end
  local raw = path:sub(#prefix + 1):match("^([^/]*)" .. suffix .. "$")
  if not raw then return nil end
  local vm_id = _M.unpercent(raw)
  if vm_id:find("/", 1, true) or vm_id == "." or vm_id == ".." then return nil end
  return vm_id
end
local vm_of = _M.vm_of

--- Counts n more against the budget `key` of `rate` a second, of which
-- `span` seconds' worth may be spent at once (GCRA: the budget refills
-- continuously). Workers share it through the ctvnc_rate shared dict
-- (none: refused, fail closed); two of them deciding at the same instant
-- may each let one request through.
function _M.budget(key, n, rate, span)
  if rate <= 0 then return true end
  local dict = ngx.shared.ctvnc_rate
  if not dict then return false end
  local t = ngx.now()
  local tat = dict:get(key) or t
  if tat < t then tat = t end
  local new = tat + n / rate
  if new - t > span then return false end
  dict:set(key, new, floor(new - t) + 2)
  return true
end

--- Counts n more VM ids against this client's budget of id_rate per
-- second (one second's worth at most at once).
local function id_budget(n)
  local key = "ids:" .. (ngx.var.binary_remote_addr or ngx.var.remote_addr or "?")
  return _M.budget(key, n, state.conf.id_rate, 1)
end

--- A refusal of the websocket, in the relay's content phase (which closes
-- a browser's with the reason: relay.refuse).
local function ws_refuse(status, body)
  if ngx.var.http_origin == nil then return reply(status, body) end
  return relay.hand_over({ refuse = { status = status, body = body }, hop = "tower" })
end

--- One more console request of an authenticated user (user_rate): true,
-- or the 429 answered: `how` "html" a page, "ws" the websocket's refusal
-- (ws_refuse), else JSON.
local function user_budget(user, vm_id, how)
  if user == nil or user == "" or _M.budget("user:" .. tostring(user), 1, state.conf.user_rate, 1)
  then
    return true
  end
  if how == "html" then return error_page(429, "busy", vm_id) end
  local body = { error = ("at most %d console requests per second per user")
    :format(state.conf.user_rate), kind = "busy", vm_id = vm_id }
  if how == "ws" then return ws_refuse(429, body) end
  return reply(429, body)
end

local function not_a_console()
  return fail(nil, "the path is not a console URL", "invalid")
end

--- Why user may not open vm_id now: "locked" (an admin's kill), "store"
-- (the store cannot tell: fail closed) or nil.
local function lock_kind(user, vm_id)
  local lock, err = state.book:locked(tostring(user or ""), vm_id)
  if lock == false then return nil end
  if lock == nil then
    log(ngx.ERR, "ctvnc: the lock of ", vm_id, " cannot be read: ", tostring(err), " (store)")
    return "store"
  end
  return "locked"
end
_M.lock_kind = lock_kind

--- A ticket of a new family (ticket_lifetime, at most max_session) from
-- an authorize hook's grant, and the console page's link with it: ticket,
-- link, expires_in | nil, message, kind ("locked", "store", "system").
local function mint_link(vm_id, user, view, grant)
  local conf = state.conf
  local why = lock_kind(user, vm_id)
  if why then return nil, respond.reason(why), why end
  local life = conf.ticket_lifetime
  if conf.max_session > 0 and conf.max_session < life then life = conf.max_session end
  local t, ttl, kind = state.ticket.mint(vm_id, user, view, { ends = floor(ngx.now()) + life,
    ref = grant.ref, expires = grant.expires, record = grant.record, first = true })
  if not t then return nil, ttl, kind end
  return t, cookie.page_path(vm_id) .. "?ticket=" .. t, ttl
end

--- A refusal of kind for vm_id (locked, store, system, expired) as JSON.
local function refuse(vm_id, msg, kind)
  if kind == "locked" then
    return reply(respond.status(kind), { error = msg, kind = kind, vm_id = vm_id })
  end
  return fail(vm_id, msg, kind)
end
_M.refuse = refuse

--- Does the grant a ticket was minted from still hold for vm_id (the
-- key still in the key file; the JWT's expiry is the ticket's own bound)?
-- true, view_only | false. A ticket of a hook with no reference holds.
local function grant_holds(doc, vm_id)
  if doc.g == nil then return true, false end
  return auth.still(doc.g, vm_id)
end

--- GET|HEAD /console/<vm>/url (X-API-Key). HEAD checks access only. The
-- console page's ticketed link; the target's URL only with raw_target_urls.
function _M.url(vm_id)
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD") end
  vm_id = vm_id or vm_of("/url")
  if not vm_id or vm_id == "" then return not_a_console() end
  local allowed, who, view_only, grant = auth.authorize(vm_id)
  if not allowed then return deny(vm_id, who) end
  if not user_budget(who, vm_id) then return end
  local raw = state.conf.raw_target_urls == "on"
  -- a view-only grant never gets the target's URL: it connects straight to
  -- the VM, past the relay that enforces view-only
  if raw and view_only then
    return deny(vm_id, auth.refusal(403, "view-only: open the console page"))
  end
  if ngx.req.get_method() == "HEAD" then return reply(200, {}) end
  if not raw then
    local t, link, ttl = mint_link(vm_id, who, view_only, grant)
    if not t then return refuse(vm_id, link, ttl) end
    return reply(200, { url = link, mode = "gateway", expires_in = ttl })
  end
  local url, mode, kind = tower.choose(vm_id)
  if not url then return fail(vm_id, mode, kind) end
  return reply(200, { url = url, mode = mode })
end

--- POST /console/<vm>/ticket (X-API-Key): a ticket for the browser.
function _M.ticket(vm_id)
  if not method_is("POST") then return not_allowed("POST") end
  vm_id = vm_id or vm_of("/ticket")
  if not vm_id or vm_id == "" then return not_a_console() end
  local ok, user, view, grant = auth.authorize(vm_id)
  if not ok then return deny(vm_id, user) end
  if not user_budget(user, vm_id) then return end
  local t, link, ttl = mint_link(vm_id, user, view, grant)
  if not t then return refuse(vm_id, link, ttl) end
  return reply(200, { ticket = t, expires_in = ttl, url = link })
end

--- The page of a refused ticket: 403, or 503 when the store cannot tell
-- (fail closed: logged).
local function refuse_ticket(vm_id, kind)
  if kind ~= "store" then return error_page(403, "denied", vm_id) end
  log(ngx.ERR, "ctvnc: the console of ", vm_id, " refused: the session store failed (store)")
  return error_page(503, "store", vm_id)
end

--- Who opens the page of vm_id: its cookie ticket (checked, not used up:
-- the websocket uses it; its grant still holding) or the authorize hook:
-- true, user, view_only, record | false, refusal[, "store"].
local function page_access(vm_id)
  local t = cookie.given()
  if not t then
    local ok, who, view, grant = auth.authorize(vm_id)
    if not ok then return false, who end
    return true, who, view, grant.record
  end
  local doc, _, kind = state.ticket.check(t, vm_id)
  local holds, still_view = false, false
  if doc then holds, still_view = grant_holds(doc, vm_id) end
  if not holds then
    -- kind "store": the store cannot tell (the page says so, fail closed)
    return false, auth.refusal(403, "the console link has expired or was used already"), kind
  end
  return true, doc.u, doc.r == 1 or still_view, doc.c == 1
end

--- GET|HEAD /console/<vm>/about (the page's cookie ticket or the
-- authorize hook): {"vm_id", "name", "view_only"} for the page's status
-- line, the name from CloudTower (one get-vms call; HEAD asks nothing).
function _M.about(vm_id)
  if not method_is("GET", "HEAD") then return not_allowed("GET, HEAD") end
  vm_id = vm_id or vm_of("/about")
  if not vm_id or vm_id == "" then return not_a_console() end
  local ok, who, view = page_access(vm_id)
  if not ok then return deny(vm_id, who) end
  if ngx.req.get_method() == "HEAD" then return reply(200, {}) end
  resty.deadline(state.conf.tower_timeout)
  local vms, msg, kind = state.client:find_vms({ id = vm_id }, { first = 1 })
  if not vms then return fail(vm_id, msg, kind) end
  if not vms[1] then return fail(vm_id, "find_vms: no such VM", "not_found") end
  return reply(200, { vm_id = vm_id, name = vms[1].name, view_only = view })
end

--- GET|HEAD /console/<vm>[?ticket=]: noVNC's page, or an error page. The
-- page asks CloudTower nothing: its websocket does.
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
    local doc, _, kind = state.ticket.check(given, vm_id)
    if not doc then return refuse_ticket(vm_id, kind) end
    ngx.header["Set-Cookie"] = cookie.ticket(given, floor(doc.e - ngx.now()), vm_id)
    ngx.header["Location"] = cookie.page_path(vm_id)
    ngx.status = 303
    respond.common_headers(true)
    return respond.finish(303)
  end
  local ok, user, view, record = page_access(vm_id)
  if not ok then
    if view == "store" then return refuse_ticket(vm_id, view) end
    return deny(vm_id, user, true)
  end
  -- a console that must be recorded, and cannot be, is told at once
  local recordable, why = recorder.can_open(record)
  if not recordable then
    log(ngx.ERR, "ctvnc: the console of ", vm_id, " cannot be recorded: ", why, " (unrecordable)")
    return error_page(503, "unrecordable", vm_id)
  end
  local locked = lock_kind(user, vm_id)
  if locked then return error_page(respond.status(locked), locked, vm_id) end
  if not user_budget(user, vm_id, "html") then return end
  -- a gateway or a console that is full is told at once
  local open = watch.node()
  if open >= state.conf.max_sessions then
    metrics.count("ctvnc_sessions_refused_total", { limit = "full" })
    audit.write("refused", { user = user, vm_id = vm_id, client = ngx.var.remote_addr,
      reason = "limit full" })
    log(ngx.ERR, "ctvnc: the console page of ", vm_id, " is refused: the gateway is full: ",
      open, " sessions open, max_sessions ", state.conf.max_sessions, " (full)")
    return error_page(503, "full", vm_id)
  end
  local fits, which, holder = state.book:fits(vm_id, tostring(user or ""), state.conf)
  if which == "store" then return refuse_ticket(vm_id, which) end
  if not fits then
    metrics.count("ctvnc_sessions_refused_total", { limit = which })
    audit.write("refused", { user = user, vm_id = vm_id, client = ngx.var.remote_addr,
      reason = "limit " .. which })
    return error_page(429, which == "vm" and "in_use" or "busy", vm_id,
      relay.in_use_sentence(which, holder))
  end
  return page.serve(vm_id, view)
end

--- access_by_lua of the websocket location: checks the method, Origin,
-- the handshake, the key, ticket or JWT, asks CloudTower for the target
-- and hands the plan to the relay of the target's hop.
function _M.ws(vm_id)
  if not method_is("GET") then return not_allowed("GET") end
  vm_id = vm_id or vm_of("/ws")
  if not vm_id or vm_id == "" then return not_a_console() end
  local upgrade = ngx.var.http_upgrade
  if not upgrade or upgrade:lower() ~= "websocket" then
    return reply(400, { error = "a websocket upgrade is expected", kind = "invalid",
                        vm_id = vm_id })
  end
  local wskey = ngx.var.http_sec_websocket_key
  if ngx.var.http_sec_websocket_version ~= "13" or not wskey
    or not wskey:match("^[%w+/]+=*$") or #wskey ~= 24 then
    return reply(400, { error = "a websocket handshake (version 13) is expected",
                        kind = "invalid", vm_id = vm_id })
  end
  if not auth.origin_ok() then
    log(ngx.WARN, "ctvnc: websocket for ", vm_id, " from a foreign origin refused")
    return reply(403, { error = "foreign origin", kind = "denied", vm_id = vm_id })
  end
  local t = cookie.given()
  local key = ngx.var.http_x_api_key
  local user, view, renew, record
  if (key and key ~= "") or not t then
    local ok, who, v, g = auth.authorize(vm_id)
    if not ok then return ws_refuse(respond.refused(vm_id, who)) end
    user, view, record = who, v, g.record
  else
    local doc, why, kind = state.ticket.consume(t, vm_id)
    if kind == "store" then return fail(vm_id, why, kind) end
    local holds, still_view = false, false
    if doc then holds, still_view = grant_holds(doc, vm_id) end
    if not holds then
      log(ngx.WARN, "ctvnc: websocket ticket for ", vm_id, " refused: ",
        doc and "its grant is gone" or why)
      return ws_refuse(403, { error = "denied", kind = "denied", vm_id = vm_id,
        reason = "the console link has expired or was used already" })
    end
    -- the renewal riding on the 101 is of the same family
    user, view, record = doc.u, doc.r == 1 or still_view, doc.c == 1
    renew = { ends = doc.f, ref = doc.g, expires = doc.x, record = record }
  end
  local locked = lock_kind(user, vm_id)
  if locked then return ws_refuse(respond.failed(vm_id, respond.reason(locked), locked)) end
  if not user_budget(user, vm_id, "ws") then return end
  local plan, msg, kind = tower.plan(vm_id, tostring(user or ""), view)
  if not plan then return ws_refuse(respond.failed(vm_id, msg, kind)) end
  plan.renew, plan.record = renew, record
  return relay.hand_over(plan)
end

--- error_page 429 of the JSON routes (limit_req); a browser's websocket
-- is closed with the reason (relay.refuse).
function _M.busy()
  local body = { error = respond.reason("busy"), kind = "busy" }
  if (ngx.var.http_upgrade or ""):lower() == "websocket" and auth.origin_ok() then
    return relay.refuse(429, body)
  end
  return reply(429, body)
end

--- The request body, also when nginx buffered it to a file.
local function body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return data end
  local file = ngx.req.get_body_file()
  if not file then return nil end
  local f = io.open(file, "rb")
  if not f then
    log(ngx.ERR, "ctvnc: the body nginx buffered cannot be read (client_body_temp_path)")
    return nil
  end
  data = f:read("*a")
  f:close()
  return data
end

--- POST /console/batch with a JSON array of VM ids (at most batch_max),
-- each VM authorized on its own: the console page's ticketed link of each
-- (as /url); with raw_target_urls, the results of client:batch.
function _M.batch()
  if not method_is("POST") then return not_allowed("POST") end
  local conf = state.conf
  local ids = cjson.decode(body() or "")
  if type(ids) ~= "table" or #ids == 0 then
    return reply(400, { error = "the body must be a JSON array of 1 or more VM ids",
                        kind = "invalid" })
  end
  if #ids > conf.batch_max then
    return reply(413, { error = ("at most %d VM ids per batch, got %d"):format(conf.batch_max,
                          #ids), batch_max = conf.batch_max, kind = "batch_max" })
  end
  if not id_budget(#ids) then
    return reply(429, { error = ("at most %d VM ids per second per client"):format(conf.id_rate),
                        kind = "busy" })
  end
  local raw = conf.raw_target_urls == "on"
  local results, allowed_ids, where = {}, {}, {}
  for i, id in ipairs(ids) do
    local allowed, user, view_only, grant = false, nil, false, nil
    if type(id) == "string" and id ~= "" then
      allowed, user, view_only, grant = auth.authorize(id)
    end
    if allowed and not raw then
      -- the console page's ticketed link, as /url gives it
      local t, link, ttl = mint_link(id, user, view_only, grant)
      results[i] = { vm_id = id, ok = t ~= nil, url = t and link, mode = t and "gateway",
        expires_in = t and ttl, kind = not t and ttl or nil,
        message = not t and respond.reason(ttl) or nil }
    elseif allowed and not view_only then   -- view-only grants never get target URLs
      allowed_ids[#allowed_ids + 1] = id
      where[#allowed_ids] = i
    else
      results[i] = { vm_id = id, ok = false, kind = "denied", message = "denied" }
    end
  end
  if #allowed_ids == 0 then return reply(200, results) end
  resty.deadline(conf.tower_timeout)
  for j, r in ipairs((state.client:batch(allowed_ids, state.url_options.cluster))) do
    local url, kind = r.url, r.kind
    if r.ok and r.mode == "proxy" then
      local _
      url, _, kind = tower.proxy_url(r.info)
    end
    results[where[j]] = { vm_id = r.vm_id, ok = url ~= nil, url = url, mode = url and r.mode,
                          kind = kind, message = url == nil and respond.reason(kind) or nil }
  end
  return reply(200, results)
end

return _M
