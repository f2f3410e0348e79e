--- What the gateway spec files (gateway, relay, openresty, e2e) share: a lab
-- directory with the background processes and example gateways
-- (examples/openresty/run.sh) started in it, the secrets registered for the
-- final log grep, a curl wrapper and a websocket handshake by hand.
local helpers = require "helpers"
local socket = require "socket"
local luassert = require "luassert"
local core = require "ctvnc.core"
local cjson = require "cjson"

local common = {}
local ROOT = helpers.ROOT

--- The settings every example gateway needs to reach the simulator as its
-- CloudTower over verified TLS. The specs of what ctvnc asks the tower
-- read the target URLs /url answers: RAW_TARGET_URLS=on (spec/revoke_spec
-- removes it, false, for the default: the gateway's own links).
function common.tower_env(sim)
  return {
    TOWER = "127.0.0.1:" .. sim.https_port, TOWER_CA = sim.cert, TOWER_NAME = "localhost",
    CTVNC_ENDPOINT = "https://127.0.0.1:" .. sim.https_port, CTVNC_TOKEN = helpers.STATIC_TOKEN,
    RAW_TARGET_URLS = "on",
  }
end

local Lab = {}
Lab.__index = Lab

--- A fresh temporary directory; stop everything with lab:stop(). `show`
-- (optional) makes a gateway's start output safe to quote; by default the
-- registered secrets are scrubbed from it. mktemp -d makes the directory
-- in one step (os.tmpname, remove, mkdir leaves the name free for a
-- moment); chmod 755 lets nginx's workers (WORKER_USER) reach their temp
-- directories inside it.
function common.lab(show)
  local out, ok = helpers.run("d=$(mktemp -d /tmp/ctvnc-lab.XXXXXXXX) && chmod 755 \"$d\" && echo \"$d\"")
  assert(ok, "mktemp: " .. out)
  local dir = out:gsub("%s+$", "")
  local lab = setmetatable({ dir = dir, secrets = {}, gateways = {}, started = {} }, Lab)
  lab.show = show or function(s) return helpers.scrub(s, lab.secrets) end
  return lab
end

--- Registers a secret no log line may hold; returns it (nil and "" are skipped).
function Lab:secret(s)
  if s and s ~= "" then self.secrets[#self.secrets + 1] = s end
  return s
end

--- Starts `cmd` in the background in a session of its own (setsid: the
-- whole group can be stopped), its output in <dir>/<name>.out; returns the pid.
function Lab:spawn(name, cmd)
  local pidfile = ("%s/%s.pid"):format(self.dir, name)
  local out, ok = helpers.run(("(setsid %s > %s/%s.out 2>&1 & echo $! > %s)")
    :format(cmd, self.dir, name, pidfile))
  assert(ok, out)
  local pid = tonumber((helpers.read_file(pidfile) or ""):match("%d+"))
  assert(pid, "no pid for " .. name)
  self.started[#self.started + 1] = { name = name, pid = pid }
  return pid
end

--- Waits (5 s at most) until the spawned process `name` has written `text`
-- (a readiness line such as "ready"); fails the test otherwise.
function Lab:wait_output(name, text)
  local file = ("%s/%s.out"):format(self.dir, name)
  for _ = 1, 100 do
    if (helpers.read_file(file) or ""):find(text, 1, true) then return true end
    socket.sleep(0.05)
  end
  error(("%s did not say %q: %s"):format(name, text, self:log_tail(name)))
end

--- The last bytes a spawned process wrote, for a failure message.
function Lab:log_tail(name)
  local s = helpers.read_file(("%s/%s.out"):format(self.dir, name)) or ""
  return self.show(s:sub(-1500))
end

--- Starts the example gateway `name` in <dir>/<name> with the settings of
-- each table given, laid over one another in turn (false removes one);
-- TOWER_CA and CLUSTER_CA of the calling environment never leak in.
-- Returns its port; lab.gateways[name] is { dir, port, out }.
function Lab:start_gateway(name, ...)
  local e = {}
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do e[k] = v or nil end
  end
  local parts = {}
  for k, v in pairs(e) do parts[#parts + 1] = ("%s='%s'"):format(k, v) end
  table.sort(parts)
  local d = self.dir .. "/" .. name
  self.gateways[name] = { dir = d }
  local out, ok = helpers.run(("cd %s && env -u TOWER_CA -u CLUSTER_CA %s sh examples/openresty/run.sh start %s")
    :format(ROOT, table.concat(parts, " "), d))
  assert(ok, "gateway " .. name .. " did not start:\n" .. self.show(out))
  local port = tonumber(out:match("GATEWAY_PORT=(%d+)"))
  self.gateways[name] = { dir = d, port = port, out = out }
  return port
end

--- Stops the named gateways (all when none is named), side by side; their
-- logs stay for the log grep.
function Lab:stop_gateways(...)
  local names = { ... }
  if #names == 0 then
    for name in pairs(self.gateways) do names[#names + 1] = name end
  end
  local stops = {}
  for _, name in ipairs(names) do
    local g = self.gateways[name]
    if g and not g.stopped then
      g.stopped = true
      stops[#stops + 1] = ("sh examples/openresty/run.sh stop %s &"):format(g.dir)
    end
  end
  if #stops > 0 then helpers.run(("cd %s && %s wait"):format(ROOT, table.concat(stops, " "))) end
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  return not stat:match("^%d+ %b() Z")
end
common.alive = alive

--- Stops the gateways, then each spawned process with its group (TERM,
-- KILL after 2 s; kill -SIG -PGID: dash's kill takes no "--"), and removes
-- the directory.
function Lab:stop()
  self:stop_gateways()
  local started = self.started
  for i = #started, 1, -1 do
    local p = started[i].pid
    if alive(p) then helpers.run(("kill -TERM -%d; kill -TERM %d"):format(p, p)) end
  end
  for i = #started, 1, -1 do
    local p = started[i].pid
    for _ = 1, 40 do
      if not alive(p) then break end
      socket.sleep(0.05)
    end
    if alive(p) then helpers.run(("kill -KILL -%d; kill -KILL %d"):format(p, p)) end
  end
  self.started = {}
  helpers.run("rm -rf " .. self.dir)
end

--- curl to 127.0.0.1:port: status, body, headers (lower-case names), the
-- raw header block. Fails the test when no answer comes.
function Lab:http(port, method, path, headers, body)
  local dir = self.dir
  local h = ""
  for k, v in pairs(headers or {}) do h = h .. (" -H '%s: %s'"):format(k, v) end
  local data = ""
  if body then
    local f = dir .. "/body"
    helpers.write_file(f, body)
    data = " --data-binary @" .. f
  end
  local m = method == "HEAD" and "-I" or ("-X " .. method)
  os.remove(dir .. "/headers")
  os.remove(dir .. "/out")
  local out = helpers.run(("curl -s -m 20 -D %s/headers -o %s/out %s%s%s 'http://127.0.0.1:%d%s'")
    :format(dir, dir, m, h, data, port, path))
  local raw = helpers.read_file(dir .. "/headers") or ""
  local status = tonumber(raw:match("^HTTP/%S+ (%d+)"))
  local hs = {}
  for k, v in raw:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do hs[k:lower()] = v end
  assert(status, "no answer: " .. helpers.scrub(out, self.secrets))
  return status, helpers.read_file(dir .. "/out") or "", hs, raw
end

--- A websocket handshake by hand with 127.0.0.1:port (from the address
-- `source`, default 127.0.0.1): the socket (10 s timeout), the status and
-- the answer's headers (lower-case names).
function common.ws_handshake(port, path, headers, source)
  local sock = socket.tcp()
  assert(sock:bind(source or "127.0.0.1", 0))
  sock:settimeout(10)
  assert(sock:connect("127.0.0.1", port))
  local lines = { ("GET %s HTTP/1.1"):format(path), ("Host: 127.0.0.1:%d"):format(port),
    "Upgrade: websocket", "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  assert(sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local status_line = sock:receive("*l") or ""
  local hs = {}
  while true do
    local line = sock:receive("*l")
    if not line or line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then hs[k:lower()] = v end
  end
  return sock, tonumber(status_line:match("^HTTP/%S+ (%d+)")), hs
end

--- Runs the Lua chunk `script` in a fresh nginx (one worker, the
-- project's modules, ctvnc.core built for LuaJIT, `http_extra` lines in
-- its http block) as one request's content: what it printed | nil, output.
function common.nginx_lua(script, http_extra)
  local out, ok = helpers.run("d=$(mktemp -d /tmp/ctvnc-nginx.XXXXXXXX) && echo \"$d\"")
  assert(ok, out)
  local dir = out:gsub("%s+$", "")
  local p = helpers.free_port("127.0.0.1")
  helpers.write_file(dir .. "/script.lua", script)
  local conf = ([[
worker_processes 1; daemon on; pid %s/nginx.pid; error_log %s/error.log;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events {}
http {
  access_log off; client_body_temp_path %s/tmp; proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp; uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/jit/?.so;;";
  %s
  server { listen 127.0.0.1:%d; location / { content_by_lua_block { ngx.print(dofile("%s/script.lua")) } } }
}]]):format(dir, dir, dir, dir, dir, dir, dir, ROOT, ROOT, ROOT, http_extra or "", p, dir)
  assert(os.execute("mkdir -p " .. dir .. "/tmp && chmod 755 " .. dir))
  helpers.write_file(dir .. "/nginx.conf", conf)
  -- nginx returns once its master listens: curl's connection waits in the
  -- backlog for a worker, no sleep needed
  out, ok = helpers.run(("nginx -p %s/ -c %s/nginx.conf && curl -s -f -m 20 http://127.0.0.1:%d/; "
    .. "r=$?; kill -QUIT $(cat %s/nginx.pid); [ $r -eq 0 ]"):format(dir, dir, p, dir))
  local log = helpers.read_file(dir .. "/error.log") or ""
  helpers.run("rm -rf " .. dir)
  if not ok then return nil, out .. log end
  return out
end

--- Waits (timeout s, 5 by default) until pred() is true: whether it became so.
function common.wait_for(pred, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while socket.gettime() < deadline do
    if pred() then return true end
    socket.sleep(0.05)
  end
  return pred()
end

--- The body of an answer read by hand after ws_handshake (Content-Length
-- or chunked) | nil.
function common.read_body(sock, hs)
  local len = tonumber(hs["content-length"] or "")
  if len then return sock:receive(len) end
  if (hs["transfer-encoding"] or ""):lower() ~= "chunked" then return nil end
  local parts = {}
  while true do
    local size = tonumber((sock:receive("*l") or "0"):match("^%x+") or "0", 16)
    if size == 0 then break end
    parts[#parts + 1] = sock:receive(size)
    sock:receive("*l")
  end
  return table.concat(parts)
end

--- The RFB stream of a websocket the gateway (or a target) serves:
-- conn:send(bytes) as one masked binary frame; conn:read(n[, timeout])
-- the next n bytes | nil, close code, reason (conn.closed = {code, reason}
-- after a close frame) | nil, "closed" | nil, "timeout" (10 s by default);
-- conn.got holds every byte read.
function common.ws_stream(sock)
  local conn = { sock = sock, buf = "", data = "", got = {} }
  function conn.send(_, bytes)
    return sock:send(core.ws_frame("binary", bytes, true))
  end
  function conn.read(_, n, timeout)
    local deadline = socket.gettime() + (timeout or 10)
    sock:settimeout(0.02)
    while #conn.data < n do
      local frame, size = core.ws_parse(conn.buf, "server")
      if frame then
        conn.buf = conn.buf:sub(size + 1)
        if frame.opcode == "close" then
          local p = frame.payload
          conn.closed = { code = #p >= 2 and p:byte(1) * 256 + p:byte(2) or nil, reason = p:sub(3) }
          return nil, conn.closed.code, conn.closed.reason
        end
        conn.data = conn.data .. frame.payload
      else
        local chunk, err, partial = sock:receive(4096)
        chunk = chunk or partial or ""
        if chunk == "" and err == "closed" then return nil, err end
        if chunk == "" and socket.gettime() > deadline then return nil, "timeout" end
        conn.buf = conn.buf .. chunk
      end
    end
    local out = conn.data:sub(1, n)
    conn.data = conn.data:sub(n + 1)
    conn.got[#conn.got + 1] = out
    return out
  end
  return conn
end

--- A websocket client of the gateway's console vm: status, headers, conn
-- (common.ws_stream's, with conn.body when the answer is not a 101,
-- conn:wait_close(t), conn:close(), conn:handshake() against
-- spec/gateway/rfb.js).
function common.ws(port, vm, headers)
  local h = { ["Sec-WebSocket-Protocol"] = "binary" }
  for k, v in pairs(headers or {}) do h[k] = v end
  local sock, status, hs = common.ws_handshake(port, ("/console/%s/ws"):format(vm), h)
  local conn = common.ws_stream(sock)
  if status ~= 101 then
    conn.body = common.read_body(sock, hs)
    sock:close()
    return status, hs, conn
  end
  --- Waits for the gateway's close frame: code, reason | nil, err.
  function conn.wait_close(_, timeout)
    local deadline = socket.gettime() + timeout
    while socket.gettime() < deadline do
      local got, code, reason = conn:read(1, deadline - socket.gettime())
      if not got then return code, reason end
    end
    return nil, "no close"
  end
  function conn.close() sock:close() end
  --- The RFB client handshake (3.8, security None) through the relay.
  function conn.handshake()
    luassert.are.equal("RFB 003.008\n", conn:read(12))
    conn:send("RFB 003.008\n")
    luassert.are.equal("\1\1", conn:read(2))
    conn:send("\1")
    luassert.are.equal("\0\0\0\0", conn:read(4))
    conn:send("\1")
    local init = luassert(conn:read(24))
    local nlen = init:byte(21) * 16777216 + init:byte(22) * 65536 + init:byte(23) * 256
      + init:byte(24)
    luassert.are.equal("rfb-spec", conn:read(nlen))
  end
  return status, hs, conn
end

--- pred() until it is truthy (its value) or timeout seconds (default 5) pass.
function common.wait_for(pred, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while socket.gettime() < deadline do
    local v = pred()
    if v then return v end
    socket.sleep(0.05)
  end
  return pred()
end

--- The audit lines of gateway name, decoded.
function Lab:audit(name)
  local out = {}
  for line in (helpers.read_file(self.gateways[name].dir .. "/audit.log") or ""):gmatch("[^\n]+") do
    out[#out + 1] = assert(cjson.decode(line), "not JSON: " .. line)
  end
  return out
end

--- A VM's cluster: spec/gateway/rfb.js (logging to log; mode "full" or
-- nil) behind websockify on 127.0.0.2: the websockify port.
function Lab:rfb_cluster(name, log, mode)
  local rfb_port = helpers.free_port("127.0.0.1")
  helpers.write_file(log, "")
  self:spawn(name, ("node %s/spec/gateway/rfb.js %d %s %s"):format(ROOT, rfb_port, log, mode or ""))
  helpers.wait_port("127.0.0.1", rfb_port)
  local ws_port = helpers.free_port("127.0.0.2")
  self:spawn(name .. "-ws", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(ws_port, rfb_port))
  helpers.wait_port("127.0.0.2", ws_port)
  return ws_port
end

local LOGS = { "access.log", "error.log", "audit.log" }

--- Asserts that no log (access, error, audit) of any gateway the lab
-- started holds a registered secret, a match of one of `patterns` (Lua
-- patterns) or something shaped like a raw token (32 hex digits, but for
-- the audit chain's prev and hash at the end of its lines). Returns
-- the bytes read in all, and by "<gateway>/<file>".
function Lab:assert_logs_clean(patterns)
  local checked, sizes = 0, {}
  for name, g in pairs(self.gateways) do
    for _, file in ipairs(LOGS) do
      local log = helpers.read_file(g.dir .. "/" .. file) or ""
      local where = name .. "/" .. file
      checked = checked + #log
      sizes[where] = #log
      for i, s in ipairs(self.secrets) do
        luassert.is_nil(log:find(s, 1, true), ("%s holds secret #%d"):format(where, i))
      end
      for _, pattern in ipairs(patterns or {}) do
        luassert.is_nil(log:find(pattern), ("%s holds %s"):format(where, pattern))
      end
      -- the audit chain's own fields are 64 hex digits, and only there
      local unchained = log:gsub('"prev":"' .. ("%x"):rep(64) .. '","hash":"' .. ("%x"):rep(64)
        .. '"}\n', "}\n")
      luassert.is_nil(unchained:find(("%x"):rep(32)), where .. " holds a raw token")
    end
  end
  return checked, sizes
end

return common
