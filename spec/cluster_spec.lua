local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- Several gateway nodes on one Redis store (issue 23): three nodes of the
-- example gateway (each its own nginx and NODE_NAME) on the suite's
-- redis-server (spec/support/test.sh: REDIS_*), behind an nginx balancer
-- (round robin) this spec starts; and two more nodes on a redis-server of
-- this spec's own, stopped and restarted empty. A VNC target (rfb.js behind
-- websockify) is every odd VM's cluster. No Redis password in any log.
local ROOT = helpers.ROOT
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

describe("gateways on a Redis store #novalgrind", function()
  local sim, lab, dir, ws_port
  local K1, K2, K_ADMIN = "k1-" .. random_hex(8), "k2-" .. random_hex(8), "ka-" .. random_hex(8)
  local SECRET = random_hex(24)
  local node = {}       -- name -> port
  local lb_port

  local wait_for = common.wait_for

  local function http(port, method, path, headers)
    local status, body, hs = lab:http(port, method, path, headers)
    return status, body, hs
  end

  --- A node of the gateway on the Redis at redis_port (its password given
  -- in CTVNC_REDIS_PASSWORD, never in STORE).
  local function start_node(name, redis_port, password, ...)
    node[name] = lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", ADMIN_KEYS = dir .. "/admin-keys", MODE = "direct", SCHEME = "ws",
      CLUSTER_PORT = ws_port, CTVNC_TICKET_SECRET = SECRET, NODE_NAME = "node-" .. name,
      STORE = ("redis://127.0.0.1:%d/7"):format(redis_port), CTVNC_REDIS_PASSWORD = password,
      MAX_PER_VM = 1, MAX_PER_USER = 2, SLOT_TTL = 2,
    }, ...)
    return node[name]
  end

  local function ticket(port, vm)
    local status, body = http(port, "POST", "/console/" .. vm .. "/ticket", { ["X-API-Key"] = K1 })
    assert.are.equal(200, status, body)
    return cjson.decode(body).ticket
  end

  local function with_ticket(t) return { Cookie = "ctvnc_ticket=" .. t } end
  local function key(k) return { ["X-API-Key"] = k } end

  --- An open console of vm on the node at port, past its RFB handshake.
  local function open(port, vm, headers)
    local status, _, c = common.ws(port, vm, headers or key(K1))
    assert.are.equal(101, status, c.body)
    c:handshake()
    return c
  end

  local function sessions(port)
    local status, body = http(port, "GET", "/admin/sessions", key(K_ADMIN))
    assert.are.equal(200, status, body)
    return cjson.decode(body).sessions
  end

  --- Waits until the store lists no session any more (closed or expired).
  local function drained()
    assert.is_true(wait_for(function() return #sessions(node.a) == 0 end, 6))
  end

  setup(function()
    assert(os.getenv("REDIS_PORT"), "no REDIS_PORT: run spec/support/test.sh, or "
      .. "spec/support/redis.sh start DIR and source DIR/env")
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K1, K2, K_ADMIN, SECRET, "sim-token", os.getenv("REDIS_PASSWORD") }) do
      lab:secret(s)
    end
    write_file(dir .. "/keys", ("%s *\n%s *\n"):format(K1, K2))
    write_file(dir .. "/admin-keys", K_ADMIN .. "\n")
    ws_port = lab:rfb_cluster("rfb", dir .. "/rfb.jsonl")
    local port, password = tonumber(os.getenv("REDIS_PORT")), os.getenv("REDIS_PASSWORD")
    for _, name in ipairs({ "a", "b", "c" }) do start_node(name, port, password) end
    -- the balancer: round robin over the three nodes, websockets included
    lb_port = helpers.free_port("127.0.0.1")
    local lb = dir .. "/lb"
    helpers.run("mkdir -p " .. lb .. "/tmp")
    write_file(lb .. "/nginx.conf", ([[
pid nginx.pid;
error_log error.log warn;
daemon on;
events { worker_connections 256; }
http {
  access_log access.log;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp;
  upstream ctvnc { server 127.0.0.1:%d; server 127.0.0.1:%d; server 127.0.0.1:%d; }
  map $http_upgrade $connection_upgrade { default upgrade; "" ""; }
  server {
    listen 127.0.0.1:%d;
    location / {
      proxy_pass http://ctvnc;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_read_timeout 1h;
    }
  }
}
]]):format(lb, lb, node.a, node.b, node.c, lb_port))
    local out, ok = helpers.run(("nginx -p %s/ -c %s/nginx.conf -e %s/error.log"):format(lb, lb, lb))
    assert(ok, out)
    lab.balancer = tonumber(read_file(lb .. "/nginx.pid"):match("%d+"))
    helpers.wait_port("127.0.0.1", lb_port)
  end)

  teardown(function()
    if lab and lab.balancer then helpers.run("kill -QUIT " .. lab.balancer) end
    if lab then lab:stop() end
  end)

  it("uses a ticket once across the nodes: minted on A, opened on B, its replay on C refused",
     function()
    local t = ticket(node.a, "vm-1")
    local status, _, hs = http(node.b, "GET", "/console/vm-1?ticket=" .. t)
    assert.are.equal(303, status)
    assert.truthy(hs["set-cookie"]:find(t, 1, true))
    local c = open(node.b, "vm-1", with_ticket(t))
    local replay = common.ws(node.c, "vm-1", with_ticket(t))
    assert.are.equal(403, replay)
    assert.are.equal(403, (common.ws(node.a, "vm-1", with_ticket(t))))
    c:close()
    drained()
  end)

  it("goes through a round-robin balancer: every request on another node, the ticket once",
     function()
    local t = ticket(lb_port, "vm-3")
    local c = open(lb_port, "vm-3", with_ticket(t))
    assert.are.equal(403, (common.ws(lb_port, "vm-3", with_ticket(t))))
    assert.are.equal(403, (common.ws(lb_port, "vm-3", with_ticket(t))))
    local list = sessions(lb_port)
    assert.are.equal(1, #list)
    c:close()
    -- the four requests reached at least two nodes
    local reached = 0
    for _, name in ipairs({ "a", "b", "c" }) do
      if (read_file(lab.gateways[name].dir .. "/access.log") or ""):find("/console/vm-3", 1, true) then
        reached = reached + 1
      end
    end
    assert.is_true(reached >= 2)
    drained()
  end)

  it("counts MAX_PER_VM across the nodes: a second console on another node is 429, in use by",
     function()
    local c = open(node.a, "vm-1")
    local status, _, refused = common.ws(node.b, "vm-1", key(K2))
    assert.are.equal(429, status)
    local doc = cjson.decode(refused.body)
    assert.are.same({ "vm", "key#1" }, { doc.limit, doc.in_use_by })
    local page_status, body = http(node.c, "GET", "/console/vm-1", key(K2))
    assert.are.equal(429, page_status)
    assert.truthy(body:find("in use by key#1", 1, true), body)
    c:close()
    assert.is_true(wait_for(function() return (http(node.c, "GET", "/console/vm-1", key(K2))) == 200 end, 3))
    drained()
  end)

  it("counts MAX_PER_USER across the nodes", function()
    local c1, c2 = open(node.a, "vm-3"), open(node.b, "vm-5")
    local status, _, refused = common.ws(node.c, "vm-7", key(K1))
    assert.are.equal(429, status)
    assert.are.equal("user", cjson.decode(refused.body).limit)
    -- another user is not counted
    local c3 = open(node.c, "vm-7", key(K2))
    for _, c in ipairs({ c1, c2, c3 }) do c:close() end
    drained()
  end)

  it("lists every node's sessions on any node, each with its node; a kill on C ends A's in 1 s",
     function()
    local ca, cb = open(node.a, "vm-1"), open(node.b, "vm-3", key(K2))
    local list = sessions(node.c)
    assert.are.equal(2, #list)
    local by_vm = {}
    for _, s in ipairs(list) do by_vm[s.vm_id] = s end
    assert.are.same({ "node-a", "node-b" }, { by_vm["vm-1"].node, by_vm["vm-3"].node })
    local t0 = socket.gettime()
    assert.are.equal(200, (http(node.c, "POST", "/admin/sessions/" .. by_vm["vm-1"].id .. "/kill",
      key(K_ADMIN))))
    assert.are.equal(1001, (ca:wait_close(1)))
    assert.is_true(socket.gettime() - t0 <= 1.0)
    -- by VM, asked on A, ends B's
    local status, body = http(node.a, "POST", "/admin/vms/vm-3/kill", key(K_ADMIN))
    assert.are.equal(200, status)
    assert.are.equal(by_vm["vm-3"].id, cjson.decode(body).killed[1])
    assert.are.equal(1001, (cb:wait_close(1)))
    local killed
    assert.is_true(wait_for(function()
      for line in (read_file(lab.gateways.a.dir .. "/audit.log") or ""):gmatch("[^\n]+") do
        local a = cjson.decode(line)
        if a.event == "killed" then killed = a end
      end
      return killed ~= nil
    end, 2))
    assert.are.same({ "node-a", "killed by admin#1" }, { killed.node, killed.reason })
    -- each kill locked its user out of that VM on every node (the store's
    -- locks): listed and lifted on B, so the next cases start unlocked
    local st, locks = http(node.b, "GET", "/admin/locks", key(K_ADMIN))
    assert.are.equal(200, st, locks)
    locks = cjson.decode(locks).locks
    assert.are.equal(2, #locks)
    assert.are.equal(403, (common.ws(node.c, "vm-1", key(K1))))
    for _, l in ipairs(locks) do
      assert.are.equal(200, (http(node.b, "DELETE", "/admin/locks/" .. l.id, key(K_ADMIN))))
    end
    drained()
  end)

  it("frees the slots of a node whose workers were SIGKILLed within SLOT_TTL", function()
    local c = open(node.a, "vm-1")
    local master = read_file(lab.gateways.a.dir .. "/nginx.pid"):match("%d+")
    local worker = helpers.run("pgrep -P " .. master):match("%d+")
    helpers.run("kill -KILL " .. worker)   -- a worker of node A, which this spec started
    c:close()
    assert.are.equal(429, (common.ws(node.b, "vm-1", key(K2))))
    local t0 = socket.gettime()
    local c2
    assert.is_true(wait_for(function()
      local st, _, conn = common.ws(node.b, "vm-1", key(K2))
      if st == 101 then c2 = conn end
      return st == 101
    end, 5))
    assert.is_true(socket.gettime() - t0 <= 3)   -- SLOT_TTL 2 s, and a moment
    c2:close()
    drained()
  end)

  it("reaches a rediss:// store, its certificate verified against STORE_CA and its name checked",
     function()
    local dns = helpers.free_port("127.0.0.1")
    lab:spawn("dns", ("lua5.4 %s/spec/gateway/dns.lua %d %s/dns.log localhost=127.0.0.1")
      :format(ROOT, dns, dir))
    lab:wait_output("dns", "ready")
    local tls = { STORE = "rediss://localhost:" .. os.getenv("REDIS_TLS_PORT") .. "/7",
      RESOLVER = "127.0.0.1:" .. dns, RESOLVER_IPV6 = "off" }
    local e = start_node("e", 0, os.getenv("REDIS_PASSWORD"), tls, { STORE_CA = os.getenv("REDIS_CA") })
    open(e, "vm-3", with_ticket(ticket(e, "vm-3"))):close()
    -- the system store does not know the server's certificate: refused
    local f = start_node("f", 0, os.getenv("REDIS_PASSWORD"), tls)
    local status, body = http(f, "POST", "/console/vm-3/ticket", key(K1))
    assert.are.same({ 503, "store" }, { status, cjson.decode(body).kind })
    lab:stop_gateways("e", "f")
    drained()
  end)

  it("on the shdict store too, refuses after a restart the tickets used before it", function()
    local function start_g()
      return lab:start_gateway("g", common.tower_env(sim), {
        KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = ws_port,
        CTVNC_TICKET_SECRET = SECRET })
    end
    local g = start_g()
    local used = ticket(g, "vm-5")
    open(g, "vm-5", with_ticket(used)):close()
    lab:stop_gateways("g")
    lab.gateways.g = nil
    g = start_g()   -- the same secret, the shared dicts empty
    assert.are.equal(403, (common.ws(g, "vm-5", with_ticket(used))))
    assert.are.equal(403, (http(g, "GET", "/console/vm-5?ticket=" .. used)))
    open(g, "vm-5", with_ticket(ticket(g, "vm-5"))):close()
  end)

  it("fails at once, after a failed call, for half a second: a Redis that does not answer holds "
     .. "no caller for its timeouts", function()
    local silent = helpers.free_port("127.0.0.1")
    lab:spawn("silent", ("lua5.4 -e 'local s = assert(require(\"socket\").bind(\"127.0.0.1\", %d)) "
      .. "print(\"ready\") io.stdout:flush() local held = {} "
      .. "while true do held[#held + 1] = s:accept() end'"):format(silent))
    lab:wait_output("silent", "ready")
    local h = start_node("h", silent, "unused")
    local t0 = socket.gettime()
    assert.are.equal(503, (http(h, "GET", "/console/vm-1", key(K1))))
    assert.is_true(socket.gettime() - t0 >= 0.9)      -- the read timeout, 1 s
    t0 = socket.gettime()
    assert.are.equal(503, (http(h, "GET", "/console/vm-1", key(K1))))
    assert.are.equal(503, (http(h, "POST", "/console/vm-1/ticket", key(K1))))
    assert.is_true(socket.gettime() - t0 < 0.4)
    lab:stop_gateways("h")
  end)

  describe("when Redis fails", function()
    local rdir, renv, d

    local function redis_up()
      local out, ok = helpers.run(("redis-server %s/redis.conf"):format(rdir))
      assert(ok, out)
      assert.is_true(wait_for(function()
        return socket.connect("127.0.0.1", renv.REDIS_PORT) ~= nil
      end, 5))
    end

    setup(function()
      rdir = dir .. "/redis"
      local out, ok = helpers.run("bash " .. ROOT .. "/spec/support/redis.sh start " .. rdir)
      assert(ok, out)
      renv = {}
      for k, v in out:gmatch("(REDIS_[%u_]+)=(%S+)") do renv[k] = v end
      lab:secret(renv.REDIS_PASSWORD)
      d = start_node("d", tonumber(renv.REDIS_PORT), renv.REDIS_PASSWORD)
    end)

    teardown(function()
      helpers.run("bash " .. ROOT .. "/spec/support/redis.sh stop " .. rdir)
    end)

    it("refuses new consoles and tickets (503, kind store), keeps open sessions, and writes their "
       .. "slots back when it returns empty; a ticket used before is not used again", function()
      local used = ticket(d, "vm-3")
      assert.truthy(select(2, http(d, "GET", "/metrics")):find('\nctvnc_store_up{node="node-d"} 1', 1, true))
      open(d, "vm-3", with_ticket(used)):close()
      local held = open(d, "vm-1")
      local fresh = ticket(d, "vm-5")
      helpers.run("bash " .. ROOT .. "/spec/support/redis.sh stop " .. rdir)

      local status, body = http(d, "GET", "/console/vm-5", key(K1))
      assert.are.equal(503, status)
      assert.truthy(body:find("cannot check access right now; try again", 1, true), body)
      assert.are.equal(503, (http(d, "GET", "/console/vm-5?ticket=" .. fresh)))
      local st, _, c = common.ws(d, "vm-5", with_ticket(fresh))
      assert.are.equal(503, st)
      assert.are.equal("store", cjson.decode(c.body).kind)
      st, body = http(d, "POST", "/console/vm-5/ticket", key(K1))
      assert.are.same({ 503, "store" }, { st, cjson.decode(body).kind })
      st, _, c = common.ws(d, "vm-7", key(K2))
      assert.are.same({ 503, "store" }, { st, cjson.decode(c.body).kind })
      -- the admin routes cannot see the sessions: they say so
      st, body = http(d, "GET", "/admin/sessions", key(K_ADMIN))
      assert.are.same({ 503, "store" }, { st, cjson.decode(body).kind })
      st, body = http(d, "POST", "/admin/vms/vm-1/kill", key(K_ADMIN))
      assert.are.same({ 503, "store" }, { st, cjson.decode(body).kind })

      -- the open session goes on past SLOT_TTL
      socket.sleep(2.5)
      held:send("\3\0\0\0\0\0\0\64\0\48")
      assert.are.equal("\0\0\0\0", held:read(4))
      local metrics = select(2, http(d, "GET", "/metrics"))
      assert.truthy(metrics:find('ctvnc_store_up{node="node-d"} 0', 1, true), metrics)
      assert.truthy(metrics:find('\nctvnc_store_errors_total{node="node%-d"} [1-9]'), metrics)
      assert.truthy(metrics:find("ctvnc_store_seconds_count %d"), metrics)

      redis_up()   -- empty: nothing is persisted
      -- the open session's slot is back within a refresh (SLOT_TTL / 5)
      assert.is_true(wait_for(function() return (common.ws(d, "vm-1", key(K2))) == 429 end, 3))
      -- the ticket used before the restart is refused, not used a second time
      assert.are.equal(403, (common.ws(d, "vm-3", with_ticket(used))))
      assert.are.equal(403, (http(d, "GET", "/console/vm-3?ticket=" .. used)))
      -- a new one works
      open(d, "vm-3", with_ticket(ticket(d, "vm-3"))):close()
      held:close()

      local log = read_file(lab.gateways.d.dir .. "/error.log")
      assert.truthy(log:find("the session store failed: ", 1, true), log)
      assert.truthy(log:find("the session store answers again", 1, true), log)
      metrics = select(2, http(d, "GET", "/metrics"))
      assert.truthy(metrics:find('ctvnc_store_up{node="node-d"} 1', 1, true), metrics)
    end)
  end)

  it("writes no Redis password in any log", function()
    lab:stop_gateways()
    -- nor a ticket (nginx's own line of a failed cosocket quotes the request)
    local checked = lab:assert_logs_clean({ "ticket=" })
    assert.is_true(checked > 0)
    for _, f in ipairs({ "error.log", "access.log" }) do
      local log = read_file(dir .. "/lb/" .. f) or ""
      for _, s in ipairs(lab.secrets) do assert.is_nil(log:find(s, 1, true)) end
    end
  end)
end)
