--- Screenshots: client:screenshot, client:screenshots and probe = "rfb",
-- against spec/support/rfbserver.py (an RFB server behind its own
-- websocket, serving known framebuffers) reached directly (the cluster,
-- 127.0.0.2) and through the simulator's /websockify/ proxy over TLS. Every
-- PNG is decoded by spec/support/pngcheck.py (Python's zlib, not ctvnc) and
-- compared pixel by pixel with the framebuffer served.
local helpers = require "helpers"
local rfblab = require "support.rfblab"

describe("screenshots", function()
  local sim, lab, cluster_port

  --- WIDTH, HEIGHT, MISMATCHES of a PNG against the framebuffer of VM n.
  local function check_png(png, n, width)
    local file = lab.dir .. "/shot.png"
    helpers.write_file(file, png)
    return rfblab.check_file(file, n, width)
  end

  local function direct(extra)
    local o = { mode = "direct", scheme = "ws", port = cluster_port }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  local function tls_client()
    return helpers.client({ endpoint = sim.https, ca_file = sim.cert })
  end

  setup(function()
    sim = helpers.sim()
    lab = rfblab.start()
    cluster_port = lab.cluster_port
  end)

  teardown(function()
    if lab then lab.stop() end
  end)

  helpers.autoclose()

  describe("client:screenshot", function()
    it("decodes a ZRLE desktop pixel-exact, direct", function()
      local png, info = tls_client():screenshot("vm-1", direct())
      assert.is_string(png, info)
      assert.same({ width = 64, height = 48, name = "desk-1", mode = "direct" }, info)
      assert.same({ 64, 48, 0 }, { check_png(png, 1) })
    end)

    it("decodes through the tower's proxy over verified TLS", function()
      local png, info = tls_client():screenshot("vm-2", { mode = "proxy" })
      assert.is_string(png, info)
      assert.equal("proxy", info.mode)
      assert.same({ 64, 48, 0 }, { check_png(png, 2) })
    end)

    it("decodes Raw at 1x1 and ZRLE and Raw at 1921x1081", function()
      local c = helpers.client()
      for _, n in ipairs({ 3, 5, 7 }) do
        local png, info = c:screenshot("vm-" .. n, direct({ timeout = 30 }))
        assert.is_string(png, info)
        local w, h, bad = check_png(png, n)
        assert.same(n == 3 and { 1, 1, 0 } or { 1921, 1081, 0 }, { w, h, bad }, "vm-" .. n)
      end
    end)

    it("follows a DesktopSize change to the new size", function()
      local png, info = helpers.client():screenshot("vm-9", direct())
      assert.is_string(png, info)
      assert.same({ 100, 70 }, { info.width, info.height })
      assert.same({ 100, 70, 0 }, { check_png(png, 9) })
    end)

    it("speaks RFB 3.7 and cleans the desktop name", function()
      local png, info = helpers.client():screenshot("vm-13", direct())
      assert.is_string(png, info)
      assert.equal("bad name", info.name)
      assert.same({ 17, 9, 0 }, { check_png(png, 13) })
    end)

    it("copies CopyRect areas and skips Bell and ServerCutText", function()
      local png = assert(helpers.client():screenshot("vm-19", direct()))
      assert.same({ 40, 30, 0 }, { check_png(png, 19) })
    end)

    it("scales down to a thumbnail by area averaging", function()
      local png, info = helpers.client():screenshot("vm-5", direct({ width = 200, timeout = 30 }))
      assert.is_string(png, info)
      assert.same({ 200, 113 }, { info.width, info.height })
      assert.same({ 200, 113, 0 }, { check_png(png, 5, 200) })
      -- a width at or above the desktop's keeps it whole
      png = helpers.client():screenshot("vm-1", direct({ width = 500 }))
      assert.same({ 64, 48, 0 }, { check_png(png, 1) })
    end)

    it("answers VNC Authentication with the password (3.3 and 3.8)", function()
      local c = helpers.client()
      for _, n in ipairs({ 11, 21 }) do
        local png, info = c:screenshot("vm-" .. n, direct({ password = "secret" }))
        assert.is_string(png, info)
        assert.same({ 64, 48, 0 }, { check_png(png, n) })
      end
    end)

    it("fails as rfb on a wrong or missing password, never quoting it", function()
      local c = helpers.client()
      helpers.assert_fail("rfb", { label = "3.8 wrong", secrets = { "wrong-pw" } },
        c:screenshot("vm-21", direct({ password = "wrong-pw" })))
      local msg = helpers.assert_fail("rfb", "3.3 wrong",
        c:screenshot("vm-11", direct({ password = "wrong-pw" })))
      assert.matches("refused the VNC password", msg)
      msg = helpers.assert_fail("rfb", "none", c:screenshot("vm-11", direct()))
      assert.matches("asks for a VNC password", msg)
    end)

    it("keeps a refusal's reason, cleaned and without the token", function()
      local msg = helpers.assert_fail("rfb", { label = "refused", id = "vm-15" },
        helpers.client():screenshot("vm-15", direct()))
      assert.matches("console in use", msg)
      assert.matches("<redacted>", msg, 1, true)
      assert.is_nil(msg:find("%c"))
    end)

    it("fails as rfb on a server that is not RFB", function()
      local msg = helpers.assert_fail("rfb", "not rfb",
        helpers.client():screenshot("vm-17", direct()))
      assert.matches("RFB ProtocolVersion", msg)
    end)

    it("fails as auth on a refused handshake, connect and timeout on the way", function()
      local c = helpers.client()
      helpers.assert_fail("auth", "403", c:screenshot("vm-23", direct()))
      helpers.assert_fail("connect", "unreachable", c:screenshot("vm-4", direct()))
      helpers.assert_fail("timeout", "silent", c:screenshot("vm-25", direct({ timeout = 0.5 })))
      -- an unknown VM is not_found, as on every other surface
      helpers.assert_fail("not_found", "unknown", c:screenshot("nope", { mode = "proxy" }))
    end)

    it("fails as tls against a certificate it cannot verify", function()
      local c = helpers.client({ endpoint = sim.https, ca_file = helpers.NONE,
                                 token = helpers.STATIC_TOKEN })
      -- the login needs no TLS here: the token is static, the vnc query
      -- fails first on the same certificate
      helpers.assert_fail({ tls = true }, "self-signed", c:screenshot("vm-2", { mode = "proxy" }))
    end)

    it("refuses bad options before any request", function()
      local c = helpers.client()
      helpers.assert_fail("invalid", "width", c:screenshot("vm-1", { width = 0 }))
      helpers.assert_fail("invalid", "timeout", c:screenshot("vm-1", { timeout = -1 }))
      helpers.assert_fail("invalid", "password", c:screenshot("vm-1", { password = 1 }))
      helpers.assert_fail("invalid", "mode", c:screenshot("vm-1", { mode = "x" }))
      helpers.assert_fail("invalid", "empty", c:screenshot(""))
      assert.has_error(function() c:screenshot(1) end)
    end)
  end)

  describe("client:screenshots", function()
    it("takes 200 VMs in order, concurrently, each its own picture", function()
      local ids, seen = {}, 0
      for i = 1, 200 do ids[i] = "vm-" .. (i * 2 + 100) end   -- even: the proxy
      ids[201] = "nope"
      ids[202] = ids[1]
      local c = tls_client()
      local results, summary = c:screenshots(ids, { concurrency = 32,
        on_progress = function(done, total) seen = done assert.equal(202, total) end })
      assert.same({ total = 202, ok = 201, failed = 1 }, summary)
      assert.equal(202, seen)
      for i = 1, 200 do
        local r = results[i]
        assert.is_true(r.ok, r.message)
        assert.same({ ids[i], 64, 48, "proxy" }, { r.vm_id, r.width, r.height, r.mode })
      end
      assert.equal("not_found", results[201].kind)
      assert.equal(results[1].png, results[202].png)
      -- each picture is its VM's (the pattern depends on n)
      for _, i in ipairs({ 1, 77, 200 }) do
        assert.same({ 64, 48, 0 }, { check_png(results[i].png, i * 2 + 100) })
      end
    end)

    it("auto mode: direct for a cluster that answers, proxy for one that does not", function()
      local results = helpers.client():screenshots({ "vm-1", "vm-2" },
        { scheme = "ws", port = cluster_port })
      assert.same({ true, true }, { results[1].ok, results[2].ok })
      assert.same({ "direct", "proxy" }, { results[1].mode, results[2].mode })
    end)
  end)

  describe('probe = "rfb"', function()
    it("chooses direct only when an RFB banner comes back, and caches it", function()
      local c = helpers.client()
      local url, mode = c:console_url("vm-1", { scheme = "ws", port = cluster_port, probe = "rfb" })
      assert.equal("direct", mode, url)
      -- the simulator's cluster port answers TCP but speaks no websocket
      -- RFB: a TCP probe says direct, the RFB probe says proxy
      local _, tcp_mode = c:console_url("vm-1", { scheme = "ws", port = sim.cluster_port })
      assert.equal("direct", tcp_mode)
      local c2 = helpers.client()
      local _, rfb_mode = c2:console_url("vm-1", { scheme = "ws", port = sim.cluster_port,
        probe = "rfb" })
      assert.equal("proxy", rfb_mode)
      -- cached: the verdict stands for the same cluster and port
      assert.is_table(c2.probe_cache["127.0.0.2 " .. sim.cluster_port .. " rfb"])
      local results = c2:batch({ "vm-1", "vm-3" }, { scheme = "ws", port = cluster_port,
        probe = "rfb" })
      assert.same({ "direct", "direct" }, { results[1].mode, results[2].mode })
    end)

    it("is refused when it is neither a function nor \"rfb\"", function()
      helpers.assert_fail("invalid", "probe", helpers.client():console_url("vm-1",
        { probe = "tcp" }))
    end)
  end)
end)
