--- The screenshot specs' RFB server (spec/support/rfbserver.py) on the
-- proxy's side (127.0.0.1, registered as the simulator's desktop) and the
-- cluster's (127.0.0.2, for direct URLs with `port`), and the independent
-- PNG check (spec/support/pngcheck.py).
local helpers = require "helpers"
local common = require "gateway.common"

local ROOT = helpers.ROOT

local _M = {}

--- Starts the server: { cluster_port =, proxy_port =, dir =, output =
-- function (what it printed: its "clientinit" lines), stop = function }.
function _M.start()
  local lab = common.lab(function(s) return s end)
  local proxy_port = helpers.free_port("127.0.0.1")
  local cluster_port = helpers.free_port("127.0.0.2")
  lab:spawn("rfbserver", ("python3 %s/spec/support/rfbserver.py 127.0.0.1:%d 127.0.0.2:%d")
    :format(ROOT, proxy_port, cluster_port))
  helpers.wait_port("127.0.0.1", proxy_port)
  helpers.wait_port("127.0.0.2", cluster_port)
  helpers.control("desktop", { ws = "http://127.0.0.1:" .. proxy_port })
  return {
    cluster_port = cluster_port,
    proxy_port = proxy_port,
    dir = lab.dir,
    output = function() return helpers.read_file(lab.dir .. "/rfbserver.out") or "" end,
    stop = function()
      pcall(helpers.control, "desktop", {})
      lab:stop()
    end,
  }
end

--- WIDTH, HEIGHT, MISMATCHES of the PNG file against VM n's framebuffer
-- (scaled to `width` when given).
function _M.check_file(file, n, width)
  local out, ok = helpers.run(("python3 %s/spec/support/pngcheck.py %s %d %s")
    :format(ROOT, file, n, width or ""))
  assert(ok, out)
  local w, h, bad = out:match("^(%d+) (%d+) (%d+)")
  return tonumber(w), tonumber(h), tonumber(bad)
end

return _M
