-- The simulator itself (spec/support/simulator/README.md), spoken to
-- through the bare transport (ctvnc.core.session): the GraphQL it reads,
-- aliased vnc fields answered one by one, the tower flavours chosen by
-- path prefix, logins and the LDAP strategy, get-vms filters and paging,
-- fault-late and the control endpoints. The client specs build on these.
local core = require "ctvnc.core"
local cjson = require "cjson"
local helpers = require "helpers"

local sim = helpers.sim()

local QUERY = "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token token } }"
local HEADERS = { Authorization = "sim-token", ["Content-Type"] = "application/json",
  accept = "application/json", ["content-language"] = "en-US" }

local function uuid(n) return ("%08x-0000-4000-8000-%012x"):format(n, n) end

local function copy(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v or nil end
  return out
end

--- POST `doc` (a table, encoded) or `raw` to base .. path; status, decoded
-- body (or nil), raw body
local function post(s, url, doc, headers)
  local body = type(doc) == "string" and doc or cjson.encode(doc)
  local status, text = s:request({ method = "POST", url = url, body = body,
    headers = headers or HEADERS })
  assert(status, text)
  local ok, decoded = pcall(cjson.decode, text)
  return status, ok and decoded or nil, text
end

local function vnc_doc(id, query)
  return { operationName = "vnc", query = query or QUERY,
    variables = { input = { vm = { id = id } } } }
end

--- a query asking for `ids` under aliases a0, a1, ...
local function multi_doc(ids, fields)
  local defs, sels, vars = {}, {}, {}
  for i, id in ipairs(ids) do
    defs[i] = ("$v%d: VncInput!"):format(i - 1)
    sels[i] = ("a%d: vnc(input: $v%d) { %s }"):format(i - 1, i - 1,
      fields or "vm_uuid host_ip cluster_ip raw_token token")
    vars["v" .. (i - 1)] = { vm = { id = id } }
  end
  return { operationName = "vnc", query = "query vnc(" .. table.concat(defs, ", ") .. ") { "
    .. table.concat(sels, " ") .. " }", variables = vars }
end

describe("the simulator", function()
  local s
  before_each(function()
    helpers.reset()
    s = core.session({ ca_file = sim.cert })
  end)
  after_each(function() s:close() end)

  describe("GraphQL /api", function()
    it("takes any query with the same selections: whitespace, comments, order, aliases", function()
      local q = "# the vendor's example, reflowed\nquery vnc(\n  $input: VncInput!\n) {\n"
        .. "  vnc(input: $input) {\n    token, raw_token\n    ip: cluster_ip\n    host_ip vm_uuid\n  }\n}\n"
      local status, doc, text = post(s, sim.http .. "/api", vnc_doc("vm-3", q))
      assert.are.equal(200, status)
      local vnc = doc.data.vnc
      assert.are.equal(uuid(3), vnc.vm_uuid)
      assert.are.equal("127.0.0.2", vnc.ip)
      assert.is_nil(vnc.cluster_ip)
      -- fields come in the order asked
      assert.truthy(text:find('^{"data":{"vnc":{"token":'))
      -- shorthand query, no operationName, a literal input, a VM by local_id
      status, doc = post(s, sim.http .. "/api",
        { query = '{ vnc(input: {vm: {local_id: "local-5"}}) { vm_uuid } }' })
      assert.are.equal(200, status)
      assert.are.equal(uuid(5), doc.data.vnc.vm_uuid)
    end)

    it("takes requests without content-language and accept, refuses wrong ones", function()
      local h = copy(HEADERS, { accept = false, ["content-language"] = false })
      assert.are.equal(200, (post(s, sim.http .. "/api", vnc_doc("vm-1"), h)))
      assert.are.equal(200, (post(s, sim.http .. "/api", vnc_doc("vm-1"),
        copy(HEADERS, { accept = "*/*", ["content-language"] = "*" }))))
      assert.are.equal(400, (post(s, sim.http .. "/api", vnc_doc("vm-1"),
        copy(HEADERS, { ["content-language"] = "fr-FR" }))))
      assert.are.equal(400, (post(s, sim.http .. "/api", vnc_doc("vm-1"),
        copy(HEADERS, { accept = "text/html" }))))
      assert.are.equal(401, (post(s, sim.http .. "/api", vnc_doc("vm-1"),
        copy(HEADERS, { Authorization = false }))))
    end)

    it("answers GraphQL errors at HTTP 400 with the code on the error and under extensions", function()
      local cases = {
        { "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid ", "GRAPHQL_PARSE_FAILED",
          "Syntax Error: Expected Name, found <EOF>." },
        { "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid nope } }",
          "GRAPHQL_VALIDATION_FAILED", 'Cannot query field "nope" on type "Vnc".' },
        { "query vnc($input: VncInput!) { vnc(input: $x) { vm_uuid } }",
          "GRAPHQL_VALIDATION_FAILED", 'Variable "$x" is not defined by operation "vnc".' },
      }
      for _, c in ipairs(cases) do
        local status, doc = post(s, sim.http .. "/api", vnc_doc("vm-1", c[1]))
        assert.are.equal(400, status)
        assert.is_nil(doc.data)
        local e = doc.errors[1]
        assert.are.equal(c[2], e.code)
        assert.are.equal(c[2], e.extensions.code)
        assert.are.equal(c[3], e.message)
      end
      local status, doc = post(s, sim.http .. "/api", { query = QUERY,
        variables = { input = { vm = { id = true } } } })
      assert.are.equal(400, status)
      assert.are.equal("BAD_USER_INPUT", doc.errors[1].code)
    end)

    it("answers aliased vnc fields one by one, errors at their path", function()
      local ids = { "vm-1", "nope", "fault-null", "fault-graphql", "fault-vnc-missing",
        "fault-code-PERMISSION_DENIED", "vm-2" }
      local status, doc = post(s, sim.http .. "/api", multi_doc(ids))
      assert.are.equal(200, status)
      local d = doc.data
      assert.are.equal(uuid(1), d.a0.vm_uuid)
      assert.are.equal(uuid(2), d.a6.vm_uuid)
      assert.are.equal(cjson.null, d.a1)
      assert.are.equal(cjson.null, d.a2)
      assert.are.equal(cjson.null, d.a3)
      assert.is_nil(d.a4)
      assert.are.equal(cjson.null, d.a5)
      local by_path = {}
      for _, e in ipairs(doc.errors) do
        by_path[e.path[1]] = e
        assert.are.equal(e.code, e.extensions.code)
      end
      assert.are.same({ "a1", "a3", "a5" }, (function()
        local t = {}
        for k in pairs(by_path) do t[#t + 1] = k end
        table.sort(t)
        return t
      end)())
      assert.are.equal("VM_NOT_FOUND", by_path.a1.code)
      assert.are.equal("PERMISSION_DENIED", by_path.a5.code)
      local st = helpers.stats()
      assert.are.equal(1, st.vm["vm-1"])
      assert.are.equal(1, st.vm["fault-null"])
      assert.are.equal(1, st.requests["/api"])
    end)

    it("lets a whole-request fault answer for the whole group", function()
      assert.are.equal(503, (post(s, sim.http .. "/api", multi_doc({ "vm-1", "fault-503", "vm-2" }))))
      local status = post(s, sim.http .. "/api", multi_doc({ "vm-1", "flaky-1-group" }))
      assert.are.equal(503, status)
      local doc
      status, doc = post(s, sim.http .. "/api", multi_doc({ "vm-1", "flaky-1-group" }))
      assert.are.equal(200, status)
      assert.are.equal(uuid(1), doc.data.a0.vm_uuid)
      assert.are.equal(uuid(1), doc.data.a1.vm_uuid)
    end)
  end)

  describe("flavours", function()
    it("/noalias/ refuses a query with more than one field as a whole", function()
      local status, doc = post(s, sim.http .. "/noalias/api", multi_doc({ "vm-1", "vm-2" }))
      assert.are.equal(400, status)
      assert.are.equal("GRAPHQL_VALIDATION_FAILED", doc.errors[1].code)
      assert.is_nil(doc.data)
      -- one field, aliased, is fine
      status, doc = post(s, sim.http .. "/noalias/api", multi_doc({ "vm-2" }))
      assert.are.equal(200, status)
      assert.are.equal(uuid(2), doc.data.a0.vm_uuid)
      assert.are.equal(2, helpers.stats().requests["/noalias/api"])
    end)

    it("/documented/ takes only the vendor document's vnc request", function()
      local url = sim.http .. "/documented/api"
      local status, doc = post(s, url, vnc_doc("vm-1"))
      assert.are.equal(200, status)
      assert.are.equal(uuid(1), doc.data.vnc.vm_uuid)
      -- whitespace and the selection are free, as for any GraphQL server
      status = post(s, url, vnc_doc("vm-2", "query vnc($input: VncInput!) {\n vnc(input: $input)"
        .. " { raw_token vm_uuid host_ip cluster_ip } }"))
      assert.are.equal(200, status)
      local refused = {
        multi_doc({ "vm-3" }),                                         -- an alias
        copy(vnc_doc("vm-3", (QUERY:gsub("query vnc", "query other"))),
          { operationName = "other" }),                                 -- another name
        vnc_doc("vm-3", (QUERY:gsub("%$input", "$in"))),               -- another variable
        copy(vnc_doc("vm-3"), { variables = { input = { vm = { id = "vm-3" } }, x = 1 } }),
        { operationName = "vnc", query = "query vnc { vnc(input: {vm: {id: \"vm-3\"}}) "
          .. "{ vm_uuid } }" },                                         -- a literal
      }
      for i, body in ipairs(refused) do
        status, doc = post(s, url, body)
        assert.are.equal(400, status, "refused #" .. i)
        assert.are.equal("GRAPHQL_VALIDATION_FAILED", doc.errors[1].extensions.code)
      end
      -- a query without vnc is not concerned
      status = post(s, url, { query = "{authnStrategies{id type}}" })
      assert.are.equal(200, status)
    end)

    it("/pretoken/ has no token field, and takes the raw token at /websockify/", function()
      local status, doc = post(s, sim.http .. "/pretoken/api", vnc_doc("vm-1"))
      assert.are.equal(400, status)
      assert.are.equal('Cannot query field "token" on type "Vnc".', doc.errors[1].message)
      assert.are.equal("GRAPHQL_VALIDATION_FAILED", doc.errors[1].code)
      local q = "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token } }"
      status, doc = post(s, sim.http .. "/pretoken/api", vnc_doc("vm-1", q))
      assert.are.equal(200, status)
      local raw = doc.data.vnc.raw_token
      assert.truthy(raw and #raw == 32)
      assert.is_nil(doc.data.vnc.token)
      local function ws(prefix)
        return s:request({ method = "GET", url = sim.http .. prefix .. "/websockify/?uuid="
          .. uuid(1) .. "&token=" .. raw .. "&host=127.0.0.1" })
      end
      assert.are.equal(403, (ws("")))
      local st = ws("/pretoken")
      assert.is_true(st ~= 401 and st ~= 403 and st ~= 404, "status " .. tostring(st))
      assert.are.equal(404, (ws("/nosuch")))
    end)

    it("/allowlist/ wants x-bypass-whitelist: true on every endpoint", function()
      local with = copy(HEADERS, { ["x-bypass-whitelist"] = "true" })
      assert.are.equal(403, (post(s, sim.http .. "/allowlist/api", vnc_doc("vm-1"))))
      assert.are.equal(200, (post(s, sim.http .. "/allowlist/api", vnc_doc("vm-1"), with)))
      local login = { username = "admin", password = "sim-pass", source = "LOCAL" }
      assert.are.equal(403, (post(s, sim.http .. "/allowlist/v2/api/login", login)))
      assert.are.equal(200, (post(s, sim.http .. "/allowlist/v2/api/login", login, with)))
      assert.are.equal(403, (post(s, sim.http .. "/allowlist/v2/api/get-vms", {})))
      assert.are.equal(200, (post(s, sim.http .. "/allowlist/v2/api/get-vms", {}, with)))
      -- flavours combine
      assert.are.equal(403, (post(s, sim.https .. "/pretoken/allowlist/api", vnc_doc("vm-1"))))
    end)

    it("/gqlauth/ refuses tokens at HTTP 200 with LOAD_TOKEN_FAILED; the root with 401", function()
      local _, doc = post(s, sim.http .. "/v2/api/login",
        { username = "admin", password = "sim-pass", source = "LOCAL" })
      local h = copy(HEADERS, { Authorization = doc.data.token })
      assert.are.equal(200, (post(s, sim.http .. "/gqlauth/api", vnc_doc("vm-1"), h)))
      helpers.control("revoke")
      local status
      status, doc = post(s, sim.http .. "/gqlauth/api", vnc_doc("vm-1"), h)
      assert.are.equal(200, status)
      assert.are.equal("LOAD_TOKEN_FAILED", doc.errors[1].code)
      assert.are.equal("LOAD_TOKEN_FAILED", doc.errors[1].extensions.code)
      assert.are.equal(cjson.null, doc.data)
      assert.are.equal(401, (post(s, sim.http .. "/api", vnc_doc("vm-1"), h)))
      status, doc = post(s, sim.http .. "/gqlauth/api", vnc_doc("vm-1"),
        copy(HEADERS, { Authorization = "wrong" }))
      assert.are.equal(200, status)
      assert.are.equal("LOAD_TOKEN_FAILED", doc.errors[1].code)
    end)

    it("/nullvm/ answers an unknown VM with a bare null", function()
      local status, doc = post(s, sim.http .. "/nullvm/api", multi_doc({ "nope", "fault-graphql", "vm-1" }))
      assert.are.equal(200, status)
      assert.are.equal(cjson.null, doc.data.a0)
      assert.are.equal(cjson.null, doc.data.a1)
      assert.are.equal(uuid(1), doc.data.a2.vm_uuid)
      assert.are.equal(1, #doc.errors)
      assert.are.same({ "a1" }, doc.errors[1].path)
      status, doc = post(s, sim.http .. "/nullvm/api", vnc_doc("nope"))
      assert.are.equal(200, status)
      assert.are.equal(cjson.null, doc.data.vnc)
      assert.is_nil(doc.errors)
    end)

    it("refuses an unknown flavour with 404", function()
      assert.are.equal(404, (post(s, sim.http .. "/nosuch/api", vnc_doc("vm-1"))))
    end)
  end)

  describe("logins", function()
    local no_token = copy(HEADERS, { Authorization = false })

    it("lists authnStrategies without a token; /noauthn/ has none", function()
      local status, doc = post(s, sim.http .. "/api", { query = "{authnStrategies{id type}}" }, no_token)
      assert.are.equal(200, status)
      local ldap
      for _, st in ipairs(doc.data.authnStrategies) do
        if st.type == "LDAP" then ldap = st.id end
      end
      assert.is_string(ldap)
      status, doc = post(s, sim.http .. "/noauthn/api", { query = "{authnStrategies{id type}}" }, no_token)
      assert.are.equal(200, status)
      assert.are.same({}, doc.data.authnStrategies)
      -- a vnc field still needs one
      assert.are.equal(401, (post(s, sim.http .. "/api",
        { query = '{ authnStrategies { id } vnc(input: {vm: {id: "vm-1"}}) { vm_uuid } }' }, no_token)))
    end)

    it("logs the LDAP user in with AUTHN + the strategy id, or the deprecated LDAP", function()
      local _, doc = post(s, sim.http .. "/api", { query = "{authnStrategies{id type}}" }, no_token)
      local ldap
      for _, st in ipairs(doc.data.authnStrategies) do
        if st.type == "LDAP" then ldap = st.id end
      end
      local function login(prefix, body)
        local status, d, text = post(s, sim.http .. prefix .. "/v2/api/login", body, no_token)
        return status, d, text
      end
      local status, d, text = login("", { username = "ldap-user", password = "ldap-pass",
        source = "AUTHN", auth_config_id = ldap })
      assert.are.equal(200, status)
      assert.is_string(d.data.token)
      assert.truthy(text:find('"task_id":null', 1, true))
      assert.are.equal(200, (login("", { username = "ldap-user", password = "ldap-pass", source = "LDAP" })))
      assert.are.equal(400, (login("", { username = "ldap-user", password = "ldap-pass", source = "LOCAL" })))
      assert.are.equal(400, (login("", { username = "ldap-user", password = "ldap-pass",
        source = "AUTHN", auth_config_id = "other" })))
      assert.are.equal(400, (login("/noauthn", { username = "ldap-user", password = "ldap-pass",
        source = "AUTHN", auth_config_id = ldap })))
      assert.are.equal(200, (login("/noauthn", { username = "ldap-user", password = "ldap-pass",
        source = "LDAP" })))
      -- source is optional for local users
      assert.are.equal(200, (login("", { username = "admin", password = "sim-pass" })))
      status, d = login("", { username = "admin", password = "sim-pass", source = "LDAP" })
      assert.are.equal(400, status)
      assert.are.equal("USER_PASSWORD_INCORRECT", d.code)
      local st = helpers.stats()
      assert.are.equal(3, st.logins.AUTHN)
      assert.are.equal(3, st.logins.LDAP)
      assert.are.equal(2, st.logins.LOCAL)
    end)
  end)

  describe("get-vms", function()
    local function find(body, prefix)
      local status, doc = post(s, sim.http .. (prefix or "") .. "/v2/api/get-vms", body)
      assert.are.equal(200, status)
      local ids = {}
      for i, vm in ipairs(doc) do ids[i] = vm.id end
      return ids, doc
    end

    it("answers VMs with cluster and host, and filters as the tower does", function()
      local ids, doc = find({ where = { name = "web-3" } })
      assert.are.same({ "vm-3" }, ids)
      assert.are.same({ "id", "name" }, (function()
        local t = {}
        for k in pairs(doc[1].cluster) do t[#t + 1] = k end
        table.sort(t)
        return t
      end)())
      assert.are.equal("cluster-a", doc[1].cluster.name)
      assert.is_string(doc[1].host.id)
      assert.is_string(doc[1].host.name)
      assert.is_false(doc[1].in_recycle_bin)
      assert.are.same({ "vm-1000" }, (find({ where = { name = "web-1000" } })))
      assert.are.same({}, (find({ where = { name = "nope" } })))
      -- two of one name in two clusters, a third in the recycle bin
      assert.are.same({ "vm-101", "vm-102", "vm-104" }, (find({ where = { name = "twin" } })))
      assert.are.same({ "vm-101", "vm-102" }, (find({ where = { name = "twin", in_recycle_bin = false } })))
      assert.are.same({ "vm-102" }, (find({ where = { name = "twin", cluster = { name = "cluster-b" } } })))
      assert.are.same({ "vm-103", "vm-104" }, (find({ where = { in_recycle_bin = true } })))
      assert.are.same({ "vm-1", "vm-10", "vm-11", "vm-12", "vm-13", "vm-14", "vm-15", "vm-16",
        "vm-17", "vm-18", "vm-19" }, (find({ where = { name_contains = "web-1" } })))
      assert.are.same({ "vm-2", "vm-5" }, (find({ where = { name_in = { "web-5", "web-2", "x" } } })))
      assert.are.same({ "vm-10", "vm-20" }, (find({ where = { status = "STOPPED", name_starts_with = "web" } })))
      assert.are.same({ "vm-1", "vm-101" }, (find({ where = { OR = { { name = "web-1" },
        { AND = { { name = "twin" }, { cluster = { name = "cluster-a" } }, { in_recycle_bin = false } } } } } })))
      assert.are.same({ "vm-3" }, (find({ where = { name_in = { "web-3", "web-4" },
        NOT = { cluster = { name = "cluster-b" } } } })))
    end)

    it("pages with first, skip and orderBy", function()
      local where = { name_starts_with = "web-" }
      assert.are.same({ "vm-1", "vm-2", "vm-3" }, (find({ where = where, first = 3 })))
      assert.are.same({ "vm-4", "vm-5" }, (find({ where = where, skip = 3, first = 2 })))
      assert.are.same({ "vm-9", "vm-8" }, (find({ where = where, orderBy = "name_DESC", first = 2 })))
      assert.are.same({ "vm-1", "vm-10" }, (find({ where = where, orderBy = "name_ASC", first = 2 })))
      assert.are.equal(24, #(find({})))
    end)

    it("refuses what the tower refuses", function()
      for _, body in ipairs({ { where = { nme = "x" } }, { limit = 3 }, { first = -1 },
                              { orderBy = "size_ASC" }, { where = { name = 3 } } }) do
        local status = post(s, sim.http .. "/v2/api/get-vms", body)
        assert.are.equal(400, status, cjson.encode(body))
      end
      assert.are.equal(401, (post(s, sim.http .. "/v2/api/get-vms", {}, copy(HEADERS, { Authorization = false }))))
    end)
  end)

  describe("fault-late", function()
    it("writes a second answer late: the next request on the connection reads it", function()
      local s1 = core.session({ http2 = false })
      local st1, b1 = s1:request({ method = "POST", url = sim.http .. "/api",
        body = cjson.encode(vnc_doc("fault-late")), headers = HEADERS })
      assert.are.equal(200, st1)
      local first = cjson.decode(b1).data.vnc
      local st2, b2 = s1:request({ method = "POST", url = sim.http .. "/api",
        body = cjson.encode(vnc_doc("vm-3")), headers = HEADERS })
      assert.are.equal(200, st2)
      local second = cjson.decode(b2).data.vnc
      -- the late answer, taken for vm-3's: fault-late's VM (uuid 1), fresh credentials
      assert.are.equal(uuid(1), second.vm_uuid)
      assert.is_false(first.raw_token == second.raw_token)
      assert.are.equal(1, helpers.stats().connections)
      s1:close()
    end)

    it("is a plain answer over HTTP/2", function()
      local st1 = s:request({ method = "POST", url = sim.https .. "/api",
        body = cjson.encode(vnc_doc("fault-late")), headers = HEADERS })
      assert.are.equal(200, st1)
      local st2, b2 = s:request({ method = "POST", url = sim.https .. "/api",
        body = cjson.encode(vnc_doc("vm-3")), headers = HEADERS })
      assert.are.equal(200, st2)
      assert.are.equal(uuid(3), cjson.decode(b2).data.vnc.vm_uuid)
    end)
  end)

  describe("control", function()
    it("reports requests by path and protocol, logins and its own CPU cost", function()
      for _ = 1, 20 do post(s, sim.https .. "/api", vnc_doc("vm-1")) end
      local st = helpers.stats()
      assert.are.equal(20, st.requests["/api"])
      assert.are.equal(20, st.protocols["HTTP/2.0"])
      assert.are.equal(1, st.connections)
      assert.is_number(st.cpu_ms)
      assert.is_true(st.cpu_us_per_request > 0)
    end)

    it("counts the distinct vnc documents since the reset, by number of fields", function()
      for i = 1, 5 do post(s, sim.http .. "/api", vnc_doc("vm-" .. i)) end
      post(s, sim.https .. "/api", vnc_doc("vm-1", QUERY .. " "))      -- another text
      for i = 1, 3 do post(s, sim.http .. "/api", multi_doc({ "vm-" .. i, "vm-9" })) end
      post(s, sim.http .. "/api", { query = "{authnStrategies{id type}}" })
      assert.are.same({ ["1"] = 2, ["2"] = 1 }, helpers.stats().documents)
      helpers.reset()
      post(s, sim.http .. "/api", vnc_doc("vm-1"))
      assert.are.same({ ["1"] = 1 }, helpers.stats().documents)
    end)
  end)
end)
