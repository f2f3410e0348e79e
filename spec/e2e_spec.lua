local helpers = require "helpers"
local cjson = require "cjson"
local ctvnc = require "ctvnc"
local socket = require "socket"
local common = require "gateway.common"

-- End to end: a real VNC desktop (Xvnc) behind a cluster websockify and
-- behind the simulator's /websockify/ proxy, the console URLs ctvnc builds,
-- and noVNC in headless Chromium opening them (spec/e2e/browse.js).
--
--   Chromium --direct URL--> websockify 127.0.0.2 (token plugin: asks the
--                            simulator where the raw token leads) --> Xvnc
--   Chromium --proxy URL---> simulator /websockify/ (resolves the base64
--                            token) --> websockify 127.0.0.1 --> Xvnc
--   Chromium --> gateway /console/vm-1?ticket= (a link minted with the key)
--            --> /console/vm-1 (noVNC's full page) --> gateway /console/vm-1/ws
--                            --> the direct (or proxy) target ctvnc chose
--
-- Chromium is Debian's, driven by puppeteer-core (spec/e2e/package.json,
-- installed here with npm ci when node_modules is missing). Screenshots go
-- to out/e2e/<page>.png. Loopback only; no URL (they hold tokens) is ever
-- printed.
local ROOT = helpers.ROOT
local OUT = os.getenv("CTVNC_E2E_OUT") or ROOT .. "/out/e2e"   -- test.sh: one per suite
local COLOUR, RGB = "#2a6f97", { 42, 111, 151 }
local KEY = "k-e2e-" .. tostring(os.time()) .. tostring(math.random(1e6, 9e6))
local KEY_VIEW = "k-e2e-view-" .. tostring(os.time()) .. tostring(math.random(1e6, 9e6))
local TYPED, TYPED_RGB = "#aa3300", { 170, 51, 0 }
local PACKAGES = "tigervnc-standalone-server x11-xserver-utils xterm chromium novnc websockify "
  .. "python3-requests nodejs"

--- Hides tokens and keys in logs shown on failure.
local function redact(s)
  return (s:gsub("([Tt]oken=)[^&%s'\"]*", "%1<redacted>"):gsub("(key=)[^&%s'\"]*", "%1<redacted>")
    :gsub("Token '[^']*'", "Token '<redacted>'"):gsub("/_sim/desktop/%x+", "/_sim/desktop/<redacted>"))
end

local function sh_ok(cmd)
  local _, ok = helpers.run(cmd)
  return ok
end

local alive, read_file, write_file = common.alive, helpers.read_file, helpers.write_file

