local core = require "ctvnc.core"
local helpers = require "helpers"

-- The libcurl transport of ctvnc.core, straight: userdata, errors raised in
-- callbacks, closing.
describe("ctvnc.core.session", function()
  local sim
  setup(function() sim = helpers.sim() end)

  local function stats_req()
    return { method = "GET", url = sim.http .. "/_sim/stats" }
  end

  it("answers status and body", function()
    local s = core.session({ timeout = 5 })
    local status, body = s:request(stats_req())
    assert.are.equal(200, status)
    assert.truthy(body:find('"connections"', 1, true))
    s:close()
  end)

  it("raises a Lua error from on_done after libcurl is done, and stays usable", function()
    local s = core.session()
    local reqs = {}
    for i = 1, 6 do reqs[i] = stats_req() end
    local calls = 0
    local ok, err = pcall(s.request_many, s, reqs, 3, function()
      calls = calls + 1
      if calls == 2 then error("stop here") end
    end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("stop here", 1, true))
    assert.are.equal(2, calls)
    local status = s:request(stats_req())     -- nothing was left half-done
    assert.are.equal(200, status)
    local n = 0
    s:request_many(reqs, 3, function(_, st) if st == 200 then n = n + 1 end end)
    assert.are.equal(6, n)
    s:close()
  end)

  it("hands answers back with the index of their request", function()
    local s = core.session()
    local reqs = {
      { method = "GET", url = sim.http .. "/_sim/stats" },
      { method = "GET", url = sim.http .. "/no-such-path" },
      { method = "GET", url = "http://127.0.0.1:1/" },
    }
    local got = {}
    s:request_many(reqs, 2, function(i, status, body, kind)
      got[i] = status or kind
      assert.is_string(body)
    end)
    assert.are.same({ 200, 404, "connect" }, got)
    s:close()
  end)

  it("refuses a header that would smuggle another one", function()
    local s = core.session()
    local status, msg, kind = s:request({ method = "GET", url = sim.http .. "/_sim/stats",
      headers = { ["X-A"] = "1\r\nX-Injected: 2" } })
    assert.is_nil(status)
    assert.are.equal("invalid", kind)
    assert.is_string(msg)
    s:close()
  end)

  it("closes once, whatever calls close: :close(), __gc, __close", function()
    local s = core.session()
    assert.truthy(tostring(s):find("^ctvnc%.Session: "))
    s:close()
    s:close()
    assert.are.equal("ctvnc.Session: closed", tostring(s))
    assert.has_error(function() s:request(stats_req()) end)
    s = nil  -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    if _VERSION == "Lua 5.4" then
      local chunk = assert(load([[
        local core = ...
        local kept
        do
          local s <close> = core.session()
          kept = s
        end
        return tostring(kept)
      ]]))
      assert.are.equal("ctvnc.Session: closed", chunk(core))
    end
  end)

  it("raises on a wrong argument type", function()
    assert.has_error(function() core.session("fast") end)
    assert.has_error(function() core.session({ timeout = -1 }) end)
    local s = core.session()
    assert.has_error(function() s:request("http://127.0.0.1/") end)
    assert.has_error(function() s:request({ method = "GET" }) end)
    assert.has_error(function() s:request_many({ stats_req() }, 1) end)
    s:close()
  end)
end)
