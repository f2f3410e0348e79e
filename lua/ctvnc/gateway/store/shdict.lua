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
--   store:get(key)                    -> value | nil (absent) | nil, err
--   store:delete(key)                 -> true | nil, err
--   store:list(prefix)                -> { value, ... } | nil, err
--       the values of every live key that starts with prefix.
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
--       the kill flag of a session, polled by its relay (a Redis backend
--       may also publish it).
local ngx = ngx
local new_id = require("ctvnc.gateway.book").new_id
local tostring, ipairs = tostring, ipairs

local _M = {}

local Store = {}
Store.__index = Store

--- new{ dict = "ctvnc_sessions" }: a store over that shared dict.
function _M.new(opts)
  local name = opts and opts.dict or "ctvnc_sessions"
  local dict = ngx.shared[name]
  if not dict then return nil, "no lua_shared_dict " .. name end
  return setmetatable({ dict = dict }, Store)
end

function Store:epoch()
  local d = self.dict
  local word, err = new_id()
  if not word then return nil, err end
  d:add("epoch", word)
  return d:get("epoch")
end

function Store:add(key, value, ttl, epoch)
  if epoch and self.dict:get("epoch") ~= epoch then
    return nil, "the ticket was minted before the store's last restart", "epoch"
  end
  local ok, err = self.dict:add(key, value, ttl)
  if ok then return true end
  if err == "exists" then return false end
  return nil, err
end

function Store:set(key, value, ttl)
  return self.dict:set(key, value, ttl)
end

function Store:get(key)
  return self.dict:get(key)
end

function Store:delete(key)
  self.dict:delete(key)
  return true
end

function Store:list(prefix)
  local d, out = self.dict, {}
  for _, k in ipairs(d:get_keys(0)) do
    if k:sub(1, #prefix) == prefix then
      local v = d:get(k)
      if v ~= nil then out[#out + 1] = v end
    end
  end
  return out
end

-- A bucket's slots are the keys "<bucket>#1" .. "<bucket>#<max>", each
-- taken with dict:add (atomic); the handle is the slot's key.
function Store:take(bucket, max, holder, ttl)
  local d, holders = self.dict, {}
  for i = 1, max do
    local k = bucket .. "#" .. i
    local ok, err = d:add(k, holder, ttl)
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
  local current = self.dict:get(handle)
  if current == holder or current == nil then return self.dict:set(handle, holder, ttl) end
  return nil, "the slot is held by another session"
end

function Store:release(handle, holder)
  if self.dict:get(handle) == holder then self.dict:delete(handle) end
  return true
end

function Store:kill(id, who, ttl)
  return self.dict:set("k:" .. id, tostring(who), ttl)
end

function Store:killer(id)
  return self.dict:get("k:" .. id)
end

return _M
