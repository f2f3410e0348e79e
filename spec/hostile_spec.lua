-- Specs for ctvnc against a hostile CloudTower: answers that dribble, lie
-- about their length or framing, nest JSON without end, repeat keys, put
-- invalid UTF-8, NULs or numbers where strings belong, and TLS listeners
-- with a certificate for another name or an expired one. Each comes from the
-- simulator (spec/support/simulator, "hostile answers" in sim/faults.lua), chosen by
-- VM id.
--
-- For every case: the documented kind (API.md), a message that is one line,
-- short, valid UTF-8, names the VM id and carries nothing of the answer
-- beyond a short server message (no token, raw token, injected host), no
-- hang (timings are asserted), and a client that still works afterwards.
--
-- Secrets never reach the output: comparisons of values that carry a token
-- use assert.same_secret (spec/helpers.lua), which prints only a label and
-- booleans, and messages quoted in failure texts are scrubbed first
-- (helpers.scrub). Clients come from helpers.client and close after each test.
--
-- Loopback only. Runs under Lua 5.4 and LuaJIT 2.1 (Lua 5.1 syntax), and
-- under valgrind and ASan (spec/support/test.sh): every case is fast, the
-- dribbling ones take the client's timeout of 2 s.

local core = require "ctvnc.core"
local helpers = require "helpers"
local socket = require "socket"

-- under valgrind (CTVNC_SLOW=1) a TLS handshake with the system CA store
-- takes longer than a connect timeout meant for loopback
local CONNECT_TIMEOUT = os.getenv("CTVNC_SLOW") and 4.5 or 2

local sim = helpers.sim()

local STATIC_TOKEN = helpers.STATIC_TOKEN
-- what a hostile answer carries that must never reach a message
local FORBIDDEN = { STATIC_TOKEN, "evil", "stolen", "smuggled", "c211Z2dsZWQ", "000003e7",
  "login-" }
-- the longest message accepted: what failed, where, and a short server message
local MAX_MESSAGE = 400

--- A value of the simulator's env: from the environment (`make test` exports
-- DIR/env), else from the env file of the simulator helpers started.
local function sim_env(name)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
  local f = sim.dir and io.open(sim.dir .. "/env")
  if not f then return nil end
  for line in f:lines() do
    local k, val = line:match("^([%w_]+)=(.*)$")
    if k == name then v = val end
  end
  f:close()
  return v
end

--- What helpers.assert_fail checks of a hostile failure: the message is
-- short, names the VM id and carries nothing the answer smuggled in.
local function hostile(label, id)
  return { label = label, id = id, secrets = FORBIDDEN, max = MAX_MESSAGE }
end

-- Hostile answers fail fast: a shorter timeout than helpers.client's.
local FAST = { timeout = 5, connect_timeout = CONNECT_TIMEOUT }

--- The same client still works: vm-3 comes back as vm-3.
local function assert_survives(c, label)
  local info, msg = c:vnc("vm-3")
  helpers.assert_info(info, msg, label .. ", then vm-3 on the same client", 3)
end

local function elapsed_of(f, ...)
  local t0 = core.now()
  local a, b, c = f(...)
  return core.now() - t0, a, b, c
end

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The value of query parameter `name` in `url`, still encoded.
local function param(url, name)
  return url:match("[?&]" .. name .. "=([^&]*)")
end