describe("the console in headless Chromium #e2e #novalgrind", function()
  local sim, dir, keys
  local lab                -- spec/gateway/common.lua: gateways, processes, secrets
  local cluster_port, gw_direct, gw_proxy, gw_busy, gw_cap, display

  --- Starts `cmd` in the background in a session of its own (websockify's
  -- per-connection children are stopped with it).
  local function spawn(name, cmd) return lab:spawn(name, cmd) end

  local function wait_port(host, port, name)
    local ok, err = pcall(helpers.wait_port, host, port)
    assert(ok, ("%s: %s\n%s"):format(name, tostring(err), lab:log_tail(name)))
  end

  local function stop_all()
    if lab then lab:stop() end
    lab = nil
    if sim then pcall(helpers.control, "desktop", { }) end
  end

  local function start_all()
    for _, bin in ipairs({ "Xvnc", "xsetroot", "xterm", "websockify", "node" }) do
      assert(sh_ok("command -v " .. bin), bin .. " is missing (apt-get install " .. PACKAGES .. ")")
    end
    assert(sh_ok("test -x /usr/lib/chromium/chromium || command -v chromium"),
      "chromium is missing (apt-get install " .. PACKAGES .. ")")
    assert(sh_ok("test -r /usr/share/novnc/core/rfb.js"), "novnc is missing")
    assert(sh_ok("/usr/bin/python3 -c 'import requests'"),
      "python3-requests is missing (websockify's JSONTokenApi needs it)")
    -- puppeteer-core, as pinned in spec/e2e/package-lock.json
    if not sh_ok(("test -d %s/spec/e2e/node_modules/puppeteer-core"):format(ROOT)) then
      local out, ok = helpers.run(("cd %s/spec/e2e && npm ci --no-audit --no-fund"):format(ROOT))
      assert(ok, "npm ci in spec/e2e failed:\n" .. out)
    end

    sim = helpers.sim()
    lab = common.lab(redact)
    dir = lab.dir
    assert(os.execute("mkdir -p " .. OUT))
    for _, s in ipairs({ KEY, KEY_VIEW, helpers.STATIC_TOKEN }) do lab:secret(s) end
    helpers.run("rm -f " .. OUT .. "/*.png")

    -- the desktop: Xvnc picks a free display (-displayfd), VNC on loopback only
    local vnc_port = helpers.free_port("127.0.0.1")
    spawn("xvnc", ("Xvnc -displayfd 3 -rfbport %d -localhost -nolisten tcp -SecurityTypes None "
      .. "-geometry 800x600 -depth 24 -desktop ctvnc-e2e 3> %s/display"):format(vnc_port, dir))
    for _ = 1, 100 do
      display = (read_file(dir .. "/display") or ""):match("%d+")
      if display then break end
      socket.sleep(0.05)
    end
    assert(display, "Xvnc did not start:\n" .. lab:log_tail("xvnc"))
    wait_port("127.0.0.1", vnc_port, "xvnc")
    local out, ok = helpers.run(("xsetroot -display :%s -solid '%s'"):format(display, COLOUR))
    assert(ok, "xsetroot: " .. out)
    -- a terminal on the desktop, away from pixel (10, 10): what is typed
    -- into the console runs there (the pointer gives it the keyboard)
    spawn("xterm", ("xterm -display :%s -geometry 40x6+450+350 -e /bin/sh"):format(display))

    -- the proxy side: a plain websockify in front of the desktop, where the
    -- simulator's /websockify/ carries the websocket
    local desk_port = helpers.free_port("127.0.0.1")
    spawn("websockify-desktop", ("websockify 127.0.0.1:%d 127.0.0.1:%d"):format(desk_port, vnc_port))
    -- the cluster (127.0.0.2, where the simulator puts vm-1): a websockify
    -- whose token plugin asks the simulator where a raw token leads (any raw
    -- token it handed out in the last 60 s, also the ones the gateway fetches
    -- on its own), so a wrong raw token connects nowhere
    cluster_port = helpers.free_port("127.0.0.2")
    spawn("websockify-cluster", ("env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY "
      .. "-u all_proxy -u ALL_PROXY NO_PROXY='*' websockify --token-plugin JSONTokenApi "
      .. "--token-source '%s/_sim/desktop/%%s' 127.0.0.2:%d"):format(sim.http, cluster_port))
    wait_port("127.0.0.1", desk_port, "websockify-desktop")
    wait_port("127.0.0.2", cluster_port, "websockify-cluster")
    helpers.control("desktop", { ws = "http://127.0.0.1:" .. desk_port,
                                 vnc = "127.0.0.1:" .. vnc_port })

    -- the example gateway: auto mode (vm-1's cluster answers: direct), and
    -- one in proxy mode whose proxy URLs go to the simulator's plain port
    keys = dir .. "/keys"
    write_file(keys, KEY .. " vm-1,nope,fault-500\n" .. KEY_VIEW .. " vm-1:view\n")
    local function start_gateway(name, env)
      return lab:start_gateway(name, common.tower_env(sim), { KEYS = keys, SCHEME = "ws",
        CLUSTER_PORT = cluster_port, MODE = "auto", CTVNC_ENDPOINT = sim.https }, env)
    end
    gw_direct = start_gateway("gw-auto")
    gw_proxy = start_gateway("gw-proxy", { MODE = "proxy", CTVNC_ENDPOINT = sim.http })
    gw_busy = start_gateway("gw-busy", { RATE = "1r/m", BURST = 1 })
    gw_cap = start_gateway("gw-cap", { MAX_SESSION = 4 })
  end

  setup(function()
    local ok, err = pcall(start_all)
    if not ok then
      stop_all()
      error(err, 0)
    end
  end)

  teardown(stop_all)

  --- Opens `pages` in one headless Chromium; returns results by page name.
  local function browse(pages)
    local job = dir .. "/job.json"
    local pid_file = dir .. "/chromium.pid"
    write_file(job, cjson.encode({ out = OUT, pages = pages, pid_file = pid_file,
                                   colour = RGB, timeout_ms = 80000 }))
    finally(function()
      -- browse.js stops Chromium itself; this is for when it could not
      local pid = tonumber((read_file(pid_file) or ""):match("%d+") or "")
      if pid and alive(pid) then helpers.run(("kill -KILL -%d"):format(pid)) end
      os.remove(job)
    end)
    local out, ok = helpers.run(("timeout -k 5 90 node %s/spec/e2e/browse.js %s 2>&1")
      :format(ROOT, job))
    assert(ok, "browse.js failed:\n" .. redact(out))
    local doc = cjson.decode(out:match("{\"results\".*}"))
    local by_name = {}
    for _, r in ipairs(doc.results) do
      if r.pixel == cjson.null then r.pixel = nil end
      by_name[r.name] = r
    end
    return by_name
  end

  local function credentials()
    local client = assert(ctvnc.new({ endpoint = sim.https, token = "sim-token", ca_file = sim.cert }))
    local urls, err, kind = client:urls("vm-1", { scheme = "ws", port = cluster_port })
    client:close()
    assert(urls, ("client:urls: %s (%s)"):format(tostring(err), tostring(kind)))
    -- the client asks the tower over TLS, so its proxy URL points at the TLS
    -- port; the browser goes to the simulator's plain port, with the same
    -- query ctvnc built
    local proxy = assert(ctvnc.proxy_url(sim.http, urls.info, { scheme = "ws" }))
    local same = urls.proxy:gsub(":" .. sim.https_port .. "/", ":" .. sim.http_port .. "/", 1)
    assert.is_true(same == proxy, "the proxy URL differs from the client's beyond the port")
    return urls.direct, proxy, urls.info
  end

  local function assert_connected(r, name)
    assert.is_not_nil(r, name .. ": no result")
    assert.are.equal("connected", r.title, name .. ": noVNC did not connect")
    assert.are.same(RGB, r.pixel, name .. ": the desktop's colour is not on the canvas")
    local png = read_file(r.screenshot)
    assert.truthy(png and png:sub(1, 8) == "\137PNG\r\n\26\n", name .. ": no screenshot")
  end

  local function assert_not_connected(r, name)
    assert.is_not_nil(r, name .. ": no result")
    assert.are_not.equal("connected", r.title, name .. ": noVNC connected")
    local shown = r.pixel and r.pixel[1] == RGB[1] and r.pixel[2] == RGB[2] and r.pixel[3] == RGB[3]
    assert.is_falsy(shown, name .. ": the desktop is on the canvas")
  end

  local function gateway_mode(port)
    local _, body = lab:http(port, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY })
    local doc = cjson.decode(body)
    return doc and doc.mode
  end

  local tickets = {}   -- every ticket minted, for the log check

  --- A ticket link for vm on the gateway at port: url, ticket.
  local function ticket_link(port, vm, key)
    local _, body = lab:http(port, "POST", "/console/" .. vm .. "/ticket",
      { ["X-API-Key"] = key or KEY })
    local doc = cjson.decode(body)
    assert(doc and doc.url, "no ticket for " .. vm)
    tickets[#tickets + 1] = lab:secret(doc.ticket)
    return ("http://127.0.0.1:%d%s"):format(port, doc.url), doc.ticket
  end

  --- No key anywhere, and the ticket only in the link itself.
  local function assert_no_secret_in_urls(r, name, ticket)
    assert.truthy(#r.urls > 5, name .. ": too few requests recorded")
    assert.truthy(r.urls[1]:find("ticket=", 1, true), name .. ": the first URL is not the link")
    for i, u in ipairs(r.urls) do
      assert.is_nil(u:find(KEY, 1, true), name .. ": the key is in URL #" .. i)
      assert.is_nil(u:find("key=", 1, true), name .. ": key= in URL #" .. i)
      if i > 1 then
        assert.is_nil(u:find(ticket, 1, true), name .. ": the ticket is in URL #" .. i)
      end
    end
    assert.truthy(#r.ws_urls >= 1, name .. ": no websocket opened")
    assert.truthy(#r.ws_urls <= 2, name .. ": more websockets than connects")
    for i, u in ipairs(r.ws_urls) do
      assert.is_nil(u:find("?", 1, true), name .. ": a query on websocket #" .. i)
      assert.is_nil(u:find(ticket, 1, true), name .. ": the ticket on websocket #" .. i)
    end
  end

  it("connects noVNC through the direct URL, the proxy URL and the gateway's console page",
    function()
      assert.are.equal("direct", gateway_mode(gw_direct))
      assert.are.equal("proxy", gateway_mode(gw_proxy))
      local direct, proxy = credentials()
      local link1, ticket1 = ticket_link(gw_direct, "vm-1")
      local link2, ticket2 = ticket_link(gw_proxy, "vm-1")
      local r = browse({
        { name = "direct", ws = direct },
        { name = "proxy", ws = proxy },
        { name = "gateway", url = link1, cad = true, reconnect = true,
          wait_text = "Console of web-1 (vm-1): connected" },
        { name = "gateway-proxy", url = link2 },
      })
      assert_connected(r.direct, "direct URL")
      assert_connected(r.proxy, "proxy URL")
      assert_connected(r.gateway, "gateway console page (direct)")
      assert_connected(r["gateway-proxy"], "gateway console page (proxy)")
      assert_no_secret_in_urls(r.gateway, "gateway", ticket1)
      assert_no_secret_in_urls(r["gateway-proxy"], "gateway-proxy", ticket2)
      -- noVNC's full page: its toolbar's Ctrl-Alt-Del went out on the websocket
      assert.is_true(r.gateway.cad, "Ctrl-Alt-Del was not sent")
      -- its status line names the VM (from /console/vm-1/about)
      assert.truthy(r.gateway.text:find("Console of web-1 (vm-1): connected", 1, true),
        r.gateway.text)
      -- and its Connect button connects again after a Disconnect
      assert.is_true(r.gateway.reconnected, "noVNC did not connect again")
    end)

  it("takes screenshots of the real desktop (Xvnc behind websockify), direct and proxy",
    function()
      local client = assert(ctvnc.new({ endpoint = sim.https, token = "sim-token",
                                        ca_file = sim.cert }))
      finally(function() client:close() end)
      for _, opts in ipairs({ { mode = "direct", scheme = "ws", port = cluster_port },
                              { mode = "proxy" } }) do
        local png, info, kind = client:screenshot("vm-1", opts)
        assert(png, ("%s: %s (%s)"):format(opts.mode, tostring(info), tostring(kind)))
        assert.same({ 800, 600, "ctvnc-e2e", opts.mode },
          { info.width, info.height, info.name, opts.mode })
        local file = dir .. "/shot-" .. opts.mode .. ".png"
        write_file(file, png)
        -- decoded by Python's zlib: the root window's colour at (10, 10), as
        -- the browser's canvas shows it, and the terminal at (460, 360)
        local out, ok = helpers.run(("python3 -c 'import sys; sys.path.insert(0, \"%s/spec/support\"); "
          .. "import pngcheck; w, h, rows = pngcheck.decode(open(\"%s\", \"rb\").read()); "
          .. "print(w, h, *rows[10][30:33], *rows[360][1380:1383])'"):format(ROOT, file))
        assert(ok, out)
        local v = {}
        for n in out:gmatch("%d+") do v[#v + 1] = tonumber(n) end
        assert.same({ 800, 600, RGB[1], RGB[2], RGB[3] }, { v[1], v[2], v[3], v[4], v[5] })
        assert.are_not.same({ RGB[1], RGB[2], RGB[3] }, { v[6], v[7], v[8] }, "no terminal")
      end
      -- the whole picture against what noVNC painted on the browser's canvas:
      -- the pixels whose channels differ by more than 8 (Xvnc's cursor, the
      -- canvas's rounding), at most 0.5% of them
      local direct = credentials()
      local r = browse({ { name = "canvas", ws = direct, canvas = true } })["canvas"]
      assert_connected(r, "the canvas page")
      assert.truthy(r.canvas, "no canvas pixels")
      local out, ok = helpers.run(("python3 -c 'import sys; sys.path.insert(0, \"%s/spec/support\"); "
        .. "import pngcheck; a = pngcheck.decode(open(\"%s\", \"rb\").read()); "
        .. "b = pngcheck.decode(open(\"%s\", \"rb\").read()); "
        .. "bad = sum(1 for ra, rb in zip(a[2], b[2]) for x, y in zip(ra, rb) if abs(x - y) > 8); "
        .. "print(a[0], a[1], b[0], b[1], bad)'")
        :format(ROOT, dir .. "/shot-direct.png", r.canvas))
      assert(ok, out)
      local w1, h1, w2, h2, bad = out:match("(%d+) (%d+) (%d+) (%d+) (%d+)")
      assert.same({ "800", "600", "800", "600" }, { w1, h1, w2, h2 }, out)
      assert.is_true(tonumber(bad) <= 800 * 600 * 3 * 0.005,
        ("%s channel values differ between the screenshot and the canvas"):format(bad))
    end)

  it("opens the desktop in Debian's noVNC page through ctvnc.novnc_url links", function()
    local direct, proxy = credentials()
    -- browse.js serves Debian's noVNC under /novnc/ on its own loopback port
    local r = browse({
      { name = "novnc-direct", path = assert(ctvnc.novnc_url("/novnc/vnc.html", direct)) },
      { name = "novnc-proxy", path = assert(ctvnc.novnc_url("/novnc/vnc.html", proxy,
        { resize = "scale" })) },
    })
    assert_connected(r["novnc-direct"], "noVNC page, direct URL")
    assert_connected(r["novnc-proxy"], "noVNC page, proxy URL")
    -- the websocket noVNC opened is the URL ctvnc built, query and all
    assert.is_true(r["novnc-direct"].ws_urls[1] == direct, "noVNC opened another websocket URL")
    assert.is_true(r["novnc-proxy"].ws_urls[1] == proxy, "noVNC opened another websocket URL")
  end)

  it("needs the proxy token URI-encoded, the right raw token and the right key", function()
    local direct, proxy, info = credentials()
    assert.truthy(info.token:find("+", 1, true) and info.token:find("/", 1, true)
      and info.token:find("=", 1, true), "the simulator's token lacks + / =")
    -- the base64 token pasted as it is: websockify-style parsing turns "+"
    -- into a space, and the proxy knows no such token
    local unencoded = ("ws://127.0.0.1:%d/websockify/?token=%s&uuid=%s&host=%s")
      :format(sim.http_port, info.token, info.vm_uuid, info.host_ip)
    local wrong = assert(ctvnc.direct_url({ cluster_ip = info.cluster_ip, vm_uuid = info.vm_uuid,
      host_ip = info.host_ip, raw_token = ("0"):rep(32) }, { scheme = "ws", port = cluster_port }))
    local r = browse({
      { name = "proxy-unencoded", ws = unencoded },
      { name = "proxy-encoded", ws = proxy },        -- the same credentials, as ctvnc wrote them
      { name = "direct-wrong-raw-token", ws = wrong },
      { name = "direct-right-raw-token", ws = direct },
      { name = "gateway-wrong-ticket", url = ("http://127.0.0.1:%d/console/vm-1?ticket=%s")
        :format(gw_direct, "eyJ2Ijoidm0tMSJ9.AAAA") },
    })
    assert_not_connected(r["proxy-unencoded"], "unencoded proxy URL")
    assert_connected(r["proxy-encoded"], "encoded proxy URL")
    assert_not_connected(r["direct-wrong-raw-token"], "direct URL with a wrong raw token")
    assert_connected(r["direct-right-raw-token"], "direct URL")
    assert_not_connected(r["gateway-wrong-ticket"], "gateway page with a wrong ticket")
  end)

  it("shows a page with a sentence for each failure", function()
    local used = ticket_link(gw_direct, "vm-1")
    local pages = {
      -- the page asks CloudTower nothing: an unknown VM or a failing tower
      -- is the websocket's failure, its reason told in the status line
      { name = "console-not-found", url = (ticket_link(gw_direct, "nope")),
        wait_text = "no such VM (not_found)" },
      { name = "console-tower-fails", url = (ticket_link(gw_direct, "fault-500")),
        wait_text = "(http)" },
      { name = "error-denied", url = ("http://127.0.0.1:%d/console/vm-1?ticket=%s")
        :format(gw_direct, "eyJ2Ijoidm0tMSJ9.AAAA"), status = 403,
        text = "You may not open this console." },
      { name = "error-bad-request", url = ("http://127.0.0.1:%d/console/vm-1?key=x"):format(gw_direct),
        status = 400, text = "This console address is not valid." },
      { name = "error-busy-first", url = ("http://127.0.0.1:%d/console/nope"):format(gw_busy) },
      { name = "error-busy-burst", url = ("http://127.0.0.1:%d/console/nope"):format(gw_busy) },
      { name = "error-busy", url = ("http://127.0.0.1:%d/console/nope"):format(gw_busy), status = 429,
        text = "Too many consoles were asked for at once. Wait a moment and try again." },
      { name = "console-used", url = used },       -- opens the console: the ticket is used up
      { name = "error-used", url = used, status = 403, text = "expired or been used already" },
    }
    local r = browse(pages)
    for _, p in ipairs(pages) do
      if p.status then
        local got = r[p.name]
        assert.is_not_nil(got, p.name)
        assert.are.equal(p.status, got.status, p.name)
        assert.truthy(got.text:find(p.text, 1, true), p.name .. ": " .. got.text)
        assert.truthy(got.text:find("HTTP " .. p.status, 1, true), p.name)
        local png = read_file(got.screenshot)
        assert.truthy(png and #png > 1000, p.name .. ": no screenshot")
      end
    end
    assert_connected(r["console-used"], "the console before its ticket was used")
    -- the gateway's reason, not noVNC's bare "Failed to connect to server"
    for name, reason in pairs({
      ["console-not-found"] = "Console of nope: no such VM (not_found). Open a new console link "
        .. "to try again.",
      ["console-tower-fails"] = "Console of fault-500: CloudTower answered with an error (http).",
    }) do
      local got = r[name]
      assert_not_connected(got, name)
      assert.are.equal(200, got.status, name)
      assert.are.equal("failed", got.title, name)
      assert.truthy(got.text:find(reason, 1, true), name .. ": " .. got.text)
      assert.is_nil(got.text:find("the connection failed", 1, true), name .. ": " .. got.text)
      assert.is_nil(got.text:find("Failed to connect", 1, true), name .. ": " .. got.text)
      local png = read_file(got.screenshot)
      assert.truthy(png and #png > 1000, name .. ": no screenshot")
    end
  end)

  it("drops a view-only console's keys in the stream, and passes a full one's", function()
    local view_link = ticket_link(gw_direct, "vm-1", KEY_VIEW)
    local full_link = ticket_link(gw_direct, "vm-1")
    local cmd = ("xsetroot -solid '%s'"):format(TYPED)
    finally(function()
      helpers.run(("xsetroot -display :%s -solid '%s'"):format(display, COLOUR))
    end)
    local r = browse({
      { name = "typed-view-only", url = view_link, type = cmd, at = { 560, 380 },
        wait_text = "Console of web-1 (vm-1), view only: connected" },
      { name = "typed-full", url = full_link, type = cmd, at = { 560, 380 } },
    })
    assert_connected(r["typed-view-only"], "view-only console")
    -- its status line says so (out/e2e/typed-view-only.png)
    assert.truthy(r["typed-view-only"].text:find("Console of web-1 (vm-1), view only: connected",
      1, true), r["typed-view-only"].text)
    assert.is_nil(r["typed-full"].text:find("view only", 1, true), r["typed-full"].text)
    assert.are.same(RGB, r["typed-view-only"].pixel_after, "the view-only console changed the desktop")
    assert_connected(r["typed-full"], "full console")
    assert.are.same(TYPED_RGB, r["typed-full"].pixel_after, "the full console's keys did not arrive")
    -- the audit trail tells the two apart
    local views, fulls = 0, 0
    for line in (read_file(dir .. "/gw-auto/audit.log") or ""):gmatch("[^\n]+") do
      local a = cjson.decode(line)
      if a.event == "close" and a.view_only == true then views = views + 1 end
      if a.event == "close" and a.view_only == false then fulls = fulls + 1 end
    end
    assert.is_true(views >= 1 and fulls >= 1)
  end)

  it("ends a console at MAX_SESSION and says why on the page", function()
    local r = browse({ { name = "time-limit", url = (ticket_link(gw_cap, "vm-1")), linger_ms = 5000 } })
    assert.are.equal("connected", r["time-limit"].title, "noVNC did not connect")
    assert.are.equal("failed", r["time-limit"].lingered)
    assert.truthy(r["time-limit"].lingered_text:find("time limit of 4 s is reached", 1, true),
      r["time-limit"].lingered_text)
  end)

  it("leaves no key, ticket or token in the gateways' logs", function()
    assert.is_true(#tickets >= 5)
    -- the keys, "sim-token" and every ticket are the lab's secrets
    lab:assert_logs_clean({ "ticket=", "token=", "key=" })
  end)
end)
