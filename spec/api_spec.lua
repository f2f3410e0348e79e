-- Specs for ctvnc.api, the protocol module: no I/O, so a table of cases and
-- no server, in the way lua-cjson's tests/test.lua lists its vectors. The
-- expected values are written out here by hand.
local api = require "ctvnc.api"
local json = require "cjson"

local INFO = '{"data":{"vnc":{"vm_uuid":"u-1","host_ip":"127.0.0.1","cluster_ip":"::1",'
  .. '"raw_token":"r","token":"t"}}}'

describe("ctvnc.api.classify", function()
  -- { label, status, body, transport kind, login?, kind | nil for a body, retryable }
  local cases = {
    { "200 is the body", 200, "{}", nil, false, nil },
    { "204 is the body", 204, "", nil, false, nil },
    { "301 is http", 301, "", nil, false, "http", false },
    { "400 is http", 400, "{}", nil, false, "http", false },
    { "401 is auth", 401, "{}", nil, false, "auth", false },
    { "403 is auth", 403, "{}", nil, false, "auth", false },
    { "404 is http", 404, "{}", nil, false, "http", false },
    { "500 is http, retryable", 500, "x", nil, false, "http", true },
    { "503 is http, retryable", 503, "x", nil, false, "http", true },
    { "a login's 400 is auth", 400, "{}", nil, true, "auth", false },
    { "a login's 400 mentioning HTTP 502 is auth",
      400, '{"message":"upstream answered HTTP 502 earlier"}', nil, true, "auth", false },
    { "a login's 404 is auth", 404, "", nil, true, "auth", false },
    { "a login's 499 is auth", 499, "", nil, true, "auth", false },
    { "a login's 500 is http, retryable", 500, "", nil, true, "http", true },
    { "a login's 307 is http", 307, "", nil, true, "http", false },
    { "connect is retryable", nil, "refused", "connect", false, "connect", true },
    { "timeout is retryable", nil, "slow", "timeout", false, "timeout", true },
    { "tls is not retryable", nil, "bad cert", "tls", false, "tls", false },
    { "too_large is not retryable", nil, "big", "too_large", false, "too_large", false },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local body, msg, kind, again = api.classify({ what = "call", login = c[5] },
        "http://t/api", c[2], c[3], c[4])
      if c[6] == nil then
        assert.are.equal(c[3], body)
      else
        assert.is_nil(body)
        assert.are.equal(c[6], kind)
        assert.are.equal(c[7], again)
        assert.is_truthy(msg:find("^call"))
      end
    end)
  end

  it("says 'rejected' for a refused login and quotes the server's message", function()
    local _, msg = api.classify({ what = "login", login = true }, "http://t/v2/api/login", 400,
      '{"message":"bad password"}')
    assert.are.equal("login rejected: HTTP 400 from http://t/v2/api/login: bad password", msg)
  end)

  it("redacts a secret in the server's message before cutting it to length", function()
    -- the secret starts at byte 118 of the message: a cut at 120 after
    -- redaction would leave "tok" behind if redaction came second
    local secret = "tok-0123456789"
    local text = ("x"):rep(117) .. secret
    local _, msg = api.classify({ what = "vnc v" }, "u", 500, json.encode({ message = text }),
      nil, { secret })
    assert.is_nil(msg:find("tok", 1, true))
  end)
end)

