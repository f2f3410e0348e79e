-- Specs for CloudTower as it is in the field (issue 11) and batches bound
-- to their requests (issue 14), against the simulator's tower flavours
-- (spec/support/simulator/README.md): a path prefix picks the flavour, so
-- these run beside the other specs on one simulator. Loopback only.
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local helpers = require "helpers"

local sim = helpers.sim()
local NONE = helpers.NONE

local function client(opts) return helpers.client(opts) end

local function login_client(flavour, opts)
  return helpers.client({ endpoint = sim.http .. flavour, token = NONE, username = "admin",
                          password = "sim-pass" }, opts)
end

local function stats() return helpers.stats() end
local function ids(n, from)
  local t = {}
  for i = 1, n do t[i] = "vm-" .. (i + (from or 0)) end
  return t
end

describe("CloudTower as in the field", function()
  helpers.autoclose()
  before_each(function() helpers.reset() end)

  describe("auth from GraphQL codes (gqlauth: a refused token is HTTP 200 + LOAD_TOKEN_FAILED)",
    function()
    it("a revoked login token: one re-login, then success (single call)", function()
      local c = login_client("/gqlauth")
      assert.is_truthy(c:vnc("vm-1"))
      helpers.control("revoke")
      local before = stats().requests["/gqlauth/v2/api/login"]
      local info, msg, kind = c:vnc("vm-2")
      assert.is_truthy(info, tostring(msg) .. " " .. tostring(kind))
      assert.are.equal(before + 1, stats().requests["/gqlauth/v2/api/login"])
    end)

    it("a revoked login token: exactly one re-login for a 100-VM batch", function()
      local c = login_client("/gqlauth")
      assert.is_truthy(c:vnc("vm-1"))
      helpers.control("revoke")
      local before = stats().requests["/gqlauth/v2/api/login"]
      local _, summary = c:batch(ids(100), { mode = "proxy" })
      assert.are.equal(100, summary.ok)
      assert.are.equal(before + 1, stats().requests["/gqlauth/v2/api/login"])
    end)

    it("a static token that is refused is auth at once, without a login", function()
      local c = client({ endpoint = sim.http .. "/gqlauth", token = "not-a-token" })
      local info, msg, kind = c:vnc("vm-1")
      assert.is_nil(info)
      assert.are.equal("auth", kind)
      assert.is_truthy(msg:find("LOAD_TOKEN_FAILED", 1, true))
      assert.are.equal(1, stats().requests["/gqlauth/api"])
      assert.are.equal(0, stats().requests["/gqlauth/v2/api/login"] or 0)
    end)

    it("a per-VM auth code makes the call auth", function()
      local info, _, kind = client():vnc("fault-code-PERMISSION_DENIED")
      assert.is_nil(info)
      assert.are.equal("auth", kind)
    end)

    it("other codes stay graphql with the code in the message", function()
      local info, msg, kind = client():vnc("fault-code-VM_LOCKED")
      assert.is_nil(info)
      assert.are.equal("graphql", kind)
      assert.is_truthy(msg:find("(VM_LOCKED)", 1, true))
    end)
  end)

  describe("towers from before the token field (pretoken)", function()
    it("give direct and proxy URLs for a batch with one extra request in all", function()
      local c = client({ endpoint = sim.http .. "/pretoken" })
      local list = ids(20)
      local results, summary = c:batch(list, { mode = "proxy" })
      assert.are.equal(20, summary.ok)
      assert.are.equal(21, stats().requests["/pretoken/api"])
      local info = results[3].info
      assert.is_nil(info.token)
      assert.is_true(results[3].url == ctvnc.proxy_url(sim.http .. "/pretoken", info,
        { raw_token = true }))
      assert.is_truthy(results[3].url:find("token=" .. info.raw_token, 1, true))
      local direct = c:console_url_for(info, { mode = "direct" })
      assert.is_true(direct == ctvnc.direct_url(info))
      -- learned for the client's lifetime: no extra request any more
      assert.is_truthy(c:vnc("vm-30"))
      assert.are.equal(22, stats().requests["/pretoken/api"])
    end)

    it("a single call asks again without the field, once", function()
      local c = client({ endpoint = sim.http .. "/pretoken" })
      local url, mode = c:console_url("vm-1", { mode = "proxy" })
      assert.are.equal("proxy", mode)
      assert.is_truthy(url:find("^ws://127%.0%.0%.1:%d+/pretoken/websockify/%?token=%x+&uuid="))
      assert.are.equal(2, stats().requests["/pretoken/api"])
    end)
  end)

  describe("login sources", function()
    it("LDAP asks authnStrategies first and logs in with AUTHN", function()
      local c = login_client("", { username = "ldap-user", password = "ldap-pass",
                                   source = "LDAP" })
      assert.is_truthy(c:login())
      local s = stats()
      assert.are.equal(1, s.requests["/api"])        -- the strategies, no token
      assert.are.equal(1, s.logins.AUTHN)
      assert.is_nil(s.logins.LDAP)
      assert.is_truthy(c:vnc("vm-1"))
    end)

    it("LDAP falls back to source LDAP when the tower has no LDAP strategy", function()
      local c = login_client("/noauthn", { username = "ldap-user", password = "ldap-pass",
                                           source = "LDAP" })
      assert.is_truthy(c:login())
      assert.are.equal(1, stats().logins.LDAP)
    end)

    it("AUTHN needs auth_config_id", function()
      local c, msg, kind = ctvnc.new({ endpoint = sim.http, username = "u", password = "p",
                                       source = "AUTHN" })
      assert.is_nil(c)
      assert.are.equal("invalid", kind)
      assert.is_truthy(msg:find("auth_config_id", 1, true))
    end)

    it("AUTHN with auth_config_id logs in the LDAP user", function()
      local c = login_client("", { username = "ldap-user", password = "ldap-pass",
        source = "AUTHN", auth_config_id = "cl2k0mz7q0d0k0958authn0001" })
      assert.is_truthy(c:login())
      assert.are.equal(1, stats().logins.AUTHN)
    end)
  end)

  describe("extra headers (allowlist)", function()
    it("are needed by the allow-list tower", function()
      local info, _, kind = client({ endpoint = sim.http .. "/allowlist" }):vnc("vm-1")
      assert.is_nil(info)
      assert.are.equal("auth", kind)
    end)

    it("are sent on every request, the login's included", function()
      local c = login_client("/allowlist", { headers = { ["x-bypass-whitelist"] = "true" } })
      assert.is_truthy(c:vnc("vm-1"))
      local _, summary = c:batch(ids(5), { mode = "proxy" })
      assert.are.equal(5, summary.ok)
    end)
  end)

  describe("find_vms", function()
    it("tells two VMs of one name in two clusters apart, without the recycle bin", function()
      local vms = assert(client():find_vms("twin"))
      assert.are.equal(2, #vms)
      local clusters = { vms[1].cluster.name, vms[2].cluster.name }
      table.sort(clusters)
      assert.are.same({ "cluster-a", "cluster-b" }, clusters)
      for _, vm in ipairs(vms) do assert.is_truthy(vm.host and vm.host.name) end
    end)

    it("finds recycled VMs when the filter names in_recycle_bin", function()
      local vms = assert(client():find_vms({ name = "twin", in_recycle_bin = true }))
      assert.are.equal(1, #vms)
      assert.are.equal("vm-104", vms[1].id)
    end)

    it("takes a filter with name_contains, cluster and paging", function()
      local vms = assert(client():find_vms({ name_contains = "web-1", cluster = { name = "cluster-a" } },
        { order_by = "name_ASC", first = 3, skip = 1 }))
      local names = {}
      for i, vm in ipairs(vms) do names[i] = vm.name end
      -- web-1, web-11, web-13, web-15, web-17, web-19 in cluster-a, by name
      assert.are.same({ "web-11", "web-13", "web-15" }, names)
    end)

    it("refuses bad paging before any request", function()
      local vms, _, kind = client():find_vms("x", { first = -1 })
      assert.is_nil(vms)
      assert.are.equal("invalid", kind)
      assert.are.equal(0, stats().requests["/v2/api/get-vms"])
    end)
  end)
end)

describe("batches bound to their requests", function()
  helpers.autoclose()
  before_each(function() helpers.reset() end)

  it("ask per_request VMs in one request, mapping mixed outcomes back by alias", function()
    local list = { "vm-1", "fault-null", "vm-2", "fault-code-VM_LOCKED", "vm-3", "nope-x" }
    local c = client({ per_request = 6 })
    local results, summary = c:batch(list, { mode = "proxy" })
    assert.are.equal(6, summary.per_request)
    -- all six in one request: a client's first group, the one that learns
    -- the tower, takes the odd-sized rest, here the whole list
    assert.are.equal(1, stats().requests["/api"])
    assert.is_true(results[1].ok and results[3].ok and results[5].ok)
    assert.are.equal("not_found", results[2].kind)
    assert.are.equal("graphql", results[4].kind)
    assert.is_truthy(results[4].message:find("fault-code-VM_LOCKED", 1, true))
    assert.are.equal("not_found", results[6].kind)   -- VM_NOT_FOUND
  end)

  it("give the same results as one VM a request", function()
    local list = { "vm-1", "fault-null", "vm-2", "fault-graphql", "vm-3", "vm-2", "fault-500" }
    local one = client():batch(list, { mode = "direct" })
    local many = client({ per_request = 3 }):batch(list, { mode = "direct" })
    for i = 1, #list do
      assert.are.equal(one[i].ok, many[i].ok)
      assert.are.equal(one[i].kind, many[i].kind)
      assert.are.equal(one[i].mode, many[i].mode)
      if one[i].ok then
        assert.are.equal(one[i].info.vm_uuid, many[i].info.vm_uuid)
        assert.is_truthy(many[i].url:find("uuid=" .. one[i].info.vm_uuid, 1, true))
      end
    end
  end)

  it("fall back to one VM a request on a tower that refuses aliases (noalias)", function()
    local c = client({ endpoint = sim.http .. "/noalias", per_request = 10 })
    local results, summary = c:batch(ids(21), { mode = "proxy" })
    assert.are.equal(21, summary.ok)
    assert.are.equal(1, summary.per_request)
    assert.is_true(results[21].ok)
    -- the first VM alone, two refused requests of ten (both in flight at
    -- once), then twenty alone
    assert.are.equal(23, stats().requests["/noalias/api"])
    local _, again = c:batch(ids(5, 30), { mode = "proxy" })
    assert.are.equal(1, again.per_request)              -- for the client's lifetime
  end)

  it("refuse per_request below 1", function()
    local results, summary = client():batch({ "vm-1" }, { per_request = 0 })
    assert.are.equal(1, summary.failed)
    assert.are.equal("invalid", results[1].kind)
  end)

  describe("the late-answer mix-up (fault-late: a second answer 100 ms late)", function()
    it("happens at the transport level: the next request reads the late answer", function()
      local s = core.session({ base = sim.http })
      local function req(id)
        return { method = "POST", path = "/api", headers = {
            Authorization = "sim-token", ["Content-Type"] = "application/json" },
          body = require("cjson").encode({ operationName = "vnc",
            variables = { input = { vm = { id = id } } },
            query = "query vnc($input: VncInput!) { vnc(input: $input) "
              .. "{ vm_uuid host_ip cluster_ip raw_token token } }" }) }
      end
      assert.are.equal(200, (s:request(req("fault-late"))))
      local _, body = s:request(req("vm-2"))             -- sent within the 100 ms
      local got = require("cjson").decode(body).data.vnc.vm_uuid
      assert.are.equal(("%08x-0000-4000-8000-%012x"):format(1, 1), got)   -- not vm-2's
      s:close()
    end)

    it("is gone for single calls: the foreign answer is refused, the call asked anew", function()
      local c = client({ retries = 2 })
      assert.is_truthy(c:vnc("fault-late"))
      local info = assert(c:vnc("vm-2"))
      assert.are.equal(("%08x-0000-4000-8000-%012x"):format(2, 2), info.vm_uuid)
    end)

    it("is gone for batches", function()
      local c = client({ retries = 2 })
      local results = c:batch({ "fault-late", "vm-2", "vm-3", "vm-4" },
        { mode = "proxy", concurrency = 1 })
      for i = 2, 4 do
        assert.are.equal(("%08x-0000-4000-8000-%012x"):format(i, i), results[i].info.vm_uuid)
      end
    end)
  end)

  it("share one HTTP/2 connection for a 1,000-VM batch at concurrency 64", function()
    local c = client({ endpoint = sim.https, ca_file = sim.cert, concurrency = 64 })
    local _, summary = c:batch(ids(1000), { mode = "proxy" })
    assert.are.equal(1000, summary.ok)
    local s = stats()
    assert.are.equal(1, s.connections)
    assert.are.equal(1000, s.protocols["HTTP/2.0"])
  end)

  it("keep HTTP/1.1 with http2 = false", function()
    local c = client({ endpoint = sim.https, ca_file = sim.cert, http2 = false })
    local _, summary = c:batch(ids(20), { mode = "proxy" })
    assert.are.equal(20, summary.ok)
    local s = stats()
    assert.are.equal(20, s.protocols["HTTP/1.1"])
    assert.is_nil(s.protocols["HTTP/2.0"])
  end)
end)
