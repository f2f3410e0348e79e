--- Benchmark 2: building the two console URLs, ctvnc (C) against plain Lua.
-- One "call" below is one direct_url + one proxy_url for the same info.
local ctvnc = require "ctvnc"
local common = require "bench.common"

local printf, now = common.printf, common.now
local format, byte = string.format, string.byte
local N = tonumber(os.getenv("BENCH_URL_N")) or 1000000

-- the worked example of the vendor document (string tests only: never connected to)
local ENDPOINT = "192.168.5.1"
local INFO = { raw_token = "1a2bc3d4567e89f0a1b2c3d4e5f6a7b8",
  token = "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
  vm_uuid = "00000000-0000-0000-0000-000000000000",
  cluster_ip = "192.168.5.2", host_ip = "192.168.5.4" }

-- plain Lua: what one writes without ctvnc
local function hex(c) return format("%%%02X", byte(c)) end
local function e(s) return (s:gsub("[^%w%-_%.!~%*'%(%)]", hex)) end
local function plain_direct(info)
  return "wss://" .. info.cluster_ip .. "/websockify/?uuid=" .. e(info.vm_uuid)
    .. "&token=" .. e(info.raw_token) .. "&host=" .. e(info.host_ip)
end
local function plain_proxy(endpoint, info)
  return "wss://" .. endpoint .. "/websockify/?token=" .. e(info.token)
    .. "&uuid=" .. e(info.vm_uuid) .. "&host=" .. e(info.host_ip)
end

-- both must give the same strings before any timing
local cd, cp = ctvnc.direct_url(INFO), ctvnc.proxy_url(ENDPOINT, INFO)
local pd, pp = plain_direct(INFO), plain_proxy(ENDPOINT, INFO)
if cd ~= pd or cp ~= pp then
  io.stderr:write("url.lua: ctvnc and plain Lua differ:\n  ", tostring(cd), "\n  ", pd,
    "\n  ", tostring(cp), "\n  ", pp, "\n")
  os.exit(1)
end

-- The N calls of each side run in ROUNDS rounds, ctvnc and plain Lua taking
-- turns, so that a burst of load from elsewhere on the machine hits both;
-- the best round of each is the figure, the mean over all N is shown too.
local ROUNDS = 5
local per_round = math.floor(N / ROUNDS)

--- seconds for `per_round` calls of direct + proxy
local function round(direct, proxy)
  collectgarbage("collect")
  local t0 = now()
  for _ = 1, per_round do
    direct(INFO)
    proxy(ENDPOINT, INFO)
  end
  return now() - t0
end

local sides = {
  { name = "ctvnc.direct_url + ctvnc.proxy_url", direct = ctvnc.direct_url,
    proxy = ctvnc.proxy_url },
  { name = "plain Lua (gsub + concatenation)", direct = plain_direct, proxy = plain_proxy },
}
for _, side in ipairs(sides) do
  for _ = 1, 1000 do side.direct(INFO); side.proxy(ENDPOINT, INFO) end -- warm-up
  side.best, side.total = math.huge, 0
end
for _ = 1, ROUNDS do
  for _, side in ipairs(sides) do
    local t = round(side.direct, side.proxy)
    side.best, side.total = math.min(side.best, t), side.total + t
  end
end

local lang = jit and jit.version or _VERSION
printf("== 2. URL building: %d x (direct_url + proxy_url) on %s, best of %d rounds ==",
  per_round * ROUNDS, lang, ROUNDS)
for _, side in ipairs(sides) do
  side.rate = per_round / side.best
  printf("  %-36s %10.0f calls/s  (%4.0f ns/call; mean over all %10.0f calls/s)", side.name,
    side.rate, 1e9 / side.rate, per_round * ROUNDS / side.total)
end
local ratio = sides[1].rate / sides[2].rate
if jit then
  printf("  %-36s %10.2fx", "ctvnc / plain Lua", ratio)
else
  printf("  %-36s %10.2fx       target >= 5x on Lua 5.4   %s", "ctvnc / plain Lua", ratio,
    common.verdict(ratio >= 5))
end
