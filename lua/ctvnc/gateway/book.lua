--- ctvnc.gateway.book: the book of open console sessions, on the store
-- seam (ctvnc.gateway.store.*), shared by every worker of a node (and, on
-- a shared backend, by every node).
--
--   s:<id>       JSON of an open session (id, user, vm_id, mode, view_only,
--                client, start, node, bytes_in, bytes_out)
--   v:<vm>       the slots of a VM (max_per_vm), each holding a session id
--   u:<user>     the slots of a user (max_per_user)
--   kill flag    set by the admin routes, polled by the session's relay
--
-- Every key of a session lives slot_ttl seconds and its relay refreshes
-- them while it runs: a session ends by close, error or worker exit, and
-- also when a worker crashes: its keys expire and the counts heal by
-- themselves. While the target's handshake runs the keys live open_ttl.
local cjson = require "cjson.safe"
local random_bytes = require("ctvnc.core").random_bytes

local type, tostring, ipairs, setmetatable = type, tostring, ipairs, setmetatable
local sort = table.sort

local _M = {}

local KILL_TTL = 60   -- seconds a kill flag outlives a relay that never polled it

local Book = {}
Book.__index = Book

--- new(store, { slot_ttl, open_ttl, node }): a book on that store; node
-- names this node in the sessions it opens.
function _M.new(store, opts)
  return setmetatable({ store = store, ttl = opts.slot_ttl, open_ttl = opts.open_ttl,
    node = opts.node }, Book)
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

--- Every open session, oldest first (a list of records) | nil, message
-- (the store failed).
function Book:list()
  local out = {}
  local values, err = self.store:list("s:")
  if not values then return nil, err end
  for _, v in ipairs(values) do
    local rec = cjson.decode(v)
    if type(rec) == "table" then out[#out + 1] = rec end
  end
  sort(out, function(a, b) return (a.start or 0) < (b.start or 0) end)
  return out
end

--- The open sessions whose `field` is `value`, oldest first.
function Book:where(field, value)
  local out = {}
  local list, err = self:list()
  if not list then return nil, err end
  for _, rec in ipairs(list) do
    if rec[field] == value then out[#out + 1] = rec end
  end
  return out
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

--- Keeps a running session's keys alive and publishes its byte counts.
function Book:refresh(rec)
  for _, h in ipairs(rec.slots or {}) do self.store:refresh(h, rec.id, self.ttl) end
  self.store:set("s:" .. rec.id, encode(rec), self.ttl)
end

--- Forgets a session: its slots and its record.
function Book:close(rec)
  self:release(rec.slots or {}, rec.id)
  self.store:delete("s:" .. rec.id)
end

--- Asks the relay of session id to end it (within its next tick).
-- true | nil when there is no such session | nil, message (the store failed).
function Book:kill(id, who)
  if type(id) ~= "string" then return nil end
  local rec, err = self.store:get("s:" .. id)
  if rec == nil then return nil, err end
  self.store:kill(id, tostring(who or "admin"), KILL_TTL)
  return true
end

--- Asks every session of vm_id to end (but those asked already): the ids
-- | nil, message (the store failed).
function Book:kill_vm(vm_id, who)
  local ids = {}
  local recs, err = self:where("vm_id", vm_id)
  if not recs then return nil, err end
  for _, rec in ipairs(recs) do
    if not self:killer(rec.id) and self:kill(rec.id, who) then ids[#ids + 1] = rec.id end
  end
  return ids
end

--- Who asked session id to end (nil: nobody).
function Book:killer(id)
  return self.store:killer(id)
end

return _M
