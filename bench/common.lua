--- Helpers shared by the benchmarks: clock, simulator control, memory.
-- The simulator is the one bench/run.sh started (SIM_HTTP_PORT in the
-- environment); every request goes to 127.0.0.1 only.
local core = require "ctvnc.core"
local simctl = require "spec.support.simctl"

local M = {}

M.now = core.now -- monotonic seconds

M.port = tonumber(os.getenv("SIM_HTTP_PORT")) -- nil outside bench/run.sh
M.base = "http://127.0.0.1:" .. tostring(M.port)

--- A control request to the simulator (spec/support/simctl.lua): GET of
-- "stats" (decoded), else a POST of `body` as JSON.
function M.control(path, body)
  assert(M.port, "SIM_HTTP_PORT is not set (run bench/run.sh)")
  return simctl(M.base, path, body)
end

function M.reset() return M.control("reset") end
function M.stats() return M.control("stats") end
function M.latency(ms) return M.control("config", { latency_ms = ms }) end

--- Resident set size of this process in KiB (VmRSS of /proc/self/status).
function M.rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

--- The ids vm-1 .. vm-n.
function M.vm_ids(n)
  local ids = {}
  for i = 1, n do ids[i] = "vm-" .. i end
  return ids
end

--- printf to stdout, flushed at once (run.sh's output is watched live).
function M.printf(fmt, ...)
  io.write(string.format(fmt, ...), "\n")
  io.flush()
end

--- "met" / "not met" for a target.
function M.verdict(ok) return ok and "met" or "NOT MET" end

return M
