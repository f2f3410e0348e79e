local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local core = require "ctvnc.core"
local common = require "gateway.common"

-- The gateway's own relay (issue 13) against real servers on loopback: a
-- minimal RFB server (spec/gateway/rfb.js, it records every client message)
-- behind websockify as vm-1's cluster (127.0.0.2), the simulator as
-- CloudTower. Full and view-only sessions, per-VM and per-user limits, the
-- time cap and the idle timeout, kill by id and by VM, the audit trail, the
-- metrics, JWT users; and no secret in any log.
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

local b64url = helpers.b64url

describe("the gateway's relay #novalgrind", function()
  local sim, dir
  local lab                 -- spec/gateway/common.lua: gateways, processes, secrets
  local K_FULL, K_VIEW, K_ADMIN = "k-full-" .. random_hex(8), "k-view-" .. random_hex(8),
    "k-admin-" .. random_hex(8)
  local JWT_SECRET = random_hex(24)
  local rfb_log, ws_port

  local function secret(s) return lab:secret(s) end

  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = ws_port,
      ADMIN_KEYS = dir .. "/admin-keys",
    }, env)
  end

  --- curl: status, body, the raw header block.
  local function http(port, method, path, headers)
    local status, body, _, raw = lab:http(port, method, path, headers)
    return status, body, raw
  end

  --- What the RFB server received: its JSON lines.
  local function received()
    local out = {}
    for line in (read_file(rfb_log) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    return out
  end

  local function audit(name) return lab:audit(name) end

  local ws = common.ws

  local SET_ENCODINGS = "\2\0\0\1\0\0\0\0"
  local FBUR = "\3\0\0\0\0\0\0\64\0\48"
  local KEY_A = "\4\1\0\0\0\0\0\97"
  local POINTER = "\5\1\0\10\0\10"
  local CUT = "\6\0\0\0\0\0\0\5hello"

  --- The types (and keys) that reached the server on its connection conn.
  local function types_of(conn_no)
    local out = {}
    for _, e in ipairs(received()) do
      if e.conn == conn_no and e.type then out[#out + 1] = e.name end
    end
    return out
  end

  local function last_conn()
    local n = 0
    for _, e in ipairs(received()) do if e.event == "open" then n = e.conn end end
    return n
  end

  --- Has the RFB server logged the end of its connection conn_no? After
  -- that line nothing more can reach it on that connection.
  local function ended(conn_no)
    for _, e in ipairs(received()) do
      if e.conn == conn_no and e.event == "close" then return true end
    end
    return false
  end

  --- One session on vm-1 that sends `input` and a FramebufferUpdateRequest
  -- and waits for the update: the server's connection number, the headers.
  local function session(port, headers, input)
    local status, hs, c = ws(port, "vm-1", headers)
    assert.are.equal(101, status)
    c:handshake()
    local n = last_conn()
    c:send(input .. FBUR)
    assert.are.equal("\0\0\0\0", c:read(4))
    c:close()
    return n, hs
  end

  local wait_for = common.wait_for

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K_FULL, K_VIEW, K_ADMIN, JWT_SECRET, "sim-token" }) do secret(s) end
    write_file(dir .. "/keys", ("%s vm-1,vm-3\n%s vm-1:view\n"):format(K_FULL, K_VIEW))
    write_file(dir .. "/admin-keys", "# admins\n" .. K_ADMIN .. "\n")
    rfb_log = dir .. "/rfb.jsonl"
    ws_port = lab:rfb_cluster("rfb", rfb_log)
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  describe("view-only in the stream", function()
    local p
    setup(function() p = start_gateway("gw") end)

    it("carries a full session's keys, pointer and clipboard to the VNC server", function()
      local status, hs, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, status)
      assert.are.equal("binary", hs["sec-websocket-protocol"])
      assert.is_nil(hs["sec-websocket-extensions"])
      c:handshake()
      local n = last_conn()
      c:send(SET_ENCODINGS .. FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))        -- the server's empty update
      c:send(KEY_A .. POINTER)
      c:send(CUT)
      c:send(FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))
      c:close()
      assert.is_true(wait_for(function() return #types_of(n) >= 6 end))
      assert.are.same({ "SetEncodings", "FramebufferUpdateRequest", "KeyEvent", "PointerEvent",
        "ClientCutText", "FramebufferUpdateRequest" }, types_of(n))
    end)

    it("passes none of a view-only session's keys, pointer or clipboard", function()
      local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(101, status)
      c:handshake()
      local n = last_conn()
      -- input in every shape: alone, sharing a frame with view messages, split over frames
      c:send(SET_ENCODINGS .. KEY_A .. FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))
      c:send(POINTER .. CUT:sub(1, 4))
      c:send(CUT:sub(5) .. KEY_A)
      c:send(FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))       -- still connected, still served
      c:close()
      assert.is_true(wait_for(function() return ended(n) end))
      assert.are.same({ "SetEncodings", "FramebufferUpdateRequest", "FramebufferUpdateRequest" },
        types_of(n))
    end)

    it("makes a ticket minted with a view-only key view-only too, and renews it so", function()
      local st, body = http(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(200, st)
      local t = secret(cjson.decode(body).ticket)
      local n, hs = session(p, { Cookie = "ctvnc_ticket=" .. t }, KEY_A)
      local fresh = secret((hs["set-cookie"] or ""):match("^ctvnc_ticket=([^;]+)"))
      assert.truthy(fresh)
      local n2 = session(p, { Cookie = "ctvnc_ticket=" .. fresh }, POINTER)
      assert.is_true(wait_for(function() return ended(n) and ended(n2) end))
      assert.are.same({ "FramebufferUpdateRequest" }, types_of(n))
      assert.are.same({ "FramebufferUpdateRequest" }, types_of(n2))
    end)

    it("never gives a view-only grant the target's URL, alone or in a batch", function()
      -- that URL reaches the VM straight, past the relay that enforces view-only
      local st, body = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(403, st)
      assert.is_nil(body:find("wss?://", 1) or body:find("token=", 1, true))
      st = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = K_FULL })
      assert.are.equal(200, st)
      local b = assert(io.open(dir .. "/view-batch.json", "w"))
      b:write('["vm-1"]')
      b:close()
      local out = helpers.run(("curl -s -m 20 -X POST -H 'X-API-Key: %s' -H 'Content-Type: "
        .. "application/json' --data-binary @%s http://127.0.0.1:%d/console/batch")
        :format(K_VIEW, dir .. "/view-batch.json", p))
      local results = cjson.decode(out)
      assert.are.equal("denied", results[1].kind)
      assert.is_nil(results[1].url)
    end)

    it("closes a view-only session on an unknown message: fail closed", function()
      local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(101, status)
      c:handshake()
      local n = last_conn()
      c:send("\77\0\0\0")
      local code, reason = c:wait_close(3)
      assert.are.equal(1008, code)
      assert.truthy(reason:find("view-only", 1, true), reason)
      c:close()
      assert.is_true(wait_for(function() return ended(n) end))
      assert.are.same({}, types_of(n))
    end)

    it("writes open and close audit lines as JSON, with no secret", function()
      local lines = audit("gw")
      assert.truthy(#lines >= 8)
      local seen = {}
      for _, a in ipairs(lines) do
        seen[a.event] = true
        assert.truthy(a.vm_id and a.user and a.client and a.mode, cjson.encode(a))
        if a.event == "close" then
          assert.truthy(a.session and a.start and a["end"] and a.duration and a.bytes_in
            and a.bytes_out and a.reason, cjson.encode(a))
          assert.is_true(a.bytes_out > 0)
        end
      end
      assert.is_true(seen.open and seen.close)
      local views = 0
      for _, a in ipairs(lines) do
        if a.event == "close" and a.view_only then
          views = views + 1
          assert.are.equal("key#2", a.user)
        end
      end
      assert.is_true(views >= 3)
    end)
  end)

  describe("limits and caps", function()
    it("refuses a second console of a VM (MAX_PER_VM): 429, and the page says who", function()
      local p = start_gateway("per-vm", { MAX_PER_VM = 1 })
      local s1, _, c1 = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, s1)
      local s2, _, c2 = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(429, s2)
      local doc = cjson.decode(c2.body)
      assert.are.equal("vm", doc.limit)
      assert.are.equal("key#1", doc.in_use_by)
      local status, body = http(p, "GET", "/console/vm-1", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(429, status)
      assert.truthy(body:find("<h1>Console in use</h1>", 1, true), body)
      assert.truthy(body:find("in use by key#1 since 20%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d UTC"), body)
      -- a browser's websocket (Origin) is closed with the reason instead
      local s3, _, c3 = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW, Origin = "http://127.0.0.1:" .. p })
      assert.are.equal(101, s3)
      local _, code, reason = c3:read(1)
      c3:close()
      assert.are.equal(4429, code)
      assert.truthy(reason:find("^busy: This console is in use by key#1 since 20%d%d%-"), reason)
      -- another VM is free; the slot is free again once the first closes
      assert.are.equal(200, (http(p, "GET", "/console/vm-3", { ["X-API-Key"] = K_FULL })))
      c1:close()
      assert.is_true(wait_for(function()
        return (ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })) == 101
      end, 3))
      local refused = 0
      for _, a in ipairs(audit("per-vm")) do
        if a.event == "refused" and a.reason == "limit vm" then refused = refused + 1 end
      end
      assert.are.equal(3, refused)
    end)

    it("refuses a user's console beyond MAX_PER_USER", function()
      local p = start_gateway("per-user", { MAX_PER_USER = 1 })
      local s1, _, c1 = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, s1)
      local s2, _, c2 = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(429, s2)
      assert.are.equal("user", cjson.decode(c2.body).limit)
      -- another user is not counted against this one
      local s3, _, c3 = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })
      assert.are.equal(101, s3)
      c1:close()
      c3:close()
    end)

    it("closes a session at MAX_SESSION with a last word for the page", function()
      local p = start_gateway("cap", { MAX_SESSION = 2 })
      local t0 = socket.gettime()
      local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, status)
      c:handshake()
      local code, reason = c:wait_close(5)
      local took = socket.gettime() - t0
      assert.are.equal(1001, code)
      assert.truthy(reason:find("time limit of 2 s", 1, true), reason)
      assert.is_true(took >= 1.9 and took < 3.5, ("closed after %.2f s"):format(took))
      c:close()
      assert.is_true(wait_for(function()
        for _, a in ipairs(audit("cap")) do if a.event == "close" then return a.reason == "time limit" end end
      end))
    end)

    it("closes a session IDLE_TIMEOUT after the last input, update requests or not", function()
      local p = start_gateway("idle", { IDLE_TIMEOUT = 2 })
      local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, status)
      c:handshake()
      -- a person: a pointer move every 0.4 s for 3 s keeps it open
      local t0 = socket.gettime()
      while socket.gettime() - t0 < 3 do
        c:send(POINTER .. FBUR)
        assert.truthy(c:read(4), "closed while in use")
        socket.sleep(0.4)
      end
      -- noVNC alone: update requests only, and it closes about 2 s later
      local t1 = socket.gettime()
      local code, reason
      while socket.gettime() - t1 < 5 and not code do
        c:send(FBUR)
        local got
        got, code, reason = c:read(4, 1)
        if got then socket.sleep(0.3) end
      end
      local took = socket.gettime() - t1
      assert.are.equal(1001, code)
      assert.truthy(reason:find("without input", 1, true), reason)
      assert.is_true(took >= 1.5 and took < 3.5, ("closed after %.2f s"):format(took))
      c:close()
    end)
  end)

  -- issue 20.4: identical runs used to record either side
  describe("who ended a session", function()
    it("is the side whose close frame came first, the same in each of 20 runs", function()
      local p = start_gateway("closer")
      local RUNS, BYE = 20, "\6\0\0\0\0\0\0\3bye"
      for _ = 1, RUNS do
        -- the browser closes: its close frame, the target's answer, both ends drop
        local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
        assert.are.equal(101, status)
        c:handshake()
        c.sock:send(core.ws_frame("close", "\3\232", true))
        c:wait_close(5)
        c:close()
        -- the target closes: the VNC server ends its connection, websockify
        -- sends its close frame, the browser answers
        status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
        assert.are.equal(101, status)
        c:handshake()
        c:send(BYE)
        assert.truthy(c:wait_close(5))
        c.sock:send(core.ws_frame("close", "\3\232", true))
        c:close()
      end
      local lines
      assert.is_true(wait_for(function()
        lines = audit("closer")
        local closes = 0
        for _, a in ipairs(lines) do if a.event == "close" then closes = closes + 1 end end
        return closes == 2 * RUNS
      end, 10))
      -- sessions opened in turn: browser, target, browser, ...
      local want, n = {}, 0
      for _, a in ipairs(lines) do
        if a.event == "open" then
          n = n + 1
          want[a.session] = n % 2 == 1 and "the browser closed" or "the target closed"
        end
      end
      local got = { ["the browser closed"] = 0, ["the target closed"] = 0 }
      for _, a in ipairs(lines) do
        if a.event == "close" then
          assert.are.equal(want[a.session], a.reason)
          got[a.reason] = got[a.reason] + 1
        end
      end
      assert.are.same({ ["the browser closed"] = RUNS, ["the target closed"] = RUNS }, got)
    end)
  end)

  describe("a target that never answers its handshake", function()
    it("is a logged 504 after TARGET_TIMEOUT: the VM, the kind, the target without its query", function()
      local silent = assert(socket.bind("127.0.0.2", 0))  -- connects (backlog), never answers
      local _, sport = silent:getsockname()
      local p = start_gateway("silent", { CLUSTER_PORT = sport, TARGET_TIMEOUT = 1 })
      local t0 = socket.gettime()
      local status, hs = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      local took = socket.gettime() - t0
      silent:close()
      assert.are.equal(504, status)
      assert.are.equal("timeout", hs["x-ctvnc-error"])
      assert.is_true(took >= 0.9 and took < 3, ("answered after %.2f s"):format(took))
      local lines = {}
      assert.is_true(wait_for(function()
        lines = {}
        for l in (read_file(lab.gateways.silent.dir .. "/error.log") or ""):gmatch("[^\n]+") do
          if l:find("ctvnc: websocket of vm-1", 1, true) then lines[#lines + 1] = l end
        end
        return #lines > 0
      end, 3))
      assert.are.equal(1, #lines)
      local line = lines[1]
      assert.truthy(line:find("[error]", 1, true), line)
      assert.truthy(line:find(" to ws://127.0.0.2:" .. sport .. "/websockify/ failed: ", 1, true), line)
      assert.truthy(line:find("(timeout)", 1, true), line)
      assert.is_nil(line:find("?", 1, true) or line:find("token", 1, true), line)
    end)
  end)

  describe("counts that heal", function()
    local p, master
    setup(function()
      p = start_gateway("heal", { MAX_PER_VM = 1, SLOT_TTL = 2 })
      master = tonumber(read_file(lab.gateways.heal.dir .. "/nginx.pid"):match("%d+"))
    end)

    local function worker()
      return tonumber((helpers.run("pgrep -P " .. master)):match("%d+"))
    end

    it("frees a crashed worker's slots when their TTL runs out", function()
      local status, _, c = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, status)
      c:handshake()
      local w = worker()
      helpers.run("kill -KILL " .. w)     -- a worker of the nginx this spec started
      assert.is_true(wait_for(function() local n = worker() return n ~= nil and n ~= w end, 5))
      c:close()
      -- the dead session still holds the VM's one slot, for at most SLOT_TTL (2 s)
      assert.are.equal(429, (ws(p, "vm-1", { ["X-API-Key"] = K_FULL })))
      local t0 = socket.gettime()
      local c2
      assert.is_true(wait_for(function()
        local st, _, conn = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
        if st == 101 then c2 = conn end
        return st == 101
      end, 5))
      assert.is_true(socket.gettime() - t0 <= 3)
      c2:close()
    end)

    it("keeps open sessions across a reload; a stop (QUIT) ends them", function()
      local c
      assert.is_true(wait_for(function()
        local st, _, conn = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
        if st == 101 then c = conn end
        return st == 101
      end, 3))
      c:handshake()
      local before = worker()
      helpers.run("kill -HUP " .. master)
      -- new workers serve; the old one keeps this session, which still relays
      assert.is_true(wait_for(function()
        local n = 0
        for _ in helpers.run("pgrep -P " .. master):gmatch("%d+") do n = n + 1 end
        return n >= 2
      end, 3))
      assert.are.equal("timeout", (c:wait_close(1.5)))   -- no close frame came
      c:send(FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))
      -- MAX_PER_VM = 1: its slot is still held, across the reload
      assert.are.equal(429, (ws(p, "vm-1", { ["X-API-Key"] = K_FULL })))
      assert.truthy(common.alive(before))
      helpers.run("kill -QUIT " .. master)
      local code, reason = c:wait_close(3)
      assert.are.equal(1001, code)
      assert.truthy(reason:find("restarting", 1, true), reason)
      c:close()
      assert.is_true(wait_for(function() return not common.alive(master) end, 5))
      local shut_down
      for _, a in ipairs(audit("heal")) do
        if a.event == "close" and a.reason == "gateway shutdown" then shut_down = true end
      end
      assert.is_true(shut_down)
    end)
  end)

  describe("kill, metrics", function()
    local p
    setup(function() p = start_gateway("admin", { METRICS_ALLOW = "10.0.0.0/8" }) end)

    it("denies the admin routes without an admin key, and without ADMIN_KEYS", function()
      assert.are.equal(403, (http(p, "GET", "/admin/sessions")))
      assert.are.equal(403, (http(p, "GET", "/admin/sessions", { ["X-API-Key"] = K_FULL })))
      local q = start_gateway("no-admin", { ADMIN_KEYS = false })
      assert.are.equal(403, (http(q, "GET", "/admin/sessions", { ["X-API-Key"] = K_ADMIN })))
    end)

    it("lists no session as an empty JSON array", function()
      local status, body = http(p, "GET", "/admin/sessions", { ["X-API-Key"] = K_ADMIN })
      assert.are.equal(200, status)
      assert.are.equal('{"sessions":[]}', body:gsub("%s+$", ""))
      status, body = http(p, "POST", "/admin/vms/vm-9/kill", { ["X-API-Key"] = K_ADMIN })
      assert.are.equal(200, status)
      assert.truthy(body:find('"killed":[]', 1, true), body)
    end)

    it("lists open sessions and kills one by id and the rest by VM, within a second", function()
      local _, _, c1 = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      local _, _, c2 = ws(p, "vm-1", { ["X-API-Key"] = K_VIEW })
      local _, _, c3 = ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      c1:handshake()
      c2:handshake()
      c3:handshake()
      local status, body = http(p, "GET", "/admin/sessions", { ["X-API-Key"] = K_ADMIN })
      assert.are.equal(200, status)
      local list = cjson.decode(body).sessions
      assert.are.equal(3, #list)
      local view
      for _, s in ipairs(list) do
        assert.are.equal("vm-1", s.vm_id)
        assert.are.equal("direct", s.mode)
        assert.truthy(s.id:match("^%x+$") and s.start and s.bytes_out)
        if s.view_only then view = s end
      end
      assert.are.equal("key#2", view.user)
      local t0 = socket.gettime()
      assert.are.equal(200, (http(p, "POST", "/admin/sessions/" .. view.id .. "/kill",
        { ["X-API-Key"] = K_ADMIN })))
      local code, reason = c2:wait_close(2)
      assert.are.equal(1001, code)
      assert.truthy(reason:find("administrator", 1, true))
      assert.is_true(socket.gettime() - t0 < 1.2)
      assert.are.equal(404, (http(p, "POST", "/admin/sessions/00ff/kill", { ["X-API-Key"] = K_ADMIN })))
      assert.are.equal(405, (http(p, "GET", "/admin/vms/vm-1/kill", { ["X-API-Key"] = K_ADMIN })))
      t0 = socket.gettime()
      status, body = http(p, "POST", "/admin/vms/vm-1/kill", { ["X-API-Key"] = K_ADMIN })
      assert.are.equal(200, status)
      assert.are.equal(2, #cjson.decode(body).killed)
      assert.are.equal(1001, (c1:wait_close(2)))
      assert.are.equal(1001, (c3:wait_close(2)))
      assert.is_true(socket.gettime() - t0 < 1.2)
      c1:close()
      c2:close()
      c3:close()
      assert.is_true(wait_for(function()
        local _, b = http(p, "GET", "/admin/sessions", { ["X-API-Key"] = K_ADMIN })
        return #cjson.decode(b).sessions == 0
      end, 2))
      local killed = 0
      for _, a in ipairs(audit("admin")) do
        if a.event == "killed" then
          killed = killed + 1
          assert.are.equal("killed by admin#2", a.reason)
        end
      end
      assert.are.equal(3, killed)
    end)

    it("serves Prometheus metrics, every name ctvnc_", function()
      local status, body, raw
      assert.is_true(wait_for(function()     -- the killed sessions' requests logged
        status, body, raw = http(p, "GET", "/metrics")
        return body:find('ctvnc_requests_total{result="ok",route="ws"} 3', 1, true) ~= nil
      end, 3), body)
      assert.are.equal(200, status)
      assert.truthy(raw:lower():find("content-type: text/plain; version=0.0.4", 1, true))
      local samples, types = {}, {}
      for line in body:gmatch("[^\n]+") do
        local name, kind = line:match("^# TYPE (%S+) (%S+)$")
        if name then
          types[name] = kind
        elseif not line:find("^# HELP ") then
          local sample, value = line:match("^(ctvnc_[%w_]+%b{}) (%S+)$")
          if not sample then sample, value = line:match("^(ctvnc_[%w_]+) (%S+)$") end
          assert.truthy(sample, "not a sample line: " .. line)
          samples[sample] = assert(tonumber(value), line)
        end
      end
      for name in pairs(types) do assert.truthy(name:find("^ctvnc_")) end
      assert.are.equal("histogram", types.ctvnc_tower_request_seconds)
      assert.are.equal(3, samples['ctvnc_sessions_ended_total{reason="killed"}'])
      assert.are.equal(0, samples['ctvnc_sessions_open{access="full",mode="direct"}'])
      assert.is_true(samples['ctvnc_relay_bytes_total{direction="to_browser"}'] > 0)
      assert.is_true(samples['ctvnc_relay_bytes_total{direction="from_browser"}'] > 0)
      assert.is_true((samples['ctvnc_requests_total{result="ok",route="ws"}'] or 0) >= 3, body)
      assert.is_true(samples['ctvnc_requests_total{result="denied",route="admin"}'] >= 2)
      local count = samples.ctvnc_tower_request_seconds_count
      assert.is_true(count >= 3)
      assert.are.equal(count, samples['ctvnc_tower_request_seconds_bucket{le="+Inf"}'])
      assert.is_true(samples['ctvnc_tower_request_seconds_bucket{le="0.005"}']
        <= samples['ctvnc_tower_request_seconds_bucket{le="10"}'])
      -- and the refusals by limit, from the per-VM gateway
      local _, other = http(lab.gateways["per-vm"].port, "GET", "/metrics")
      assert.truthy(other:find('ctvnc_sessions_refused_total{limit="vm"} 3', 1, true), other)
    end)
  end)

  describe("JWT users", function()
    local p
    local function hs256(header, claims)
      local input = b64url(cjson.encode(header)) .. "." .. b64url(cjson.encode(claims))
      local hexkey = JWT_SECRET:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
      local sig = helpers.run(("printf '%%s' '%s' | openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary | base64 -w0")
        :format(input, hexkey))
      return secret(input .. "." .. sig:gsub("%s", ""):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" }))
    end
    local function token(claims, header)
      local c = { sub = "alice", aud = "consoles", exp = os.time() + 300, vms = { "vm-1" } }
      for k, v in pairs(claims or {}) do c[k] = v end
      return hs256(header or { alg = "HS256", typ = "JWT" }, c)
    end
    setup(function()
      p = start_gateway("jwt", { JWT = "hs256", CTVNC_JWT_SECRET = JWT_SECRET, JWT_AUDIENCE = "consoles",
        JWT_COOKIE = "idp_token", KEYS = false })
    end)

    it("takes a good token from Authorization or the cookie; sub is the user", function()
      local good = token()
      assert.are.equal(200, (http(p, "GET", "/console/vm-1/url", { Authorization = "Bearer " .. good })))
      assert.are.equal(200, (http(p, "GET", "/console/vm-1", { Cookie = "idp_token=" .. good })))
      session(p, { Authorization = "Bearer " .. good }, KEY_A)
      assert.is_true(wait_for(function()
        for _, a in ipairs(audit("jwt")) do
          if a.event == "close" then return a.user == "alice" and a.view_only == false end
        end
      end))
    end)

    it("makes a view_only claim a view-only console", function()
      local n = session(p, { Authorization = "Bearer " .. token({ view_only = true }) }, KEY_A .. POINTER)
      assert.is_true(wait_for(function() return ended(n) end))
      assert.are.same({ "FramebufferUpdateRequest" }, types_of(n))
    end)

    it("answers 401 or 403 with a reason, never a crash", function()
      local now = os.time()
      local cases = {
        { nil, 401, "no token" },
        { "not-a-token", 401, "malformed" },
        { token({ exp = now - 100 }), 401, "expired" },
        { token({ nbf = now + 600 }), 401, "not yet valid" },
        { token({ aud = "other" }), 401, "audience" },
        { token(nil, { alg = "none", typ = "JWT" }), 401, "alg none" },
        { token(nil, { alg = "HS512", typ = "JWT" }), 401, "algorithm" },
        { token():sub(1, -3) .. "AA", 401, "signature" },
        { token({ vms = { "vm-2" } }), 403, "does not grant" },
        { token({ sub = false }), 403, "subject" },
        -- issue 19: mistyped claims are refused, never full access
        { token({ view_only = "true" }), 401, "claims (view_only)" },
        { token({ view_only = 1 }), 401, "claims (view_only)" },
        { token({ view_only = "vm-1" }), 401, "claims (view_only)" },
        { token({ view_only = { ["vm-1"] = true } }), 401, "claims (view_only)" },
        { token({ vms = "vm-1" }), 401, "claims (vms)" },
        { token({ exp = now + 300.5 }), 401, "claims (exp)" },
      }
      for i, c in ipairs(cases) do
        local h = c[1] and { Authorization = "Bearer " .. c[1] } or nil
        local status, body, raw = http(p, "GET", "/console/vm-1/url", h)
        assert.are.equal(c[2], status, "case " .. i)
        local reason = cjson.decode(body).reason
        assert.truthy(reason and reason:find(c[3], 1, true), "case " .. i .. ": " .. body)
        if c[2] == 401 then assert.truthy(raw:find("WWW-Authenticate: Bearer", 1, true)) end
        local s2 = ws(p, "vm-1", h)
        assert.are.equal(c[2], s2, "websocket, case " .. i)
      end
      local log = read_file(lab.gateways.jwt.dir .. "/error.log") or ""
      assert.is_nil(log:find("[error]", 1, true), log)
    end)

    it("with KEYS too, answers the credential that came: a bad token is not 'no key'", function()
      local q = start_gateway("jwt-keys", { JWT = "hs256", CTVNC_JWT_SECRET = JWT_SECRET,
        JWT_AUDIENCE = "consoles" })
      local bad = token():sub(1, -3) .. "AA"
      local cases = {
        { { Authorization = "Bearer " .. bad }, 401, "signature" },
        { { Authorization = "Bearer " .. token({ vms = { "vm-2" } }) }, 403, "does not grant" },
        { { ["X-API-Key"] = "k-unknown" }, 403, "unknown key" },
        { { ["X-API-Key"] = K_FULL, Authorization = "Bearer " .. bad }, 200 },
        { { Authorization = "Bearer " .. token() }, 200 },
        { nil, 403, "no key" },
      }
      for i, c in ipairs(cases) do
        local status, body = http(q, "GET", "/console/vm-1/url", c[1])
        assert.are.equal(c[2], status, "case " .. i .. ": " .. body)
        if c[3] then
          assert.truthy(cjson.decode(body).reason:find(c[3], 1, true), "case " .. i .. ": " .. body)
        end
      end
    end)

    it("verifies RS256 tokens with JWT_PUBLIC_KEY, and only RS256 there", function()
      local out, ok = helpers.run(("cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
        .. "-out rs.key 2>&1 && openssl pkey -in rs.key -pubout -out rs.pub 2>&1"):format(dir))
      assert(ok, out)
      local q = start_gateway("jwt-rs", { JWT = "rs256", JWT_PUBLIC_KEY = dir .. "/rs.pub",
        KEYS = false })
      local claims = { sub = "bob", exp = os.time() + 300, vms = "*", view_only = { "vm-1" } }
      local input = b64url(cjson.encode({ alg = "RS256", typ = "JWT" })) .. "." .. b64url(cjson.encode(claims))
      local sig = helpers.run(("printf '%%s' '%s' | openssl dgst -sha256 -sign %s/rs.key -binary | base64 -w0")
        :format(input, dir))
      local rs = secret(input .. "." .. sig:gsub("%s", ""):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" }))
      assert.are.equal(200, (http(q, "GET", "/console/vm-3/url", { Authorization = "Bearer " .. rs })))
      local status, body = http(q, "GET", "/console/vm-1/url", { Authorization = "Bearer " .. token() })
      assert.are.equal(401, status)
      assert.truthy(cjson.decode(body).reason:find("not RS256", 1, true), body)
      -- and its view_only list makes vm-1 view-only
      local n = session(q, { Authorization = "Bearer " .. rs }, KEY_A)
      assert.is_true(wait_for(function() return ended(n) end))
      assert.are.same({ "FramebufferUpdateRequest" }, types_of(n))
    end)
  end)

  it("lets /metrics be read from loopback and METRICS_ALLOW only", function()
    local metrics = require "ctvnc.gateway.metrics"
    local set = metrics.address_set("10.0.0.0/8, 192.0.2.7 fd00::5")
    for _, a in ipairs({ "127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "10.1.2.3",
      "192.0.2.7", "FD00::5" }) do
      assert.is_true(metrics.address_allowed(set, a), a)
    end
    for _, a in ipairs({ "11.0.0.1", "192.0.2.8", "fd00::6", "128.0.0.1", "9.255.255.255", "",
      "10.0.0.256" }) do
      assert.is_false(metrics.address_allowed(set, a), a)
    end
    local default = metrics.address_set(nil)
    assert.is_true(metrics.address_allowed(default, "127.0.0.1"))
    assert.is_false(metrics.address_allowed(default, "10.1.2.3"))
  end)

  it("leaves no secret in any log, audit.log included", function()
    assert.is_true(#lab.secrets > 10)
    local checked = lab:assert_logs_clean({ "ticket=", "token=", "key=", "[Aa]uthorization", "eyJ" })
    assert.is_true(checked > 2000)
  end)
end)
