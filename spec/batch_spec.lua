local helpers = require "helpers"

-- client:batch and console_url mode "auto", against the simulator: VMs
-- vm-<odd> live on cluster 127.0.0.2 (the simulator listens there on
-- sim.cluster_port), vm-<even> on 127.0.0.3 where nothing listens.
-- Clients come from helpers.client and close after each test; values that
-- carry tokens are compared with assert.same_secret (spec/helpers.lua).

describe("client:batch", function()
  local sim

  setup(function() sim = helpers.sim() end)
  before_each(function() helpers.reset() end)
  after_each(function() helpers.control("config", { latency_ms = 0 }) end)
  helpers.autoclose()

  it("keeps results in input order with failures interleaved", function()
    local ids = { "vm-1", "fault-null", "vm-2", "fault-500", "vm-3", "fault-nonjson", "vm-4" }
    local results, summary = helpers.client({ retries = 0 }):batch(ids, { mode = "direct" })
    assert.are.equal(#ids, #results)
    for i, id in ipairs(ids) do
      local r = results[i]
      assert.are.equal(id, r.vm_id)
      if id:match("^vm%-") then
        assert.is_true(r.ok)
        assert.are.equal("direct", r.mode)
        local n = tonumber(id:match("%d+"))
        assert.are.equal(("%08x-0000-4000-8000-%012x"):format(n, n), r.info.vm_uuid)
        assert.truthy(r.url:find("uuid=" .. r.info.vm_uuid, 1, true))
      else
        assert.is_false(r.ok)
        assert.is_string(r.message)
        assert.truthy(r.message:find(id, 1, true), "message names the VM")
      end
    end
    assert.are.equal("not_found", results[2].kind)
    assert.are.equal("http", results[4].kind)
    assert.are.equal("decode", results[6].kind)
    assert.are.same({ total = 7, ok = 4, failed = 3, per_request = 1 }, summary)
  end)

  it("reports progress as answers arrive, ending at the total", function()
    local calls = {}
    local ids = { "vm-1", "vm-2", "fault-null", "vm-1" }
    helpers.client():batch(ids, { mode = "proxy", on_progress = function(done, total)
      calls[#calls + 1] = { done, total }
    end })
    assert.is_true(#calls >= 2)
    local last = 0
    for _, c in ipairs(calls) do
      assert.are.equal(4, c[2])
      assert.is_true(c[1] > last)
      last = c[1]
    end
    assert.are.equal(4, last)
  end)

  it("fetches a duplicated VM id once and fills every position", function()
    local results = helpers.client():batch({ "vm-7", "vm-8", "vm-7", "vm-7" }, { mode = "proxy" })
    assert.are.equal(1, helpers.stats().vm["vm-7"])
    assert.same_secret(results[1].url, results[3].url, "the URLs of vm-7 at 1 and 3")
    assert.same_secret(results[1].url, results[4].url, "the URLs of vm-7 at 1 and 4")
    assert.are.equal("vm-7", results[4].vm_id)
  end)

  it("keeps at most `concurrency` requests in flight and reuses connections", function()
    helpers.control("config", { latency_ms = 100 })
    local ids = {}
    for i = 1, 24 do ids[i] = "vm-" .. i end
    local _, summary = helpers.client():batch(ids, { mode = "proxy", concurrency = 4 })
    assert.are.equal(24, summary.ok)
    local stats = helpers.stats()
    assert.is_true(stats.in_flight_max <= 4, "in flight: " .. stats.in_flight_max)
    assert.is_true(stats.in_flight_max >= 2, "requests did run in parallel")
    assert.is_true(stats.connections <= 4 + 2, "connections: " .. stats.connections)
  end)

  it("reuses TLS connections across single calls and batches", function()
    local c = helpers.client({ endpoint = sim.https, ca_file = sim.cert })
    for i = 1, 10 do assert(c:vnc("vm-" .. i)) end
    local ids = {}
    for i = 1, 40 do ids[i] = "vm-" .. i end
    local _, summary = c:batch(ids, { mode = "proxy", concurrency = 4 })
    assert.are.equal(40, summary.ok)
    local n = helpers.stats().connections
    assert.is_true(n >= 1 and n <= 4 + 2, "connections: " .. n)
  end)

  it("retries each VM on its own and logs in once for the whole batch", function()
    -- the library's default retries (2): helpers.NONE removes the helper's 0
    local c = helpers.client({ token = helpers.NONE, username = helpers.USER,
      password = helpers.PASS, retries = helpers.NONE })
    local tag = "flaky-1-batch" .. os.time()
    local results, summary = c:batch({ "vm-1", tag, "fault-503", "vm-2" }, { mode = "proxy" })
    assert.is_true(results[2].ok)
    assert.are.equal("http", results[3].kind)
    assert.are.equal(3, summary.ok)
    local stats = helpers.stats()
    assert.are.equal(2, stats.vm[tag])
    assert.are.equal(3, stats.vm["fault-503"])     -- 1 + retries (2)
    assert.are.equal(1, stats.vm["vm-1"])
    assert.are.equal(1, stats.requests["/v2/api/login"])
  end)

  it("never retries a 4xx", function()
    -- with the library's default retries (2), which a 4xx must not use;
    -- a first VM refused with auth would leave the others unasked
    helpers.client({ retries = helpers.NONE })
      :batch({ "fault-307", "fault-401", "fault-403" }, { mode = "proxy" })
    local vm = helpers.stats().vm
    assert.are.same({ 1, 1, 1 }, { vm["fault-401"], vm["fault-403"], vm["fault-307"] })
  end)

  it("asks no other VM once the first one's token is refused", function()
    local ids = {}
    for i = 1, 40 do ids[i] = "vm-" .. i end
    local results, summary = helpers.client({ token = "wrong-token-QQ" })
      :batch(ids, { mode = "proxy", concurrency = 8 })
    assert.are.equal(1, helpers.stats().requests["/api"])
    assert.are.same({ 0, 40 }, { summary.ok, summary.failed })
    assert.are.same({ "vm-1", "auth" }, { results[1].vm_id, results[1].kind })
    assert.is_nil(results[1].message:find("not asked", 1, true))
    for i = 2, 40 do
      assert.are.same({ "vm-" .. i, false, "auth", "not asked: the tower refused the token" },
        { results[i].vm_id, results[i].ok, results[i].kind, results[i].message })
    end
  end)

  it("refuses a bad value for every VM with kind invalid, before any request", function()
    local results, summary = helpers.client():batch({ "vm-1", "" }, { mode = "sideways" })
    assert.are.equal("invalid", results[1].kind)
    assert.are.equal(2, summary.failed)
    for _, bad in ipairs({ { port = 0 }, { port = 1.5 }, { scheme = "http" } }) do
      results = helpers.client():batch({ "vm-1" }, bad)
      assert.are.equal("invalid", results[1].kind)
    end
    assert.is_nil(helpers.stats().vm["vm-1"])
    results = helpers.client():batch({ "vm-1", "" }, { mode = "proxy" })
    assert.is_true(results[1].ok)
    assert.are.equal("invalid", results[2].kind)
  end)

  it("raises on a vm_ids that is not a table", function()
    local c = helpers.client()
    assert.has_error(function() c:batch("vm-1") end)
  end)

  it("chooses per VM in auto mode, probing each cluster once", function()
    local probed = {}
    local ids = {}
    for i = 1, 10 do ids[i] = "vm-" .. i end
    local results = helpers.client():batch(ids, { port = sim.cluster_port,
      probe = function(host, port)
        probed[#probed + 1] = host .. ":" .. port
        return host == "127.0.0.2"
      end })
    table.sort(probed)
    assert.are.same({ "127.0.0.2:" .. sim.cluster_port, "127.0.0.3:" .. sim.cluster_port }, probed)
    for i, r in ipairs(results) do
      assert.are.equal(i % 2 == 1 and "direct" or "proxy", r.mode)
    end
  end)

  it("uses the real TCP probe in auto mode: a listening and a closed port", function()
    local results = helpers.client():batch({ "vm-1", "vm-2" }, { port = sim.cluster_port })
    assert.are.equal("direct", results[1].mode)
    assert.truthy(results[1].url:find("^wss://127%.0%.0%.2:" .. sim.cluster_port .. "/websockify/"))
    assert.are.equal("proxy", results[2].mode)
    assert.truthy(results[2].url:find("^ws://127%.0%.0%.1:" .. sim.http_port .. "/websockify/"))
  end)
end)

describe("client:console_url in auto mode", function()
  local sim
  setup(function() sim = helpers.sim() end)
  helpers.autoclose()

  it("answers direct when the cluster listens and proxy when it does not", function()
    local c = helpers.client()
    local url, mode = c:console_url("vm-1", { port = sim.cluster_port })
    assert.are.equal("direct", mode)
    assert.truthy(url:find("^wss://127%.0%.0%.2:"))
    url, mode = c:console_url("vm-2", { port = sim.cluster_port })
    assert.are.equal("proxy", mode)
    assert.truthy(url:find("^ws://127%.0%.0%.1:"))
  end)

  it("probes port 443 for wss and 80 for ws by default", function()
    local seen = {}
    local probe = function(host, port) seen[#seen + 1] = host .. ":" .. port return false end
    helpers.client():console_url("vm-1", { probe = probe })
    helpers.client():console_url("vm-1", { probe = probe, scheme = "ws" })
    assert.are.same({ "127.0.0.2:443", "127.0.0.2:80" }, seen)
  end)

  it("caches the verdict per cluster and port, and lets it expire", function()
    local c = helpers.client()
    local calls = 0
    local probe = function() calls = calls + 1 return true end
    local opts = { probe = probe, port = 5901, probe_ttl = 0.3 }
    assert.are.equal("direct", select(2, c:console_url("vm-1", opts)))
    assert.are.equal("direct", select(2, c:console_url("vm-3", opts)))  -- same cluster
    assert.are.equal(1, calls)
    c:console_url("vm-1", { probe = probe, port = 5902, probe_ttl = 0.3 })
    assert.are.equal(2, calls)                                          -- other port
    require("ctvnc.core").sleep(0.4)
    c:console_url("vm-1", opts)
    assert.are.equal(3, calls)                                          -- expired
  end)

  it("lets a custom probe overrule the network", function()
    local url, mode = helpers.client():console_url("vm-1", { port = sim.cluster_port,
      probe = function() return false end })
    assert.are.equal("proxy", mode)
    assert.truthy(url:find("token=", 1, true))
  end)

  it("tells a refused port from a listening one at once", function()
    local core = require "ctvnc.core"
    local oks, whys = core.probe({ { "127.0.0.3", sim.cluster_port },
      { "127.0.0.2", sim.cluster_port } }, 5)
    assert.are.same({ false, true }, oks)
    assert.are.same({ "refused", "connected" }, whys)
  end)

  it("probes IPv6 too", function()
    local core = require "ctvnc.core"
    -- sim.sh listens on [::1] whenever the machine has it (SIM_IPV6=1)
    if not sim.ipv6 then return pending("this machine has no ::1") end
    local port = helpers.free_port("127.0.0.1")
    local oks, whys = core.probe({ { "::1", sim.http_port }, { "::1", port } }, 2)
    assert.are.same({ true, false }, oks)
    assert.are.same({ "connected", "refused" }, whys)
  end)

  it("gives up on a silent port within probe_timeout", function()
    -- a listener whose backlog is full drops new SYNs: the connect hangs
    local socket = require "socket"
    local core = require "ctvnc.core"
    local srv = assert(socket.tcp())
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen(0))
    local _, port = srv:getsockname()
    local fill = {}
    for i = 1, 4 do
      fill[i] = socket.tcp()
      fill[i]:settimeout(0)
      fill[i]:connect("127.0.0.1", port)
    end
    local t0 = core.now()
    local oks, whys = core.probe({ { "127.0.0.1", tonumber(port) } }, 0.3)
    local elapsed = core.now() - t0
    for _, c in ipairs(fill) do c:close() end
    srv:close()
    assert.are.same({ false }, oks)
    assert.are.same({ "timeout" }, whys)
    assert.is_true(elapsed >= 0.29 and elapsed < 2, "elapsed " .. elapsed)
  end)

  it("refuses a bad mode or probe option", function()
    local c = helpers.client()
    local url, msg, kind = c:console_url("vm-1", { mode = "fast" })
    assert.is_nil(url)
    assert.are.equal("invalid", kind)
    assert.truthy(msg:find("mode", 1, true))
    assert.are.equal("invalid", select(3, c:console_url("vm-1", { probe_timeout = -1 })))
  end)
end)
