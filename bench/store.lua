-- luacheck: std max+ngx_lua
--- The store work of one console open, timed on each backend (bench/store.sh
-- serves run() from nginx): a ticket minted and used, the session opened
-- with a VM and a user limit, refreshed once, closed.
local ffi = require "ffi"
local book = require "ctvnc.gateway.book"
local ticket = require "ctvnc.ticket"

local ngx = ngx
local floor, sort = math.floor, table.sort

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } ctvnc_timespec;
  int clock_gettime(int clk, ctvnc_timespec *ts);
]]
local ts = ffi.new("ctvnc_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)   -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local N = 2000
local LIMITS = { max_per_vm = 1, max_per_user = 4 }

--- The per-open times (seconds, sorted) of N opens on store.
local function opens(store)
  local b = book.new(store, { slot_ttl = 10, open_ttl = 40, node = "bench" })
  local t = ticket.new({ secret = ("s"):rep(32), ttl = 60, store = store })
  local out = {}
  for i = 1, N do
    local vm = "vm-" .. i
    local t0 = now()
    local tk = assert(t.mint(vm, "user-" .. i % 50))
    assert(t.consume(tk, vm))
    local rec = assert(b:open({ vm_id = vm, user = "user-" .. i % 50, mode = "direct",
      start = ngx.now() }, LIMITS))
    b:refresh(rec)
    b:close(rec)
    out[i] = now() - t0
  end
  sort(out)
  return out
end

local function pct(list, p) return list[floor(#list * p)] * 1000 end

local _M = {}

function _M.run(url)
  local shdict = assert(require("ctvnc.gateway.store.shdict").new({ dict = "ctvnc_sessions" }))
  local redis = assert(require("ctvnc.gateway.store.redis").new({ url = url, node = "bench" }))
  opens(redis)   -- warm: scripts loaded, the pool filled
  local s, r = opens(shdict), opens(redis)
  local line = "  %-34s p50 %7.3f ms   p99 %7.3f ms\n"
  ngx.print(line:format("shdict store, per open", pct(s, 0.5), pct(s, 0.99)))
  ngx.print(line:format("Redis store (loopback), per open", pct(r, 0.5), pct(r, 0.99)))
  ngx.print(("  %-34s p50 %7.3f ms   p99 %7.3f ms   (goal <= 1 ms)\n"):format(
    "added by Redis", pct(r, 0.5) - pct(s, 0.5), pct(r, 0.99) - pct(s, 0.99)))
  ngx.print("  (a ticket minted and used, both limits taken, one refresh, the close:"
    .. " 11 round trips to Redis)\n")
end

return _M
