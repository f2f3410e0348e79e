-- luacheck: std max+ngx_lua
--- ctvnc.gateway.store.redis: the store seam (ctvnc.gateway.store.shdict
-- has the interface) on a Redis shared by every gateway node (setting
-- store = "redis://..." or "rediss://..."), through ctvnc.redis.
--
-- Every operation is one command or one Lua script (EVALSHA, loaded again
-- after NOSCRIPT), so each is atomic on the server; every call takes a
-- pooled connection, is bounded by TIMEOUT_MS per socket step and answers
-- nil, err, "store" when Redis fails (the callers then refuse). Keys, all
-- under "ctvnc:":
--
--   ctvnc:epoch        a random word set once: Redis restarted empty has none,
--                      so tickets minted before carry another (refused)
--   ctvnc:n:<nonce>    a used ticket, until it expires
--   ctvnc:s:<id>       a session's record, slot_ttl
--   ctvnc:v:<vm>, ctvnc:u:<user>
--                      a sorted set of slots: member the session id, score
--                      the slot's expiry (ms, Redis's clock); expired ones are
--                      dropped by the script that counts them
--   ctvnc:k:<id>       a kill flag (who), 60 s
--   ctvnc:kills        the count of kills, read by every worker's watch timer
--                      each tick (ctvnc.gateway.watch): its sessions' own flags
--                      are read only when it moved
--
-- Outage and recovery are written to error.log once per worker each,
-- and /metrics counts them (ctvnc_store_errors_total, ctvnc_store_up,
-- the latency histogram ctvnc_store_seconds).
local redis = require "ctvnc.redis"
local metrics = require "ctvnc.gateway.metrics"
local log = require "ctvnc.gateway.log"
local new_id = require("ctvnc.gateway.book").new_id

local ngx = ngx
local tostring, ipairs, setmetatable = tostring, ipairs, setmetatable
local floor, sort = math.floor, table.sort
local unpack = unpack or table.unpack
local null = redis.null

local _M = {}

_M.PREFIX = "ctvnc:"
_M.TIMEOUT_MS = 1000   -- each socket step: connect, send, every read
_M.POOL_SIZE = 64
_M.IDLE_MS = 60000     -- a pooled connection kept that long
_M.RETRY = 0.5         -- seconds a worker fails at once after a failed call
_M.BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1 }

-- KEYS[1] the bucket; ARGV: ms to live, holder, max (0: refresh only).
-- Drops the expired slots, then keeps (or takes) holder's; the bucket key
-- lives as long as its longest slot. { 1 } | { 0, holder... } (full).
local TAKE = [[
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl, holder, max = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if max > 0 and not redis.call('ZSCORE', KEYS[1], holder)
   and redis.call('ZCARD', KEYS[1]) >= max then
  local out = redis.call('ZRANGE', KEYS[1], 0, -1)
  table.insert(out, 1, 0)
  return out
end
redis.call('ZADD', KEYS[1], now + ttl, holder)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return { 1 }
]]

-- KEYS[1] the bucket: its live holders (the expired dropped).
local HOLDERS = [[
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
return redis.call('ZRANGE', KEYS[1], 0, -1)
]]

-- KEYS: the key, the epoch key; ARGV: value, ms to live, epoch ("": none).
-- 1 added | 0 the key exists | -1 the epoch is another (Redis restarted).
local ADD = [[
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
]]

-- KEYS[1] the epoch key; ARGV[1] a fresh random word: the epoch (set once).
local EPOCH = [[
local e = redis.call('GET', KEYS[1])
if e then return e end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
]]

-- KEYS: the kill flag, the kill count; ARGV: who, seconds to live.
local KILL = [[
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('INCR', KEYS[2])
]]

local Store = {}
Store.__index = Store

local up                 -- this worker's view of the store: nil before the first call
local down_since, retry_at = nil, 0