-- The cases a table-driven test runs through vnc, urls, console_url and
-- batch. `kind` is a string or a set of accepted kinds; `max` bounds the
-- seconds one call may take.
local CASES = {
  -- framing
  { id = "fault-close", kind = "connect", max = 1 },
  { id = "fault-http10-trunc", kind = "decode", max = 1 },
  { id = "fault-chunk-short", kind = "connect", max = 1 },
  { id = "fault-chunk-noend", kind = "connect", max = 1 },
  { id = "fault-chunk-bad", kind = "connect", max = 1 },
  { id = "fault-chunk-overflow", kind = "connect", max = 1 },
  { id = "fault-length-2g", kind = "too_large", max = 1 },
  -- a length past 2^63: curl reads it as more than max_body
  { id = "fault-length-overflow", kind = "too_large", max = 1 },
  -- headers without end: libcurl 7.88 stops at 300 KiB with a receive
  -- error (connect); one header of 1 MiB it refuses as out of memory, which
  -- the transport reports as too_large (its own allocations are tracked)
  { id = "fault-headers-endless", kind = { connect = true, too_large = true }, max = 2 },
  { id = "fault-header-huge", kind = "too_large", max = 1 },
  -- JSON
  { id = "fault-deep", kind = "decode", max = 1 },
  { id = "fault-deep-500", kind = "http", max = 1 },
  { id = "fault-badutf8-host", kind = "decode", max = 1 },
  { id = "fault-badutf8-graphql", kind = "not_found", max = 1 },   -- VM_NOT_FOUND
  { id = "fault-zh-graphql", kind = "not_found", max = 1 },
  { id = "fault-zh-500", kind = "http", max = 1 },
  { id = "fault-nul-host", kind = "decode", max = 1 },
  { id = "fault-escaped-host", kind = "decode", max = 1 },
  { id = "fault-token-object", kind = "decode", max = 1 },
  { id = "fault-token-array", kind = "decode", max = 1 },
  { id = "fault-token-bignum", kind = "decode", max = 1 },
  { id = "fault-token-true", kind = "decode", max = 1 },
  { id = "fault-token-null", kind = "decode", max = 1 },
  { id = "fault-vnc-string", kind = "decode", max = 1 },
  { id = "fault-vnc-array", kind = "decode", max = 1 },
  { id = "fault-data-array", kind = "decode", max = 1 },
  { id = "fault-vnc-missing", kind = "decode", max = 1 },
  { id = "fault-toplevel-string", kind = "decode", max = 1 },
}

