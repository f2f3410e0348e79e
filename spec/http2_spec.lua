-- The connections of the libcurl transport (ctvnc.core.session). The
-- simulator's TLS port speaks HTTP/2 (and HTTP/1.1 to clients that ask for
-- it): requests are streams of one connection, `http2 = false` keeps to
-- HTTP/1.1, and the stale-bytes guard still works there. On HTTP/1.1 an
-- answer that is not the one asked for can have its connection dropped
-- (on_done returns "drop"), and a request can ask for a new connection
-- (fresh = true), and a tagged request never follows a request of the same
-- tag on a kept-alive HTTP/1.1 connection. Each answer says its HTTP
-- version. The simulator counts connections and the protocol of each
-- request (/_sim/stats).
local core = require "ctvnc.core"
local cjson = require "cjson"
local helpers = require "helpers"
local socket = require "socket"

local sim = helpers.sim()

local QUERY = "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token token } }"

--- A POST /api request for one VM on `base`.
local function vnc_req(base, id)
  return {
    method = "POST",
    url = base .. "/api",
    body = cjson.encode({ operationName = "vnc", query = QUERY,
      variables = { input = { vm = { id = id } } } }),
    headers = { Authorization = "sim-token", ["Content-Type"] = "application/json",
      accept = "application/json", ["content-language"] = "en-US" },
  }
end

--- The vm_uuid of an answer, or nil.
local function uuid_of(body)
  local ok, doc = pcall(cjson.decode, body or "")
  local vnc = ok and type(doc) == "table" and type(doc.data) == "table" and doc.data.vnc
  return type(vnc) == "table" and vnc.vm_uuid or nil
end

local function uuid(n) return ("%08x-0000-4000-8000-%012x"):format(n, n) end

--- Runs `reqs` on `s` at `concurrency`; the statuses and bodies by index.
local function run(s, reqs, concurrency)
  local status, body = {}, {}
  s:request_many(reqs, concurrency, function(i, st, b, kind)
    status[i] = st or kind
    body[i] = b
  end)
  return status, body
end

