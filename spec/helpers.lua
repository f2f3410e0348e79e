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
    ipv6 = env.SIM_IPV6 == "1",   -- the API listens on [::1] too
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
      SIM_IPV6 = os.getenv("SIM_IPV6"),
    })
  else
    local dir = os.tmpname()
    os.remove(dir)
    shared = helpers.start_sim(dir)
    local stop = function()
      helpers.stop_sim(shared)
      helpers.run("rm -rf " .. dir)
    end
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

local socket = require "socket"

--- Seconds since some fixed point, with sub-second resolution.
function helpers.now()
  return socket.gettime()
end

--- A free TCP port on `host` (bound, then released).
function helpers.free_port(host)
  local s = assert(socket.bind(host or "127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Waits (up to 5 s) until host:port accepts connections.
function helpers.wait_port(host, port)
  for _ = 1, 100 do
    local c = socket.connect(host, port)
    if c then c:close() return true end
    socket.sleep(0.05)
  end
  error(("nothing listens on %s:%d"):format(host, port))
end

--- A minimal websocket client for the specs: binary frames, a zero mask
-- (XOR with zero leaves the payload as it is; RFC 6455 allows any key).
function helpers.websocket(host, port, path)
  local sock = assert(socket.connect(host, port))
  sock:settimeout(5)
  assert(sock:send(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"):format(path, host, port)))
  local status = assert(sock:receive("*l"))
  assert(status:find(" 101 ", 1, true), "no websocket upgrade: " .. status)
  repeat local line = assert(sock:receive("*l")) until line == ""
  local ws = {}
  function ws.send(_, data)
    local len = #data
    local head = len < 126 and string.char(0x82, 0x80 + len)
      or string.char(0x82, 0x80 + 126, math.floor(len / 256), len % 256)
    assert(sock:send(head .. "\0\0\0\0" .. data))
  end
  --- Reads frames until their payloads contain `needle` (or 5 s pass).
  function ws.receive_until(_, needle)
    local got = ""
    while not got:find(needle, 1, true) do
      local head = sock:receive(2)
      if not head then break end
      local len = head:byte(2) % 128
      if len == 126 then
        local b = sock:receive(2)
        len = b:byte(1) * 256 + b:byte(2)
      elseif len == 127 then
        local b = sock:receive(8)
        len = 0
        for i = 1, 8 do len = len * 256 + b:byte(i) end
      end
      got = got .. (len > 0 and sock:receive(len) or "")
    end
    return got
  end
  function ws.close() sock:close() end
  return ws
end


local HEX32 = string.rep("%x", 32)

--- Text safe to quote in a failure message: the given secrets, anything
-- shaped like a raw token (32 hex digits), a login token or a base64
-- console token is hidden, other bytes outside printable ASCII become \ddd.
function helpers.scrub(msg, secrets)
  msg = tostring(msg)
  for _, s in ipairs(secrets or {}) do
    local i = msg:find(s, 1, true)
    while i do
      msg = msg:sub(1, i - 1) .. "<secret>" .. msg:sub(i + #s)
      i = msg:find(s, 1, true)
    end
  end
  msg = msg:gsub(HEX32, "<hex>")
  msg = msg:gsub("login%-%x+", "<login>")
  msg = msg:gsub("[%w+/=%%]+", function(w)
    if #w >= 24 and (w:find("+", 1, true) or w:find("/", 1, true) or w:find("%", 1, true)) then
      return "<b64>"
    end
    return w
  end)
  return (msg:gsub("[^\32-\126]", function(c) return "\\" .. c:byte() end))
end

--- What is wrong with an error message, or nil: it must be a non-empty
-- single line with no NUL, none of `secrets`, no Authorization header name,
-- and nothing shaped like a raw token, a console token (the simulator's
-- start "++//") or a login token.
function helpers.message_problem(msg, secrets)
  if type(msg) ~= "string" then return "the message is not a string" end
  if msg == "" then return "the message is empty" end
  if msg:find("[\r\n]") then return "the message is not one line" end
  if msg:find("%z") then return "the message has a NUL byte" end
  for i, s in ipairs(secrets or {}) do
    if msg:find(s, 1, true) then return "the message carries secret #" .. i end
  end
  if msg:lower():find("authorization", 1, true) then
    return "the message names the Authorization header"
  end
  if msg:find(HEX32) then return "the message carries something like a raw token" end
  if msg:find("++//", 1, true) or msg:find("%+%+%%2F") then
    return "the message carries a console token"
  end
  if msg:find("login%-%x%x%x%x") then return "the message carries a login token" end
  return nil
end

return helpers