describe("ctvnc against a hostile CloudTower", function()
  setup(function() helpers.reset() end)
  helpers.autoclose()

  -------------------------------------------------------------------------
  describe("every hostile answer", function()
    for _, case in ipairs(CASES) do
      it(case.id .. " gives " .. (type(case.kind) == "string" and case.kind or "a failure")
        .. " quickly, and the client survives", function()
        local c = helpers.client(FAST)
        local t, res, msg, kind = elapsed_of(c.vnc, c, case.id)
        helpers.assert_fail(case.kind, hostile(case.id, case.id), res, msg, kind)
        assert.is_true(t < case.max, ("%s: took %.2f s, expected < %g s"):format(case.id, t,
          case.max))
        helpers.assert_fail(case.kind, hostile("urls " .. case.id, case.id), c:urls(case.id))
        helpers.assert_fail(case.kind, hostile("console_url " .. case.id, case.id),
          c:console_url(case.id, { mode = "proxy" }))
        assert_survives(c, case.id)
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("answers that never end", function()
    for _, case in ipairs({ { "fault-dribble", "body" }, { "fault-dribble-head", "headers" } }) do
      local id, where = case[1], case[2]
      it("one byte a second in the " .. where .. " is cut by the timeout (" .. id .. ")", function()
        local c = helpers.client(FAST, { timeout = 2 })
        local t, res, msg, kind = elapsed_of(c.vnc, c, id)
        helpers.assert_fail("timeout", hostile(id, id), res, msg, kind)
        assert.is_true(t >= 1.5 and t < 4, ("took %.2f s, expected about 2 s"):format(t))
        assert_survives(c, id)
      end)
    end

    it("Content-Length: 2 GiB with a few bytes is too_large at once (fault-length-2g)", function()
      -- the simulator then keeps the connection open and silent for 10 s
      local c = helpers.client(FAST, { timeout = 5 })
      local t, res, msg, kind = elapsed_of(c.vnc, c, "fault-length-2g")
      helpers.assert_fail("too_large", hostile("fault-length-2g", "fault-length-2g"),
        res, msg, kind)
      assert.is_true(t < 1, ("took %.2f s, expected < 1 s"):format(t))
    end)
  end)

  -------------------------------------------------------------------------
  describe("framing", function()
    it("HTTP/1.0 with the body ending at close: a complete answer succeeds", function()
      local c = helpers.client(FAST)
      local info, msg = c:vnc("fault-http10")
      helpers.assert_info(info, msg, "fault-http10", 1)
      local u
      u, msg = c:urls("fault-http10")
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg))
      helpers.assert_info(u.info, nil, "fault-http10 urls", 1)
      assert_survives(c, "fault-http10")
    end)

    it("a complete JSON answer in a chunked body that is cut short is not accepted", function()
      -- fault-chunk-short and fault-chunk-noend carry a whole, valid answer:
      -- only the framing says it is incomplete
      local c = helpers.client(FAST)
      for _, id in ipairs({ "fault-chunk-short", "fault-chunk-noend" }) do
        helpers.assert_fail("connect", hostile(id, id), c:vnc(id))
      end
    end)

    for _, id in ipairs({ "fault-smuggle", "fault-smuggle-late" }) do
      it("a second answer after Content-Length is never read as the next one (" .. id .. ")",
        function()
        -- {"data"...} of VM 999 with cluster smuggled.example follows "{}" on
        -- the same connection, at once or 0.1 s later
        local c = helpers.client(FAST)
        helpers.assert_fail("decode", hostile(id, id), c:vnc(id))
        if id == "fault-smuggle-late" then socket.sleep(0.3) end
        local info, msg = c:vnc("vm-3")
        helpers.assert_info(info, msg, id .. ", then vm-3", 3)
        local u
        u, msg = c:urls("vm-1")
        assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg))
        assert.is_nil(u.direct:find("smuggled", 1, true), "the smuggled answer was used")
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("strings", function()
    it("invalid UTF-8 and a NUL in the tokens and the uuid: the URLs percent-encode the bytes",
      function()
      -- the contract asks for non-empty strings and valid hosts only; the
      -- URL builders encode any byte, so the URLs are still well formed
      local c = helpers.client(FAST)
      local u, msg, kind = c:urls("fault-badutf8")
      assert.is_true(type(u) == "table", "urls failed: " .. helpers.scrub(msg) .. " ("
        .. tostring(kind) .. ")")
      local info = u.info
      assert.same_secret("\255\254", info.raw_token:sub(1, 2), "raw_token lost its first bytes")
      assert.is_true(info.token:find("\0", 1, true) ~= nil, "token lost its NUL")
      for _, url in ipairs({ u.direct, u.proxy }) do
        assert.is_truthy(url:find("^[%w%-_%.!~%*'%(%)%%/:?&=%[%]]+$"),
          "a URL has a byte that is not URL-safe ASCII")
      end
      assert.same_secret(info.raw_token, percent_decode(param(u.direct, "token")),
        "the direct URL token does not decode to raw_token")
      assert.same_secret(info.vm_uuid, percent_decode(param(u.direct, "uuid")),
        "the direct URL uuid does not decode to vm_uuid")
      assert.same_secret(info.token, percent_decode(param(u.proxy, "token")),
        "the proxy URL token does not decode to token")
      assert.is_truthy(u.direct:find("^wss://127%.0%.0%.2/websockify/%?uuid=%%E2%%82"),
        "the direct URL does not start as expected")
      assert.is_truthy(u.direct:find("&token=%FF%FE", 1, true), "raw_token is not encoded")
      assert.is_truthy(u.proxy:find("%00", 1, true), "the NUL of token is not encoded")
      local url, mode = c:console_url("fault-badutf8", { mode = "direct" })
      assert.is_true(type(url) == "string", "console_url failed: " .. helpers.scrub(mode))
      assert_survives(c, "fault-badutf8")
    end)

    it("a GraphQL message with invalid UTF-8 and a line break is one short line", function()
      local msg = helpers.assert_fail("not_found",
        hostile("fault-badutf8-graphql", "fault-badutf8-graphql"),
        helpers.client(FAST):vnc("fault-badutf8-graphql"))
      assert.is_truthy(msg:find("does not exist", 1, true),
        "the message lacks the server's message: " .. helpers.scrub(msg))
    end)

    it("a long GraphQL message in Chinese is cut at a character boundary", function()
      local msg = helpers.assert_fail("not_found", hostile("fault-zh-graphql", "fault-zh-graphql"),
        helpers.client(FAST, { language = "zh-CN" }):vnc("fault-zh-graphql"))
      -- the server's text is kept (the first characters, 虚拟机不存在)
      assert.is_truthy(msg:find("\232\153\154\230\139\159\230\156\186", 1, true),
        "the message lacks the server's message: " .. helpers.scrub(msg))
    end)

    it("a long HTTP 500 message in Chinese is cut at a character boundary", function()
      local msg = helpers.assert_fail("http", hostile("fault-zh-500", "fault-zh-500"),
        helpers.client(FAST):vnc("fault-zh-500"))
      assert.is_truthy(msg:find("HTTP 500", 1, true), "the message lacks the status")
    end)
  end)

  -------------------------------------------------------------------------
  describe("JSON", function()
    it("nested 100,000 deep gives decode at once (fault-deep)", function()
      local c = helpers.client(FAST)
      local t, res, msg, kind = elapsed_of(c.vnc, c, "fault-deep")
      helpers.assert_fail("decode", hostile("fault-deep", "fault-deep"), res, msg, kind)
      assert.is_true(t < 1, ("took %.2f s, expected < 1 s"):format(t))
    end)

    -- cjson keeps the last of duplicate keys; whichever ctvnc keeps, the host
    -- it accepts must be valid and no injected host may reach a URL
    for _, case in ipairs({
      { "fault-dupkey", "cluster_ip", "127.0.0.2" },
      { "fault-dupkey-first", "cluster_ip", "127.0.0.2" },
      { "fault-dupkey-vnc", "host_ip", "127.0.0.1" },
    }) do
      local id, field, good = case[1], case[2], case[3]
      it("duplicate keys never let an injected " .. field .. " through (" .. id .. ")", function()
        local c = helpers.client(FAST)
        local u, msg, kind = c:urls(id)
        if u == nil then
          helpers.assert_fail("decode", hostile(id, id), u, msg, kind)
        else
          assert.are.equal(good, u.info[field])
          for _, url in ipairs({ u.direct, u.proxy }) do
            assert.is_nil(url:find("evil", 1, true), id .. ": an injected host reached a URL")
            assert.is_nil(url:find("stolen", 1, true), id .. ": an injected host reached a URL")
          end
        end
        local url, mode, k = c:console_url(id, { mode = "direct" })
        if url then
          assert.is_nil(url:find("evil", 1, true), id .. ": an injected host reached a URL")
          assert.is_nil(url:find("stolen", 1, true), id .. ": an injected host reached a URL")
        else
          helpers.assert_fail("decode", hostile("console_url " .. id, id), url, mode, k)
        end
      end)
    end
  end)

  -------------------------------------------------------------------------
  describe("TLS", function()
    local wrong_port = tonumber(sim_env("SIM_WRONGNAME_PORT"))
    local expired_port = tonumber(sim_env("SIM_EXPIRED_PORT"))
    local wrong_cert = sim_env("SIM_WRONGNAME_CERT")
    local expired_ca = sim_env("SIM_EXPIRED_CA")

    local function need()
      assert.is_true(wrong_port ~= nil and expired_port ~= nil and wrong_cert ~= nil
        and expired_ca ~= nil, "the simulator reports no hostile TLS listeners "
        .. "(SIM_WRONGNAME_PORT, SIM_EXPIRED_PORT): restart it with the current sim.sh")
    end

    it("a certificate for another name gives tls, even with that certificate as ca_file",
      function()
      need()
      local ep = "https://127.0.0.1:" .. wrong_port
      local c = helpers.client(FAST, { endpoint = ep, ca_file = wrong_cert })
      helpers.assert_fail("tls", hostile("wrong name, ca_file", "vm-1"), c:vnc("vm-1"))
      helpers.assert_fail("tls", hostile("wrong name, system store", "vm-1"),
        helpers.client(FAST, { endpoint = ep }):vnc("vm-1"))
      -- the same listener answers when verification is off: the failure was the name
      local info, msg = helpers.client(FAST, { endpoint = ep, insecure = true }):vnc("vm-1")
      helpers.assert_info(info, msg, "wrong name, insecure", 1)
    end)

    it("an expired certificate gives tls with its CA as ca_file, and works insecure", function()
      need()
      local ep = "https://127.0.0.1:" .. expired_port
      helpers.assert_fail("tls", hostile("expired, ca_file", "vm-1"),
        helpers.client(FAST, { endpoint = ep, ca_file = expired_ca }):vnc("vm-1"))
      helpers.assert_fail("tls", hostile("expired, localhost, ca_file", "vm-1"),
        helpers.client(FAST,
          { endpoint = "https://localhost:" .. expired_port, ca_file = expired_ca }):vnc("vm-1"))
      helpers.assert_fail("tls", hostile("expired, system store", "vm-1"),
        helpers.client(FAST, { endpoint = ep }):vnc("vm-1"))
      local info, msg = helpers.client(FAST, { endpoint = ep, insecure = true }):vnc("vm-1")
      helpers.assert_info(info, msg, "expired, insecure", 1)
    end)

    it("a tls failure is not retried into a hang (retries = 2)", function()
      need()
      local c = helpers.client(FAST, { endpoint = "https://127.0.0.1:" .. expired_port,
        ca_file = expired_ca, retries = 2, retry_delay = 0.5 })
      local t, res, msg, kind = elapsed_of(c.vnc, c, "vm-1")
      helpers.assert_fail("tls", hostile("expired, retries 2", "vm-1"), res, msg, kind)
      assert.is_true(t < 0.5, ("took %.2f s: a tls failure was retried"):format(t))
    end)
  end)

  -------------------------------------------------------------------------
  describe("batch", function()
    it("keeps every hostile answer to its own VM and fetches the good ones", function()
      local ids, want = { "vm-1" }, { ["vm-1"] = "ok" }
      for _, case in ipairs(CASES) do
        ids[#ids + 1] = case.id
        want[case.id] = case.kind
      end
      for _, id in ipairs({ "fault-dribble", "fault-http10", "fault-smuggle", "fault-dupkey" }) do
        ids[#ids + 1] = id
      end
      want["fault-dribble"] = "timeout"
      want["fault-http10"] = "ok"
      want["fault-smuggle"] = "decode"
      ids[#ids + 1] = "vm-3"
      want["vm-3"] = "ok"
      local c = helpers.client(FAST, { timeout = 2 })
      local t, results, summary = elapsed_of(c.batch, c, ids, { mode = "proxy", concurrency = 8 })
      assert.are.equal(#ids, summary.total)
      assert.is_true(t < 4, ("the batch took %.2f s, expected about 2 s"):format(t))
      -- every result is checked; the problems are reported together
      local problems = {}
      for i, r in ipairs(results) do
        local id = ids[i]
        local ok, err = pcall(function()
          assert.are.equal(id, r.vm_id)
          local w = want[id]
          if id == "fault-dupkey" then
            if not r.ok then
              helpers.assert_fail("decode", hostile("batch " .. id, id), nil, r.message, r.kind)
            end
            if r.ok then assert.is_nil(r.url:find("evil", 1, true), "batch: injected host") end
          elseif w == "ok" then
            assert.is_true(r.ok, "batch " .. id .. " failed: " .. helpers.scrub(r.message) .. " ("
              .. tostring(r.kind) .. ")")
            local n = tonumber(id:match("^vm%-(%d+)$"))
            helpers.assert_info(r.info, nil, "batch " .. id, n or 1)
            assert.is_nil(r.url:find("smuggled", 1, true), "batch: a smuggled answer was used")
          else
            helpers.assert_fail(w, hostile("batch " .. id, id), r.ok and r or nil, r.message,
              r.kind)
          end
        end)
        if not ok then
          local text = type(err) == "table" and err.message or err
          problems[#problems + 1] = tostring(text):match("[^\n]*")
        end
      end
      assert.is_true(#problems == 0, #problems .. " of " .. #ids .. " results are wrong:\n"
        .. table.concat(problems, "\n"))
      assert_survives(c, "batch")
    end)
  end)
end)
