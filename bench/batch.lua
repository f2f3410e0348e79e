--- Benchmark 1: console URLs for 1,000 VMs at 20 ms latency per request.
--   ctvnc:  client:batch(ids, {mode="direct"}), concurrency 16, all 1,000 VMs
--   (a)     the vendor document's way: one curl process per VM (first 100)
--   (b)     a plain sequential LuaSocket loop (first 200)
local common = require "bench.common"
local ctvnc = require "ctvnc"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local printf, now = common.printf, common.now

local N, N_CURL, N_SOCKET = 1000, 100, 200
local LATENCY_MS, CONCURRENCY = 20, 16
local VNC_QUERY = "query vnc($input: VncInput!) { vnc(input: $input) "
  .. "{ vm_uuid host_ip cluster_ip raw_token token } }"

local ids = common.vm_ids(N)

-- ctvnc ------------------------------------------------------------------
local client = assert(ctvnc.new({ endpoint = common.base, token = "sim-token",
                                  concurrency = CONCURRENCY }))
common.reset() -- connection and request counters start at 0 (and latency at 0)
common.latency(LATENCY_MS)
local t0 = now()
local _, summary = client:batch(ids, { mode = "direct" })
local ctvnc_s = now() - t0
local stats = common.stats()
client:close()
local ctvnc_ms = ctvnc_s * 1000 / N

-- (a) one curl process per VM ----------------------------------------------
t0 = now()
local p = assert(io.popen("sh bench/vendor_curl.sh " .. common.port .. " " .. N_CURL))
local curl_ok = tonumber(p:read("*a"))
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
local ideal_ms = LATENCY_MS / CONCURRENCY
local ratio = ctvnc_ms / ideal_ms
local conns = stats.connections
local speedup_a, speedup_b = curl_ms / ctvnc_ms, socket_ms / ctvnc_ms

printf("== 1. batch: %d VMs, %d ms latency per request, concurrency %d (%s) ==",
  N, LATENCY_MS, CONCURRENCY, _VERSION)
printf("  %-40s %8.2f ms/VM  (%d VMs in %.2f s, %d ok, %d failed)", "ctvnc client:batch direct",
  ctvnc_ms, N, ctvnc_s, summary.ok, summary.failed)
printf("  %-40s %8.2f ms/VM  (%d VMs, %d ok)", "(a) curl process per VM, sequential",
  curl_ms, N_CURL, curl_ok or 0)
printf("  %-40s %8.2f ms/VM  (%d VMs, %d ok)", "(b) LuaSocket loop, sequential",
  socket_ms, N_SOCKET, socket_ok)
printf("  %-40s %8.2f ms/VM", "ideal (latency / concurrency)", ideal_ms)
printf("  %-40s %8.2fx     target <= 1.30x          %s", "ctvnc / ideal", ratio,
  common.verdict(ratio <= 1.3))
printf("  %-40s %8d       target <= %d             %s", "connections opened by the batch",
  conns, CONCURRENCY + 2, common.verdict(conns <= CONCURRENCY + 2))
printf("  %-40s %8d", "most requests in flight at the server", stats.in_flight_max)
printf("  %-40s %8.1fx     target >= 15x            %s", "ctvnc speed-up vs (a) curl",
  speedup_a, common.verdict(speedup_a >= 15))
printf("  %-40s %8.1fx", "ctvnc speed-up vs (b) LuaSocket", speedup_b)