describe("core.session connections", function()
  before_each(function() helpers.reset() end)

  --- Asks `s` for vm-1 .. vm-n, `concurrency` at a time; each answer must
  -- be 200 and about its own VM.
  local function run_vms(s, n, concurrency)
    local reqs = {}
    for i = 1, n do reqs[i] = vnc_req(sim.https, "vm-" .. i) end
    local status, body = run(s, reqs, concurrency)
    for i = 1, n do
      assert.are.equal(200, status[i], "request " .. i)
      assert.are.equal(uuid(i), uuid_of(body[i]), "answer " .. i .. " belongs to its request")
    end
  end

  it("carries 1,000 requests at concurrency 64 on one connection", function()
    helpers.control("config", { latency_ms = 20 })
    local s = core.session({ ca_file = sim.cert })
    run_vms(s, 1000, 64)
    local st = helpers.stats()
    assert.are.equal(1, st.connections)
    assert.are.equal(1000, st.protocols["HTTP/2.0"])
    assert.is_nil(st.protocols["HTTP/1.1"])
    -- the streams were in flight together (many at once even under
    -- valgrind), never more than asked for
    assert.is_true(st.in_flight_max >= 8 and st.in_flight_max <= 64,
      "in flight at most: " .. st.in_flight_max)
    -- single requests afterwards take the same connection
    for i = 1, 5 do assert.are.equal(200, (s:request(vnc_req(sim.https, "vm-" .. i)))) end
    assert.are.equal(1, helpers.stats().connections)
    s:close()
  end)

  it("keeps to HTTP/1.1 with http2 = false, one connection per request in flight", function()
    helpers.control("config", { latency_ms = 10 })
    local s = core.session({ ca_file = sim.cert, http2 = false })
    run_vms(s, 200, 8)
    local st = helpers.stats()
    assert.are.equal(200, st.protocols["HTTP/1.1"])
    assert.is_nil(st.protocols["HTTP/2.0"])
    assert.is_true(st.connections >= 2 and st.connections <= 8 + 2, "connections: " .. st.connections)
    s:close()
  end)

  it("starts the whole first wave at once on plain http and over TLS", function()
    -- over TLS the wave waits for the one connection (HTTP/2), then goes
    -- out together; plain http never waits on another request's answer
    for _, base in ipairs({ sim.http, sim.https }) do
      local s = core.session({ ca_file = sim.cert })
      local reqs = {}
      for i = 1, 16 do reqs[i] = vnc_req(base, "vm-" .. i) end
      helpers.control("config", { latency_ms = 300 })
      local status = run(s, reqs, 16)
      for i = 1, 16 do assert.are.equal(200, status[i]) end
      assert.are.equal(16, helpers.stats().in_flight_max, base)
      helpers.reset()
      s:close()
    end
  end)

  it("speaks HTTP/1.1 on plain http whatever http2 says", function()
    local s = core.session()
    local status = run(s, { vnc_req(sim.http, "vm-1"), vnc_req(sim.http, "vm-2") }, 2)
    assert.are.same({ 200, 200 }, status)
    local st = helpers.stats()
    assert.are.equal(2, st.protocols["HTTP/1.1"])
    s:close()
  end)

  for _, id in ipairs({ "fault-smuggle", "fault-smuggle-late" }) do
    it("drops a reused HTTP/1.1 TLS connection with unasked bytes waiting (" .. id .. ")", function()
      local s = core.session({ ca_file = sim.cert, http2 = false })
      local st1, b1 = s:request(vnc_req(sim.https, id))
      assert.are.equal(200, st1)
      assert.are.equal("{}", b1)
      if id == "fault-smuggle-late" then socket.sleep(0.3) end
      local st2, b2 = s:request(vnc_req(sim.https, "vm-3"))
      assert.are.equal(200, st2)
      assert.is_nil(b2:find("smuggled", 1, true), "the smuggled answer was read as the next one")
      assert.are.equal(uuid(3), uuid_of(b2))
      -- the second request went out on a new connection
      assert.are.equal(2, helpers.stats().connections)
      s:close()
    end)
  end

  it("closes the connection of an answer on_done returns \"drop\" for (fault-late)", function()
    local s = core.session({ http2 = false })
    local function one(req)
      local got
      s:request_many({ req }, 1, function(_, st, b)
        got = { st, b }
        -- an answer that is not the one asked for: its connection is suspect
        if uuid_of(b) ~= req.want then return "drop" end
      end)
      return got[1], got[2]
    end
    local late = vnc_req(sim.http, "fault-late")
    late.want = uuid(1)
    assert.are.equal(200, (one(late)))
    local v3 = vnc_req(sim.http, "vm-3")
    v3.want = uuid(3)
    -- the late second answer of fault-late is read as vm-3's
    local st, b = one(v3)
    assert.are.equal(200, st)
    assert.are.equal(uuid(1), uuid_of(b))
    -- that connection was closed: vm-4 goes out on a new one, and does not
    -- read the answer to vm-3 the tower writes there later
    local v4 = vnc_req(sim.http, "vm-4")
    v4.want = uuid(4)
    st, b = one(v4)
    assert.are.equal(200, st)
    assert.are.equal(uuid(4), uuid_of(b))
    assert.are.equal(2, helpers.stats().connections)
    s:close()
  end)

  it("never sends a tagged request after one of the same tag on an HTTP/1.1 connection", function()
    local s = core.session({ http2 = false })
    local function tagged(id, tag)
      local req = vnc_req(sim.http, id)
      req.tag = tag
      return req
    end
    assert.are.equal(200, (s:request(tagged("vm-1", 1))))
    assert.are.equal(200, (s:request(tagged("vm-2", 2))))
    assert.are.equal(200, (s:request(vnc_req(sim.http, "vm-3"))))    -- untagged
    assert.are.equal(200, (s:request(tagged("vm-4", 1))))
    assert.are.equal(1, helpers.stats().connections)
    assert.are.equal(200, (s:request(tagged("vm-5", 1))))            -- same as the last
    assert.are.equal(2, helpers.stats().connections)
    s:close()
  end)

  it("keeps a late answer from a request of the same tag (fault-late)", function()
    local s = core.session({ http2 = false })
    local late = vnc_req(sim.http, "fault-late")
    late.tag = 0
    assert.are.equal(200, (s:request(late)))
    local v2 = vnc_req(sim.http, "vm-2")
    v2.tag = 0
    local st, b = s:request(v2)          -- sent within the 100 ms: on a new connection
    assert.are.equal(200, st)
    assert.are.equal(uuid(2), uuid_of(b))
    s:close()
  end)

  it("runs many tagged requests over HTTP/2 on one connection, tags or not", function()
    local s = core.session({ ca_file = sim.cert })
    local reqs = {}
    for i = 1, 50 do
      reqs[i] = vnc_req(sim.https, "vm-" .. i)
      reqs[i].tag = 0
    end
    local status = run(s, reqs, 8)
    for i = 1, 50 do assert.are.equal(200, status[i]) end
    assert.are.equal(1, helpers.stats().connections)
    s:close()
  end)

  it("tells the HTTP version of each answer", function()
    local s2 = core.session({ ca_file = sim.cert })
    local s1 = core.session({ ca_file = sim.cert, http2 = false })
    assert.are.same({ 200, 2 }, { (s2:request(vnc_req(sim.https, "vm-1"))), select(3,
      s2:request(vnc_req(sim.https, "vm-2"))) })
    local st, _, version = s1:request(vnc_req(sim.https, "vm-3"))
    assert.are.same({ 200, 1 }, { st, version })
    local seen = {}
    s2:request_many({ vnc_req(sim.https, "vm-4") }, 1, function(_, _, _, v) seen[1] = v end)
    assert.are.same({ 2 }, seen)
    s1:close()
    s2:close()
  end)

  it("sends a request with fresh = true on a new connection", function()
    local s = core.session({ http2 = false })
    assert.are.equal(200, (s:request(vnc_req(sim.http, "vm-1"))))
    assert.are.equal(200, (s:request(vnc_req(sim.http, "vm-2"))))
    assert.are.equal(1, helpers.stats().connections)
    local fresh = vnc_req(sim.http, "vm-3")
    fresh.fresh = true
    assert.are.equal(200, (s:request(fresh)))
    assert.are.equal(2, helpers.stats().connections)
    s:close()
  end)
end)
