local helpers = require "helpers"
local cjson = require "cjson"
local common = require "gateway.common"
local rfblab = require "support.rfblab"

-- The gateway's screenshots and console wall (issue 25, point 5) against
-- spec/support/rfbserver.py (known framebuffers behind its own websocket)
-- as vm-N's cluster (127.0.0.2) and behind the simulator's console proxy,
-- the simulator as CloudTower. Every PNG is decoded by pngcheck.py
-- (Python's zlib) and compared pixel by pixel with the framebuffer served.
local random_hex, write_file, read_file = helpers.random_hex, helpers.write_file,
  helpers.read_file

describe("the gateway's screenshots and wall #novalgrind", function()
  local sim, rfb, lab, dir, p
  local K_FULL, K_VIEW, K_NONE = "k-full-" .. random_hex(8), "k-view-" .. random_hex(8),
    "k-none-" .. random_hex(8)

  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = rfb.cluster_port,
    }, env)
  end

  --- GET path with key: status, body, headers.
  local function get(port, path, key)
    return lab:http(port, "GET", path, key and { ["X-API-Key"] = key } or nil)
  end

  --- WIDTH, HEIGHT, MISMATCHES of a PNG against VM n's framebuffer.
  local function check_png(png, n, width)
    local file = dir .. "/shot.png"
    write_file(file, png)
    return rfblab.check_file(file, n, width)
  end

  local function audit(name)
    local out = {}
    for line in (read_file(lab.gateways[name].dir .. "/audit.log") or ""):gmatch("[^\n]+") do
      out[#out + 1] = assert(cjson.decode(line), "not JSON: " .. line)
    end
    return out
  end

  --- An RFB 3.8 client (security None, ClientInit shared) over a
  -- websocket to 127.0.0.1:port path: { read(n), send(bytes), close() }.
  local function rfb_session(port, path, headers, shared)
    local sock, status = common.ws_handshake(port, path, headers)
    assert.are.equal(101, status)
    local c = common.ws_stream(sock)
    function c.close() sock:close() end
    assert.are.equal("RFB 003.008\n", c:read(12))
    c:send("RFB 003.008\n")
    assert.are.equal("\1\1", c:read(2))
    c:send("\1")
    assert.are.equal("\0\0\0\0", c:read(4))
    c:send(shared and "\1" or "\0")
    local init = assert(c:read(24))
    c:read(init:byte(24))
    return c
  end

  -- vm-27 answers every FramebufferUpdateRequest with its 64x48 screen in Raw
  local FBUR = "\3\0\0\0\0\0\0\64\0\48"
  local UPDATE = 4 + 12 + 64 * 48 * 4

  setup(function()
    sim = helpers.sim()
    rfb = rfblab.start()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K_FULL, K_VIEW, K_NONE, "sim-token" }) do lab:secret(s) end
    write_file(dir .. "/keys", ("%s vm-1,vm-2,vm-9,vm-13,vm-15,vm-17,vm-25,vm-27,vm-29\n"
      .. "%s vm-1:view,vm-2:view\n"
      .. "%s vm-404\n"):format(K_FULL, K_VIEW, K_NONE))
    p = start_gateway("gw", { MAX_PER_VM = 1 })
  end)

  teardown(function()
    if lab then
      lab:assert_logs_clean({ "token=" })
      lab:stop()
    end
    if rfb then rfb.stop() end
  end)

  describe("GET /console/<vm>/screenshot.png", function()
    it("is the screen, pixel-exact, never cached; thumbnails to the width asked", function()
      local status, png, hs = get(p, "/console/vm-1/screenshot.png", K_FULL)
      assert.are.equal(200, status, png)
      assert.are.equal("image/png", hs["content-type"])
      assert.are.equal("no-store", hs["cache-control"])
      assert.are.equal("nosniff", hs["x-content-type-options"])
      assert.same({ 64, 48, 0 }, { check_png(png, 1) })
      local asked = helpers.stats().vm["vm-13"] or 0
      status, png = get(p, "/console/vm-13/screenshot.png", K_FULL)
      assert.are.equal(200, status, png)
      assert.same({ 17, 9, 0 }, { check_png(png, 13) })
      assert.are.equal(asked + 1, helpers.stats().vm["vm-13"])   -- CloudTower asked once
      status, png, hs = get(p, "/console/vm-9/screenshot.png?width=50", K_FULL)
      assert.are.equal(200, status, png)
      assert.are.equal("50x35", hs["x-screenshot-size"])
      assert.same({ 50, 35, 0 }, { check_png(png, 9, 50) })
    end)

    it("lets a view-only grant look; no grant is 403, a bad width 400, POST 405", function()
      local status, png = get(p, "/console/vm-1/screenshot.png", K_VIEW)
      assert.are.equal(200, status)
      assert.same({ 64, 48, 0 }, { check_png(png, 1) })
      assert.are.equal(403, (get(p, "/console/vm-13/screenshot.png", K_VIEW)))
      assert.are.equal(403, (get(p, "/console/vm-1/screenshot.png", K_NONE)))
      assert.are.equal(403, (get(p, "/console/vm-1/screenshot.png")))
      for _, w in ipairs({ "0", "-3", "abc", "4097", "1.5" }) do
        local st, body = get(p, "/console/vm-1/screenshot.png?width=" .. w, K_FULL)
        assert.are.equal(400, st, w)
        assert.are.equal("invalid", cjson.decode(body).kind)
      end
      assert.are.equal(405, (lab:http(p, "POST", "/console/vm-1/screenshot.png",
        { ["X-API-Key"] = K_FULL })))
    end)

    it("goes through CloudTower's proxy over verified TLS in proxy mode", function()
      local q = start_gateway("proxy", { MODE = "proxy" })
      local status, png = get(q, "/console/vm-2/screenshot.png?width=32", K_VIEW)
      assert.are.equal(200, status, png)
      assert.same({ 32, 24, 0 }, { check_png(png, 2, 32) })
      lab:stop_gateways("proxy")
    end)

    it("answers a target that is not RFB 502 rfb, and one that is silent 504", function()
      local q = start_gateway("bad", { TARGET_TIMEOUT = 0.5 })
      local status, body, hs = get(q, "/console/vm-17/screenshot.png", K_FULL)
      assert.are.equal(502, status)
      assert.are.equal("rfb", cjson.decode(body).kind)
      assert.are.equal("rfb", hs["x-ctvnc-error"])
      status, body = get(q, "/console/vm-25/screenshot.png", K_FULL)
      assert.are.equal(504, status)
      assert.are.equal("timeout", cjson.decode(body).kind)
      -- a refusal's reason quoting the console token is logged without it
      status = get(q, "/console/vm-15/screenshot.png", K_FULL)
      assert.are.equal(502, status)
      local errors = read_file(lab.gateways.bad.dir .. "/error.log") or ""
      assert.truthy(errors:find("screenshot of vm-15", 1, true), errors)
      assert.truthy(errors:find("<redacted>", 1, true), errors)
      lab:stop_gateways("bad")
    end)

    it("counts SHOT_RATE per user: 429 past it, other users untouched", function()
      local q = start_gateway("rate", { SHOT_RATE = 2 })
      assert.are.equal(200, (get(q, "/console/vm-1/screenshot.png?width=8", K_FULL)))
      assert.are.equal(200, (get(q, "/console/vm-1/screenshot.png?width=8", K_FULL)))
      local status, body = get(q, "/console/vm-1/screenshot.png?width=8", K_FULL)
      assert.are.equal(429, status)
      assert.are.equal("busy", cjson.decode(body).kind)
      assert.are.equal(200, (get(q, "/console/vm-1/screenshot.png?width=8", K_VIEW)))
      lab:stop_gateways("rate")
    end)

    it("never disturbs an open session: shared, no slot taken, one audit line", function()
      -- a full session of vm-27 through the relay holds the VM's one slot
      local s = rfb_session(p, "/console/vm-27/ws", { ["X-API-Key"] = K_FULL }, true)
      s:send(FBUR)
      assert.are.equal(UPDATE, #assert(s:read(UPDATE)))
      local status, png = get(p, "/console/vm-27/screenshot.png", K_FULL)
      assert.are.equal(200, status, png)
      assert.same({ 64, 48, 0 }, { check_png(png, 27) })
      -- the session goes on: another whole update
      s:send(FBUR)
      assert.are.equal(UPDATE, #assert(s:read(UPDATE)))
      -- the desktop saw both ClientInits shared
      local inits = {}
      for flag in rfb.output():gmatch("clientinit 27 shared=(%d)") do inits[#inits + 1] = flag end
      assert.same({ "1", "1" }, inits)
      -- a screenshot is one audit line, not a session
      local shots = {}
      for _, a in ipairs(audit("gw")) do
        if a.event == "screenshot" and a.vm_id == "vm-27" then shots[#shots + 1] = a end
      end
      assert.are.equal(1, #shots)
      assert.are.equal("key#1", shots[1].user)
      assert.are.equal("ok", shots[1].reason)
      assert.truthy(shots[1].start and shots[1].duration and shots[1].client)
      -- what a non-shared client does to the same desktop (TigerVNC's
      -- behaviour, which the screenshot must not have): the session is cut
      local intruder = rfb_session(rfb.proxy_port,
        "/websockify?uuid=00000000-0000-0000-0000-00000000001b", nil, false)
      s:send(FBUR)
      assert.is_nil(s:read(UPDATE))
      intruder:close()
      s:close()
    end)
  end)

  describe("GET /wall", function()
    it("lists the VMs the key grants, each a link to its console, no secret", function()
      local status, html, hs = get(p, "/wall?vms=vm-1,vm-404,vm-27,vm-1", K_FULL)
      assert.are.equal(200, status, html)
      assert.are.equal("text/html; charset=utf-8", hs["content-type"])
      assert.are.equal("no-store", hs["cache-control"])
      local csp = hs["content-security-policy"]
      assert.truthy(csp:find("default-src 'none'", 1, true), csp)
      assert.truthy(csp:find("frame-ancestors 'self'", 1, true), csp)
      local nonce = csp:match("script%-src 'nonce%-([^']+)'")
      assert.truthy(nonce)
      local links = {}
      for href in html:gmatch('<a class="tile" href="([^"]+)"') do links[#links + 1] = href end
      assert.same({ "/console/vm-1", "/console/vm-27" }, links)
      assert.truthy(html:find('<script nonce="' .. nonce .. '">', 1, true))
      assert.is_nil(html:find(K_FULL, 1, true))
      assert.truthy(html:find('"refresh":30', 1, true))
      -- a view-only key sees its own VMs; nothing granted is 403; none asked 400
      status, html = get(p, "/wall?vms=vm-1,vm-2,vm-27", K_VIEW)
      assert.are.equal(200, status, html)
      links = {}
      for href in html:gmatch('<a class="tile" href="([^"]+)"') do links[#links + 1] = href end
      assert.same({ "/console/vm-1", "/console/vm-2" }, links)
      assert.are.equal(403, (get(p, "/wall?vms=vm-27", K_VIEW)))
      assert.are.equal(400, (get(p, "/wall", K_FULL)))
    end)

    it("shows WALL_VMS when no vms= is given, refreshed every WALL_REFRESH seconds", function()
      local q = start_gateway("wall", { WALL_VMS = "vm-9 vm-13,vm-404", WALL_REFRESH = 5 })
      local status, html = get(q, "/wall", K_FULL)
      assert.are.equal(200, status, html)
      local vms = {}
      for vm in html:gmatch('data%-vm="([^"]+)"') do vms[#vms + 1] = vm end
      assert.same({ "vm-9", "vm-13" }, vms)
      assert.truthy(html:find('"refresh":5', 1, true))
      lab:stop_gateways("wall")
    end)

    it("marks, in Chromium, the screen that changed and the one unchanged past WALL_STILL",
       function()
      local q = start_gateway("chromium", { WALL_REFRESH = 1, WALL_STILL = 2 })
      -- puppeteer-core, as pinned in spec/e2e/package-lock.json
      local ROOT = helpers.ROOT
      if not helpers.run(("test -d %s/spec/e2e/node_modules/puppeteer-core && echo yes")
          :format(ROOT)):find("yes", 1, true) then
        local out, ok = helpers.run(("cd %s/spec/e2e && npm ci --no-audit --no-fund"):format(ROOT))
        assert(ok, "npm ci in spec/e2e failed:\n" .. out)
      end
      local out_dir = os.getenv("CTVNC_E2E_OUT") or (dir .. "/e2e")
      local job, pid_file = dir .. "/wall-job.json", dir .. "/wall-chromium.pid"
      write_file(job, cjson.encode({ out = out_dir, pid_file = pid_file, timeout_ms = 80000,
        pages = { { name = "wall", rounds = 5, headers = { ["X-API-Key"] = K_FULL },
                    url = ("http://127.0.0.1:%d/wall?vms=vm-1,vm-29"):format(q) } } }))
      finally(function()
        local pid = tonumber((read_file(pid_file) or ""):match("%d+") or "")
        if pid and common.alive(pid) then helpers.run(("kill -KILL -%d"):format(pid)) end
        os.remove(job)
      end)
      local out, ok = helpers.run(("timeout -k 5 90 node %s/spec/e2e/browse.js %s 2>&1")
        :format(ROOT, job))
      assert(ok, "browse.js failed:\n" .. lab.show(out))
      local page = cjson.decode(out:match("{\"results\".*}")).results[1]
      assert.are.equal(200, page.status)
      local tiles = {}
      for _, t in ipairs(page.tiles) do tiles[t.vm] = t end
      -- vm-1 is the same picture every time; vm-29 a new one on each connection
      assert.are.equal("tile still", tiles["vm-1"].class, cjson.encode(page.tiles))
      assert.are.equal("tile changed", tiles["vm-29"].class, cjson.encode(page.tiles))
      assert.are.equal("/console/vm-1", tiles["vm-1"].href)
      assert.are.equal(64, tiles["vm-1"].width)
      assert.truthy(tiles["vm-1"].hash ~= tiles["vm-29"].hash)
      assert.truthy(page.text:find("1 changed, 1 unchanged for long, 0 failed", 1, true), page.text)
      lab:stop_gateways("chromium")
    end)
  end)
end)
