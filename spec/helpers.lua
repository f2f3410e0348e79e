--- Helpers shared by the specs: the simulator, shell commands, secrets.
local helpers = {}

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers%.lua$")) or "."
helpers.ROOT = ROOT

--- io.popen for the specs' child processes. Under `make asan` the Lua
-- process runs with the sanitizer preloaded; its children (curl, nginx,
-- node) must not inherit it.
function helpers.popen(cmd, mode)
  return io.popen("unset LD_PRELOAD; " .. cmd, mode)
end

--- Runs a shell command; returns its output and whether it exited 0.
function helpers.run(cmd)
  local f = assert(helpers.popen(cmd .. " 2>&1; echo \"::rc=$?\""))
  local out = f:read("*a")
  f:close()
  local body, rc = out:match("^(.*)::rc=(%d+)%s*$")
  return body, tonumber(rc) == 0
end

local function read_env(dir)
  local f = assert(io.open(dir .. "/env"))
  local env = {}
  for line in f:lines() do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then env[k] = v end
  end
  f:close()
  return env
end

local function describe_sim(env)
  local sim = {
    dir = env.SIM_DIR,
    http_port = tonumber(env.SIM_HTTP_PORT),
    https_port = tonumber(env.SIM_HTTPS_PORT),
    cluster_port = tonumber(env.SIM_CLUSTER_PORT),
    cert = env.SIM_CERT,
  }
  sim.http = "http://127.0.0.1:" .. sim.http_port
  sim.https = "https://127.0.0.1:" .. sim.https_port
  return sim
end

--- Starts a simulator of its own in `dir`; stop it with helpers.stop_sim.
function helpers.start_sim(dir)
  local out, ok = helpers.run("bash " .. ROOT .. "/spec/support/sim.sh start " .. dir)
  assert(ok, "simulator did not start:\n" .. out)
  return describe_sim(read_env(dir))
end

function helpers.stop_sim(sim)
  helpers.run("bash " .. ROOT .. "/spec/support/sim.sh stop " .. sim.dir)
end

local shared, guard
--- The simulator of this run: the one `make test` started (SIM_* in the
-- environment), else one started now and stopped when Lua closes.
function helpers.sim()
  if shared then return shared end
  if os.getenv("SIM_HTTP_PORT") then
    shared = describe_sim({
      SIM_DIR = os.getenv("SIM_DIR"), SIM_HTTP_PORT = os.getenv("SIM_HTTP_PORT"),
      SIM_HTTPS_PORT = os.getenv("SIM_HTTPS_PORT"),
      SIM_CLUSTER_PORT = os.getenv("SIM_CLUSTER_PORT"), SIM_CERT = os.getenv("SIM_CERT"),
    })
  else
    local dir = os.tmpname()
    os.remove(dir)
    shared = helpers.start_sim(dir)
    local stop = function() helpers.stop_sim(shared) end
    if newproxy then -- LuaJIT: only userdata have __gc
      guard = newproxy(true)
      getmetatable(guard).__gc = stop
    else
      guard = setmetatable({}, { __gc = stop })
    end
  end
  return shared
end

local cjson = require "cjson"

--- A control request to the simulator (stats, reset, config, revoke).
function helpers.control(path, body)
  local sim = helpers.sim()
  local cmd = ("curl -s -m 5 %s %s/_sim/%s"):format(
    body and ("-X POST -H 'Content-Type: application/json' -d '" .. cjson.encode(body) .. "'")
      or (path == "stats" and "" or "-X POST"),
    sim.http, path)
  local out, ok = helpers.run(cmd)
  assert(ok, "control request failed: " .. out)
  return path == "stats" and cjson.decode(out) or out
end

function helpers.stats() return helpers.control("stats") end
function helpers.reset() return helpers.control("reset") end

--- Seconds since some fixed point, with sub-second resolution.
local socket_ok, socket = pcall(require, "socket")
function helpers.now()
  if socket_ok then return socket.gettime() end
  return os.time()
end

return helpers
