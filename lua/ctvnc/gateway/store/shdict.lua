-- luacheck: std max+ngx_lua
--- ctvnc.gateway.store.shdict: the store seam over one node's
-- lua_shared_dict, the one backend today (setting store = "shdict").
--
-- The seam. A backend is a module with new(opts) -> store | nil, err,
-- whose store has these methods; every one is atomic where it says so,
-- bounded in time, and answers nil, err when the backend fails (the
-- callers then refuse: fail closed). Keys and values are strings; ttl is
-- in seconds (> 0). A Redis backend does each with one command or one Lua
-- script (EVALSHA), and may refuse what was written before its server's
-- last restart (run_id) where losing it would let a ticket be used twice.
--
--   store:add(key, value, ttl, epoch?) -> true | false (the key exists) | nil, err[, "epoch"]
--       add-if-absent with expiry, atomic (a ticket's nonce is used once);
--       with epoch, refused (nil, msg, "epoch") unless it is the store's.
--   store:epoch()                     -> word | nil, err
--       the store's epoch, made once per store life: a store that lost its
--       keys (restarted empty) makes another, so the tickets minted before,
--       which carry the old one, are refused.
--   store:set(key, value, ttl)        -> true | nil, err
--   store:touch(key, ttl)             -> true | false (absent) | nil, err
--       a live key's expiry set anew, its value kept.
--   store:get(key)                    -> value | nil (absent) | nil, err
--   store:delete(key)                 -> true | nil, err
--   store:page(prefix, after, limit)  -> { key, value, key, value, ... }, more | nil, err
--       at most `limit` live keys that start with prefix and sort after
--       `after` ("" from the start), in key order, with their values;
--       `more` is true when keys are left past the last one.
--       (Locks, "l:<id>", are set, get, paged and deleted with these: a
--       kill's lock on a user and a VM, for kill_lock seconds.)
--   store:take(bucket, max, holder, ttl)
--                                     -> handle | false, { holder, ... } | nil, err
--       counted slots with expiry: one of `max` slots of bucket, atomic (two
--       callers never both get the last one); full: false and the holders.
--   store:holders(bucket, max)       -> { holder, ... } | nil, err
--       who holds bucket's slots now (takes nothing).
--   store:refresh(handle, holder, ttl) -> true | nil, err
--       keeps holder's slot alive (takes it again if it lapsed).
--   store:release(handle, holder)     -> true | nil, err (only holder's slot)
--   store:kill(id, who, ttl)          -> true | nil, err
--   store:killer(id)                  -> who | nil (no kill flag) | nil, err
--       the kill flag of a session, read by the watch timer.
--   store:kills()                     -> count | nil, err       (optional)
--       a count of kills that moves with every kill on any node (a shared
--       backend: the watch timers of other nodes read it; this one has
--       none, the node's own count in ctvnc_node tells).
--   store:ping()                      -> true | nil, err
--       whether the backend answers now (GET /health?ready=1): one cheap
--       round trip, nothing kept.
-- A full store refuses (nil, "no memory"): nothing here evicts a live
-- key to make room (safe_add, safe_set), so a full session book refuses
-- new sessions instead of forgetting open ones (fail closed). New keys
-- (add, take) leave a reserve of RESERVE of the dict free, so that the
-- sessions already open can still be refreshed and killed.
local ngx = ngx
local new_id = require("ctvnc.gateway.book").new_id
local tostring, ipairs, setmetatable = tostring, ipairs, setmetatable
local sort, floor = table.sort, math.floor

local _M = {}

_M.RESERVE = 1 / 8   -- of the dict's capacity, 8 KiB at least

local Store = {}
Store.__index = Store

--- new{ dict = "ctvnc_sessions" }: a store over that shared dict.
function _M.new(opts)
  local name = opts and opts.dict or "ctvnc_sessions"
  local dict = ngx.shared[name]
  if not dict then return nil, "no lua_shared_dict " .. name end
  return setmetatable({ dict = dict, reserve = math.max(8192, dict:capacity() * _M.RESERVE) },
    Store)
end

--- Is there room for a new key beside the reserve? true | nil, "no memory".
function Store:room()
  if self.dict:free_space() >= self.reserve then return true end
  return nil, "no memory (the rest is kept for the open sessions)"
end

function Store:epoch()
  local d = self.dict
  local word, err = new_id()
  if not word then return nil, err end
  d:safe_add("epoch", word)
  return d:get("epoch")
end

function Store:add(key, value, ttl, epoch)
  if epoch and self.dict:get("epoch") ~= epoch then
    return nil, "the ticket was minted before the store's last restart", "epoch"
  end
  local room, full = self:room()
  if not room then return nil, full end
  local ok, err = self.dict:safe_add(key, value, ttl)
  if ok then return true end
  if err == "exists" then return false end
  return nil, err
end

function Store:ping()
  local ok, err = self.dict:safe_set("ctvnc:ping", "1", 1)
  if not ok then return nil, err end
  return true
end

function Store:set(key, value, ttl)
  return self.dict:safe_set(key, value, ttl)
end

function Store:touch(key, ttl)
  local ok, err = self.dict:expire(key, ttl)
  if ok then return true end
  if err == "not found" then return false end
  return nil, err
end

function Store:get(key)
  return self.dict:get(key)
end

function Store:delete(key)
  self.dict:delete(key)
  return true
end

-- The k smallest of list, in order (a max-heap of k: one comparison for
-- most keys, no sort of them all).
local function smallest(list, k)
  local heap, n = {}, 0
  local function down(i)
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= n and heap[l] > heap[m] then m = l end
      if r <= n and heap[r] > heap[m] then m = r end
      if m == i then return end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
  end
  for _, x in ipairs(list) do
    if n < k then
      n = n + 1
      heap[n] = x
      local i = n
      while i > 1 do
        local up = floor(i / 2)
        if heap[up] >= heap[i] then break end
        heap[up], heap[i] = heap[i], heap[up]
        i = up
      end
    elseif x < heap[1] then
      heap[1] = x
      down(1)
    end
  end
  sort(heap)
  return heap
end

-- The keys are read once (get_keys) and only the page's values are read.
function Store:page(prefix, after, limit)
  local d, keys, n, from = self.dict, {}, #prefix, prefix .. after
  for _, k in ipairs(d:get_keys(0)) do
    if k > from and k:sub(1, n) == prefix then keys[#keys + 1] = k end
  end
  local more = #keys > limit
  keys = smallest(keys, limit)
  local out = {}
  for _, k in ipairs(keys) do
    local v = d:get(k)
    if v ~= nil then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  return out, more
end

-- A bucket's slots are the keys "<bucket>#1" .. "<bucket>#<max>", each
-- taken with dict:add (atomic); the handle is the slot's key.
function Store:take(bucket, max, holder, ttl)
  local room, full = self:room()
  if not room then return nil, full end
  local d, holders = self.dict, {}
  for i = 1, max do
    local k = bucket .. "#" .. i
    local ok, err = d:safe_add(k, holder, ttl)
    if ok then return k end
    if err ~= "exists" then return nil, err end
    holders[#holders + 1] = d:get(k)
  end
  return false, holders
end

function Store:holders(bucket, max)
  local d, out = self.dict, {}
  for i = 1, max do
    local v = d:get(bucket .. "#" .. i)
    if v ~= nil then out[#out + 1] = v end
  end
  return out
end

function Store:refresh(handle, holder, ttl)
  local d = self.dict
  local current = d:get(handle)
  if current == holder then return d:expire(handle, ttl) end
  if current == nil then return d:safe_set(handle, holder, ttl) end
  return nil, "the slot is held by another session"
end

function Store:release(handle, holder)
  if self.dict:get(handle) == holder then self.dict:delete(handle) end
  return true
end

function Store:kill(id, who, ttl)
  return self.dict:safe_set("k:" .. id, tostring(who), ttl)
end

function Store:killer(id)
  return self.dict:get("k:" .. id)
end

return _M
