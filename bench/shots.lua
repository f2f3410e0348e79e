--- Benchmark 6: screenshots (client:screenshots) through the simulator's
-- /websockify/ proxy to spec/support/rfbserver.py, 20 ms latency on every
-- tower request and on every answer of the console (the 101 and each RFB
-- server message: six in all, so a screenshot costs six round trips after
-- its credentials).
--   a. 100 VMs (64x48 desktops, ZRLE), at concurrency 16 and 100
--   b. memory per screenshot in flight: 20 VMs with 1920x1080 desktops at
--      once, the growth of this process's peak RSS over a warm-up run,
--      divided by 20
local common = require "bench.common"
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"

local printf, now = common.printf, common.now
local LATENCY_MS = 20

local function free_port()
  local p = assert(io.popen("python3 -c 'import socket; s=socket.socket(); "
    .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"))
  local port = tonumber(p:read("*a"))
  p:close()
  return port
end

local function peak_kib()
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmHWM:%s*(%d+)"))
end

local port = free_port()
local pidfile = os.tmpname()
assert(os.execute(("python3 spec/support/rfbserver.py --latency=%g 127.0.0.1:%d "
  .. "> /dev/null 2>&1 & echo $! > %s"):format(LATENCY_MS / 1000, port, pidfile)))
local f = assert(io.open(pidfile))
local pid = tonumber(f:read("*a"))
f:close()
os.remove(pidfile)
local function stop() os.execute("kill " .. pid .. " 2>/dev/null") end

local ok, err = pcall(function()
  for _ = 1, 100 do            -- until it listens
    if core.probe({ { "127.0.0.1", port } }, 0.2)[1] then break end
    core.sleep(0.05)
  end
  common.control("desktop", { ws = "http://127.0.0.1:" .. port })
  common.reset()
  common.latency(LATENCY_MS)
  printf("screenshots through the tower's proxy, %d ms latency (tower and console)",
    LATENCY_MS)
  local ids = {}
  for i = 1, 100 do ids[i] = "vm-" .. (100 + i) end
  for _, c in ipairs({ 16, 100 }) do
    local client = assert(ctvnc.new({ endpoint = common.base, token = "sim-token" }))
    local t0 = now()
    local _, summary = client:screenshots(ids, { mode = "proxy", concurrency = c })
    local secs = now() - t0
    client:close()
    -- ideal: the credentials (one request each, c at once) and six round
    -- trips a console, c at once
    local ideal = math.ceil(100 / c) * LATENCY_MS * 7 / 1000
    printf("  100 VMs, concurrency %3d: %d ok, %.2f s, %.0f screenshots/s "
      .. "(ideal %.2f s, %.0f/s)", c, summary.ok, secs, 100 / secs, ideal, 100 / ideal)
  end
  -- the wall: `ctvnc wall` for the same 100 VMs (get-vms, the screenshots
  -- as 320-wide thumbnails, the page), as a whole process
  local list = os.tmpname()
  local page = os.tmpname()
  local lf = assert(io.open(list, "w"))
  lf:write(table.concat(ids, "\n"), "\n")
  lf:close()
  local t0 = now()
  local rc = os.execute(("CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token CTVNC_PROGRESS=0 "
    .. "lua5.4 bin/ctvnc wall --mode proxy --file %s --out %s > /dev/null")
    :format(common.base, list, page))
  local wall_secs = now() - t0
  local pf = assert(io.open(page, "rb"))
  local size = #pf:read("*a")
  pf:close()
  os.remove(list)
  os.remove(page)
  printf("  ctvnc wall of 100 VMs (concurrency 16): %.2f s for the whole command, page %.0f KiB "
    .. "(%s)", wall_secs, size / 1024, (rc == true or rc == 0) and "ok" or "failed")
  common.latency(0)
  local big = {}
  for i = 1, 20 do big[i] = "vm-" .. (1000 + i) end
  local client = assert(ctvnc.new({ endpoint = common.base, token = "sim-token" }))
  local warm = client:screenshots({ "vm-1000", "vm-1100" }, { mode = "proxy", timeout = 60 })
  assert(warm[1].ok, warm[1].message)
  local before = peak_kib()
  local results, summary = client:screenshots(big, { mode = "proxy", concurrency = 20,
                                                     timeout = 60 })
  local after = peak_kib()
  local png = 0
  for _, r in ipairs(results) do png = png + (r.png and #r.png or 0) end
  client:close()
  printf("  memory: 20 screenshots of 1920x1080 in flight at once (%d ok): peak RSS +%.1f MiB, "
    .. "%.2f MiB each (framebuffer 5.9 MiB, PNGs %.0f KiB each)", summary.ok,
    (after - before) / 1024, (after - before) / 1024 / 20, png / 1024 / 20)
end)
stop()
pcall(common.control, "desktop", {})
if not ok then error(err) end
