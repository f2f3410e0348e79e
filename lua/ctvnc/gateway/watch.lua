-- luacheck: std max+ngx_lua
--- ctvnc.gateway.watch: this worker's open sessions and the one timer that
-- watches them all (an idle session costs no timer and no wake-up of its
-- own), and this node's count of open sessions (max_sessions).
--
-- Every tick (TICK seconds) the timer
--   - ends the sessions an admin killed (only when the node's kill count
--     moved since the last tick: kill() bumps it; or a shared store's count
--     of every node's kills), those whose browser has
--     not finished its RFB handshake handshake_timeout after the start,
--     those past max_session and those idle past idle_timeout: it marks the
--     session (s.ending) and wakes its relay (s.sema), which says the last
--     word to the page;
--   - refreshes the keys of sessions whose last refresh is slot_ttl / 5 old
--     (the book: a crashed worker's sessions expire after slot_ttl);
--   - publishes this worker's counts for the node.
-- When the worker exits (reload, stop) the timer stops and each relay
-- looks at its own session every TICK (_M.look): it ends with "shutdown".
--
-- The node's count lives in the lua_shared_dict ctvnc_node: one key per
-- worker process, "w:<pid>" = "<open>;<mode> <access>=<n>,...", written
-- with safe_set as sessions open and close and refreshed by the timer
-- (expiring slot_ttl after a crashed worker's last write). /metrics reads
-- the gauge from the same keys: nothing scans the sessions.
local state = require "ctvnc.gateway.state"
local metrics = require "ctvnc.gateway.metrics"
local log = require "ctvnc.gateway.log"

local ngx = ngx
local pairs, ipairs, tostring, tonumber, pcall, next = pairs, ipairs, tostring, tonumber, pcall,
  next
local concat = table.concat

local _M = {}

_M.DICT = "ctvnc_node"
_M.TICK = 0.25

local open = {}       -- session id -> session (this worker's)
local count = 0       -- sessions in `open`
local kinds = {}      -- "<mode> <access>" -> this worker's open sessions of that kind
local started         -- the timer runs
local last_kills      -- the node's kill count at the last tick
local published = 0   -- when this worker's counts were last written

local function kind_of(s)
  return tostring(s.mode) .. " " .. (s.view_only and "view" or "full")
end

--- Writes this worker's counts for the node: true | nil, err.
local function publish()
  local d = ngx.shared[_M.DICT]
  if not d then return nil, "no lua_shared_dict " .. _M.DICT end
  local parts = {}
  for k, n in pairs(kinds) do
    if n > 0 then parts[#parts + 1] = k .. "=" .. n end
  end
  published = ngx.now()
  return d:safe_set("w:" .. ngx.worker.pid(), count .. ";" .. concat(parts, ","),
    state.conf.slot_ttl)
end

--- The node's open sessions: the total and by kind ("<mode> <access>" -> n).
function _M.node()
  local d = ngx.shared[_M.DICT]
  local total, by = 0, {}
  if not d then return total, by end
  for _, k in ipairs(d:get_keys(0)) do
    local v = k:sub(1, 2) == "w:" and d:get(k)
    if v then
      local n, rest = v:match("^(%d+);(.*)$")
      total = total + (tonumber(n) or 0)
      for kind, m in (rest or ""):gmatch("([^,=]+)=(%d+)") do
        by[kind] = (by[kind] or 0) + tonumber(m)
      end
    end
  end
  return total, by
end

local function change(s, n)
  local k = kind_of(s)
  count, kinds[k] = count + n, (kinds[k] or 0) + n
end

--- Publishes the bytes a session relayed since the last time.
function _M.publish_bytes(s)
  local d_in, d_out = s.bytes_in - s.published_in, s.bytes_out - s.published_out
  local bytes = "ctvnc_relay_bytes_total"
  if d_in > 0 then metrics.count(bytes, { direction = "from_browser" }, d_in) end
  if d_out > 0 then metrics.count(bytes, { direction = "to_browser" }, d_out) end
  s.published_in, s.published_out = s.bytes_in, s.bytes_out
end

--- Whether nginx stops (QUIT), not reloads: this worker exits and either
-- its configuration is still the newest (a reload's init, in the master,
-- counted a newer one before it told the old workers to quit) or the
-- newest one's workers exit too (init.init_worker). Sessions of a reload's
-- old workers stay open until they end.
local function stopping()
  if not ngx.worker.exiting() then return false end
  local dict = ngx.shared.ctvnc_sessions
  local newest = dict:get("generation")
  return newest == state.generation or dict:get("stopping") == newest
end

--- Has the browser of session s sent its RFB ClientInit? Asked of its
-- filter once the handshake deadline is past (a session still opening has
-- no filter yet: its target's handshake has a deadline of its own).
local function rfb_ready(s)
  if not s.rfb_ready and s.filter then
    local phase = s.filter:stats().phase
    s.rfb_ready = phase == "normal" or phase == "blind"
  end
  return s.rfb_ready or not s.filter
end

--- Why the gateway ends session s at time t, if it does (a kill is looked
-- up only when `kills` says the node's kill count moved): killed,
-- handshake, max_session, idle, shutdown (nginx stops; a reload keeps it) or nil.
local function decide(s, t, kills)
  local conf = state.conf
  if kills and state.book:killer(s.id) then return "killed" end
  if t - s.start >= conf.handshake_timeout and not rfb_ready(s) then return "handshake" end
  if conf.max_session > 0 and t - s.start >= conf.max_session then return "max_session" end
  if conf.idle_timeout > 0 and t - s.last_input >= conf.idle_timeout then return "idle" end
  if stopping() then return "shutdown" end
end

--- One look at session s at time t: ends it (marks it and wakes its
-- relay) or refreshes it when that is due.
local function look(s, t, kills)
  if s.ending then return end
  local why = decide(s, t, kills)
  if why then
    s.ending = why
    s.sema:post(1)
  elseif t - s.refreshed >= state.conf.slot_ttl / 5 then
    s.refreshed = t
    state.book:refresh(s)
    _M.publish_bytes(s)
  end
end

--- A relay whose worker exits (reload, stop) watches its own session: one
-- look each TICK (its worker's timer is gone; a kill flag is read at each).
function _M.look(s)
  look(s, ngx.now(), true)
end

local function nothing() end

local function tick(premature)
  if premature then
    -- the worker exits: nginx runs this timer early, once, outside its
    -- event loop, and never again; each relay watches its own session
    -- from now on. A zero-delay timer (still allowed) turns the loop at
    -- once, so the relays woken here run now, not at the next event.
    for _, s in pairs(open) do
      s.orphan = true
      s.sema:post(1)
    end
    ngx.timer.at(0, nothing)
    return
  end
  local t = ngx.now()
  local d = ngx.shared[_M.DICT]
  local k = d and d:get("kills")
  if next(open) then
    -- a shared store counts the kills asked on every node
    k = tostring(k) .. ":" .. tostring(state.book:kills())
  end
  local kills = k ~= last_kills
  last_kills = k
  for _, s in pairs(open) do
    -- one session's failure (its store) must not stop the others' looks
    local ok, err = pcall(look, s, t, kills)
    if not ok and not s.look_failed then
      s.look_failed = true
      log(ngx.ERR, "ctvnc: session ", s.id, " cannot be watched: ", tostring(err), " (error)")
    end
  end
  if t - published >= 1 then publish() end
end

--- Takes a place on this node for session s (id, mode, view_only, start,
-- last_input, sema) and watches it: true | nil, "full" | "store" |
-- "system", message.
function _M.admit(s, max)
  if ngx.worker.exiting() then return nil, "system", "the worker is shutting down" end
  if not started then
    local ok, err = ngx.timer.every(_M.TICK, tick)
    if not ok then return nil, "system", "no timer: " .. tostring(err) end
    started = true
  end
  change(s, 1)
  local ok, err = publish()
  local total = ok and _M.node()
  if not ok or total > max then
    change(s, -1)
    publish()
    if not ok then return nil, "store", "the node's count: " .. tostring(err) end
    return nil, "full", ("%d sessions open, max_sessions %d"):format(total - 1, max)
  end
  s.refreshed = ngx.now()
  open[s.id] = s
  return true
end

--- Stops watching session s and gives its place back.
function _M.leave(s)
  if open[s.id] ~= s then return end
  open[s.id] = nil
  change(s, -1)
  local ok, err = publish()
  if not ok then log(ngx.ERR, "ctvnc: the node's session count: ", tostring(err)) end
end

--- Tells every worker's timer that a kill flag was set (they look at their
-- sessions' flags at their next tick).
function _M.kick()
  local d = ngx.shared[_M.DICT]
  if d then d:incr("kills", 1, 0) end
end

return _M
