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

  it("docs/gateway.md's start, curl and stop commands run against the bundled simulator",
     function()
    local dir = os.tmpname()
    os.remove(dir)
    local text = assert(helpers.read_file(helpers.ROOT .. "/docs/gateway.md"))
    local block = assert(text:match("\n```sh\n(sh examples/openresty/run.sh start .-)```"))
    local lines = {}
    for line in block:gmatch("[^\n]+") do
      lines[#lines + 1] = line:gsub("%s+#.*$", ""):gsub("/tmp/gw", dir)
    end
    assert.equal(3, #lines)
    assert.truthy(lines[3]:find("run.sh stop", 1, true))
    local env = "env -u TOWER -u SIM_ENV -u KEYS -u CTVNC_ENDPOINT -u CTVNC_TOKEN "
    local out, ok = helpers.run(("cd %s && %s %s"):format(helpers.ROOT, env, lines[1]))
    assert(ok, out)
    local port = assert(out:match("GATEWAY_PORT=(%d+)"), out)
    local body, got = helpers.run(("cd %s && %s"):format(helpers.ROOT, lines[2]))
    assert(got, body)
    -- the gateway's own console link (RAW_TARGET_URLS is off)
    assert.truthy(body:find('"mode":"gateway"', 1, true) and body:find("ticket=", 1, true), body)
    local sim_port = assert(io.open(dir .. "/sim/env")):read("*a"):match("SIM_HTTP_PORT=(%d+)")
    out, ok = helpers.run(("cd %s && %s"):format(helpers.ROOT, lines[3]))
    assert(ok, out)
    -- the gateway and the simulator it started are gone
    local _, up = helpers.run("curl -s -m 2 http://127.0.0.1:" .. port .. "/")
    assert.is_false(up)
    _, up = helpers.run("curl -s -m 2 http://127.0.0.1:" .. sim_port .. "/_sim/stats")
    assert.is_false(up)
    helpers.run("rm -rf " .. dir)
  end)

  it("make demo prints URLs in both modes", function()
    local out, ok = helpers.run("cd " .. helpers.ROOT .. " && sh examples/demo.sh")
    assert(ok, out)
    assert.truthy(out:find("vm-1\tdirect\twss://127.0.0.2:", 1, true))
    assert.truthy(out:find("vm-2\tproxy\twss://127.0.0.1:", 1, true))
  end)
end)
