--- Helpers shared by the specs: the simulator, shell commands, secrets,
-- clients that close themselves, and the assertions every spec file uses
-- (assert_fail, assert_info, assert.same_secret).
local helpers = {}

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers%.lua$")) or "."
helpers.ROOT = ROOT

--- io.popen for the specs' child processes. Under `make asan` the Lua
-- process runs with the sanitizer preloaded; its children (curl, nginx,
-- node) must not inherit it.
function helpers.popen(cmd, mode)
  return io.popen("unset LD_PRELOAD; " .. cmd, mode)
end

--- How the specs run bin/ctvnc as a child process under this interpreter:
-- its Lua, the paths to lua/ and to the module of its ABI (never
-- build/asan: a child runs without the sanitizer preloaded), and an `env`
-- prefix that unsets what would change the command's behaviour.
local abi = _VERSION:match("%d+%.%d+")
helpers.CLI = {
  abi = abi,
  lua = type(rawget(_G, "jit")) == "table" and "luajit" or "lua" .. abi,
  paths = ("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/%s/?.so;;' "
    .. "LUA_CPATH_5_2='build/%s/?.so;;' LUA_CPATH_5_3='build/%s/?.so;;' "
    .. "LUA_CPATH_5_4='build/%s/?.so;;'"):format(abi, abi, abi, abi),
  unset = "env -u CTVNC_TOKEN -u CTVNC_ENDPOINT -u CTVNC_USERNAME -u CTVNC_PASSWORD "
    .. "-u CTVNC_CA_FILE -u CTVNC_SOURCE -u CTVNC_INSECURE -u COLUMNS -u NO_COLOR ",
}

