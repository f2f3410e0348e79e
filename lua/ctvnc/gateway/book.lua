--- ctvnc.gateway.book: the book of open console sessions, on the store
-- seam (ctvnc.gateway.store.*), shared by every worker of a node (and, on
-- a shared backend, by every node).
--
--   s:<id>       JSON of an open session (id, user, vm_id, mode, view_only,
--                client, start, node, bytes_in, bytes_out)
--   v:<vm>       the slots of a VM (max_per_vm), each holding a session id
--   u:<user>     the slots of a user (max_per_user)
--   kill flag    set by the admin routes, polled by the session's relay
--   l:<id>       JSON of a lock (id, user, vm_id, by, since, until): a kill
--                locks the session's user out of its VM for kill_lock s
--
-- Every key of a session lives slot_ttl seconds and its relay refreshes
-- them while it runs: a session ends by close, error or worker exit, and
-- also when a worker crashes: its keys expire and the counts heal by
-- themselves. While the target's handshake runs the keys live open_ttl.
local cjson = require "cjson.safe"
local random_bytes = require("ctvnc.core").random_bytes

local ngx = ngx
local type, tostring, ipairs, setmetatable = type, tostring, ipairs, setmetatable
local sort = table.sort

local _M = {}

local KILL_TTL = 60   -- seconds a kill flag outlives a relay that never polled it

--- Seconds a target's host name lookup may take at most: nginx's
-- resolver_timeout (the reference nginx.conf: 5 s) must not exceed it, or
-- an opening session's slots could lapse before its relay refreshes them.
_M.RESOLVE_MAX = 30

local Book = {}
Book.__index = Book

--- new(store, { slot_ttl, open_ttl, kill_lock, node }): a book on that
-- store; node names this node in the sessions it opens.
function _M.new(store, opts)
  return setmetatable({ store = store, ttl = opts.slot_ttl, open_ttl = opts.open_ttl,
    kill_lock = opts.kill_lock, node = opts.node }, Book)
end

--- A fresh session id: 16 hex digits from the kernel | nil, message.
function _M.new_id()
  local b, err = random_bytes(8)
  if not b then return nil, err end
  return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function encode(rec)
  return cjson.encode({ id = rec.id, user = rec.user, vm_id = rec.vm_id, mode = rec.mode,
    view_only = rec.view_only, client = rec.client, start = rec.start, node = rec.node,
    bytes_in = rec.bytes_in or 0, bytes_out = rec.bytes_out or 0 })
end

