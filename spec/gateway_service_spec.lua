--- `ctvnc gateway` from an installed rock (issue 20): the rock is built
-- into a tree of its own (as spec/rock_spec.lua does: for this Lua, and for
-- Lua 5.1, whose core nginx's LuaJIT runs), and its `ctvnc` checks a
-- settings file line by line, starts the gateway over HTTPS (a CA and a
-- certificate made here with openssl, verified by curl through that CA) and
-- over plain HTTP, reports its status, reloads it with a console open (the
-- console stays) and stops it; /health and ?ready=1 with the tower up and
-- down; plain HTTP redirected to HTTPS, HSTS on HTTPS.
local helpers = require "helpers"
local common = require "gateway.common"
local service = require "ctvnc.gateway.service"
local core = require "ctvnc.core"
local cjson = require "cjson.safe"
local socket = require "socket"

local ROOT = helpers.ROOT
local ABS = helpers.run("cd " .. ROOT .. " && pwd"):match("^(.-)\n")
local read_file, write_file = helpers.read_file, helpers.write_file

describe("ctvnc gateway from an installed rock #novalgrind", function()
  local ABI = _VERSION:match("%d+%.%d+")
  local sim, lab, dir, tree, KEY
  -- no path of this checkout, and no setting from the caller's environment
  local unset = { "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_2 -u LUA_CPATH_5_2",
    "-u LUA_PATH_5_3 -u LUA_CPATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT" }
  for _, s in ipairs(service.SETTINGS) do unset[#unset + 1] = "-u " .. s.name end
  local CLEAN = table.concat(unset, " ")

  --- The tree's ctvnc with `args`, the environment `env` (NAME=value ...):
  -- stdout, exit status, stderr.
  local function ctvnc(args, env)
    local err_file = dir .. "/ctvnc.err"
    local f = assert(helpers.popen(("cd / && %s %s %s/bin/ctvnc %s 2> %s; echo \"::rc=$?\"")
      :format(CLEAN, env or "", tree, args, err_file)))
    local all = f:read("*a")
    f:close()
    local out, rc = all:match("^(.*)::rc=(%d+)%s*$")
    return out, tonumber(rc), read_file(err_file) or ""
  end

  local function curl(args)
    local out = helpers.run("curl -s -m 10 " .. args)
    return out
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    tree = dir .. "/tree"
    KEY = lab:secret("k-" .. helpers.random_hex(8))
    lab:secret(helpers.STATIC_TOKEN)
    local out, ok = helpers.run(("mkdir -p %s/src && cd %s && cp -r csrc lua bin *.rockspec %s/src/")
      :format(dir, ROOT, dir))
    assert(ok, out)
    -- 5.1 first: bin/ctvnc is the last one's, this Lua's
    for _, v in ipairs(ABI == "5.1" and { "5.1" } or { "5.1", ABI }) do
      out, ok = helpers.run(("cd %s/src && %s luarocks --lua-version=%s --tree %s make "
        .. "--deps-mode=none ctvnc-scm-1.rockspec"):format(dir, CLEAN, v, tree))
      assert(ok, out)
    end
    write_file(dir .. "/keys", KEY .. " *\n")
    -- a CA and the gateway's certificate for 127.0.0.1, signed by it
    write_file(dir .. "/san.ext", "subjectAltName=IP:127.0.0.1\n")
    out, ok = helpers.run(("cd %s && openssl req -x509 -newkey ec -pkeyopt "
      .. "ec_paramgen_curve:prime256v1 -nodes -subj /CN=ctvnc-spec-ca -days 2 -keyout ca.key "
      .. "-out ca.pem && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      .. "-subj /CN=127.0.0.1 -keyout gw.key -out gw.csr && openssl x509 -req -in gw.csr -CA "
      .. "ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out gw.pem"):format(dir))
    assert(ok, out)
  end)

  teardown(function()
    if lab then
      for _, name in ipairs({ "tls", "plain", "down" }) do
        ctvnc("gateway stop --prefix " .. dir .. "/" .. name)
      end
      lab:stop()
    end
  end)

  --- A settings file: the tower (the simulator, verified), the key file,
  -- and `extra` lines.
  local function settings(name, extra)
    local file = dir .. "/" .. name .. ".conf"
    write_file(file, table.concat({
      "# the simulator as CloudTower",
      "CTVNC_ENDPOINT = https://127.0.0.1:" .. sim.https_port,
      "TOWER_CA = " .. sim.cert,
      "TOWER_NAME = localhost",
      "KEYS = " .. dir .. "/keys",
      "PREFIX_DIR = " .. dir .. "/" .. name,
      extra or "",
    }, "\n") .. "\n")
    return file
  end

  it("check names each problem with its line, and the environment's by name", function()
    local file = dir .. "/bad.conf"
    write_file(file, table.concat({
      "# a settings file with mistakes",       -- 1
      "MODE = fast",                            -- 2
      "",                                       -- 3
      "TICKET_TTL = 61",                        -- 4
      "MAX_PER_MV = 2",                         -- 5
      "just words",                             -- 6
      "CTVNC_ENDPOINT = https://tower.test",    -- 7
      "MODE = proxy",                           -- 8
      "LISTEN = 127.0.0.1:8443 ssl",            -- 9
      "KEYS = /nonexistent/keys",               -- 10
      "WORKERS = 2",                            -- 11
    }, "\n") .. "\n")
    local out, rc, err = ctvnc("gateway check " .. file, "MAX_SESSION=-1 WORKERS=many")
    assert.are.equal(1, rc, out .. err)
    assert.are.equal("", out)
    local want = {
      file .. ":5: MAX_PER_MV: no such setting (did you mean MAX_PER_VM?)",
      file .. ":6: not NAME = value",
      file .. ":8: MODE: set twice (first on line 2)",
      file .. ":9: LISTEN: an ssl address needs TLS_CERT and TLS_KEY",
    }
    local lines = {}
    for l in err:gmatch("[^\n]+") do lines[l] = true end
    for _, l in ipairs(want) do assert.truthy(lines[l], l .. " not in:\n" .. err) end
    for _, l in ipairs({
      file .. ":2: MODE: must be one of auto, direct, proxy",
      file .. ":4: TICKET_TTL: must be at most 60",
      file .. ":10: KEYS: /nonexistent/keys cannot be read",
      "MAX_SESSION (environment): must be at least 0",
      "WORKERS (environment): must be a number",
    }) do
      assert.truthy(lines[l], l .. " not in:\n" .. err)
    end
    assert.is_nil(err:find("traceback", 1, true))
    -- the environment overrides a line: a good value hides the file's bad one
    rc, err = select(2, ctvnc("gateway check " .. file, "MODE=direct TICKET_TTL=30"))
    assert.are.equal(1, rc)
    assert.is_nil(err:find(":4:", 1, true), err)
    assert.is_nil(err:find("MODE: must be", 1, true), err)
    -- a good file
    rc, err = select(2, ctvnc("gateway check " .. settings("good")))
    assert.are.equal(1, rc)
    assert.truthy(err:find(": CTVNC_TOKEN: is required", 1, true), err)
    out, rc, err = ctvnc("gateway check " .. settings("good"), "CTVNC_TOKEN=" .. helpers.STATIC_TOKEN)
    assert.are.equal(0, rc, err)
    assert.truthy(out:find(": ok", 1, true), out)
    -- and the default file the rock installs: every setting there, commented out
    local installed = ("%s/share/lua/%s/ctvnc/gateway/gateway.conf"):format(tree, ABI)
    assert.are.equal(read_file(ROOT .. "/lua/ctvnc/gateway/gateway.conf"), read_file(installed))
    rc, err = select(2, ctvnc("gateway check " .. installed))
    assert.are.equal(1, rc)
    assert.are.equal(installed .. ": CTVNC_TOKEN: is required (CloudTower's token or API key; "
      .. "the environment will do)\n" .. installed .. ": CTVNC_ENDPOINT: is required\n", err)
  end)

  it("ships a systemd unit and a logrotate file that run these commands", function()
    local unit = read_file(ROOT .. "/examples/systemd/ctvnc-gateway.service")
    local verbs = {}
    for line in unit:gmatch("[^\n]+") do
      local key, verb, file = line:match("^(Exec%w+)=%S+/ctvnc gateway (%a+) (%S+)$")
      if key then
        assert.are.equal("/etc/ctvnc/gateway.conf", file)
        verbs[key] = verb
      end
    end
    assert.are.same({ ExecStartPre = "check", ExecStart = "start", ExecReload = "reload",
      ExecStop = "stop" }, verbs)
    assert.truthy(unit:find("\nType=forking\n", 1, true))
    local pid_dir = unit:match("\nPIDFile=(%S+)/nginx%.pid\n")
    assert.are.equal("/var/lib/ctvnc", pid_dir)
    local rotate = read_file(ROOT .. "/examples/logrotate/ctvnc-gateway")
    for _, log in ipairs({ "access.log", "error.log", "audit.log" }) do
      assert.truthy(rotate:find(pid_dir .. "/" .. log, 1, true), log)
    end
    assert.truthy(rotate:find("kill -USR1 \"$(cat " .. pid_dir .. "/nginx.pid)\"", 1, true))
    -- every verb the unit runs is one ctvnc takes
    for _, verb in pairs(verbs) do
      local _, rc, err = ctvnc("gateway " .. verb .. " /nonexistent/gateway.conf")
      assert.are.equal(1, rc, verb)
      assert.truthy(err:find("/nonexistent/gateway.conf", 1, true), err)
    end
  end)

  describe("over HTTPS", function()
    local https, http_port, prefix

    setup(function()
      https, http_port = helpers.free_port("127.0.0.1"), helpers.free_port("127.0.0.1")
      prefix = dir .. "/tls"
      local file = settings("tls", table.concat({
        ("LISTEN = 127.0.0.1:%d ssl, 127.0.0.1:%d"):format(https, http_port),
        "TLS_CERT = " .. dir .. "/gw.pem", "TLS_KEY = " .. dir .. "/gw.key", "MODE = proxy",
        -- /url gives the target's URL: the request asks the tower
        "RAW_TARGET_URLS = on" }, "\n"))
      local out, rc, err = ctvnc("gateway start " .. file, "CTVNC_TOKEN=" .. helpers.STATIC_TOKEN)
      assert.are.equal(0, rc, lab.show(out .. err))
    end)

    it("renders nginx.conf to load ctvnc from the rock's tree, never from a checkout", function()
      local conf = read_file(prefix .. "/nginx.conf")
      local path = conf:match('lua_package_path "([^"]+)"')
      local cpath = conf:match('lua_package_cpath "([^"]+)"')
      assert.are.equal(("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;")
        :format(tree, ABI, tree, ABI), path)
      assert.are.equal(tree .. "/lib/lua/5.1/?.so;;", cpath)
      -- nothing of the checkout's code (its Lua, templates, modules or examples);
      -- the simulator's certificate may live under it (make test's out/test)
      for _, sub in ipairs({ "/lua/", "/build/", "/examples/", "/bin/" }) do
        assert.is_nil(conf:find(ABS .. sub, 1, true), sub)
      end
      assert.truthy(conf:find("ssl_protocols TLSv1.2 TLSv1.3;", 1, true))
      -- no secret in the rendered file
      assert.is_nil(conf:find(helpers.STATIC_TOKEN, 1, true))
    end)

    it("answers over TLS verified through the CA, with HSTS, and asks the tower", function()
      local base = ("--cacert %s/ca.pem https://127.0.0.1:%d"):format(dir, https)
      local out = curl("-i " .. base .. "/health")
      assert.truthy(out:find("^HTTP/1.1 200"), out)
      assert.truthy(out:find("\nStrict%-Transport%-Security: max%-age=31536000\r"), out)
      assert.truthy(out:find('\r\n\r\n{"status":"ok"}\n', 1, true), out)
      -- TLS 1.2 and 1.3 both
      for _, v in ipairs({ "--tlsv1.2 --tls-max 1.2", "--tlsv1.3" }) do
        out = curl(v .. " -o /dev/null -w '%{http_code}' " .. base .. "/health")
        assert.are.equal("200", out:match("^(%d+)"), v)
      end
      out = curl(("-H 'X-API-Key: %s' %s/console/vm-1/url"):format(KEY, base))
      local r = assert(cjson.decode(out:match("^[^\n]*")), out)
      assert.are.equal("proxy", r.mode)
      -- HSTS on the routes with headers of their own too
      out = curl("-I " .. base .. "/novnc/vnc.html")
      assert.truthy(out:find("Strict-Transport-Security", 1, true), out)
      -- without the CA, curl refuses the certificate: TLS is really verified
      local _, ok = helpers.run(("curl -s -m 10 -o /dev/null https://127.0.0.1:%d/health")
        :format(https))
      assert.is_false(ok)
      out = curl(("-i %s/health?ready=1"):format(base))
      assert.truthy(out:find("^HTTP/1.1 200"), out)
      assert.truthy(out:find('{"status":"ok","ready":true}', 1, true)
        or out:find('{"ready":true,"status":"ok"}', 1, true), out)
    end)

    it("redirects plain HTTP to HTTPS, without HSTS there", function()
      local out = curl(("-i http://127.0.0.1:%d/console/vm-1?x=1"):format(http_port))
      assert.truthy(out:find("^HTTP/1.1 301"), out)
      assert.truthy(out:find(("\nLocation: https://127.0.0.1:%d/console/vm-1?x=1\r")
        :format(https), 1, true), out)
      assert.is_nil(out:find("Strict-Transport-Security", 1, true))
    end)

    it("tells its status: pid and both listeners", function()
      local out, rc = ctvnc("gateway status --prefix " .. prefix)
      assert.are.equal(0, rc, out)
      local pid = tonumber(read_file(prefix .. "/nginx.pid"):match("%d+"))
      assert.truthy(out:find("^running\npid " .. pid .. "\n"), out)
      assert.truthy(out:find(("\nlisten 127.0.0.1:%d ssl\n"):format(https), 1, true), out)
      assert.truthy(out:find(("\nlisten 127.0.0.1:%d\n"):format(http_port), 1, true), out)
    end)
  end)

  describe("a console across a reload", function()
    local port, prefix, rfb_port, ws_port

    setup(function()
      rfb_port = helpers.free_port("127.0.0.1")
      write_file(dir .. "/rfb.jsonl", "")
      lab:spawn("rfb", ("node %s/spec/gateway/rfb.js %d %s/rfb.jsonl"):format(ROOT, rfb_port, dir))
      helpers.wait_port("127.0.0.1", rfb_port)
      ws_port = helpers.free_port("127.0.0.2")
      lab:spawn("websockify", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(ws_port, rfb_port))
      helpers.wait_port("127.0.0.2", ws_port)
      port = helpers.free_port("127.0.0.1")
      prefix = dir .. "/plain"
      local file = settings("plain", ("GATEWAY_PORT = %d\nMODE = direct\nSCHEME = ws\n"
        .. "CLUSTER_PORT = %d"):format(port, ws_port))
      local out, rc, err = ctvnc("gateway start " .. file, "CTVNC_TOKEN=" .. helpers.STATIC_TOKEN)
      assert.are.equal(0, rc, lab.show(out .. err))
      assert.truthy(out:find("GATEWAY_PORT=" .. port .. "\n", 1, true), out)
      assert.are.equal("GATEWAY_PORT=" .. port .. "\n", read_file(prefix .. "/env"))
    end)

    --- The next websocket frame's payload from sock (10 s at most).
    local function next_frame(sock, state)
      sock:settimeout(0.05)
      local deadline = socket.gettime() + 10
      while socket.gettime() < deadline do
        local frame, size = core.ws_parse(state.buf, "server")
        if frame then
          state.buf = state.buf:sub(size + 1)
          return frame
        end
        local chunk, err, partial = sock:receive(4096)
        chunk = chunk or partial or ""
        if chunk == "" and err == "closed" then return nil, "closed" end
        state.buf = state.buf .. chunk
      end
      return nil, "timeout"
    end

    it("reopens access.log and error.log on USR1; audit.log survives copytruncate", function()
      local pid = tonumber(read_file(prefix .. "/nginx.pid"):match("%d+"))
      -- as logrotate does: move each file, make a new one like it, then USR1
      for _, log in ipairs({ "access.log", "error.log" }) do
        local f = prefix .. "/" .. log
        assert(helpers.run(("mv %s %s.1 && : > %s && chown --reference=%s.1 %s && chmod "
          .. "--reference=%s.1 %s"):format(f, f, f, f, f, f, f)))
      end
      assert(helpers.run("kill -USR1 " .. pid))
      local deadline = socket.gettime() + 5
      while not read_file(prefix .. "/error.log") and socket.gettime() < deadline do
        socket.sleep(0.05)
      end
      -- the workers reopen after the master: ask until a line lands in the new file
      deadline = socket.gettime() + 5
      repeat
        assert.are.equal(200, (lab:http(port, "GET", "/health?from=rotated")))
        socket.sleep(0.05)
      until (read_file(prefix .. "/access.log") or ""):find("/health", 1, true)
        or socket.gettime() > deadline
      assert.truthy((read_file(prefix .. "/access.log") or ""):find("GET /health HTTP", 1, true))
      -- the audit trail: copied, truncated in place, the next line at its start
      helpers.run(("cp %s/audit.log %s/audit.log.1 && : > %s/audit.log"):format(prefix, prefix,
        prefix))
      local sock, status = common.ws_handshake(port, "/console/vm-1/ws",
        { ["X-API-Key"] = KEY, ["Sec-WebSocket-Protocol"] = "binary" })
      assert.are.equal(101, status)
      sock:close()
      deadline = socket.gettime() + 5
      while not (read_file(prefix .. "/audit.log") or ""):find('"close"', 1, true)
        and socket.gettime() < deadline do
        socket.sleep(0.05)
      end
      local audit = read_file(prefix .. "/audit.log")
      assert.truthy(audit:find('^{[^\n]*"open"'), audit)
      assert.truthy(audit:find('"close"', 1, true), audit)
    end)

    it("keeps an open console through reload, serves new requests, and stop ends it", function()
      local sock, status = common.ws_handshake(port, "/console/vm-1/ws",
        { ["X-API-Key"] = KEY, ["Sec-WebSocket-Protocol"] = "binary" })
      assert.are.equal(101, status)
      local st = { buf = "" }
      assert.are.equal("RFB 003.008\n", (assert(next_frame(sock, st))).payload)
      local pid = tonumber(read_file(prefix .. "/nginx.pid"):match("%d+"))
      local conf = read_file(prefix .. "/nginx.conf")
      -- reload with a changed settings file: checked, rendered, tested, then HUP
      local file = settings("plain", ("GATEWAY_PORT = %d\nMODE = direct\nSCHEME = ws\n"
        .. "CLUSTER_PORT = %d\nBURST = 150"):format(port, ws_port))
      local out, rc, err = ctvnc("gateway reload " .. file, "CTVNC_TOKEN=" .. helpers.STATIC_TOKEN)
      assert.are.equal(0, rc, out .. err)
      assert.truthy(read_file(prefix .. "/nginx.conf"):find("burst=150", 1, true))
      assert.are_not.equal(conf, read_file(prefix .. "/nginx.conf"))
      -- new workers answer
      assert.are.equal(200, (lab:http(port, "GET", "/health")))
      -- the console still relays: the server answers the client's version
      assert(sock:send(core.ws_frame("binary", "RFB 003.008\n", true)))
      assert.are.equal("\1\1", (assert(next_frame(sock, st))).payload:sub(1, 2))
      out, rc = ctvnc("gateway status --prefix " .. prefix)
      assert.are.equal(0, rc)
      assert.truthy(out:find("pid " .. pid .. "\n", 1, true), out)
      -- a bad settings file is refused before any signal
      write_file(dir .. "/worse.conf", "MODE = fast\n")
      rc, err = select(2, ctvnc("gateway reload --prefix " .. prefix .. " " .. dir
        .. "/worse.conf"))
      assert.are.equal(1, rc)
      assert.truthy(err:find(dir .. "/worse.conf:1: MODE: must be one of", 1, true), err)
      -- stop (in the background, as the browser answers): the console is told
      -- the gateway restarts, nginx is gone within a few seconds
      local t0 = socket.gettime()
      local workers = {}
      for w in helpers.run("pgrep -P " .. pid):gmatch("%d+") do workers[#workers + 1] = w end
      assert.is_true(#workers >= 2)     -- the reload's old worker beside the new one
      helpers.run(("cd / && %s %s/bin/ctvnc gateway stop --prefix %s > %s/stop.out 2>&1 &")
        :format(CLEAN, tree, prefix, dir))
      local frame = next_frame(sock, st)
      while frame and frame.opcode ~= "close" do frame = next_frame(sock, st) end
      assert.truthy(frame, "no close frame")
      assert.truthy(frame.payload:find("restarting", 1, true), frame.payload)
      sock:send(core.ws_frame("close", frame.payload:sub(1, 2), true))
      sock:close()
      while common.alive(pid) and socket.gettime() - t0 < 10 do socket.sleep(0.05) end
      assert.is_false(common.alive(pid))
      -- it quit by itself (a master stopped by KILL leaves its pid file)
      assert.is_nil(read_file(prefix .. "/nginx.pid"))
      while not (read_file(dir .. "/stop.out") or ""):find("\n") and socket.gettime() - t0 < 10 do
        socket.sleep(0.05)
      end
      assert.are.equal(("ctvnc: stopped the gateway in %s (pid %d)\n"):format(prefix, pid),
        read_file(dir .. "/stop.out"))
      for _, w in ipairs(workers) do assert.is_false(common.alive(w), "worker " .. w) end
      out, rc = ctvnc("gateway status --prefix " .. prefix)
      assert.are.equal(3, rc)
      assert.are.equal("ctvnc: no gateway runs in " .. prefix .. "\n", out)
    end)
  end)

  it("answers /health while the tower is down, and ?ready=1 503 naming the tower", function()
    local port = helpers.free_port("127.0.0.1")
    local closed = helpers.free_port("127.0.0.1")      -- nothing listens there
    local file = dir .. "/down.conf"
    write_file(file, table.concat({ "CTVNC_ENDPOINT = https://127.0.0.1:" .. closed,
      "TOWER_CA = " .. sim.cert, "TOWER_NAME = localhost", "KEYS = " .. dir .. "/keys",
      "GATEWAY_PORT = " .. port, "TOWER_TIMEOUT = 2s" }, "\n") .. "\n")
    local out, rc, err = ctvnc("gateway start --prefix " .. dir .. "/down " .. file,
      "CTVNC_TOKEN=" .. helpers.STATIC_TOKEN)
    assert.are.equal(0, rc, out .. err)
    local status, body = lab:http(port, "GET", "/health")
    assert.are.same({ 200, { status = "ok" } }, { status, cjson.decode(body) })
    status, body = lab:http(port, "GET", "/health?ready=1")
    assert.are.equal(503, status)
    assert.are.same({ status = "down", down = { tower = "connect" } }, cjson.decode(body))
    assert.is_nil(body:find(helpers.STATIC_TOKEN, 1, true))
    out, rc = ctvnc("gateway stop --prefix " .. dir .. "/down")
    assert.are.equal(0, rc, out)
  end)
end)