--- ctvnc.cli.main in this process, for the commands that ask no tower:
-- args, env (a table of variables) -> exit status, stdout, stderr.
function helpers.cli_main(args, env)
  local out, err = {}, {}
  local function sink(t)
    return { write = function(_, ...) for _, s in ipairs({ ... }) do t[#t + 1] = s end end }
  end
  local rc = require("ctvnc.cli").main(args, function(k) return (env or {})[k] end,
    { stdin = io.stdin, stdout = sink(out), stderr = sink(err) })
  return rc, table.concat(out), table.concat(err)
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

local simctl = require "support.simctl"

--- A control request to the simulator (stats, reset, config, revoke, ...).
function helpers.control(path, body)
  return simctl(helpers.sim().http, path, body)
end

function helpers.stats() return helpers.control("stats") end
function helpers.reset() return helpers.control("reset") end

local socket = require "socket"

--- A file's contents, or nil when it cannot be read.
function helpers.read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- Writes `s` to the file at `path` (created or truncated).
function helpers.write_file(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

--- 2n random hex digits from /dev/urandom (keys and secrets for a run).
function helpers.random_hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- base64url of `s`, unpadded, from coreutils' base64 (never the code
-- under test): tokens the specs sign themselves, and b64url's oracle.
function helpers.b64url(s)
  local out = helpers.run("printf '" .. s:gsub(".", function(c)
    return ("\\%03o"):format(c:byte()) end) .. "' | base64 -w0")
  return (out:gsub("%s", ""):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" }))
end

--- An HS256 JWT of claims (a table) under secret, signed by openssl (never
-- the code under test); header defaults to {alg = HS256, typ = JWT}.
function helpers.hs256(secret, claims, header)
  local cjson = require "cjson"
  local input = helpers.b64url(cjson.encode(header or { alg = "HS256", typ = "JWT" })) .. "."
    .. helpers.b64url(cjson.encode(claims))
  local hexkey = secret:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  local sig = helpers.run(("printf '%%s' '%s' | openssl dgst -sha256 -mac HMAC -macopt "
    .. "hexkey:%s -binary | base64 -w0"):format(input, hexkey))
  return input .. "." .. sig:gsub("%s", ""):gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" })
end

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

--- Waits (up to 15 s: node and websockify start slowly on a loaded
-- machine) until host:port accepts connections.
function helpers.wait_port(host, port)
  for _ = 1, 300 do
    local c = socket.connect(host, port)
    if c then c:close() return true end
    socket.sleep(0.05)
  end
  error(("nothing listens on %s:%d"):format(host, port))
end

--- A minimal websocket client for the specs: binary frames, a zero mask
-- (XOR with zero leaves the payload as it is; RFC 6455 allows any key).
-- `headers` (optional) are more request headers, e.g. a Cookie.
function helpers.websocket(host, port, path, headers)
  local sock = assert(socket.connect(host, port))
  sock:settimeout(5)
  local extra = ""
  for k, v in pairs(headers or {}) do extra = extra .. k .. ": " .. v .. "\r\n" end
  assert(sock:send(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    .. "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n%s\r\n"):format(path, host, port, extra)))
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

--- The simulator's credentials: never in a message, always scrubbed.
helpers.STATIC_TOKEN = "sim-token"
helpers.USER, helpers.PASS = "admin", "sim-pass"
local SIM_SECRETS = { helpers.STATIC_TOKEN, helpers.PASS }

--- `secrets` followed by the simulator's credentials.
local function with_sim_secrets(secrets)
  local all = {}
  for _, s in ipairs(secrets or {}) do all[#all + 1] = s end
  for _, s in ipairs(SIM_SECRETS) do all[#all + 1] = s end
  return all
end

--- Text safe to quote in a failure message: the given secrets, the
-- simulator's credentials, anything shaped like a raw token (32 hex
-- digits), a login token or a base64 console token is hidden, other bytes
-- outside printable ASCII become \ddd.
function helpers.scrub(msg, secrets)
  msg = tostring(msg)
  for _, s in ipairs(with_sim_secrets(secrets)) do
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

---------------------------------------------------------------------------
-- Clients and assertions shared by the spec files. `assert` here is
-- luassert, the same instance busted hands to every spec file.
---------------------------------------------------------------------------

local luassert = require "luassert"
local say = require "say"

--- Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
function helpers.valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    if c < 0x80 then
      i = i + 1
    else
      local len
      if c >= 0xC2 and c <= 0xDF then len = 2
      elseif c >= 0xE0 and c <= 0xEF then len = 3
      elseif c >= 0xF0 and c <= 0xF4 then len = 4
      else return false end
      if i + len - 1 > n then return false end
      local cp = c % 2 ^ (7 - len)
      for j = 1, len - 1 do
        local b = s:byte(i + j)
        if b < 0x80 or b > 0xBF then return false end
        cp = cp * 64 + (b - 0x80)
      end
      if (len == 3 and (cp < 0x800 or (cp >= 0xD800 and cp <= 0xDFFF)))
        or (len == 4 and (cp < 0x10000 or cp > 0x10FFFF)) then
        return false
      end
      i = i + len
    end
  end
  return true
end

--- An option value for helpers.client that removes the option (the
-- library's default applies).
helpers.NONE = setmetatable({}, { __tostring = function() return "helpers.NONE" end })

local clients = {}

--- A client, registered for helpers.close_clients. The defaults: the
-- simulator's HTTP endpoint, its static token, no retry, a short retry
-- delay, a timeout of 10 s. Each argument is a table of options laid over
-- the defaults in turn (a spec file's own defaults, then a test's);
-- helpers.NONE removes an option. Fails the test when ctvnc.new fails.
function helpers.client(...)
  -- under valgrind (CTVNC_SLOW=1) a TLS handshake that loads the system CA
  -- store takes seconds: the connect timeout (TLS included) is longer there
  local o = { endpoint = helpers.sim().http, token = helpers.STATIC_TOKEN, retries = 0,
    retry_delay = 0.01, timeout = 10, connect_timeout = os.getenv("CTVNC_SLOW") and 9 or 5 }
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do
      if v == helpers.NONE then o[k] = nil else o[k] = v end
    end
  end
  local c, msg, kind = require("ctvnc").new(o)
  luassert.is_true(c ~= nil, "ctvnc.new failed: " .. helpers.scrub(msg) .. " ("
    .. tostring(kind) .. ")")
  clients[#clients + 1] = c
  return c
end

--- Closes every client helpers.client made (close is idempotent, so a
-- client a test closed itself does no harm), newest first.
function helpers.close_clients()
  for i = #clients, 1, -1 do
    clients[i]:close()
    clients[i] = nil
  end
end

--- Called inside a describe block: closes the clients after each of its
-- tests, nested ones included (busted's after_each, reached through its
-- module as the spec files' global is not visible here).
function helpers.autoclose()
  require("busted").after_each(helpers.close_clients)
end

--- Asserts a failure `res, msg, got` of the library: res is nil, msg a clean
-- message (helpers.message_problem, valid UTF-8) and got the expected kind.
-- `kind` is a string or a set of accepted kinds ({ connect = true, ... }).
-- `check` is the label to print, or a table:
--   label    what failed, for the failure text
--   secrets  strings the message must not carry (besides the simulator's
--            credentials and what message_problem looks for)
--   id       a VM id the message must name
--   max      the most bytes the message may have
-- A table keeps the failure's three values last, so that a call's results
-- pass straight through: assert_fail("auth", "401", c:vnc("fault-401")).
-- Returns the message.
function helpers.assert_fail(kind, check, res, msg, got)
  if type(check) ~= "table" then check = { label = check } end
  local label = tostring(check.label)
  local secrets = with_sim_secrets(check.secrets)
  local function shown(m) return helpers.scrub(m, secrets) end

  luassert.is_true(res == nil, label .. ": expected a failure, got a result")
  local problem = helpers.message_problem(msg, secrets)
  luassert.is_nil(problem, label .. ": " .. tostring(problem) .. ": " .. shown(msg))
  if check.max then
    luassert.is_true(#msg <= check.max,
      ("%s: the message has %d bytes, more than %d: %s"):format(label, #msg, check.max,
        shown(msg:sub(1, 200))))
  end
  luassert.is_true(helpers.valid_utf8(msg), label .. ": the message is not valid UTF-8: "
    .. shown(msg))

  local ok, want = got == kind, kind
  if type(kind) == "table" then
    ok = got ~= nil and kind[got] ~= nil
    local t = {}
    for k in pairs(kind) do t[#t + 1] = k end
    table.sort(t)
    want = table.concat(t, " or ")
  end
  luassert.is_true(ok, label .. ": expected kind " .. want .. ", got " .. tostring(got)
    .. " (" .. shown(msg) .. ")")
  if check.id then
    luassert.is_truthy(msg:find(check.id, 1, true), label
      .. ": the message does not name the VM id: " .. shown(msg))
  end
  return msg
end

local INFO_FIELDS = { "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }

--- Asserts a good vnc answer of the simulator: five non-empty strings, a
-- raw token of 32 hex digits, a console token as the simulator makes them
-- (base64 starting "++//"), and when `n` is given the uuid and hosts of
-- vm-<n>. `msg` is the failure message when `info` is nil.
function helpers.assert_info(info, msg, label, n)
  luassert.is_true(type(info) == "table", label .. ": vnc failed: "
    .. helpers.scrub(msg))
  for _, k in ipairs(INFO_FIELDS) do
    luassert.is_true(type(info[k]) == "string" and #info[k] > 0,
      label .. ": field " .. k .. " is not a non-empty string")
  end
  if n then
    luassert.are.equal(("%08x-0000-4000-8000-%012x"):format(n, n), info.vm_uuid)
    luassert.are.equal("127.0.0.1", info.host_ip)
    luassert.are.equal(n % 2 == 1 and "127.0.0.2" or "127.0.0.3", info.cluster_ip)
  end
  luassert.is_true(#info.raw_token == 32 and info.raw_token:find("^%x+$") ~= nil,
    label .. ": raw_token is not 32 hex digits")
  luassert.is_true(info.token:find("^%+%+//[%w+/]+=*$") ~= nil,
    label .. ": token is not a simulator token")
end

--- assert.same_secret(a, b, label): a == b for values that may carry a
-- token (URLs, tokens, parts of them). On failure only the label and a few
-- booleans are printed, never the values.
local function same_secret(_, args)
  local a, b, label = args[1], args[2], args[3]
  local facts = ("first is a string: %s, second is a string: %s, same length: %s"):format(
    tostring(type(a) == "string"), tostring(type(b) == "string"),
    tostring(type(a) == "string" and type(b) == "string" and #a == #b))
  for i = 1, math.max(args.n or 0, 3) do args[i] = nil end
  args[1], args[2], args.n = tostring(label or "values"), facts, 2
  args.nofmt = { true, true }
  return a == b
end
say:set("assertion.same_secret.positive", "%s: the values differ (%s)")
say:set("assertion.same_secret.negative", "%s: the values are the same (%s)")
luassert:register("assertion", "same_secret", same_secret,
  "assertion.same_secret.positive", "assertion.same_secret.negative")

return helpers