describe("ctvnc.api.clean and redact", function()
  -- { label, input, max, secrets, expected }
  local cases = {
    { "keeps plain text", "hello", 120, nil, "hello" },
    { "turns control bytes into ?", "a\r\nb\0c", 120, nil, "a??b?c" },
    { "cuts with an ellipsis", "abcdef", 3, nil, "abc..." },
    { "keeps valid UTF-8", "\228\189\160\229\165\189", 120, nil, "\228\189\160\229\165\189" },
    { "cuts at a character boundary", "\228\189\160\229\165\189", 4, nil, "\228\189\160..." },
    { "replaces invalid UTF-8", "a\255b", 120, nil, "a?b" },
    { "redacts a 3-byte secret", "pw=abc;", 120, { "abc" }, "pw=<redacted>;" },
    { "redacts a 1-byte secret", "x7y", 120, { "7" }, "x<redacted>y" },
    { "redacts every occurrence", "s1 s1", 120, { "s1" }, "<redacted> <redacted>" },
    { "redacts before the cut", ("a"):rep(8) .. "SECRET", 10, { "SECRET" }, "aaaaaaaa<r..." },
    { "ignores an empty secret", "abc", 120, { "" }, "abc" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert.are.equal(c[5], api.clean(c[2], c[3], c[4]))
    end)
  end

  it("redact leaves no part of a secret that contains its own prefix", function()
    assert.are.equal("<redacted><redacted>", api.redact("aXaaXa", { "aXa" }))
  end)
end)

describe("ctvnc.api.read_vnc", function()
  local read = api.read_vnc
  -- { label, body, kind: of the whole answer, or of the VM (vm = true) }
  local cases = {
    { "not JSON", "<html>", "decode" },
    { "a JSON string", '"x"', "decode" },
    { "no data", "{}", "decode" },
    { "data as an array", '{"data":[1]}', "decode" },
    { "data.vnc null", '{"data":{"vnc":null}}', "not_found", vm = true },
    { "data.vnc missing", '{"data":{}}', "decode", vm = true },
    { "data.vnc a string", '{"data":{"vnc":"x"}}', "decode", vm = true },
    { "a field missing", INFO:gsub('"raw_token":"r",', ""), "decode", vm = true },
    { "a field empty", INFO:gsub('"token":"t"', '"token":""'), "decode", vm = true },
    { "a bad cluster address", INFO:gsub('"::1"', '"1.2.3.4/x"'), "decode", vm = true },
    { "a GraphQL error without code", '{"errors":[{"message":"boom"}]}', "graphql" },
    { "a GraphQL error with another code", '{"errors":[{"message":"m","code":"VM_LOCKED"}]}',
      "graphql" },
    { "VM_NOT_FOUND is not_found", '{"errors":[{"message":"m","code":"VM_NOT_FOUND"}]}',
      "not_found" },
    { "RESOURCE_NOT_FOUND under extensions is not_found",
      '{"errors":[{"message":"m","extensions":{"code":"RESOURCE_NOT_FOUND"}}]}', "not_found" },
    { "a message saying so without a code is not_found",
      '{"errors":[{"message":"VM vm-9 does not exist"}]}', "not_found" },
    { "the code wins over the message", '{"errors":[{"message":"VM not found",'
      .. '"code":"VM_LOCKED"}]}', "graphql" },
    { "an error whose path names the field", '{"data":{"vnc":null},"errors":[{"message":"m",'
      .. '"path":["vnc"],"code":"VM_NOT_FOUND"}]}', "not_found", vm = true },
    { "a missing token field", '{"errors":[{"message":"Cannot query field \\"token\\" on type '
      .. '\\"Vnc\\"."}]}', "schema" },
  }
  for _, code in ipairs({ "LOAD_TOKEN_FAILED", "PERMISSION_DENIED", "LOGIN_FAILED",
                          "USER_NOT_FOUND", "USER_PASSWORD_INCORRECT", "NOT_MATCH_USER" }) do
    cases[#cases + 1] = { code .. " on the error is auth",
      '{"data":null,"errors":[{"message":"m","code":"' .. code .. '"}]}', "auth" }
    cases[#cases + 1] = { code .. " under extensions is auth",
      '{"errors":[{"message":"m","extensions":{"code":"' .. code .. '"}}]}', "auth" }
    cases[#cases + 1] = { code .. " on one field is auth for the whole answer",
      '{"data":{"vnc":null},"errors":[{"message":"m","path":["vnc"],"code":"' .. code .. '"}]}',
      "auth" }
  end
  for _, c in ipairs(cases) do
    it(c[1], function()
      local outs, msg, kind = read("vnc v", c[2])
      if c.vm then
        assert.is_nil(outs[1].info)
        assert.are.equal(c[3], outs[1].kind)
        assert.is_truthy(outs[1].message:find("^vnc v: "))
      else
        assert.is_nil(outs)
        assert.are.equal(c[3], kind)
        assert.is_truthy(msg:find("^vnc v: "))
      end
    end)
  end

  it("reads a full answer", function()
    assert.are.same({ { info = { vm_uuid = "u-1", host_ip = "127.0.0.1", cluster_ip = "::1",
                                 raw_token = "r", token = "t" } } }, read("vnc v", INFO))
  end)

  it("reads a pre-token answer without token", function()
    local body = INFO:gsub(',"token":"t"', "")
    assert.are.same({ { info = { vm_uuid = "u-1", host_ip = "127.0.0.1", cluster_ip = "::1",
                                 raw_token = "r" } } }, read("vnc v", body, nil, nil, true))
  end)

  it("a validation error on one aliased field means: ask in the vendor document's form",
    function()
    local refused = '{"errors":[{"message":"only the documented query",'
      .. '"extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}]}'
    local _, _, kind = read("vnc a", refused, nil, { "ax_0" })
    assert.are.equal("form", kind)
    -- not for the vendor's form itself, nor for several fields, nor another code
    assert.are.equal("graphql", select(3, read("vnc a", refused)))
    assert.are.equal("graphql", select(3, read("vnc a", refused, nil, { "ax_0", "ax_1" })))
    assert.are.equal("graphql", select(3, read("vnc a", refused:gsub("GRAPHQL_VALIDATION_FAILED",
      "BAD_USER_INPUT"), nil, { "ax_0" })))
  end)

  it("names the GraphQL code in the message", function()
    local _, msg = read("vnc v", '{"errors":[{"message":"gone","code":"VM_NOT_FOUND"}]}')
    assert.are.equal("vnc v: GraphQL error: gone (VM_NOT_FOUND)", msg)
  end)

  -- aliased fields: answers map back by alias
  local A = { "ax_0", "ax_1", "ax_2", "ax_3" }
  local function field(n) return '{"vm_uuid":"u-' .. n .. '","host_ip":"127.0.0.1",'
    .. '"cluster_ip":"127.0.0.2","raw_token":"r' .. n .. '","token":"t' .. n .. '"}' end

  it("maps mixed outcomes back by alias", function()
    local body = '{"data":{"ax_2":null,"ax_0":' .. field(0) .. ',"ax_3":null,"ax_1":'
      .. field(1) .. '},"errors":[{"message":"denied","path":["ax_3"],"code":"VM_LOCKED"}]}'
    local outs = read("vnc a", body, nil, A, false, { "a", "b", "c", "d" })
    assert.are.equal("u-0", outs[1].info.vm_uuid)
    assert.are.equal("r1", outs[2].info.raw_token)
    assert.are.same({ message = "vnc c: no such VM", kind = "not_found" }, outs[3])
    assert.are.same({ message = "vnc d: GraphQL error: denied (VM_LOCKED)", kind = "graphql" },
      outs[4])
  end)

  -- { label, data keys } answers that belong to another request
  local foreign = {
    { "a missing alias", '{"data":{"ax_0":null,"ax_1":null,"ax_2":null}}' },
    { "an extra alias", '{"data":{"ax_0":null,"ax_1":null,"ax_2":null,"ax_3":null,"ay_0":null}}' },
    { "another request's aliases", '{"data":{"ay_0":null,"ay_1":null,"ay_2":null,"ay_3":null}}' },
    { "the unaliased field", '{"data":{"vnc":null}}' },
    { "no field at all", '{"data":{}}' },
  }
  for _, c in ipairs(foreign) do
    it("refuses an answer with " .. c[1] .. " and asks for a fresh connection", function()
      local outs, msg, kind, again = read("vnc a", c[2], nil, A)
      assert.is_nil(outs)
      assert.are.equal("decode", kind)
      assert.are.equal("fresh", again)
      assert.are.equal("vnc a: the answer is not for this request", msg)
    end)
  end
end)

describe("ctvnc.api calls", function()
  it("asks for one VM with the vendor document's body", function()
    local call = api.vnc_call({ "vm-1" }, "n1")
    assert.are.equal("/api", call.path)
    assert.are.equal("vnc vm-1", call.what)
    assert.are.same({
      operationName = "vnc",
      variables = { v0 = { vm = { id = "vm-1" } } },
      query = "query vnc($v0: VncInput!) { an1_0: vnc(input: $v0) "
        .. "{ vm_uuid host_ip cluster_ip raw_token token } }",
    }, json.decode(call.body))
  end)

  it("asks for many VMs, each under its own alias and variable", function()
    local call = api.vnc_call({ "vm-1", "vm-2" }, "n2")
    assert.are.equal("vnc vm-1 (+1 more)", call.what)
    assert.are.same({
      operationName = "vnc",
      variables = { v0 = { vm = { id = "vm-1" } }, v1 = { vm = { id = "vm-2" } } },
      query = "query vnc($v0: VncInput!, $v1: VncInput!) { "
        .. "an2_0: vnc(input: $v0) { vm_uuid host_ip cluster_ip raw_token token } "
        .. "an2_1: vnc(input: $v1) { vm_uuid host_ip cluster_ip raw_token token } }",
    }, json.decode(call.body))
  end)

  it("without a nonce, asks for one VM with exactly the vendor document's request", function()
    assert.are.same({
      operationName = "vnc",
      variables = { input = { vm = { id = "vm-1" } } },
      query = "query vnc($input: VncInput!) { vnc(input: $input) "
        .. "{ vm_uuid host_ip cluster_ip raw_token token } }",
    }, json.decode(api.vnc_call({ "vm-1" }).body))
    assert.is_false(api.vnc_call({ "vm-1" }).aliased)
    local two = json.decode(api.vnc_call({ "vm-1", "vm-2" }).body).query
    assert.are.equal("query vnc($v0: VncInput!, $v1: VncInput!) { "
      .. "a0: vnc(input: $v0) { vm_uuid host_ip cluster_ip raw_token token } "
      .. "a1: vnc(input: $v1) { vm_uuid host_ip cluster_ip raw_token token } }", two)
  end)

  it("asks the same text for the same nonce and size, whatever the VMs", function()
    local a, b = api.vnc_call({ "vm-1", "vm-2" }, "3"), api.vnc_call({ "x", "y" }, "3")
    assert.are.equal(json.decode(a.body).query, json.decode(b.body).query)
    assert.are_not.equal(json.decode(a.body).query,
      json.decode(api.vnc_call({ "vm-1", "vm-2" }, "4").body).query)
  end)

  it("leaves the token field out for towers from before it", function()
    local call = api.vnc_call({ "vm-1" }, "n3", true)
    assert.are.equal("query vnc($v0: VncInput!) { an3_0: vnc(input: $v0) "
      .. "{ vm_uuid host_ip cluster_ip raw_token } }", json.decode(call.body).query)
  end)

  it("logs in at /v2/api/login, marked as the login", function()
    local call = api.login_call("u", "p", "LOCAL")
    assert.are.equal("/v2/api/login", call.path)
    assert.is_true(call.login)
    assert.are.same({ username = "u", password = "p", source = "LOCAL" }, json.decode(call.body))
  end)

  it("reads a login answer", function()
    assert.are.equal("tk", api.read_login("login", '{"data":{"token":"tk"}}'))
    local token, _, kind = api.read_login("login", '{"data":{}}')
    assert.is_nil(token)
    assert.are.equal("decode", kind)
  end)

  it("searches get-vms by exact name and reads the array", function()
    local call = api.vms_call("web")
    assert.are.equal("/v2/api/get-vms", call.path)
    assert.are.same({ where = { name = "web", in_recycle_bin = false } }, json.decode(call.body))
    assert.are.same({ { id = "a", name = "web" } },
      api.read_vms("f", '[{"id":"a","name":"web","extra":1}]'))
    assert.are.same({ { id = "a", cluster = { id = "c", name = "cl" }, host = { name = "h" } } },
      api.read_vms("f", '[{"id":"a","cluster":{"id":"c","name":"cl"},"host":{"name":"h"}}]'))
    local vms, _, kind = api.read_vms("f", '{"x":1}')
    assert.is_nil(vms)
    assert.are.equal("decode", kind)
  end)

  it("quotes a VM id in messages as a short clean line", function()
    assert.are.equal("vnc a?b", api.vnc_call({ "a\nb" }, "n").what)
    assert.are.equal(4 + 64 + 3, #api.vnc_call({ ("x"):rep(100) }, "n").what)
  end)
end)
