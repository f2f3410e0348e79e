local helpers = require "helpers"

-- The scripts in examples/ run as they are, against the simulator.
describe("examples/", function()
  local sim
  setup(function() sim = helpers.sim() end)

  local function run(script, args)
    return helpers.run(("cd %s && CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token CTVNC_CA_FILE=%s "
      .. "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' "
      .. "lua5.4 examples/%s %s"):format(helpers.ROOT, sim.https, sim.cert, script, args))
  end

  it("console_url.lua prints the direct, proxy and auto URLs", function()
    local out, ok = run("console_url.lua", "vm-2")
    assert(ok, out)
    assert.truthy(out:find("direct: wss://127.0.0.3/websockify/?uuid=", 1, true))
    assert.truthy(out:find("proxy:  wss://127.0.0.1:" .. sim.https_port .. "/websockify/?token=", 1, true))
    assert.truthy(out:find("(proxy)", 1, true))  -- nothing listens on 127.0.0.3:443
  end)

  it("batch.lua prints one line per VM and a summary", function()
    local out, ok = run("batch.lua", "vm-1 vm-2 fault-null")
    assert(ok, out)
    assert.truthy(out:find("vm-1\tproxy\twss://", 1, true))
    assert.truthy(out:find("fault-null\tfailed\tnot_found", 1, true))
    assert.truthy(out:find("2 of 3 ok, 1 failed", 1, true))
  end)

  it("make demo prints URLs in both modes", function()
    local out, ok = helpers.run("cd " .. helpers.ROOT .. " && sh examples/demo.sh")
    assert(ok, out)
    assert.truthy(out:find("vm-1\tdirect\twss://127.0.0.2:", 1, true))
    assert.truthy(out:find("vm-2\tproxy\twss://127.0.0.1:", 1, true))
  end)
end)