--- One page of the open sessions, in id order: records whose fields
-- equal those of `match` (vm_id, user; any when nil), after session id
-- `after` ("" from the first), at most `limit` of them; and the id to ask
-- after for the next page (nil: none left). A page reads at most
-- SCAN records (a filter that matches few may give a short page with a
-- next id): its time is bounded whatever the number of sessions.
-- records, next | nil, err.
_M.SCAN = 1000
function Book:page(match, after, limit)
  local filtered = match.vm_id ~= nil or match.user ~= nil
  local kv, more = self.store:page("s:", after or "", filtered and _M.SCAN or limit)
  if not kv then return nil, more end
  local out, last = {}, nil
  for i = 1, #kv, 2 do
    local rec = cjson.decode(kv[i + 1])
    last = kv[i]:sub(3)
    if type(rec) == "table" and (match.vm_id == nil or rec.vm_id == match.vm_id)
      and (match.user == nil or rec.user == match.user) then
      out[#out + 1] = rec
      if #out >= limit then
        return out, (more or i + 1 < #kv) and last or nil
      end
    end
  end
  return out, more and last or nil
end

--- The oldest of the sessions holding a full bucket's slots (a record or nil).
function Book:oldest(holders)
  local best
  for _, id in ipairs(holders or {}) do
    local rec = cjson.decode(self.store:get("s:" .. tostring(id)) or "")
    if type(rec) == "table" and (not best or (rec.start or 0) < (best.start or 0)) then
      best = rec
    end
  end
  return best
end

-- The buckets a session takes a slot of: { bucket, max, limit name }.
local function buckets(vm_id, user, limits)
  local out = {}
  if limits.max_per_vm > 0 then out[1] = { "v:" .. vm_id, limits.max_per_vm, "vm" } end
  -- a hook that names no user has no per-user limit
  if user ~= nil and user ~= "" and limits.max_per_user > 0 then
    out[#out + 1] = { "u:" .. tostring(user), limits.max_per_user, "user" }
  end
  return out
end

--- Opens a session: takes a slot of its VM and of its user (when limits
-- say so) and records it. rec | nil, "vm" | "user", the oldest session in
-- the way | nil, "store" | "system", message.
function Book:open(rec, limits)
  local store = self.store
  if not rec.id then
    local id, why = _M.new_id()
    if not id then return nil, "system", why end
    rec.id = id
  end
  rec.bytes_in, rec.bytes_out = rec.bytes_in or 0, rec.bytes_out or 0
  rec.node = rec.node or self.node
  local held = {}
  for _, b in ipairs(buckets(rec.vm_id, rec.user, limits)) do
    local handle, holders = store:take(b[1], b[2], rec.id, self.open_ttl)
    if not handle then
      self:release(held, rec.id)
      if handle == nil then return nil, "store", holders end
      return nil, b[3], self:oldest(holders)
    end
    held[#held + 1] = handle
  end
  rec.slots = held
  local ok, err = store:add("s:" .. rec.id, encode(rec), self.open_ttl)
  if not ok then
    self:release(held, rec.id)
    return nil, "store", err or "the session id is taken"
  end
  rec.written_in, rec.written_out = rec.bytes_in, rec.bytes_out
  return rec
end

--- Would a session of user on vm_id fit now? true | nil, "vm" | "user",
-- the oldest session in the way | nil, "store", message. Takes nothing.
function Book:fits(vm_id, user, limits)
  for _, b in ipairs(buckets(vm_id, user, limits)) do
    local holders, err = self.store:holders(b[1], b[2])
    if not holders then return nil, "store", err end
    if #holders >= b[2] then return nil, b[3], self:oldest(holders) end
  end
  return true
end

function Book:release(handles, id)
  for _, h in ipairs(handles) do self.store:release(h, id) end
end

--- Keeps a running session's keys alive; its record is written again
-- only when its byte counts moved (else its expiry alone is renewed).
function Book:refresh(rec)
  local store = self.store
  for _, h in ipairs(rec.slots or {}) do store:refresh(h, rec.id, self.ttl) end
  local key = "s:" .. rec.id
  if rec.written_in == rec.bytes_in and rec.written_out == rec.bytes_out
    and store:touch(key, self.ttl) then
    return
  end
  if store:set(key, encode(rec), self.ttl) then
    rec.written_in, rec.written_out = rec.bytes_in, rec.bytes_out
  else
    store:touch(key, self.ttl)   -- a full store: the old counts, still alive
  end
end

--- Forgets a session: its slots and its record.
function Book:close(rec)
  self:release(rec.slots or {}, rec.id)
  self.store:delete("s:" .. rec.id)
end

--- The id of the lock on user and vm_id (16 hex digits).
local function lock_id(user, vm_id)
  return ngx.md5(tostring(user) .. "\0" .. tostring(vm_id)):sub(1, 16)
end

--- Locks user out of vm_id for kill_lock seconds: true | nil, err.
function Book:lock(user, vm_id, who)
  local id, t = lock_id(user, vm_id), ngx.now()
  return self.store:set("l:" .. id, cjson.encode({ id = id, user = tostring(user),
    vm_id = vm_id, by = tostring(who), since = t, ["until"] = t + self.kill_lock }),
    self.kill_lock)
end

--- The lock on user and vm_id: its record | false (none) | nil, err (the
-- store failed: the caller refuses).
function Book:locked(user, vm_id)
  local v, err = self.store:get("l:" .. lock_id(user, vm_id))
  if v ~= nil then return cjson.decode(v) or {} end
  if err then return nil, err end
  return false
end

--- Every lock (records), oldest first | nil, err.
function Book:locks()
  local out, after = {}, ""
  repeat
    local kv, more = self.store:page("l:", after, _M.SCAN)
    if not kv then return nil, more end
    for i = 1, #kv, 2 do
      local rec = cjson.decode(kv[i + 1])
      if type(rec) == "table" then out[#out + 1] = rec end
      after = kv[i]:sub(3)
    end
  until not more
  sort(out, function(a, b) return (a.since or 0) < (b.since or 0) end)
  return out
end

--- Lifts lock id: true | false (no such lock) | nil, err.
function Book:unlock(id)
  if type(id) ~= "string" or not id:match("^%x+$") then return false end
  local v, err = self.store:get("l:" .. id)
  if v == nil then
    if err then return nil, err end
    return false
  end
  return self.store:delete("l:" .. id)
end

--- Asks the relay of session id to end it (within its next tick) and
-- locks its user out of its VM (a kill is a revocation: no renewal, no new
-- session until the lock ends or is lifted). true | nil when there is no
-- such session | nil, err when the store failed.
function Book:kill(id, who)
  if type(id) ~= "string" then return nil end
  local v, err = self.store:get("s:" .. id)
  local rec = cjson.decode(v or "")
  if type(rec) ~= "table" then return nil, err end
  local ok, why = self:lock(rec.user or "", rec.vm_id, who or "admin")
  if not ok then return nil, why end
  return self.store:kill(id, tostring(who or "admin"), KILL_TTL)
end

--- Asks every session of vm_id to end (but those asked already): the ids
-- | nil, message (the store failed).
function Book:kill_vm(vm_id, who)
  local ids, after = {}, ""
  repeat
    local page
    page, after = self:page({ vm_id = vm_id }, after, _M.SCAN)
    if not page then return nil, after end
    for _, rec in ipairs(page) do
      if not self:killer(rec.id) and self:kill(rec.id, who) then ids[#ids + 1] = rec.id end
    end
  until not after
  return ids
end

--- Who asked session id to end (nil: nobody).
function Book:killer(id)
  return self.store:killer(id)
end

--- The store's count of kills on every node, when it keeps one (a shared
-- store): nil otherwise (the node's own count tells).
function Book:kills()
  local store = self.store
  return store.kills and store:kills()
end

return _M
