--- Benchmark 1: console URLs for 1,000 VMs at 20 ms latency per request.
--   ctvnc:  client:batch(ids, {mode="direct"}) over HTTP/1.1 at concurrency
--           16, over HTTPS (HTTP/2, one connection) at 64, and over HTTP/1.1
--           at 16 with 25 VMs a request (per_request), all 1,000 VMs each
--   (a)     the vendor document's way: one curl process per VM (first 100)
--   (b)     a plain sequential LuaSocket loop (first 200)
local common = require "bench.common"
local ctvnc = require "ctvnc"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local printf, now = common.printf, common.now

local N, N_CURL, N_SOCKET = 1000, 100, 200
local LATENCY_MS = 20
local VNC_QUERY = "query vnc($input: VncInput!) { vnc(input: $input) "
  .. "{ vm_uuid host_ip cluster_ip raw_token token } }"

local ids = common.vm_ids(N)

-- ctvnc, in the configurations of issue 14 -----------------------------------
-- { label, endpoint, concurrency, per_request, http2 }
local https = "https://127.0.0.1:" .. os.getenv("SIM_HTTPS_PORT")
local CONFIGS = {
  { "HTTP/1.1 C=16 per_request 1", common.base, 16, 1 },
  { "HTTPS h2 C=64 per_request 1", https, 64, 1 },
  { "HTTP/1.1 C=16 per_request 25", common.base, 16, 25 },
}
local runs = {}
for i, c in ipairs(CONFIGS) do
  local client = assert(ctvnc.new({ endpoint = c[2], token = "sim-token", concurrency = c[3],
                                    per_request = c[4], ca_file = os.getenv("SIM_CERT") }))
  common.reset() -- counters start at 0 (and latency at 0)
  common.latency(LATENCY_MS)
  local t0 = now()
  local _, summary = client:batch(ids, { mode = "direct" })
  local secs = now() - t0
  local stats = common.stats()
  client:close()
  runs[i] = { label = c[1], ms = secs * 1000 / N, secs = secs, summary = summary,
              requests = stats.requests["/api"], connections = stats.connections,
              cost_us = stats.cpu_us_per_request,
              ideal = LATENCY_MS / (c[3] * c[4]) }
end
local ctvnc_ms = runs[1].ms

-- (a) one curl process per VM ----------------------------------------------
local t0 = now()
local p = assert(io.popen("sh bench/vendor_curl.sh " .. common.port .. " " .. N_CURL))
local curl_ok = tonumber(p:read("*a")) or 0
p:close()
local curl_ms = (now() - t0) * 1000 / N_CURL

-- (b) sequential LuaSocket loop -----------------------------------------------
local function e(s) -- encodeURIComponent, the usual way
  return (s:gsub("[^%w%-_%.!~%*'%(%)]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function socket_url(vm_id)
  local body = cjson.encode({ operationName = "vnc", query = VNC_QUERY,
                              variables = { input = { vm = { id = vm_id } } } })
  local out = {}
  local ok, code = http.request({
    url = common.base .. "/api", method = "POST",
    headers = { ["Authorization"] = "sim-token", ["Content-Type"] = "application/json",
                ["accept"] = "application/json", ["content-language"] = "en-US",
                ["Content-Length"] = #body },
    source = ltn12.source.string(body), sink = ltn12.sink.table(out),
  })
  if not ok or code ~= 200 then return nil end
  local v = cjson.decode(table.concat(out)).data.vnc
  return "wss://" .. v.cluster_ip .. "/websockify/?uuid=" .. e(v.vm_uuid)
    .. "&token=" .. e(v.raw_token) .. "&host=" .. e(v.host_ip)
end

http.TIMEOUT = 5
local socket_ok = 0
t0 = now()
for i = 1, N_SOCKET do
  if socket_url(ids[i]) then socket_ok = socket_ok + 1 end
end
local socket_ms = (now() - t0) * 1000 / N_SOCKET
common.reset()

-- figures --------------------------------------------------------------------
printf("== 1. batch: %d VMs, %d ms latency per request (%s) ==", N, LATENCY_MS, _VERSION)
printf("  %-34s %8s %8s %6s %6s %9s %7s", "", "ms/VM", "ideal", "reqs", "conns", "ok/failed",
  "sim us")
for _, r in ipairs(runs) do
  printf("  %-34s %8.3f %8.3f %6d %6d %5d/%-3d %7d", r.label, r.ms, r.ideal, r.requests,
    r.connections, r.summary.ok, r.summary.failed, r.cost_us)
end
printf("  %-34s %8.2f %8s %6d %6s %5d/%-3d", "(a) vendor's curl per VM (first " .. N_CURL .. ")",
  curl_ms, "-", N_CURL, "-", curl_ok, N_CURL - curl_ok)
printf("  %-34s %8.2f %8s %6d %6s", "(b) LuaSocket loop (first " .. N_SOCKET .. ")",
  socket_ms, "-", N_SOCKET, "-")
printf("  (sim us: the simulator's own CPU time per request: a figure near the ideal is")
printf("   server-bound when this is large; the first VM of a batch goes alone, to learn")
printf("   whether the tower has the token field)")
local h2, p25 = runs[2], runs[3]
printf("  %-48s %7.2fx  target <= 1.30x  %s", "HTTP/1.1 C=16 / its ideal", ctvnc_ms / runs[1].ideal,
  common.verdict(ctvnc_ms / runs[1].ideal <= 1.3))
printf("  %-48s %7.2fx  target <= 1.30x  %s", "h2 C=64 / its ideal", h2.ms / h2.ideal,
  common.verdict(h2.ms / h2.ideal <= 1.3))
printf("  %-48s %7d   target 1         %s", "h2 connections", h2.connections,
  common.verdict(h2.connections == 1))
printf("  %-48s %7.3f   target <= 0.15   %s", "per_request 25, ms/VM", p25.ms,
  common.verdict(p25.ms <= 0.15))
printf("  %-48s %7.1fx  target >= 10x    %s", "per_request 25 vs per_request 1", ctvnc_ms / p25.ms,
  common.verdict(ctvnc_ms / p25.ms >= 10))
printf("  %-48s %7.0fx  target >= 200x   %s", "per_request 25 vs (a) curl", curl_ms / p25.ms,
  common.verdict(curl_ms / p25.ms >= 200))
printf("  %-48s %7.1fx  target >= 15x    %s", "per_request 1 vs (a) curl", curl_ms / ctvnc_ms,
  common.verdict(curl_ms / ctvnc_ms >= 15))
printf("  %-48s %7.1fx", "per_request 1 vs (b) LuaSocket", socket_ms / ctvnc_ms)
