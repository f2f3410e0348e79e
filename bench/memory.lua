--- Benchmark 3: memory of 10,000-VM batches (latency 0) in one process.
-- RSS is VmRSS from /proc/self/status, read after a full collection.
local common = require "bench.common"
local ctvnc = require "ctvnc"

local printf, now = common.printf, common.now
local N, ROUNDS = 10000, 3

--- RSS (KiB) and Lua heap (KiB) after a full collection.
local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
  return common.rss_kib(), collectgarbage("count")
end

common.reset()
local client = assert(ctvnc.new({ endpoint = common.base, token = "sim-token" }))
local ids = common.vm_ids(N)

--- One batch over all ids: results, ok count, seconds.
local function batch()
  local t0 = now()
  local results, summary = client:batch(ids, { mode = "direct" })
  return results, summary.ok, now() - t0
end

printf("== 3. memory: %d-VM batches at latency 0, one process (%s) ==", N, _VERSION)
local rss0, heap0 = settle()
printf("  %-32s RSS %7d KiB   Lua heap %6.0f KiB", "before", rss0, heap0)

do -- one batch with its results still held: what a batch costs per VM
  local results, ok, took = batch()
  local rss1, heap1 = settle()
  printf("  %-32s RSS %7d KiB   Lua heap %6.0f KiB   (%d ok, %.2f s)",
    "after 1 batch, results held", rss1, heap1, ok, took)
  printf("  %-32s RSS %7.0f B/VM    Lua heap %6.0f B/VM", "  growth per VM",
    (rss1 - rss0) * 1024 / N, (heap1 - heap0) * 1024 / N)
  assert(#results == N)
end
local rss2, heap2 = settle()
printf("  %-32s RSS %7d KiB   Lua heap %6.0f KiB", "results dropped", rss2, heap2)

-- repeated batches, results dropped each time: RSS should stay flat
local first
for round = 1, ROUNDS do
  local ok, took = select(2, batch()) -- the results are not kept
  local rss, heap = settle()
  first = first or rss
  printf("  %-32s RSS %7d KiB   Lua heap %6.0f KiB   (%d ok, %.2f s, %+d KiB vs repeat 1)",
    "after repeat " .. round, rss, heap, ok, took, rss - first)
end
client:close()
common.reset()
