-- luacheck: std max+ngx_lua
--- ctvnc.gateway.relay: content_by_lua of the websocket's named locations.
-- It reads the plan the access phase left (ctvnc.gateway.routes.ws), takes
-- the session's slots (max_per_vm, max_per_user), connects to the target
-- (ctvnc.gateway.wsclient), answers the browser's upgrade, and relays
-- until one side closes, the time cap or idle timeout is reached, an admin
-- kills it, or a view-only session breaks its rules. Every way out
-- releases the slots and writes one audit line; every failure one
-- error.log line naming the VM, the kind and the target without its query.
-- A session is two light threads that wake on data only (one per side)
-- while its request waits on a semaphore; this worker's one timer
-- (ctvnc.gateway.watch) refreshes it, and ends it by waking that semaphore.
local core = require "ctvnc.core"
local cjson = require "cjson.safe"
local viewonly = require "ctvnc.viewonly"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"
local metrics = require "ctvnc.gateway.metrics"
local audit = require "ctvnc.gateway.audit"
local wsclient = require "ctvnc.gateway.wsclient"
local cookie = require "ctvnc.gateway.cookie"
local watch = require "ctvnc.gateway.watch"
local recorder = require "ctvnc.gateway.recorder"
local new_id = require("ctvnc.gateway.book").new_id
local semaphore = require "ngx.semaphore"

local ngx = ngx
local type, tostring, pairs, ipairs, pcall = type, tostring, pairs, ipairs, pcall
local floor = math.floor
local spawn, kill_thread = ngx.thread.spawn, ngx.thread.kill
local KINDS, reply = respond.KINDS, respond.reply

local _M = {}

--- The variable that carries the plan across ngx.exec (ngx.ctx does not).
_M.VAR = "ctvnc_plan"

--- Hands the plan to the relay of its hop's named location.
function _M.hand_over(plan)
  ngx.var[_M.VAR] = cjson.encode(plan)
  local conf = state.conf
  return ngx.exec(plan.hop == "cluster" and conf.ws_cluster or conf.ws_tower)
end

--- The target as a log line may name it: no query (the console token).
local function where(plan)
  local host = plan.host:find(":", 1, true) and "[" .. plan.host .. "]" or plan.host
  return ("%s://%s:%d%s"):format(plan.tls and "wss" or "ws", host, plan.port,
    plan.path:match("^[^?#]*"))
end
_M.where = where

--- The audit fields of a session (a refused one has no id and no start).
local function audit_fields(rec, extra)
  local f = { user = rec.user, vm_id = rec.vm_id, mode = rec.mode, view_only = rec.view_only,
    client = rec.client }
  if not extra.refused then f.session, f.start = rec.id, rec.start end
  for k, v in pairs(extra) do f[k] = v end
  f.refused = nil
  return f
end

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

--- A session refused by a limit: 429; or 503 when the store or the
-- system failed (fail closed).
local function refused(rec, which, holder)
  watch.leave(rec)
  metrics.count("ctvnc_sessions_refused_total", { limit = which })
  audit.write("refused", audit_fields(rec, { refused = true,
    reason = "limit " .. tostring(which) }))
  if which == "full" then
    log(ngx.ERR, "ctvnc: the session of ", tostring(rec.vm_id), " is refused: the gateway is ",
      "full: ", tostring(holder), " (full)")
    return _M.refuse(503, { error = KINDS.full.reason, kind = "full" })
  end
  if which == "store" or which == "system" then
    log(ngx.ERR, "ctvnc: the session of ", tostring(rec.vm_id), " cannot be recorded: ",
      tostring(holder), " (", which, ")")
    return _M.refuse(503, { error = respond.reason(which), kind = which })
  end
  local body = { error = _M.in_use_sentence(which, holder), kind = "busy", limit = which,
    vm_id = rec.vm_id }
  if type(holder) == "table" then
    body.in_use_by, body.since = holder.user, audit.iso(holder.start or 0)
  end
  return _M.refuse(429, body)
end

