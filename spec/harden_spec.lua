local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- The gateway under attack (issue 19, points 2, 5, 6 and 8): each spec plays
-- the attack against real servers on loopback, the example gateway
-- (examples/openresty/run.sh) in front of them. vm-1's cluster is
-- 127.0.0.2 (the simulator's choice): a websockify there in front of the
-- recording RFB server (spec/gateway/rfb.js), another in front of a real
-- Xvnc, a third in front of a target that dribbles its handshake.
local ROOT = helpers.ROOT
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

describe("the gateway under attack #novalgrind", function()
  local sim, lab, dir
  local K_FULL, K_VIEW = "k-full-" .. random_hex(8), "k-view-" .. random_hex(8)
  local rfb_log, rfb_ws, xvnc_ws, dribble_ws

  --- A small Lua server spawned in the lab: its source written to a file.
  local function lua_server(name, source, ...)
    local file = ("%s/%s.lua"):format(dir, name)
    write_file(file, source)
    local args = { ... }
    for i, a in ipairs(args) do args[i] = ("'%s'"):format(a) end
    lab:spawn(name, ("lua5.4 %s %s"):format(file, table.concat(args, " ")))
  end

  local function gateway(name, port, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = port,
    }, env)
  end

  local wait_for = common.wait_for

  --- A websocket console of vm-1 from `source`: status, headers and its
  -- RFB stream (common.ws_stream: c:send, c:read), with c:handshake(shared).
  local function console(port, key, source, vm)
    local sock, status, hs = common.ws_handshake(port, "/console/" .. (vm or "vm-1") .. "/ws",
      { ["X-API-Key"] = key, ["Sec-WebSocket-Protocol"] = "binary" }, source)
    local c = common.ws_stream(sock)
    --- RFB 3.8, security None, ClientInit `shared`: the desktop's name.
    function c.handshake(_, shared)
      assert.are.equal("RFB 003.008\n", c:read(12))
      c:send("RFB 003.008\n")
      local count = assert(c:read(1)):byte()
      assert.truthy(assert(c:read(count)):find("\1", 1, true), "no security None")
      c:send("\1")
      assert.are.equal("\0\0\0\0", c:read(4))
      c:send(string.char(shared))
      local init = assert(c:read(24))
      local b1, b2, b3, b4 = init:byte(21, 24)
      return c:read(((b1 * 256 + b2) * 256 + b3) * 256 + b4)
    end
    return status, hs, c
  end

  --- The shared flags the RFB server got, by connection, in order.
  local function inits()
    local out = {}
    for line in (read_file(rfb_log) or ""):gmatch("[^\n]+") do
      local e = cjson.decode(line)
      if e.event == "init" then out[#out + 1] = e.shared end
    end
    return out
  end

  --- One request written by hand from `source`: status, headers (lower
  -- case), body.
  local function raw(port, source, request)
    local s = socket.tcp()
    assert(s:bind(source, 0))
    s:settimeout(5)
    assert(s:connect("127.0.0.1", port))
    assert(s:send(request))
    local answer = s:receive("*a") or ""
    s:close()
    local head, body = answer:match("^(.-)\r\n\r\n(.*)$")
    local hs = {}
    for k, v in (head or ""):gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do hs[k:lower()] = v end
    return tonumber((head or ""):match("^HTTP/%S+ (%d+)")), hs, body
  end

  local function get(port, source, path, extra)
    return raw(port, source, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n")
      :format(path, extra or ""))
  end

  local function assert_security_headers(hs, what)
    assert.are.equal("nosniff", hs["x-content-type-options"], what)
    assert.are.equal("no-referrer", hs["referrer-policy"], what)
    assert.are.equal("no-store", hs["cache-control"], what)
    assert.are.equal("frame-ancestors 'self'", hs["content-security-policy"], what)
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K_FULL, K_VIEW, "sim-token" }) do lab:secret(s) end
    write_file(dir .. "/keys", ("%s vm-1\n%s vm-1:view\n"):format(K_FULL, K_VIEW))
    -- the recording RFB server
    local rfb_port = helpers.free_port("127.0.0.1")
    rfb_log = dir .. "/rfb.jsonl"
    write_file(rfb_log, "")
    lab:spawn("rfb", ("node %s/spec/gateway/rfb.js %d %s"):format(ROOT, rfb_port, rfb_log))
    helpers.wait_port("127.0.0.1", rfb_port)
    rfb_ws = helpers.free_port("127.0.0.2")
    lab:spawn("ws-rfb", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(rfb_ws, rfb_port))
    -- a real desktop: Xvnc (TigerVNC), its default share policy (a client
    -- that is not shared disconnects the others)
    local vnc_port = helpers.free_port("127.0.0.1")
    lab:spawn("xvnc", ("Xvnc -displayfd 3 -rfbport %d -localhost -nolisten tcp -SecurityTypes "
      .. "None -geometry 64x48 -depth 24 -desktop harden 3> %s/display"):format(vnc_port, dir))
    xvnc_ws = helpers.free_port("127.0.0.2")
    lab:spawn("ws-xvnc", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(xvnc_ws, vnc_port))
    -- a target that answers the websocket handshake one header a 0.3 s, forever
    dribble_ws = helpers.free_port("127.0.0.2")
    lua_server("dribble", [[
      local socket = require "socket"
      local server = assert(socket.bind("127.0.0.2", tonumber(arg[1])))
      server:settimeout(0)
      local clients = {}
      while true do
        local c = server:accept()
        if c then
          c:settimeout(0)
          c:send("HTTP/1.1 101 Switching Protocols\r\n")
          clients[#clients + 1] = c
        end
        for _, k in ipairs(clients) do k:send("X-Slow: 1\r\n") end
        socket.sleep(0.3)
      end
    ]], dribble_ws)
    helpers.wait_port("127.0.0.2", rfb_ws)
    helpers.wait_port("127.0.0.2", xvnc_ws)
    helpers.wait_port("127.0.0.1", vnc_port)
    helpers.wait_port("127.0.0.2", dribble_ws)
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  describe("shared consoles", function()
    it("makes every view-only ClientInit shared, and full ones unless EXCLUSIVE_CONSOLES=on",
       function()
      local p = gateway("shared", rfb_ws)
      local q = gateway("exclusive", rfb_ws, { EXCLUSIVE_CONSOLES = "on" })
      local sent = {}
      for _, case in ipairs({ { p, K_VIEW, 0 }, { p, K_FULL, 0 }, { p, K_FULL, 1 },
                              { p, K_FULL, 7 }, { q, K_VIEW, 0 }, { q, K_FULL, 0 } }) do
        local status, _, c = console(case[1], case[2], "127.0.0.1")
        assert.are.equal(101, status)
        assert.are.equal("rfb-spec", c:handshake(case[3]))
        c.sock:close()
        sent[#sent + 1] = case[3]
        assert.is_true(wait_for(function() return #inits() == #sent end))
      end
      -- view 0, full 0, full 1, full 7 | exclusive allowed: view 0, full 0
      assert.are.same({ 1, 1, 1, 7, 1, 0 }, inits())
    end)

    it("keeps an open full session on a real Xvnc when a view-only one asks for it alone",
       function()
      local p = gateway("xvnc", xvnc_ws)
      local status, _, full = console(p, K_FULL, "127.0.0.1")
      assert.are.equal(101, status)
      assert.are.equal("harden", full:handshake(1))
      local status2, _, view = console(p, K_VIEW, "127.0.0.1")
      assert.are.equal(101, status2)
      assert.are.equal("harden", view:handshake(0))
      socket.sleep(0.5)
      -- the full session is still served: a FramebufferUpdate answers its request
      full:send("\3\0\0\0\0\0\0\64\0\48")
      local update, code, reason = full:read(4, 5)
      assert.is_not_nil(update, ("the full session was dropped: %s %s"):format(tostring(code),
        tostring(reason)))
      assert.are.equal(0, update:byte(1))
      full.sock:close()
      view.sock:close()
    end)
  end)

  describe("bounded connections", function()
    it("refuses a client address past LIMIT_CONN while another address is served", function()
      local p = gateway("limit", rfb_ws, { LIMIT_CONN = 2 })
      local held = {}
      for i = 1, 2 do
        local status, _, c = console(p, K_FULL, "127.0.0.2")
        assert.are.equal(101, status, "session " .. i)
        held[#held + 1] = c
      end
      local status, hs = console(p, K_FULL, "127.0.0.2")
      assert.are.equal(429, status)
      assert.are.equal("nosniff", hs["x-content-type-options"])
      local other = console(p, K_FULL, "127.0.0.3")
      assert.are.equal(101, other)
      assert.are.equal(200, (get(p, "127.0.0.3", "/health")))
      for _, c in ipairs(held) do c.sock:close() end
      -- the refusal is not logged at warn: the request line may hold a ticket
      assert.is_nil(read_file(lab.gateways.limit.dir .. "/error.log"):find("limiting", 1, true))
    end)

    it("serves /health and other addresses beside 1,100 half-open connections from one, "
       .. "and closes them after HEADER_TIMEOUT", function()
      local p = gateway("siege", rfb_ws, { HEADER_TIMEOUT = "5s" })
      local half = {}
      for i = 1, 1100 do
        local s = socket.tcp()
        assert(s:bind("127.0.0.2", 0))
        s:settimeout(2)
        assert(s:connect("127.0.0.1", p), "connection " .. i)
        s:send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")   -- the head never ends
        half[i] = s
      end
      local t0 = socket.gettime()
      assert.are.equal(200, (get(p, "127.0.0.3", "/health")))
      assert.are.equal(200, (get(p, "127.0.0.1", "/health")))
      local status, _, c = console(p, K_FULL, "127.0.0.3")
      assert.are.equal(101, status)
      assert.are.equal("rfb-spec", c:handshake(1))
      c.sock:close()
      assert.is_true(socket.gettime() - t0 < 4.5)   -- while they were all open
      -- past HEADER_TIMEOUT the gateway has closed every one of them
      socket.sleep(math.max(0, t0 + 6 - socket.gettime()))
      local closed = 0
      for _, s in ipairs(half) do
        s:settimeout(1)
        local _, err = s:receive("*a")
        if err == nil or err == "closed" then closed = closed + 1 end
        s:close()
      end
      assert.are.equal(1100, closed)
    end)

    it("cuts a target that dribbles its handshake at TARGET_TIMEOUT, its VM slot held till then",
       function()
      local p = gateway("dribble", dribble_ws, { TARGET_TIMEOUT = 2, SLOT_TTL = 1,
        MAX_PER_VM = 1 })
      local t0 = socket.gettime()
      -- the first console's answer comes later: send its upgrade, read after
      local first = socket.tcp()
      first:settimeout(10)
      assert(first:connect("127.0.0.1", p))
      assert(first:send(("GET /console/vm-1/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: "
        .. "websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        .. "Sec-WebSocket-Version: 13\r\nX-API-Key: %s\r\n\r\n"):format(p, K_FULL)))
      socket.sleep(1)
      local second = console(p, K_VIEW, "127.0.0.1")
      assert.are.equal(429, second)                  -- the opening session holds the VM
      local line = first:receive("*l")
      local took = socket.gettime() - t0
      first:close()
      assert.are.equal("HTTP/1.1 504 Gateway Time-out", line)
      assert.is_true(took >= 1.9 and took < 5, "answered after " .. took .. " s")
      -- the gateway's own lines go through a timer: a moment later
      assert.is_true(wait_for(function()
        return (read_file(lab.gateways.dribble.dir .. "/error.log") or "")
          :find("ctvnc: websocket of vm%-1 to ws://127%.0%.0%.2:" .. dribble_ws
            .. "/websockify/ failed: [^\n]*%(timeout%)") ~= nil
      end))
    end)

    it("ends a session whose browser never finishes the RFB handshake at HANDSHAKE_TIMEOUT",
       function()
      local p = gateway("silent", rfb_ws, { HANDSHAKE_TIMEOUT = 2 })
      local t0 = socket.gettime()
      local status, _, c = console(p, K_FULL, "127.0.0.2")
      assert.are.equal(101, status)
      assert.are.equal("RFB 003.008\n", c:read(12))     -- and never an answer
      local got, code, reason = c:read(1, 6)
      assert.is_nil(got)
      assert.are.same({ 1001, "the console did not start within 2 s" }, { code, reason })
      assert.is_true(socket.gettime() - t0 < 5)
      c.sock:close()
      assert.is_true(wait_for(function()
        return (read_file(lab.gateways.silent.dir .. "/audit.log") or "")
          :find('"reason":"handshake timeout"', 1, true) ~= nil
      end))
      -- a console that does start is not cut
      local status2, _, c2 = console(p, K_FULL, "127.0.0.2")
      assert.are.equal(101, status2)
      assert.are.equal("rfb-spec", c2:handshake(1))
      socket.sleep(2.5)
      c2:send("\3\0\0\0\0\0\0\64\0\48")
      assert.are.equal("\0\0\0\0", c2:read(4, 3))
      c2.sock:close()
    end)
  end)

  it("never sends a console token in clear to a tower reached over https (SCHEME=ws)", function()
    -- the tower's console proxy address: a plain listener that records the
    -- first bytes of every connection
    local cap_port = helpers.free_port("127.0.0.1")
    local capture = dir .. "/captured"
    lua_server("capture", [[
      local socket = require "socket"
      local server = assert(socket.bind("127.0.0.1", tonumber(arg[1])))
      while true do
        local c = server:accept()
        c:settimeout(2)
        local data, _, partial = c:receive(4096)
        local f = io.open(arg[2], "ab")
        f:write("<conn>", data or partial or "")
        f:close()
        c:close()
      end
    ]], cap_port, capture)
    helpers.wait_port("127.0.0.1", cap_port)
    local p = lab:start_gateway("tower-leg", common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "proxy", SCHEME = "ws",
      CTVNC_ENDPOINT = "https://127.0.0.1:" .. cap_port, TARGET_TIMEOUT = 3 })
    local status, hs = console(p, K_FULL, "127.0.0.1")
    assert.are.equal(502, status)
    assert.are.equal("tls", hs["x-ctvnc-error"])
    local got = read_file(capture) or ""
    -- the leg was tried, over TLS: a ClientHello (0x16), never a request line
    assert.truthy(got:find("<conn>\22", 1, true), "no TLS connection reached the tower")
    assert.is_nil(got:find("GET ", 1, true))
    assert.is_nil(got:find("token=", 1, true))
    assert.is_nil(got:find("websockify", 1, true))
  end)

  describe("the server itself", function()
    local p
    setup(function()
      p = gateway("server", rfb_ws, { TRUSTED_PROXIES = "127.0.0.1" })
    end)

    it("runs its workers as WORKER_USER (ctvnc by default), never nobody or root", function()
      local master = read_file(lab.gateways.server.dir .. "/nginx.pid"):match("%d+")
      local users = helpers.run("ps -o user= --ppid " .. master)
      assert.truthy(users:find("ctvnc", 1, true), users)
      assert.is_nil(users:find("nobody", 1, true), users)
      assert.is_nil(users:find("root", 1, true), users)
      local ok = pcall(lab.start_gateway, lab, "root-workers", common.tower_env(sim),
        { WORKER_USER = "root" })
      assert.is_false(ok)
    end)

    it("answers only its SERVER_NAMES: another Host is 421 with the gateway's page", function()
      local status, hs, body = raw(p, "127.0.0.1",
        "GET /health HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n")
      assert.are.equal(421, status)
      assert_security_headers(hs, "421")
      assert.truthy(body:find("does not answer for that host name", 1, true))
      status = raw(p, "127.0.0.1", ("GET /console/vm-1/url HTTP/1.1\r\nHost: evil:%d\r\n"
        .. "X-API-Key: %s\r\nConnection: close\r\n\r\n"):format(p, K_FULL))
      assert.are.equal(421, status)
      for _, host in ipairs({ "127.0.0.1", "LOCALHOST:" .. p }) do
        status = raw(p, "127.0.0.1", ("GET /health HTTP/1.1\r\nHost: %s\r\nConnection: "
          .. "close\r\n\r\n"):format(host))
        assert.are.equal(200, status, host)
      end
      local q = gateway("named", rfb_ws, { SERVER_NAMES = "console.example" })
      assert.are.equal(421, (get(q, "127.0.0.1", "/health")))
      status = raw(q, "127.0.0.1", "GET /health HTTP/1.1\r\nHost: Console.Example\r\n"
        .. "Connection: close\r\n\r\n")
      assert.are.equal(200, status)
    end)

    it("puts its security headers on /health, /metrics, the 101 and nginx's own errors",
       function()
      for _, path in ipairs({ "/health", "/metrics", "/no/such/route", "/_ctvnc_error" }) do
        local _, hs = get(p, "127.0.0.1", path)
        assert_security_headers(hs, path)
      end
      local status, hs = raw(p, "127.0.0.1", "NOT A REQUEST\r\n\r\n")
      assert.are.equal(400, status)
      assert_security_headers(hs, "400")
      local s101, h101, c = console(p, K_FULL, "127.0.0.1")
      assert.are.equal(101, s101)
      assert_security_headers(h101, "101")
      c.sock:close()
    end)

    it("believes X-Forwarded-For only from TRUSTED_PROXIES", function()
      get(p, "127.0.0.1", "/health?from-proxy", "X-Forwarded-For: 203.0.113.9\r\n")
      get(p, "127.0.0.2", "/health?from-client", "X-Forwarded-For: 203.0.113.8\r\n")
      local log
      assert.is_true(wait_for(function()
        log = read_file(lab.gateways.server.dir .. "/access.log") or ""
        return select(2, log:gsub("GET /health ", "")) >= 2
      end))
      assert.truthy(log:find("\n?203%.0%.113%.9 %["), log)
      assert.truthy(log:find("\n?127%.0%.0%.2 %["), log)
      assert.is_nil(log:find("203.0.113.8", 1, true), log)
    end)
  end)

  it("leaves no secret in any log", function()
    lab:assert_logs_clean()
  end)
end)
