local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- One node at its limit (issue 22): capacity from MAX_SESSIONS (nginx's
-- connections, file limit and session book sized from it; past it a
-- logged 503 "the gateway is full", never a reset, a 500 or a leftover
-- record), a full session book that refuses instead of evicting open
-- sessions, a failed open that gives its place back at once, the admin
-- list in pages, and one CloudTower call per console open. Real servers:
-- a minimal RFB server behind websockify as vm-1's cluster, the simulator
-- as CloudTower, the example gateway.
local ROOT = helpers.ROOT
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

describe("one node at its limit #novalgrind", function()
  local sim, lab, dir, ws_port
  local K_FULL, K_VIEW, K_ADMIN = "k-full-" .. random_hex(8), "k-view-" .. random_hex(8),
    "k-admin-" .. random_hex(8)

  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = ws_port,
      ADMIN_KEYS = dir .. "/admin-keys",
    }, env)
  end

  local wait_for = common.wait_for

  --- A console websocket: status, the JSON body of a refusal, and for a
  -- 101 a connection with wait_close(timeout) -> close code | nil.
  local function ws(port, vm, key)
    local sock, status, hs = common.ws_handshake(port, ("/console/%s/ws"):format(vm),
      { ["X-API-Key"] = key or K_FULL, ["Sec-WebSocket-Protocol"] = "binary" })
    if status ~= 101 then
      local body = common.read_body(sock, hs)
      sock:close()
      return status, cjson.decode(body or "null")
    end
    local conn = common.ws_stream(sock)
    --- The gateway's close code (nil: closed without one, or none in time).
    function conn.wait_close(_, timeout)
      local deadline = socket.gettime() + timeout
      while socket.gettime() < deadline do
        local got, code = conn:read(1, deadline - socket.gettime())
        if not got then return tonumber(code) end
      end
    end
    function conn.close() sock:close() end
    return status, nil, conn
  end

  local function admin(port, method, path)
    local status, body = lab:http(port, method, path, { ["X-API-Key"] = K_ADMIN })
    return status, cjson.decode(body)
  end

  local function metric(port, sample)
    local _, body = lab:http(port, "GET", "/metrics")
    local pattern = "\n" .. sample:gsub("%p", "%%%0") .. " (%S+)"
    return tonumber(("\n" .. body):match(pattern))
  end

  local function audit(name)
    local out = {}
    for line in (read_file(lab.gateways[name].dir .. "/audit.log") or ""):gmatch("[^\n]+") do
      out[#out + 1] = cjson.decode(line)
    end
    return out
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K_FULL, K_VIEW, K_ADMIN, "sim-token" }) do lab:secret(s) end
    write_file(dir .. "/keys", ("%s vm-1,vm-3\n%s vm-1:view\n"):format(K_FULL, K_VIEW))
    write_file(dir .. "/admin-keys", K_ADMIN .. "\n")
    local rfb_port = helpers.free_port("127.0.0.1")
    write_file(dir .. "/rfb.jsonl", "")
    lab:spawn("rfb", ("node %s/spec/gateway/rfb.js %d %s/rfb.jsonl"):format(ROOT, rfb_port, dir))
    helpers.wait_port("127.0.0.1", rfb_port)
    ws_port = helpers.free_port("127.0.0.2")
    lab:spawn("websockify", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(ws_port, rfb_port))
    helpers.wait_port("127.0.0.2", ws_port)
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  it("sizes nginx's connections, file limit and session book from MAX_SESSIONS", function()
    for _, case in ipairs({ { 3, 518, 774, "1024k" }, { 10000, 20512, 20768, "20000k" } }) do
      local name = "size-" .. case[1]
      start_gateway(name, { MAX_SESSIONS = case[1] })
      local conf = read_file(lab.gateways[name].dir .. "/nginx.conf")
      assert.truthy(conf:find("worker_connections " .. case[2] .. ";", 1, true), name)
      assert.truthy(conf:find("worker_rlimit_nofile " .. case[3] .. ";", 1, true), name)
      assert.truthy(conf:find("lua_shared_dict ctvnc_sessions " .. case[4] .. ";", 1, true), name)
      assert.truthy(conf:find("max_sessions = " .. case[1] .. ",", 1, true), name)
      assert.truthy(conf:find("listen 127.0.0.1:%d+ reuseport;"), name)
      lab:stop_gateways(name)
    end
    local out, ok = helpers.run(("cd %s && MAX_SESSIONS=0 sh examples/openresty/run.sh start %s/bad 2>&1")
      :format(ROOT, dir))
    assert.is_false(ok)
    assert.truthy(out:find("MAX_SESSIONS", 1, true), out)
    -- the refused start stopped the simulator it had started
    assert.truthy(read_file(dir .. "/bad/sim/env"), "run.sh did not start its simulator")
    assert.is_false(select(2, helpers.run(("pgrep -f -- '%s/bad/sim/[n]ginx.conf'"):format(dir))),
      "the simulator of a refused start still runs")
  end)

  it("past MAX_SESSIONS answers a logged 503 'the gateway is full'; /health still answers", function()
    local p = start_gateway("full", { MAX_SESSIONS = 2, WORKERS = 2 })
    local s1, _, c1 = ws(p, "vm-1")
    local s2, _, c2 = ws(p, "vm-3")
    assert.are.equal(101, s1)
    assert.are.equal(101, s2)
    local s3, body = ws(p, "vm-1", K_VIEW)
    assert.are.equal(503, s3)
    assert.are.equal("full", body.kind)
    assert.are.equal("the gateway is full", body.error)
    local status, page = lab:http(p, "GET", "/console/vm-1", { ["X-API-Key"] = K_FULL })
    assert.are.equal(503, status)
    assert.truthy(page:find("The gateway is full", 1, true), page)
    assert.are.equal(200, (lab:http(p, "GET", "/health")))
    local _, list = admin(p, "GET", "/admin/sessions")
    assert.are.equal(2, #list.sessions)
    assert.are.equal(2, metric(p, "ctvnc_sessions_capacity"))
    assert.are.equal(2, metric(p, 'ctvnc_sessions_open{access="full",mode="direct"}'))
    assert.are.equal(2, metric(p, 'ctvnc_sessions_refused_total{limit="full"}'))
    assert.is_true(wait_for(function()
      local log = read_file(lab.gateways.full.dir .. "/error.log") or ""
      local _, n = log:gsub("the gateway is full[^\n]*%(full%)", "")
      return n == 2
    end, 2))
    local refused = 0
    for _, a in ipairs(audit("full")) do
      if a.event == "refused" and a.reason == "limit full" then refused = refused + 1 end
    end
    assert.are.equal(2, refused)
    -- a place given back is a place taken again
    c1:close()
    local c4
    assert.is_true(wait_for(function()
      local st, _, c = ws(p, "vm-1")
      c4 = c
      return st == 101
    end, 3))
    c2:close()
    c4:close()
    assert.is_true(wait_for(function()
      return metric(p, 'ctvnc_sessions_open{access="full",mode="direct"}') == 0
    end, 3))
  end)

  it("gives a failed open's place and record back at once", function()
    local dead = helpers.free_port("127.0.0.2")
    local p = start_gateway("dead", { MAX_SESSIONS = 1, CLUSTER_PORT = dead })
    for _ = 1, 3 do
      local status, body = ws(p, "vm-1")
      assert.are.equal(502, status)        -- not 503 full: the place was given back
      assert.are.equal("connect", body.kind)
      local _, list = admin(p, "GET", "/admin/sessions")
      assert.are.equal(0, #list.sessions)
    end
    assert.are.equal(0, metric(p, 'ctvnc_sessions_open{access="full",mode="direct"}'))
  end)

  it("watches a session from its place on, while its target's handshake still runs", function()
    local silent = assert(socket.bind("127.0.0.2", 0))  -- connects (backlog), never answers
    local _, sport = silent:getsockname()
    local p = start_gateway("slow", { CLUSTER_PORT = sport, TARGET_TIMEOUT = 1.5,
      IDLE_TIMEOUT = 1, MAX_SESSION = 1 })
    local status, body = ws(p, "vm-1")
    silent:close()
    assert.are.equal(504, status)
    assert.are.equal("timeout", body.kind)
    local log = read_file(lab.gateways.slow.dir .. "/error.log") or ""
    assert.is_nil(log:find("runtime error", 1, true), log)
    assert.are.equal(0, metric(p, 'ctvnc_sessions_open{access="full",mode="direct"}'))
  end)

  it("refuses new sessions when the session book is full, and never evicts open ones", function()
    local p = start_gateway("book", { MAX_SESSIONS = 5000 })
    local g = lab.gateways.book
    -- a small book: some records fit
    helpers.run(("sed -i 's/lua_shared_dict ctvnc_sessions [0-9]*k;/lua_shared_dict ctvnc_sessions 24k;/' %s/nginx.conf && kill -HUP $(cat %s/nginx.pid)")
      :format(g.dir, g.dir))
    socket.sleep(1)
    local open, refusal = {}, nil
    for _ = 1, 200 do
      local status, body, c = ws(p, _ % 2 == 0 and "vm-1" or "vm-3")
      if status ~= 101 then
        refusal = { status, body }
        break
      end
      open[#open + 1] = c
    end
    assert.truthy(refusal, "200 sessions fit in a 24k book")
    assert.is_true(#open >= 1)
    assert.are.equal(503, refusal[1])
    assert.are.equal("store", refusal[2].kind)
    -- every open session is still in the book, listed and killable, also
    -- after their refreshes
    socket.sleep(2.5)
    local seen, cursor = {}, nil
    repeat
      local status, page = admin(p, "GET", "/admin/sessions?limit=3"
        .. (cursor and ("&cursor=" .. cursor) or ""))
      assert.are.equal(200, status)
      for _, s in ipairs(page.sessions) do seen[#seen + 1] = s.id end
      cursor = page.next
    until not cursor
    assert.are.equal(#open, #seen)
    local status, killed = admin(p, "POST", "/admin/vms/vm-1/kill")
    assert.are.equal(200, status)
    local _, left = admin(p, "GET", "/admin/sessions?vm_id=vm-3")
    assert.are.equal(#seen - #killed.killed, #left.sessions)
    for i = 2, #open, 2 do assert.are.equal(1001, open[i]:wait_close(3)) end
    for _, c in ipairs(open) do c:close() end
    assert.is_true(metric(p, 'ctvnc_sessions_refused_total{limit="store"}') >= 1)
    assert.truthy((read_file(g.dir .. "/error.log") or ""):find("cannot be recorded: [^\n]*%(store%)"))
  end)

  it("lists sessions in pages, filtered by VM and user", function()
    local p = start_gateway("pages", {})
    local conns = {}
    for _, case in ipairs({ { "vm-1", K_FULL }, { "vm-1", K_FULL }, { "vm-3", K_FULL },
                            { "vm-1", K_VIEW }, { "vm-3", K_FULL } }) do
      local status, _, c = ws(p, case[1], case[2])
      assert.are.equal(101, status)
      conns[#conns + 1] = c
    end
    local seen, pages, cursor = {}, 0, nil
    repeat
      local status, page = admin(p, "GET", "/admin/sessions?limit=2"
        .. (cursor and ("&cursor=" .. cursor) or ""))
      assert.are.equal(200, status)
      assert.is_true(#page.sessions <= 2)
      for _, s in ipairs(page.sessions) do
        assert.is_nil(seen[s.id], "listed twice: " .. s.id)
        seen[s.id] = s
      end
      pages, cursor = pages + 1, page.next
    until not cursor
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.are.equal(5, n)
    assert.are.equal(3, pages)
    local _, by_vm = admin(p, "GET", "/admin/sessions?vm_id=vm-3")
    assert.are.equal(2, #by_vm.sessions)
    for _, s in ipairs(by_vm.sessions) do assert.are.equal("vm-3", s.vm_id) end
    local _, by_user = admin(p, "GET", "/admin/sessions?user=key%232")
    assert.are.equal(1, #by_user.sessions)
    assert.is_true(by_user.sessions[1].view_only)
    local _, none = admin(p, "GET", "/admin/sessions?vm_id=vm-9")
    assert.are.equal(0, #none.sessions)
    assert.is_nil(none.next)
    assert.are.equal(400, (admin(p, "GET", "/admin/sessions?limit=0")))
    assert.are.equal(400, (admin(p, "GET", "/admin/sessions?limit=x")))
    for _, c in ipairs(conns) do c:close() end
  end)

  it("asks CloudTower once per console open: the ticket, the page and the websocket", function()
    local p = start_gateway("calls", {})
    local before = helpers.stats().requests["/api"]
    local status, body = lab:http(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = K_FULL })
    assert.are.equal(200, status)
    local ticket = cjson.decode(body).ticket
    lab:secret(ticket)
    local _, _, hs = lab:http(p, "GET", "/console/vm-1?ticket=" .. ticket)
    local cookie = hs["set-cookie"]:match("^([^;]+)")
    assert.are.equal(200, (lab:http(p, "GET", "/console/vm-1", { Cookie = cookie })))
    local sock, st = common.ws_handshake(p, "/console/vm-1/ws", { Cookie = cookie,
      Origin = "http://127.0.0.1:" .. p, ["Sec-WebSocket-Protocol"] = "binary" })
    assert.are.equal(101, st)
    sock:close()
    assert.are.equal(1, helpers.stats().requests["/api"] - before)
  end)

  it("limits each authenticated user's console requests (USER_RATE), not their address", function()
    local p = start_gateway("user-rate", { USER_RATE = 2 })
    local function ticket(key)
      return (lab:http(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = key }))
    end
    assert.are.equal(200, ticket(K_FULL))
    assert.are.equal(200, ticket(K_FULL))
    local status, body = lab:http(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = K_FULL })
    assert.are.equal(429, status)
    assert.are.equal("busy", cjson.decode(body).kind)
    assert.are.equal(429, (ws(p, "vm-1")))
    -- another user at the same address has a budget of its own
    assert.are.equal(200, ticket(K_VIEW))
    -- and the budget refills: half a second gives one more
    socket.sleep(0.6)
    assert.are.equal(200, ticket(K_FULL))
  end)

  it("leaves no secret in any log", function()
    lab:assert_logs_clean()
  end)
end)