--- The browser's side: the gateway answers the upgrade itself (a ticketed
-- session's 101 carries the next ticket of its family, renew: its end and
-- grant, never later). The raw socket | nil, reason, message.
local function answer_upgrade(rec, protocol, renew)
  ngx.status = 101
  respond.common_headers(false)
  ngx.header["Upgrade"] = "websocket"
  ngx.header["Sec-WebSocket-Accept"] = wsclient.accept(ngx.var.http_sec_websocket_key)
  if protocol then ngx.header["Sec-WebSocket-Protocol"] = protocol end
  if type(renew) == "table" and rec.user ~= "" then
    -- no random bytes, or the family's end: no fresh ticket (the page asks
    -- for a new link)
    local t, ttl = state.ticket.mint(rec.vm_id, rec.user, rec.view_only, renew)
    if t then ngx.header["Set-Cookie"] = cookie.ticket(t, ttl, rec.vm_id) end
  end
  local ok, err = ngx.send_headers()
  if ok then ok, err = ngx.flush(true) end
  if not ok then return nil, "browser", "the 101 could not be sent: " .. tostring(err) end
  local down
  down, err = ngx.req.socket(true)
  if not down then return nil, "error", "no raw socket: " .. tostring(err) end
  return down
end

--- A refused websocket: the status and JSON body; for a browser's (it
-- sends an Origin, which routes.ws let through: the gateway's own or an
-- allowed one) the upgrade answered and closed at once, code 4000 + status
-- and the reason "<kind>: <words>", which the console page shows: a page
-- cannot read the status of a refused handshake.
function _M.refuse(status, body)
  if ngx.var.http_origin == nil then return reply(status, body) end
  ngx.ctx.ctvnc_kind = body.kind
  local down = answer_upgrade({}, nil, false)
  if not down then return end
  down:send(viewonly.close_frame(4000 + status,
    tostring(body.kind) .. ": " .. tostring(body.reason or body.error)))
  down:settimeout(1000)
  down:receiveany(1024)    -- the browser's answer to the close frame
end

