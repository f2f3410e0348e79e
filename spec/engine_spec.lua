-- Specs for the fetch engine's edges against the simulator: callbacks that
-- call back into the client or its session, to-be-closed clients, and
-- console_url_for on credentials already in hand. Loopback only.
-- Clients come from helpers.client and are closed by helpers; values that
-- carry tokens are compared with assert.same_secret (spec/helpers.lua).
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local helpers = require "helpers"

local sim = helpers.sim()

local function vnc_req(id)
  return { method = "POST", url = sim.http .. "/api",
           headers = { Authorization = helpers.STATIC_TOKEN, ["Content-Type"] = "application/json",
                       accept = "application/json", ["content-language"] = "en-US" },
           body = require("cjson").encode({ operationName = "vnc",
             variables = { input = { vm = { id = id } } },
             query = "query vnc($input: VncInput!) { vnc(input: $input) "
               .. "{ vm_uuid host_ip cluster_ip raw_token token } }" }) }
end

describe("a session's callbacks", function()
  it("cannot re-enter the session: request raises 'session is busy'", function()
    local s = core.session()
    local ok, err = pcall(s.request_many, s, { vnc_req("vm-1") }, 1, function()
      s:request(vnc_req("vm-2"))
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("session is busy", 1, true))
    local status = s:request(vnc_req("vm-3"))      -- still usable afterwards
    assert.are.equal(200, status)
    s:close()
  end)

  it("cannot start a nested request_many either", function()
    local s = core.session()
    local ok, err = pcall(s.request_many, s, { vnc_req("vm-1"), vnc_req("vm-2") }, 2,
      function() s:request_many({ vnc_req("vm-3") }, 1, function() end) end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("session is busy", 1, true))
    s:close()
  end)

  it("defer close() to the end of the run, which finishes", function()
    local s = core.session()
    local seen = 0
    s:request_many({ vnc_req("vm-1"), vnc_req("vm-2"), vnc_req("vm-3") }, 1,
      function(_, status)
        assert.are.equal(200, status)
        seen = seen + 1
        s:close()
      end)
    assert.are.equal(3, seen)
    assert.are.equal("ctvnc.Session: closed", tostring(s))
    assert.has_error(function() s:request(vnc_req("vm-1")) end)
  end)
end)

describe("a session's request tables", function()
  it("refuse headers that grow while the request is read (no write past the count)", function()
    local s = core.session()
    local h = { a = "1" }
    local req = setmetatable({ url = "http://127.0.0.1:1/", headers = h }, {
      __index = function(_, k)         -- runs when `method` is read, after the count
        if k == "method" then
          for i = 1, 64 do h["x" .. i] = "v" end
          return "GET"
        end
      end })
    local ok, err = pcall(s.request, s, req)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("headers changed while being read", 1, true))
    s:close()
  end)
end)

describe("a batch's on_progress", function()
  helpers.autoclose()

  it("may close the client: the run in flight completes, the client is closed after", function()
    local c = helpers.client()
    assert(c:vnc("vm-1"))
    local results, summary = c:batch({ "vm-1", "vm-2", "vm-3", "vm-4" },
      { mode = "proxy", concurrency = 2, on_progress = function() c:close() end })
    assert.are.equal(4, summary.ok)
    assert.is_true(results[4].ok)
    assert.has_error(function() c:vnc("vm-1") end)
  end)

  it("may close the client mid-batch: later requests raise, nothing crashes", function()
    local c = helpers.client()
    local ok, err = pcall(c.batch, c, { "vm-1", "vm-2", "vm-3" },
      { mode = "proxy", on_progress = function() c:close() end })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("session is closed", 1, true))
  end)

  it("may not call the client's requests: an error, not a hang", function()
    local c = helpers.client()
    local ok, err = pcall(c.batch, c, { "vm-1", "vm-2" },
      { mode = "proxy", on_progress = function() c:vnc("vm-3") end })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("session is busy", 1, true))
    assert.is_truthy(c:vnc("vm-1"))              -- the client still works
  end)
end)

describe("clients as to-be-closed values", function()
  helpers.autoclose()

  it("have __close, which closes them", function()
    local c = helpers.client()
    assert.are.equal(c.close, getmetatable(c).__close)
    getmetatable(c).__close(c)
    assert.has_error(function() c:vnc("vm-1") end)
  end)

  if _VERSION == "Lua 5.4" then
    it("close at the end of a <close> scope (Lua 5.4)", function()
      local chunk = assert(load([[
        local ctvnc, o = ...
        local kept
        do
          local c <close> = assert(ctvnc.new(o))
          assert(c:vnc("vm-1"))
          kept = c
        end
        return kept
      ]]))
      local c = chunk(ctvnc, { endpoint = sim.http, token = helpers.STATIC_TOKEN })
      assert.has_error(function() c:vnc("vm-1") end)
    end)
  end
end)

describe("client:console_url_for", function()
  local c, info
  -- one client for the whole block, closed after its last test
  setup(function()
    c = helpers.client()
    info = assert(c:vnc("vm-1"))
  end)
  teardown(helpers.close_clients)

  it("gives the proxy URL in proxy mode", function()
    local url, mode = c:console_url_for(info, { mode = "proxy" })
    assert.are.equal("proxy", mode)
    assert.same_secret(ctvnc.proxy_url(sim.http, info), url, "the proxy URL")
  end)

  it("gives the direct URL with its port in direct mode", function()
    local url, mode = c:console_url_for(info, { mode = "direct", port = 8443 })
    assert.are.equal("direct", mode)
    assert.same_secret(ctvnc.direct_url(info, { port = 8443 }), url, "the direct URL")
  end)

  it("probes in auto mode, with the client's cache", function()
    local probed = 0
    local function probe(host, port)
      probed = probed + 1
      assert.are.equal(info.cluster_ip, host)
      assert.are.equal(5901, port)
      return true
    end
    local opts = { port = 5901, probe = probe }
    assert.are.equal("direct", select(2, c:console_url_for(info, opts)))
    assert.are.equal("direct", select(2, c:console_url_for(info, opts)))
    assert.are.equal(1, probed)
  end)

  it("refuses bad options and bad credentials before any probe", function()
    local function probe() error("probed") end
    local url, msg, kind = c:console_url_for(info, { scheme = "http", probe = probe })
    assert.is_nil(url)
    assert.are.equal("invalid", kind)
    assert.are.equal('console_url_for: opts.scheme must be "ws" or "wss"', msg)
    local bad = { vm_uuid = "u", host_ip = "127.0.0.1", raw_token = "r", token = "t",
                  cluster_ip = "1.2.3.4/x" }
    url, msg, kind = c:console_url_for(bad, { probe = probe })
    assert.is_nil(url)
    assert.are.equal("invalid", kind)
    assert.is_truthy(msg:find("cluster_ip", 1, true))
  end)

  it("raises on a non-table info", function()
    assert.has_error(function() c:console_url_for("vm-1") end)
  end)
end)
