-- luacheck: std max+ngx_lua
--- ctvnc.gateway.relay: content_by_lua of the websocket's named locations.
-- It reads the plan the access phase left (ctvnc.gateway.routes.ws), takes
-- the session's slots (max_per_vm, max_per_user), connects to the target
-- (ctvnc.gateway.wsclient), answers the browser's upgrade, and relays
-- until one side closes, the time cap or idle timeout is reached, an admin
-- kills it, or a view-only session breaks its rules. Every way out
-- releases the slots and writes one audit line; every failure one
-- error.log line naming the VM, the kind and the target without its query.
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

local ngx = ngx
local type, tostring, pairs, ipairs, pcall = type, tostring, pairs, ipairs, pcall
local floor = math.floor
local spawn, wait, kill_thread = ngx.thread.spawn, ngx.thread.wait, ngx.thread.kill
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

local function publish_bytes(rec)
  metrics.count("ctvnc_relay_bytes_total", { direction = "from_browser" },
    rec.bytes_in - rec.published_in)
  metrics.count("ctvnc_relay_bytes_total", { direction = "to_browser" },
    rec.bytes_out - rec.published_out)
  rec.published_in, rec.published_out = rec.bytes_in, rec.bytes_out
end

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
  metrics.count("ctvnc_sessions_refused_total", { limit = which })
  audit.write("refused", audit_fields(rec, { refused = true,
    reason = "limit " .. tostring(which) }))
  if which == "store" or which == "system" then
    log(ngx.ERR, "ctvnc: the session of ", tostring(rec.vm_id), " cannot be recorded: ",
      tostring(holder), " (", which, ")")
    return reply(503, { error = respond.reason(which), kind = which })
  end
  local body = { error = _M.in_use_sentence(which, holder), kind = "busy", limit = which,
    vm_id = rec.vm_id }
  if type(holder) == "table" then
    body.in_use_by, body.since = holder.user, audit.iso(holder.start or 0)
  end
  return reply(429, body)
end

--- The browser's side: the gateway answers the upgrade itself (a fresh
-- ticket cookie rides on a ticketed session's 101). The raw socket | nil,
-- reason, message.
local function answer_upgrade(rec, protocol, renew)
  ngx.status = 101
  ngx.header["Upgrade"] = "websocket"
  ngx.header["Sec-WebSocket-Accept"] = wsclient.accept(ngx.var.http_sec_websocket_key)
  if protocol then ngx.header["Sec-WebSocket-Protocol"] = protocol end
  if renew and rec.user ~= "" then
    -- no random bytes: no fresh ticket (the page asks for a new link)
    local t, ttl = state.ticket.mint(rec.vm_id, rec.user, rec.view_only)
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

--- Why the gateway ends a session at time t, if it does: killed,
-- max_session, idle, shutdown or nil.
local function time_to_end(rec, t)
  local conf = state.conf
  if state.book:killer(rec.id) then return "killed" end
  if conf.max_session > 0 and t - rec.start >= conf.max_session then return "max_session" end
  if conf.idle_timeout > 0 and t - rec.last_input >= conf.idle_timeout then return "idle" end
  if ngx.worker.exiting() then return "shutdown" end
end

--- One relayed session, from the 101 to the end: reason, message.
local function run_session(rec, up, protocol, renew)
  local conf, book = state.conf, state.book
  local down, failed, message = answer_upgrade(rec, protocol, renew)
  if not down then return failed, message end
  down:settimeout(30000)
  up:settimeouts(5000, 30000, 30000)
  local err

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
      local why = time_to_end(rec, t)
      if why then
        local limit = why == "idle" and conf.idle_timeout or conf.max_session
        local text = KINDS[why].close:format(limit)
        st.reason = why
        last_word(viewonly.close_frame(viewonly.CLOSE_GOING_AWAY, text))
        -- a moment for the browser's answer, then the end
        for _ = 1, 20 do
          if st.browser_done then break end
          ngx.sleep(0.05)
        end
        return why, text
      end
      if t - last_refresh >= conf.slot_ttl / 5 then
        last_refresh = t
        book:refresh(rec)
        publish_bytes(rec)
      end
    end
  end

  local threads = { spawn(from_browser), spawn(from_target), spawn(ticker) }
  local done, reason, msg = wait(threads[1], threads[2], threads[3])
  for _, th in ipairs(threads) do kill_thread(th) end
  if not done then reason, msg = "error", tostring(reason) end
  if st.reason and st.reason ~= reason then reason, msg = st.reason, KINDS[st.reason].close end
  if reason ~= "target" then
    up:send(core.ws_frame("close", "\3\232", true))
  end
  return reason, msg
end

--- content_by_lua of the websocket's named location of hop ("cluster" or
-- "tower": its lua_ssl_trusted_certificate is that hop's CA).
function _M.relay(hop)
  local plan = cjson.decode(ngx.var[_M.VAR] or "")
  if type(plan) ~= "table" or (hop and hop ~= plan.hop) then
    log(ngx.ERR, "ctvnc: the relay was reached without a plan (error)")
    return reply(500, { error = "no console plan", kind = "error" })
  end
  if plan.shot then return require("ctvnc.gateway.shot").take(plan) end
  local conf, book = state.conf, state.book
  local rec = { user = plan.user, vm_id = plan.vm_id, mode = plan.mode,
    view_only = plan.view_only, client = ngx.var.remote_addr, start = ngx.now() }
  local opened, which, holder = book:open(rec, conf)
  if not opened then return refused(rec, which, holder) end
  local up, kind, err = wsclient.connect(plan, ngx.var.http_sec_websocket_protocol,
    conf.target_timeout)
  local protocol = up and kind or nil
  if not up then
    book:close(rec)
    log(ngx.ERR, "ctvnc: websocket of ", tostring(rec.vm_id), " to ", where(plan),
      " failed: ", tostring(err), " (", kind, ")")
    audit.write("refused", audit_fields(rec, { refused = true, reason = "target: " .. kind }))
    ngx.header["X-Ctvnc-Error"] = kind
    return reply(kind == "timeout" and 504 or 502,
      { error = "the console's websocket could not be opened", kind = kind })
  end
  book:refresh(rec)
  audit.write("open", audit_fields(rec, {}))
  rec.published_in, rec.published_out = 0, 0
  local ok, reason, msg = pcall(run_session, rec, up, protocol, plan.renew)
  if not ok then reason, msg = "error", tostring(reason) end
  up:close()
  local killed_by = reason == "killed" and book:killer(rec.id)
  book:close(rec)
  if rec.filter then
    if rec.view_only then
      log(ngx.NOTICE, "ctvnc: view-only session ", rec.id, ": ", viewonly.summary(rec.filter))
    end
    rec.filter:close()
  end
  ngx.update_time()
  local t = ngx.now()
  metrics.count("ctvnc_sessions_ended_total", { reason = reason })
  publish_bytes(rec)
  if reason == "protocol" or reason == "error" then
    log(ngx.WARN, "ctvnc: session ", rec.id, " of ", tostring(rec.vm_id), " to ", where(plan),
      " ended: ", tostring(msg), " (", reason, ")")
  end
  audit.write(reason == "killed" and "killed" or "close", audit_fields(rec, {
    ["end"] = t, duration = floor((t - rec.start) * 1000 + 0.5) / 1000,
    bytes_in = rec.bytes_in, bytes_out = rec.bytes_out,
    reason = killed_by and ("killed by " .. killed_by) or (KINDS[reason] or {}).ended or reason }))
end

return _M
