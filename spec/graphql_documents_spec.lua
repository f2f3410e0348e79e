-- Issue 21: the tower sees few distinct GraphQL documents while every
-- answer stays bound to its request, and a tower that takes only the vendor
-- document's request still works. The simulator counts the distinct `vnc`
-- query texts it was sent since the last reset, by number of vnc fields
-- (stats.documents); a GraphQL server parses and validates each new text
-- once and caches it. Loopback only.
local ctvnc = require "ctvnc"
local helpers = require "helpers"

local sim = helpers.sim()

local function stats() return helpers.stats() end

local function ids(n)
  local t = {}
  for i = 1, n do t[i] = "vm-" .. i end
  return t
end

--- The number of distinct vnc documents since the reset: in all, and the
-- largest count for one number of fields.
local function documents()
  local total, most = 0, 0
  for _, n in pairs(stats().documents) do
    total = total + n
    if n > most then most = n end
  end
  return total, most
end

local function uuid(n) return ("%08x-0000-4000-8000-%012x"):format(n, n) end

describe("the documents a batch sends", function()
  helpers.autoclose()
  before_each(function() helpers.reset() end)

  for _, per in ipairs({ 1, 25 }) do
    it("over HTTP/2: at most two for 1,000 VMs at " .. per .. " a request", function()
      local c = helpers.client({ endpoint = sim.https, ca_file = sim.cert, concurrency = 64,
                                 per_request = per })
      local _, summary = c:batch(ids(1000), { mode = "direct" })
      assert.are.equal(1000, summary.ok)
      local total, most = documents()
      assert.is_true(total <= 2, "distinct documents: "
        .. require("cjson").encode(stats().documents))
      assert.is_true(most <= 2)
      assert.are.equal(1, stats().connections)
    end)
  end

  for _, per in ipairs({ 1, 25 }) do
    it("over HTTP/1.1: at most 2 x concurrency + 2 for 1,000 VMs at " .. per .. " a request",
      function()
      local c = helpers.client({ concurrency = 16, per_request = per })
      local _, summary = c:batch(ids(1000), { mode = "direct" })
      assert.are.equal(1000, summary.ok)
      local total = documents()
      assert.is_true(total <= 2 * 16 + 2, "distinct documents: " .. total)
    end)
  end

  it("over HTTP/2 a single call is the vendor document's request once the tower is known",
    function()
    local c = helpers.client({ endpoint = sim.https, ca_file = sim.cert })
    for i = 1, 5 do assert.is_truthy(c:vnc("vm-" .. i)) end
    -- the first one (the HTTP version unknown yet) carries a nonce
    assert.are.same({ ["1"] = 2 }, stats().documents)
  end)

  it("a client without tags in its runtime gets a nonce never used before", function()
    local c = helpers.client({ transport = function(t)
      return { request_many = t.request_many, probe = t.probe, sleep = t.sleep, now = t.now,
               close = t.close }
    end })
    local _, summary = c:batch(ids(40), { mode = "direct", concurrency = 4 })
    assert.are.equal(40, summary.ok)
    assert.are.equal(40, (documents()))
  end)
end)

describe("answers stay bound to their requests with few documents", function()
  helpers.autoclose()
  before_each(function() helpers.reset() end)

  -- fault-late: a second answer 100 ms late on the same HTTP/1.1 connection
  for round = 1, 5 do
    it("single calls never take a late answer (round " .. round .. ")", function()
      local c = helpers.client({ retries = 2 })
      assert.is_truthy(c:vnc("fault-late"))
      for i = 2, 4 do assert.are.equal(uuid(i), c:vnc("vm-" .. i).vm_uuid) end
    end)
  end

  it("batches never take a late answer, one connection or many", function()
    for _, concurrency in ipairs({ 1, 3 }) do
      local c = helpers.client({ retries = 2 })
      local results = c:batch({ "fault-late", "vm-2", "vm-3", "vm-4", "vm-5", "vm-6" },
        { mode = "proxy", concurrency = concurrency })
      for i = 2, 6 do assert.are.equal(uuid(i), results[i].info.vm_uuid) end
    end
  end)

  it("over HTTP/1.1 to a tower that takes only the vendor document's request", function()
    local c = helpers.client({ endpoint = sim.http .. "/documented", retries = 2 })
    assert.is_truthy(c:vnc("vm-1"))                      -- learns the form
    assert.is_truthy(c:vnc("fault-late"))
    for i = 2, 4 do assert.are.equal(uuid(i), c:vnc("vm-" .. i).vm_uuid) end
  end)
end)

describe("a tower that takes only the vendor document's request (documented)", function()
  helpers.autoclose()
  before_each(function() helpers.reset() end)

  local function client(opts)
    return helpers.client({ endpoint = sim.http .. "/documented" }, opts)
  end

  it("answers a single call after one extra request, then one request a call", function()
    local c = client()
    local url, mode = c:console_url("vm-1", { mode = "proxy" })
    assert.are.equal("proxy", mode)
    assert.is_truthy(url:find("uuid=" .. uuid(1), 1, true))
    assert.are.equal(2, stats().requests["/documented/api"])
    assert.is_truthy(c:vnc("vm-2"))
    assert.are.equal(3, stats().requests["/documented/api"])
  end)

  it("gives a batch one extra request in all, one VM a request", function()
    local c = client()
    local results, summary = c:batch(ids(30), { mode = "direct", concurrency = 8 })
    assert.are.equal(30, summary.ok)
    assert.are.equal(1, summary.per_request)
    assert.are.equal(31, stats().requests["/documented/api"])
    assert.are.equal(ctvnc.direct_url(results[7].info), results[7].url)
    assert.are.same({ ["1"] = 2 }, stats().documents)
  end)

  it("with per_request 25: two extra requests (the group, then the form)", function()
    local c = client({ per_request = 25 })
    local results, summary = c:batch(ids(60), { mode = "direct", concurrency = 8 })
    assert.are.equal(60, summary.ok)
    assert.are.equal(1, summary.per_request)
    assert.are.equal(62, stats().requests["/documented/api"])
    assert.are.equal(uuid(60), results[60].info.vm_uuid)
  end)

  it("before the token field too (pretoken + documented)", function()
    local c = helpers.client({ endpoint = sim.http .. "/pretoken/documented" })
    local results, summary = c:batch(ids(10), { mode = "proxy" })
    assert.are.equal(10, summary.ok)
    assert.is_nil(results[4].info.token)
    assert.are.equal(12, stats().requests["/pretoken/documented/api"])
  end)

  it("keeps its per-VM answers: an unknown VM is its own failure", function()
    local c = client()
    local results, summary = c:batch({ "vm-1", "nope-1", "vm-3" }, { mode = "proxy" })
    assert.are.equal(2, summary.ok)
    assert.is_false(results[2].ok)
    assert.is_true(results[3].ok)
  end)
end)