--- new{ url = STORE's URL, password?, server_name?, node? }: a store
-- (nothing connects yet: init_by_lua has no cosockets) | nil, message.
function _M.new(opts)
  local cfg, err = redis.parse_url(opts.url, opts.password)
  if not cfg then return nil, err end
  _M.node_name = opts.node
  local name = redis.script_sha
  return setmetatable({ cfg = cfg, server_name = opts.server_name, node = opts.node,
    sha = { take = name(TAKE), holders = name(HOLDERS), add = name(ADD),
            epoch = name(EPOCH), kill = name(KILL) } }, Store)
end

local function state_change(ok, err)
  local labels = { node = _M.node_name }
  if ok then
    if up == false then
      -- at error level: the relays' locations log nothing below it
      log(ngx.ERR, "ctvnc: the session store answers again (down ",
        ("%.1f"):format(ngx.now() - down_since), " s)")
    end
    if not up then
      up = true
      metrics.set("ctvnc_store_up", labels, 1)
    end
    return
  end
  metrics.count("ctvnc_store_errors_total", labels)
  retry_at = ngx.now() + _M.RETRY
  if up ~= false then
    up, down_since = false, ngx.now()
    log(ngx.ERR, "ctvnc: the session store failed: ", tostring(err), " (store)")
    metrics.set("ctvnc_store_up", labels, 0)
  end
end

--- Runs fn(red) on a pooled connection: fn's result | nil, message.
-- An error reply (false, msg) is a failure too.
function Store:with(fn)
  local t0 = ngx.now()
  if up == false and t0 < retry_at then
    -- down: fail at once, but one call a RETRY seconds (a Redis that does
    -- not answer would hold every caller for its timeouts)
    metrics.count("ctvnc_store_errors_total", { node = _M.node_name })
    return nil, "the session store is down (the next try within " .. _M.RETRY .. " s)"
  end
  local red = redis.new()
  red:set_timeouts(_M.TIMEOUT_MS, _M.TIMEOUT_MS, _M.TIMEOUT_MS)
  local ok, err = red:connect_url(self.cfg, { server_name = self.server_name,
    pool_size = _M.POOL_SIZE })
  local res
  if ok then
    res, err = fn(red)
    if res == false or res == nil then
      res, err = nil, tostring(err)
      red:close()
    else
      red:set_keepalive(_M.IDLE_MS, _M.POOL_SIZE)
    end
  end
  ngx.update_time()
  metrics.observe("ctvnc_store_seconds", ngx.now() - t0, _M.BUCKETS)
  state_change(res ~= nil, err)
  if res == nil then return nil, "the session store: " .. tostring(err) end
  return res
end

function Store:cmd(name, ...)
  local args = { ... }
  return self:with(function(red) return red[name](red, unpack(args)) end)
end

function Store:script(name, source, keys, args)
  return self:with(function(red) return red:eval_cached(self.sha[name], source, keys, args) end)
end

local P = _M.PREFIX
local function ms(ttl) return floor(ttl * 1000 + 0.5) end

function Store:add(key, value, ttl, epoch)
  local r, err = self:script("add", ADD, { P .. key, P .. "epoch" },
    { value, ms(ttl), epoch or "" })
  if not r then return nil, err end
  if r == -1 then return nil, "the ticket was minted before the store's last restart", "epoch" end
  return r == 1
end

--- The store's epoch, made once: a word every ticket carries, so that
-- a store restarted empty refuses those minted before.
function Store:epoch()
  local word, err = new_id()
  if not word then return nil, err end
  return self:script("epoch", EPOCH, { P .. "epoch" }, { word })
end

function Store:set(key, value, ttl)
  local r, err = self:cmd("set", P .. key, value, "PX", ms(ttl))
  if not r then return nil, err end
  return true
end

function Store:get(key)
  local v, err = self:cmd("get", P .. key)
  if v == nil then return nil, err end
  if v == null then return nil end
  return v
end

function Store:delete(key)
  local r, err = self:cmd("del", P .. key)
  if not r then return nil, err end
  return true
end

function Store:ping()
  local r, err = self:cmd("ping")
  if not r then return nil, err end
  return true
end

--- The keys (under P) that start with prefix, in no order: SCAN, 1000 a
-- step (inside with()).
local function scan(red, prefix)
  local pattern = (P .. prefix):gsub("[%*%?%[%]\\]", "\\%0") .. "*"
  local keys, cursor = {}, "0"
  repeat
    local r, err = red:scan(cursor, "MATCH", pattern, "COUNT", 1000)
    if not r then return nil, err end
    cursor = r[1]
    for _, k in ipairs(r[2]) do keys[#keys + 1] = k end
  until cursor == "0"
  return keys
end

--- The keys after `after` in key order, `limit` at most, with their values
-- (every key read, then sorted: a page costs a pass over the prefix).
function Store:page(prefix, after, limit)
  local r, err = self:with(function(red)
    local keys, e = scan(red, prefix)
    if not keys then return nil, e end
    local from, picked = P .. prefix .. after, {}
    for _, k in ipairs(keys) do
      if k > from then picked[#picked + 1] = k end
    end
    sort(picked)
    local out, i = {}, 0
    while i < #picked and #out < 2 * limit do
      local chunk = {}
      for j = i + 1, math.min(#picked, i + limit - #out / 2) do chunk[#chunk + 1] = picked[j] end
      i = i + #chunk
      local vals, e2 = red:mget(unpack(chunk))
      if not vals then return nil, e2 end
      for j, v in ipairs(vals) do
        if v ~= null then
          out[#out + 1] = chunk[j]:sub(#P + 1)
          out[#out + 1] = v
        end
      end
    end
    return { out, i < #picked }
  end)
  if not r then return nil, err end
  return r[1], r[2]
end

function Store:touch(key, ttl)
  local r, err = self:cmd("pexpire", P .. key, ms(ttl))
  if not r then return nil, err end
  return r == 1
end

function Store:take(bucket, max, holder, ttl)
  local r, err = self:script("take", TAKE, { P .. bucket }, { ms(ttl), holder, max })
  if not r then return nil, err end
  if r[1] == 1 then return bucket end
  local holders = {}
  for i = 2, #r do holders[#holders + 1] = r[i] end
  return false, holders
end

function Store:holders(bucket)
  return self:script("holders", HOLDERS, { P .. bucket })
end

--- Keeps holder's slot, taking it again when it lapsed (after an outage
-- the open sessions write their slots back here).
function Store:refresh(handle, holder, ttl)
  local r, err = self:script("take", TAKE, { P .. handle }, { ms(ttl), holder, 0 })
  if not r then return nil, err end
  return true
end

function Store:release(handle, holder)
  local r, err = self:cmd("zrem", P .. handle, holder)
  if not r then return nil, err end
  return true
end

function Store:kill(id, who, ttl)
  local r, err = self:script("kill", KILL, { P .. "k:" .. id, P .. "kills" },
    { tostring(who), ttl })
  if not r then return nil, err end
  return true
end

function Store:killer(id)
  return self:get("k:" .. id)
end

--- The count of kills of every node (the watch timers read it each tick).
function Store:kills()
  local n, err = self:cmd("get", P .. "kills")
  if n == nil then return nil, err end
  return n ~= null and n or "0"
end

return _M
