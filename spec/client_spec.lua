-- Specs for the CloudTower client of ctvnc (API.md, "Client"), against the
-- CloudTower simulator (spec/support/simulator) over real loopback sockets.
--
-- Every error kind of the contract is produced by the simulator (or by the
-- caller's own values), checked together with the rule that a message is one
-- line and never carries a secret. Counters of the simulator (/_sim/stats)
-- prove retries, lazy login, re-login, redirects not followed and keep-alive.
--
-- Secrets never reach the output: comparisons of values that carry a token
-- use assert.same_secret (spec/helpers.lua), which prints only a label and
-- booleans, and messages quoted in failure texts are scrubbed first
-- (helpers.scrub). Clients come from helpers.client and close after each test.
--
-- Loopback only. Runs under Lua 5.4 and LuaJIT 2.1 (Lua 5.1 syntax).

local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local helpers = require "helpers"

local sim = helpers.sim()

local STATIC_TOKEN = helpers.STATIC_TOKEN
local USER, PASS = helpers.USER, helpers.PASS
local ALL_FIELDS = { "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }

-- A tag unique to this run (the flaky counters of the simulator are per id).
local RUN_TAG = tostring(os.time()) .. "-" .. tostring(math.random(100000, 999999))

-- hidden from any message quoted in a failure text (helpers.scrub)
local SECRETS = { STATIC_TOKEN, PASS, "secret-token-XYZ", "bad-pass-Q7z" }

-- clients registered by helpers, closed after each test (helpers.autoclose)
local client, NONE = helpers.client, helpers.NONE

local function login_client(opts)
  return client({ token = NONE, username = USER, password = PASS }, opts)
end

local function stats() return helpers.stats() end
local function api_count(s) return s.requests["/api"] or 0 end
local function login_count(s) return s.requests["/v2/api/login"] or 0 end
local function vm_count(s, id) return s.vm[id] or 0 end

--- A loopback TCP port with nothing listening on it.
local function closed_port()
  local ok, socket = pcall(require, "socket")
  if not ok then return 1 end
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

describe("ctvnc client", function()
  -- a latency left behind by another spec file must not slow these down
  setup(function() helpers.reset() end)
  helpers.autoclose()

  -------------------------------------------------------------------------
  describe("kind invalid", function()
    local function refused(label, opts)
      local o = { endpoint = sim.http, token = STATIC_TOKEN }
      for k, v in pairs(opts) do
        if v == NONE then o[k] = nil else o[k] = v end
      end
      local c, msg, kind = ctvnc.new(o)
      helpers.assert_fail("invalid", { label = label, secrets = { "pw-Q9" } }, c, msg, kind)
    end

    it("refuses endpoints with user info, query, fragment or another scheme", function()
      refused("user info", { endpoint = "http://user@127.0.0.1:" .. sim.http_port })
      refused("user and password", { endpoint = "http://user:pw-Q9@127.0.0.1:" .. sim.http_port })
      refused("query", { endpoint = sim.http .. "/?x=1" })
      refused("bare query", { endpoint = sim.http .. "?x=1" })
      refused("fragment", { endpoint = sim.http .. "#frag" })
      refused("ftp scheme", { endpoint = "ftp://127.0.0.1:" .. sim.http_port })
      refused("ws scheme", { endpoint = "ws://127.0.0.1:" .. sim.http_port })
      refused("file scheme", { endpoint = "file:///etc/passwd" })
      refused("empty endpoint", { endpoint = "" })
    end)

    it("refuses a language other than en-US and zh-CN", function()
      refused('language "fr"', { language = "fr" })
      refused('language "en"', { language = "en" })
    end)

    it("refuses a timeout of 0, -1 or a string", function()
      refused("timeout 0", { timeout = 0 })
      refused("timeout -1", { timeout = -1 })
      refused('timeout "5"', { timeout = "5" })
    end)

    it("refuses retries of -1 or 1.5", function()
      refused("retries -1", { retries = -1 })
      refused("retries 1.5", { retries = 1.5 })
    end)

    it("refuses insecure = \"yes\"", function()
      refused('insecure "yes"', { insecure = "yes" })
    end)

    it("refuses a client with neither a token nor a username and password", function()
      refused("nothing", { token = NONE })
      refused("password only", { token = NONE, password = PASS })
      refused("username only", { token = NONE, username = USER })
    end)

    it("refuses an unreadable ca_file", function()
      refused("missing ca_file", { ca_file = "/nonexistent/ctvnc-spec/ca.pem" })
    end)

    it("refuses an empty VM id without sending anything", function()
      helpers.reset()
      local c = client()
      local before = api_count(stats())
      helpers.assert_fail("invalid", "empty vm id", c:vnc(""))
      helpers.assert_fail("invalid", "urls empty vm id", c:urls(""))
      helpers.assert_fail("invalid", "console_url empty vm id",
        c:console_url("", { mode = "direct" }))
      assert.are.equal(before, api_count(stats()))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind connect", function()
    it("when nothing listens on the endpoint port", function()
      local port = closed_port()
      local c = client({ endpoint = "http://127.0.0.1:" .. port, connect_timeout = 2 })
      local msg = helpers.assert_fail("connect", "closed port", c:vnc("vm-1"))
      assert.is_truthy(msg:find("vm-1", 1, true), "the message does not name the VM id")
    end)

    it("when the connection is closed in the middle of the answer (fault-close)", function()
      local c = client()
      helpers.assert_fail("connect", "fault-close", c:vnc("fault-close"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind timeout", function()
    it("when the answer takes longer than timeout (fault-slow, timeout = 1)", function()
      local c = client({ timeout = 1 })
      local t0 = core.now()
      local res, msg, kind = c:vnc("fault-slow")
      local elapsed = core.now() - t0
      helpers.assert_fail("timeout", "fault-slow", res, msg, kind)
      assert.is_true(elapsed < 2.5, ("took %.2f s, expected < 2.5 s"):format(elapsed))
      assert.is_true(elapsed > 0.5, ("took %.2f s: too fast for a 1 s timeout"):format(elapsed))
    end)
  end)

  -------------------------------------------------------------------------
  describe("TLS", function()
    it("refuses the self-signed tower by default (kind tls)", function()
      local c = client({ endpoint = sim.https })
      helpers.assert_fail("tls", "https without ca_file", c:vnc("vm-1"))
    end)

    it("accepts the tower with ca_file = the simulator's certificate", function()
      local c = client({ endpoint = sim.https, ca_file = sim.cert })
      local info, msg = c:vnc("vm-1")
      helpers.assert_info(info, msg, "https with ca_file", 1)
    end)

    it("accepts the tower with insecure = true", function()
      local c = client({ endpoint = sim.https, insecure = true })
      local info, msg = c:vnc("vm-3")
      helpers.assert_info(info, msg, "https insecure", 3)
    end)

    it("still verifies with insecure = false and a ca_file of another certificate", function()
      -- a bundle without the simulator's certificate: verification must fail
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write("\n")
      f:close()
      local c = client({ endpoint = sim.https, insecure = false, ca_file = path })
      local res, msg, kind = c:vnc("vm-1")
      os.remove(path)
      helpers.assert_fail("tls", "https with an empty ca_file", res, msg, kind)
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind auth", function()
    it("on HTTP 401 (fault-401)", function()
      local msg = helpers.assert_fail("auth", "fault-401", client():vnc("fault-401"))
      assert.is_truthy(msg:find("401", 1, true), "the message does not name the status")
    end)

    it("on HTTP 403 (fault-403)", function()
      local msg = helpers.assert_fail("auth", "fault-403", client():vnc("fault-403"))
      assert.is_truthy(msg:find("403", 1, true), "the message does not name the status")
    end)

    it("with a wrong token", function()
      local c = client({ token = "wrong-token-QQ" })
      helpers.assert_fail("auth", { label = "wrong token", secrets = { "wrong-token-QQ" } },
        c:vnc("vm-1"))
    end)

    it("with a bad password (login rejected)", function()
      local c = login_client({ password = "bad-pass-Q7z" })
      helpers.assert_fail("auth", { label = "bad password vnc", secrets = { "bad-pass-Q7z" } },
        c:vnc("vm-1"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind http", function()
    for _, code in ipairs({ "500", "502", "503" }) do
      it("on HTTP " .. code .. " with an HTML body (fault-" .. code .. ")", function()
        local id = "fault-" .. code
        local msg = helpers.assert_fail("http", id, client():vnc(id))
        assert.is_truthy(msg:find(code, 1, true), "the message does not name the status")
        assert.is_truthy(msg:find(id, 1, true), "the message does not name the VM id")
      end)
    end

    it("on HTTP 307, which is not followed (fault-307)", function()
      helpers.reset()
      local c = client({ retries = 0 })
      local before = api_count(stats())
      local msg = helpers.assert_fail("http", "fault-307", c:vnc("fault-307"))
      assert.is_truthy(msg:find("307", 1, true), "the message does not name the status")
      assert.are.equal(before + 1, api_count(stats()))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind not_found from a GraphQL error (VM_NOT_FOUND)", function()
    it("carries the server's first message", function()
      local msg = helpers.assert_fail("not_found", "fault-graphql",
        client():vnc("fault-graphql"))
      assert.is_truthy(msg:find("does not exist", 1, true),
        "the message lacks the server's message: " .. helpers.scrub(msg, SECRETS))
    end)

    it("for an unknown VM id", function()
      local msg = helpers.assert_fail("not_found", "unknown vm", client():vnc("vm-0"))
      assert.is_truthy(msg:find("does not exist", 1, true),
        "the message lacks the server's message: " .. helpers.scrub(msg, SECRETS))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind not_found", function()
    it("when data.vnc is null without errors (fault-null)", function()
      helpers.assert_fail("not_found", "fault-null", client():vnc("fault-null"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind decode", function()
    it("when the answer is not JSON (fault-nonjson)", function()
      helpers.assert_fail("decode", "fault-nonjson", client():vnc("fault-nonjson"))
    end)

    for _, how in ipairs({ "missing", "empty", "type" }) do
      it("when a field is " .. how .. " (each of the five)", function()
        local c = client()
        for _, field in ipairs(ALL_FIELDS) do
          local id = "fault-" .. how .. "-" .. field
          local msg = helpers.assert_fail("decode", id, c:vnc(id))
          assert.is_truthy(msg:find(id, 1, true), id .. ": the message does not name the VM id")
        end
      end)
    end

    it("when cluster_ip is not a host (fault-inject)", function()
      helpers.assert_fail("decode", { label = "fault-inject", secrets = { "evil" } },
        client():vnc("fault-inject"))
    end)

    it("when host_ip is not a host (fault-inject-host)", function()
      helpers.assert_fail("decode", { label = "fault-inject-host", secrets = { "stolen" } },
        client():vnc("fault-inject-host"))
    end)
  end)

  -------------------------------------------------------------------------
  describe("kind too_large", function()
    it("for a 3 MiB answer with the default max_body (fault-huge)", function()
      helpers.assert_fail("too_large", "fault-huge", client():vnc("fault-huge"))
    end)

    it("for a normal answer with max_body = 100", function()
      helpers.assert_fail("too_large", "max_body 100",
        client({ max_body = 100 }):vnc("vm-1"))
    end)

    it("aborts an endless answer instead of buffering it (fault-endless)", function()
      local c = client({ max_body = 65536, timeout = 15 })
      local t0 = core.now()
      local res, msg, kind = c:vnc("fault-endless")
      local elapsed = core.now() - t0
      helpers.assert_fail("too_large", "fault-endless", res, msg, kind)
      -- the simulator streams for 60 s: an answer buffered to the end (or to
      -- a much larger limit) would take far longer than this
      assert.is_true(elapsed < 3, ("took %.2f s, expected < 3 s"):format(elapsed))
    end)
  end)

  -------------------------------------------------------------------------
  describe("request shape", function()
    -- the simulator answers 400 to a wrong method, header or body
    it("is accepted by the strict simulator (en-US)", function()
      local info, msg = client():vnc("vm-1")
      helpers.assert_info(info, msg, "vm-1", 1)
    end)

    it("is accepted with language = zh-CN", function()
      local info, msg = client({ language = "zh-CN" }):vnc("vm-2")
      helpers.assert_info(info, msg, "vm-2 zh-CN", 2)
    end)

    local function aliases(c)
      return (c:_vnc_call({ "vm-1" }).body:match('"query":"query vnc[^{]*{ (a[%w_]+):'))
    end

    it("names its vnc aliases with a random prefix of its own (getrandom), then a count, "
      .. "over a runtime without tags", function()
      local function untagged(t)
        return { request_many = t.request_many, probe = t.probe, sleep = t.sleep, now = t.now,
                 close = t.close }
      end
      local a, b = client({ transport = untagged }), client({ transport = untagged })
      local a1, a2, b1 = aliases(a), aliases(a), aliases(b)
      assert.matches("^a%x%x%x%x%x%x%x%x%x%x%x%x_0_0$", a1)
      assert.equal(a1:sub(1, 14) .. "1_0", a2)
      assert.matches("^a%x+_0_0$", b1)
      assert.are_not.equal(a1, b1)
    end)

    it("draws its vnc aliases' nonces in turn from 2 x concurrency values over libcurl",
      function()
      local c = client({ concurrency = 2 })
      local seen = {}
      for i = 1, 9 do seen[i] = aliases(c) end
      assert.are.same({ "a0_0", "a1_0", "a2_0", "a3_0", "a0_0", "a1_0", "a2_0", "a3_0", "a0_0" },
        seen)
    end)

    it("carries a VM id with quotes and backslashes intact (JSON encoder)", function()
      -- unknown id: the server quotes it back in its error message
      local id = 'a"b\\c'
      local msg = helpers.assert_fail("not_found", "quoted id", client():vnc(id))
      assert.is_truthy(msg:find("does not exist", 1, true),
        "not a GraphQL answer: " .. helpers.scrub(msg, SECRETS))
    end)
  end)

  -------------------------------------------------------------------------
  describe("retries", function()
    before_each(function() helpers.reset() end)

    it("makes 3 requests for HTTP 503 with retries = 2", function()
      local c = client({ retries = 2 })
      helpers.assert_fail("http", "fault-503 retries 2", c:vnc("fault-503"))
      assert.are.equal(3, vm_count(stats(), "fault-503"))
    end)

    it("makes 1 request for HTTP 503 with retries = 0", function()
      local c = client({ retries = 0 })
      helpers.assert_fail("http", "fault-503 retries 0", c:vnc("fault-503"))
      assert.are.equal(1, vm_count(stats(), "fault-503"))
    end)

    it("succeeds after one 503 with retries = 2 (flaky-1)", function()
      local id = "flaky-1-" .. RUN_TAG
      local info, msg = client({ retries = 2 }):vnc(id)
      helpers.assert_info(info, msg, id, nil)
      assert.are.equal(2, vm_count(stats(), id))
    end)

    it("uses the default of 2 retries", function()
      local c = client({ retries = NONE })
      helpers.assert_fail("http", "fault-502 default retries", c:vnc("fault-502"))
      assert.are.equal(3, vm_count(stats(), "fault-502"))
    end)

    for _, case in ipairs({
      { "fault-401", "auth" }, { "fault-403", "auth" },
      { "fault-graphql", "not_found" }, { "fault-307", "http" },
    }) do
      it("never retries " .. case[1] .. " (retries = 2)", function()
        local c = client({ retries = 2 })
        helpers.assert_fail(case[2], case[1], c:vnc(case[1]))
        assert.are.equal(1, vm_count(stats(), case[1]))
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("login", function()
    before_each(function() helpers.reset() end)

    it("is lazy and happens once for many calls", function()
      local c = login_client()
      assert.are.equal(0, login_count(stats()))
      local info, msg = c:vnc("vm-1")
      helpers.assert_info(info, msg, "first vnc", 1)
      local s = stats()
      assert.are.equal(1, login_count(s))
      assert.are.equal(1, api_count(s))
      info, msg = c:vnc("vm-3")
      helpers.assert_info(info, msg, "second vnc", 3)
      s = stats()
      assert.are.equal(1, login_count(s))
      assert.are.equal(2, api_count(s))
    end)

    it("client:login() returns a token string", function()
      local c = login_client()
      local token, msg = c:login()
      assert.is_true(type(token) == "string" and #token > 0,
        "login failed: " .. helpers.scrub(msg, SECRETS))
      assert.are.equal(1, login_count(stats()))
      -- the token is the one used afterwards: no second login
      local info
      info, msg = c:vnc("vm-1")
      helpers.assert_info(info, msg, "vnc after login()", 1)
      assert.are.equal(1, login_count(stats()))
    end)

    it("with a bad password returns nil, message, auth without the password", function()
      local c = login_client({ password = "bad-pass-Q7z" })
      local res, msg, kind = c:login()
      helpers.assert_fail("auth", { label = "bad password", secrets = { "bad-pass-Q7z" } },
        res, msg, kind)
      assert.are.equal(1, login_count(stats()))
    end)

    it("logs in again once when the login token is revoked", function()
      local c = login_client()
      local info, msg = c:vnc("vm-1")
      helpers.assert_info(info, msg, "before revoke", 1)
      assert.are.equal(1, login_count(stats()))
      helpers.control("revoke")
      info, msg = c:vnc("vm-1")
      helpers.assert_info(info, msg, "after revoke", 1)
      assert.are.equal(2, login_count(stats()))
      info, msg = c:vnc("vm-3")
      helpers.assert_info(info, msg, "after re-login", 3)
      assert.are.equal(2, login_count(stats()))
    end)

    it("never logs in when a static token is refused", function()
      local c = client({ token = "wrong", username = USER, password = PASS })
      helpers.assert_fail("auth", "refused static token", c:vnc("vm-1"))
      local c2 = client({ token = "wrong" })
      helpers.assert_fail("auth", "refused static token only", c2:vnc("vm-1"))
      local s = stats()
      assert.are.equal(0, login_count(s))
      assert.are.equal(2, api_count(s))
    end)
  end)

  -------------------------------------------------------------------------
  describe("messages", function()
    local FAULTS = {
      { "fault-401", "auth" }, { "fault-403", "auth" }, { "fault-500", "http" },
      { "fault-502", "http" }, { "fault-503", "http" }, { "fault-307", "http" },
      { "fault-graphql", "not_found" }, { "fault-null", "not_found" },
      { "fault-nonjson", "decode" }, { "fault-inject", "decode" },
      { "fault-inject-host", "decode" }, { "fault-huge", "too_large" },
      { "fault-close", "connect" },
    }
    for _, how in ipairs({ "missing", "empty", "type" }) do
      for _, field in ipairs(ALL_FIELDS) do
        FAULTS[#FAULTS + 1] = { "fault-" .. how .. "-" .. field, "decode" }
      end
    end

    it("never carry a token, a password or the Authorization header", function()
      -- helpers.assert_fail looks for the simulator's token and password
      -- in every message; a login token is added where one is in use
      -- static token
      local c = client()
      for _, f in ipairs(FAULTS) do
        helpers.assert_fail(f[2], "token " .. f[1], c:vnc(f[1]))
        helpers.assert_fail(f[2], "token urls " .. f[1], c:urls(f[1]))
        helpers.assert_fail(f[2], "token console_url " .. f[1],
          c:console_url(f[1], { mode = "proxy" }))
      end
      -- a login token, known here through login()
      local lc = login_client()
      local token, msg = lc:login()
      assert.is_true(type(token) == "string", "login failed: " .. helpers.scrub(msg, SECRETS))
      local with_login = { token }
      for _, f in ipairs(FAULTS) do
        helpers.assert_fail(f[2], { label = "login " .. f[1], secrets = with_login },
          lc:vnc(f[1]))
      end
      -- transport failures
      helpers.assert_fail("connect", "closed port",
        client({ endpoint = "http://127.0.0.1:" .. closed_port() }):vnc("vm-1"))
      helpers.assert_fail("tls", "tls", client({ endpoint = sim.https }):vnc("vm-1"))
      helpers.assert_fail("tls", "tls login",
        login_client({ endpoint = sim.https }):vnc("vm-1"))
      helpers.assert_fail("too_large", "max_body", client({ max_body = 100 }):vnc("vm-1"))
      helpers.assert_fail("too_large", { label = "max_body login", secrets = with_login },
        login_client({ max_body = 100 }):vnc("vm-1"))
      -- find_vms failures
      helpers.assert_fail("auth",
        { label = "find_vms wrong token", secrets = { "wrong-token-QQ" } },
        client({ token = "wrong-token-QQ" }):find_vms("web-1"))
      helpers.assert_fail("auth",
        { label = "find_vms bad password", secrets = { "bad-pass-Q7z" } },
        login_client({ password = "bad-pass-Q7z" }):find_vms("web-1"))
    end)

    it("do not carry a refused static token (fault-401)", function()
      local c = client({ token = "secret-token-XYZ" })
      local res, msg, kind = c:vnc("fault-401")
      assert.is_nil(res)
      assert.are.equal("auth", kind)
      assert.is_nil(msg:find("secret-token-XYZ", 1, true), "the message carries the token")
      assert.is_nil(msg:find("\n", 1, true), "the message is not one line")
    end)

    it("do not carry the password of a rejected login", function()
      local c = login_client({ password = "bad-pass-Q7z" })
      local res, msg, kind = c:login()
      assert.is_nil(res)
      assert.are.equal("auth", kind)
      assert.is_nil(msg:find("bad-pass-Q7z", 1, true), "the message carries the password")
      res, msg, kind = c:vnc("vm-1")
      assert.is_nil(res)
      assert.are.equal("auth", kind)
      assert.is_nil(msg:find("bad-pass-Q7z", 1, true), "the message carries the password")
    end)
  end)

  -------------------------------------------------------------------------
  describe("keep-alive", function()
    it("reuses one connection for 20 sequential calls", function()
      helpers.reset()
      local c = client()
      for i = 1, 20 do
        local info, msg = c:vnc("vm-" .. i)
        helpers.assert_info(info, msg, "vm-" .. i, i)
      end
      local s = stats()
      assert.are.equal(20, api_count(s))
      assert.are.equal(1, s.connections)
    end)
  end)

  -------------------------------------------------------------------------
  describe("urls()", function()
    it("builds the direct and proxy URLs of vm-1", function()
      local u, msg = client():urls("vm-1")
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg, SECRETS))
      helpers.assert_info(u.info, nil, "urls info", 1)

      local direct_prefix = "wss://127.0.0.2/websockify/?uuid=00000001-0000-4000-8000-000000000001"
        .. "&token="
      assert.same_secret(direct_prefix, u.direct:sub(1, #direct_prefix),
        "the direct URL does not start with the expected prefix")
      local raw, tail = u.direct:sub(#direct_prefix + 1):match("^(%x+)(.*)$")
      assert.is_true(raw ~= nil and #raw == 32, "the direct URL token is not 32 hex digits")
      assert.same_secret("&host=127.0.0.1", tail,
        "the direct URL does not end with &host=127.0.0.1")
      assert.same_secret(u.info.raw_token, raw, "the direct URL token is not info.raw_token")

      local proxy_prefix = "ws://127.0.0.1:" .. sim.http_port .. "/websockify/?token="
      assert.same_secret(proxy_prefix, u.proxy:sub(1, #proxy_prefix),
        "the proxy URL does not start with the expected prefix")
      local enc, rest = u.proxy:sub(#proxy_prefix + 1):match("^([^&]+)(.*)$")
      assert.is_true(enc ~= nil, "the proxy URL has no token")
      assert.is_nil(enc:find("[+/=]"), "the proxy URL token is not percent-encoded")
      assert.same_secret(u.info.token, percent_decode(enc),
        "the proxy URL token does not decode to info.token")
      assert.are.equal("&uuid=00000001-0000-4000-8000-000000000001&host=127.0.0.1", rest)
    end)

    it("builds URLs from an https endpoint and with ws scheme / port options", function()
      local u, msg = client({ endpoint = sim.https, ca_file = sim.cert })
        :urls("vm-1", { scheme = "ws", port = sim.cluster_port })
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg, SECRETS))
      local dp = "ws://127.0.0.2:" .. sim.cluster_port .. "/websockify/?uuid="
      assert.same_secret(dp, u.direct:sub(1, #dp), "the direct URL prefix is wrong")
      local pp = "ws://127.0.0.1:" .. sim.https_port .. "/websockify/?token="
      assert.same_secret(pp, u.proxy:sub(1, #pp), "the proxy URL prefix is wrong")

      u, msg = client({ endpoint = sim.https, ca_file = sim.cert }):urls("vm-1")
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg, SECRETS))
      pp = "wss://127.0.0.1:" .. sim.https_port .. "/websockify/?token="
      assert.same_secret(pp, u.proxy:sub(1, #pp), "the https proxy URL prefix is wrong")
    end)

    it("brackets an IPv6 cluster (vm6-1)", function()
      local u, msg = client():urls("vm6-1")
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg, SECRETS))
      assert.are.equal("::1", u.info.cluster_ip)
      local dp = "wss://[::1]/websockify/?uuid="
      assert.same_secret(dp, u.direct:sub(1, #dp),
        "the direct URL does not start with wss://[::1]/")
      assert.is_truthy(u.direct:find("&host=" .. plain("%3A%3A1") .. "$"),
        "the direct URL does not end with the encoded IPv6 host")
    end)
  end)

  -------------------------------------------------------------------------
  describe("console_url()", function()
    it("returns the direct URL and \"direct\" in mode direct", function()
      local url, mode = client():console_url("vm-1", { mode = "direct" })
      assert.is_true(type(url) == "string", "console_url failed: " .. helpers.scrub(mode, SECRETS))
      assert.are.equal("direct", mode)
      local p = "wss://127.0.0.2/websockify/?uuid=00000001-0000-4000-8000-000000000001&token="
      assert.same_secret(p, url:sub(1, #p), "not the direct URL")
    end)

    it("returns the proxy URL and \"proxy\" in mode proxy", function()
      local url, mode = client():console_url("vm-1", { mode = "proxy" })
      assert.is_true(type(url) == "string", "console_url failed: " .. helpers.scrub(mode, SECRETS))
      assert.are.equal("proxy", mode)
      local p = "ws://127.0.0.1:" .. sim.http_port .. "/websockify/?token="
      assert.same_secret(p, url:sub(1, #p), "not the proxy URL")
    end)

    it("refuses an unknown mode (invalid)", function()
      helpers.assert_fail("invalid", "bad mode",
        client():console_url("vm-1", { mode = "sideways" }))
    end)
  end)

  -------------------------------------------------------------------------
  describe("find_vms()", function()
    it("finds web-3", function()
      local vms, msg = client():find_vms("web-3")
      assert.is_true(type(vms) == "table", "find_vms failed: " .. helpers.scrub(msg, SECRETS))
      assert.are.same({ { id = "vm-3", name = "web-3", local_id = "local-3", status = "RUNNING",
        cluster = { id = "cl2k0mz7q0d0k0958ca000001", name = "cluster-a" },
        host = { id = "cl2k0mz7q0d0k0958ha000001", name = "host-a1" } } }, vms)
    end)

    it("finds web-3 with a login client", function()
      local vms, msg = login_client():find_vms("web-3")
      assert.is_true(type(vms) == "table", "find_vms failed: " .. helpers.scrub(msg, SECRETS))
      assert.are.equal(1, #vms)
      assert.are.equal("vm-3", vms[1].id)
    end)

    it("returns an empty table when nothing matches", function()
      local vms, msg = client():find_vms("nope")
      assert.is_true(type(vms) == "table", "find_vms failed: " .. helpers.scrub(msg, SECRETS))
      assert.are.same({}, vms)
    end)

    it("raises on a name that is not a string", function()
      local c = client()
      assert.has_error(function() c:find_vms(42) end)
      assert.has_error(function() c:find_vms() end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("type misuse raises", function()
    it("ctvnc.new with a string or nothing", function()
      assert.has_error(function() ctvnc.new("x") end)
      assert.has_error(function() ctvnc.new() end)
      assert.has_error(function() ctvnc.new(42) end)
    end)

    it("client:vnc with a number or nil", function()
      local c = client()
      assert.has_error(function() c:vnc(42) end)
      assert.has_error(function() c:vnc(nil) end)
      assert.has_error(function() c:vnc() end)
      assert.has_error(function() c:vnc({}) end)
    end)
  end)
end)