-- Seconds a pump's read waits before it looks again: the relay's loops
-- wake on data (and on the watcher's semaphore), not on a clock.
local READ_WAIT = 86400 * 1000
local RECEIVE = 65536

--- Marks how the session ended (the first word stands) and wakes its relay.
local function over(s, reason, msg)
  if not s.result then s.result = { reason, msg } end
  s.sema:post(1)
  return reason, msg
end

--- The last word to the page: a close frame (retried while the other
-- pump is writing to the browser).
local function last_word(s, frame)
  wsclient.send_between(s.down, frame)
end

--- Reads `sock` of session s until `handle(s, data)` returns how the
-- session ended (and why), or the socket fails: then `ended(s, err)` says.
local function pump(s, sock, handle, ended)
  while true do
    local data, e = sock:receiveany(RECEIVE)
    if data then
      local what, why = handle(s, data)
      if what then return what, why end
    elseif e ~= "timeout" then
      return ended(s, e)
    end
  end
end

--- The browser's messages, through the filter, to the target.
local function browser_data(s, data)
  s.bytes_in = s.bytes_in + #data
  local out, inputs, _, close = viewonly.from_browser(s.filter, data)
  if not out then
    s.ending = s.ending or "protocol"
    last_word(s, close)
    -- a moment for the browser's answer to the close frame
    s.down:settimeout(1000)
    for _ = 1, 64 do
      if not s.down:receiveany(4096) then break end
    end
    return over(s, "protocol", "view-only: " .. tostring(inputs))
  end
  if inputs > 0 then s.last_input = ngx.now() end
  out = recorder.from_browser(s.recording, out)
  if #out > 0 and not s.ending then
    local sent, e = s.up:send(out)
    if not sent then return over(s, "target", "target send: " .. tostring(e)) end
  end
end

local function browser_ended(s, e)
  s.browser_done = true
  return over(s, "browser", "browser " .. tostring(e))
end

--- The target's stream, watched by the filter, to the browser.
local function target_data(s, data)
  local fine, msg = s.filter:from_target(data)
  if not fine then
    s.ending = s.ending or "protocol"
    s.down:send(viewonly.close_frame(viewonly.CLOSE_POLICY, "view-only: session closed"))
    return over(s, "protocol", "view-only: " .. tostring(msg))
  end
  if s.ending then return over(s, s.ending) end
  local sent, e = s.down:send(data)
  if not sent then return over(s, "browser", "browser send: " .. tostring(e)) end
  s.bytes_out = s.bytes_out + #data
  recorder.chunk(s.recording, data, s.up)
end

local function target_ended(s, e)
  return over(s, "target", "target " .. tostring(e))
end

--- The watcher ended session s (killed, max_session, idle, shutdown): the
-- page's last word, a moment for the browser's answer. reason, message.
local function say_why(s)
  local conf, why = state.conf, s.ending
  local text = KINDS[why].close:format(why == "idle" and conf.idle_timeout
    or why == "handshake" and conf.handshake_timeout or conf.max_session)
  last_word(s, viewonly.close_frame(viewonly.CLOSE_GOING_AWAY, text))
  local deadline = ngx.now() + 1
  while not s.browser_done and ngx.now() < deadline do s.sema:wait(deadline - ngx.now()) end
  return why, text
end

--- Did the watcher end session s? (Its reasons, killed, handshake,
-- max_session, idle and shutdown, have a close text.)
local function watcher_ended(s)
  return s.ending and KINDS[s.ending].close
end

--- One relayed session, from the 101 to the end: reason, message.
local function run_session(s, protocol, renew)
  local down, failed, message = answer_upgrade(s, protocol, renew)
  if not down then return failed, message end
  s.down = down
  down:settimeouts(30000, 30000, READ_WAIT)
  s.up:settimeouts(5000, 30000, READ_WAIT)
  local filter, err
  if s.view_only then
    filter, err = viewonly.new()
  else
    filter, err = viewonly.watch({ exclusive = state.conf.exclusive_consoles == "on" })
  end
  if not filter then return "error", "no filter: " .. tostring(err) end
  s.filter = filter
  s.last_input = ngx.now()
  local threads = { spawn(pump, s, down, browser_data, browser_ended),
    spawn(pump, s, s.up, target_data, target_ended) }
  while not s.result and not watcher_ended(s) do
    if s.orphan then
      watch.look(s)
      if not watcher_ended(s) then s.sema:wait(watch.TICK) end
    else
      s.sema:wait(READ_WAIT / 1000)
    end
  end
  local reason, msg
  if watcher_ended(s) then
    reason, msg = say_why(s)
  else
    reason, msg = s.result[1], s.result[2]
  end
  -- a side's end: the side whose close frame came first, not whichever
  -- connection the workers saw drop first (after a close handshake both do)
  if reason == "browser" or reason == "target" then
    reason = filter:stats().closed_by or reason
  end
  for _, th in ipairs(threads) do kill_thread(th) end
  if reason ~= "target" then
    s.up:send(core.ws_frame("close", "\3\232", true))
  end
  return reason, msg
end

--- The session's relay once it holds its place, its slots and its target:
-- reason, message.
local function relay_open(s, protocol, renew)
  local book = state.book
  book:refresh(s)
  audit.write("open", audit_fields(s, {}))
  s.published_in, s.published_out = 0, 0
  local ok, reason, msg = pcall(run_session, s, protocol, renew)
  if not ok then reason, msg = "error", tostring(reason) end
  return reason, msg
end

--- The session s of plan once it holds its place on this node: its slots,
-- its target, the relay, its end.
local function session(s, plan)
  local conf, book = state.conf, state.book
  local opened, which, holder = book:open(s, conf)
  if not opened then return refused(s, which, holder) end
  local unrecordable
  s.recording, unrecordable = recorder.open(s, plan)
  if unrecordable then
    book:close(s)
    watch.leave(s)
    log(ngx.ERR, "ctvnc: session of ", tostring(s.vm_id), " refused: it cannot be recorded: ",
      unrecordable, " (unrecordable)")
    audit.write("refused", audit_fields(s, { refused = true, reason = "unrecordable" }))
    return reply(503, { error = KINDS.unrecordable.sentence, kind = "unrecordable" })
  end
  local up, kind, err = wsclient.connect(plan, ngx.var.http_sec_websocket_protocol,
    conf.target_timeout)
  if not up then
    recorder.close(s.recording)
    book:close(s)
    watch.leave(s)
    log(ngx.ERR, "ctvnc: websocket of ", tostring(s.vm_id), " to ", where(plan),
      " failed: ", tostring(err), " (", kind, ")")
    audit.write("refused", audit_fields(s, { refused = true, reason = "target: " .. kind }))
    ngx.header["X-Ctvnc-Error"] = kind
    return _M.refuse(kind == "timeout" and 504 or 502,
      { error = "the console's websocket could not be opened", kind = kind })
  end
  s.up = up
  local reason, msg = relay_open(s, kind, plan.renew)
  up:close()
  local recorded = recorder.close(s.recording) or {}
  local killed_by = reason == "killed" and book:killer(s.id)
  book:close(s)
  watch.leave(s)
  if s.filter then
    if s.view_only then
      log(ngx.NOTICE, "ctvnc: view-only session ", s.id, ": ", viewonly.summary(s.filter))
    end
    s.filter:close()
  end
  ngx.update_time()
  local t = ngx.now()
  metrics.count("ctvnc_sessions_ended_total", { reason = reason })
  watch.publish_bytes(s)
  if reason == "protocol" or reason == "error" then
    log(ngx.WARN, "ctvnc: session ", s.id, " of ", tostring(s.vm_id), " to ", where(plan),
      " ended: ", tostring(msg), " (", reason, ")")
  end
  audit.write(reason == "killed" and "killed" or "close", audit_fields(s, {
    ["end"] = t, duration = floor((t - s.start) * 1000 + 0.5) / 1000,
    bytes_in = s.bytes_in, bytes_out = s.bytes_out,
    reason = killed_by and ("killed by " .. killed_by) or (KINDS[reason] or {}).ended or reason,
    recording = recorded.recording, recording_sha256 = recorded.recording_sha256,
    recording_complete = recorded.recording_complete }))
end

--- content_by_lua of the websocket's named location of hop ("cluster" or
-- "tower": its lua_ssl_trusted_certificate is that hop's CA). A session
-- first takes its place on the node (max_sessions), then its slots;
-- whatever fails after that gives both back at once.
function _M.relay(hop)
  local plan = cjson.decode(ngx.var[_M.VAR] or "")
  if type(plan) ~= "table" or (hop and hop ~= plan.hop) then
    log(ngx.ERR, "ctvnc: the relay was reached without a plan (error)")
    return reply(500, { error = "no console plan", kind = "error" })
  end
  if plan.refuse then return _M.refuse(plan.refuse.status, plan.refuse.body) end
  if plan.shot then return require("ctvnc.gateway.shot").take(plan) end
  local s = { user = plan.user, vm_id = plan.vm_id, mode = plan.mode,
    view_only = plan.view_only, client = ngx.var.remote_addr, start = ngx.now(),
    last_input = ngx.now(), bytes_in = 0, bytes_out = 0, sema = semaphore.new(),
    record_grant = plan.record }
  local id, why = new_id()
  if not id then return refused(s, "system", why) end
  s.id = id
  local placed, which
  placed, which, why = watch.admit(s, state.conf.max_sessions)
  if not placed then return refused(s, which, why) end
  local ok, err = pcall(session, s, plan)
  if not ok then
    state.book:close(s)
    watch.leave(s)
    log(ngx.ERR, "ctvnc: the session of ", tostring(s.vm_id), " failed: ", tostring(err),
      " (error)")
    return reply(500, { error = "the console could not be opened", kind = "error" })
  end
end

return _M
