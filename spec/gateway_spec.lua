local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- The console gateway (ctvnc.gateway in lua/ctvnc/gateway/nginx.tpl) as
-- an attacker and a careless operator would try it, against loopback
-- servers: the simulator as CloudTower, spec/gateway/upstream.js as the
-- cluster or an impostor (it records every request that reaches it),
-- spec/gateway/dns.lua as the only DNS server. The last case greps every
-- gateway's logs for every secret used here.
local ROOT = helpers.ROOT
local read_file, write_file = helpers.read_file, helpers.write_file

describe("the console gateway, secure by default #novalgrind", function()
  local sim, dir
  local lab                 -- spec/gateway/common.lua: gateways, processes, secrets
  local KEY_ONE, KEY_ALL = "key-one-" .. helpers.random_hex(12), "key-all-" .. helpers.random_hex(12)
  local servers = {}        -- name -> { port, log }
  local dns_port, dns_log

  local function secret(s) return lab:secret(s) end
  local function spawn(name, cmd) return lab:spawn(name, cmd) end

  --- An upstream.js server on host; TLS with cert/key when given.
  local function upstream(name, host, cert, key, min_tls)
    local port = helpers.free_port(host)
    local log = ("%s/%s.jsonl"):format(dir, name)
    write_file(log, "")
    write_file(("%s/%s.json"):format(dir, name), cjson.encode({
      host = host, port = port, log = log, cert = cert, key = key, min_tls = min_tls }))
    spawn(name, ("node %s/spec/gateway/upstream.js %s/%s.json"):format(ROOT, dir, name))
    helpers.wait_port(host, port)
    servers[name] = { port = port, log = log }
    return servers[name]
  end

  --- What reached an upstream: an array of {method, path, headers}.
  local function reached(name)
    local out = {}
    for line in (read_file(servers[name].log) or ""):gmatch("[^\n]+") do
      out[#out + 1] = cjson.decode(line)
    end
    return out
  end

  --- Starts a gateway; env entries override the base (false removes one).
  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim),
      { KEYS = dir .. "/keys", RESOLVER = "127.0.0.1:" .. dns_port }, env)
  end

  --- curl: status, body, headers (lower-case names).
  local function http(port, method, path, headers, body)
    local status, got, hs = lab:http(port, method, path, headers, body)
    return status, got, hs
  end

  --- A websocket handshake by hand: status, headers, first frame's payload.
  local function ws(port, path, headers)
    local sock, status, hs = common.ws_handshake(port, path, headers)
    local payload
    if status == 101 then
      local head = sock:receive(2)
      if head then
        local len = head:byte(2) % 128
        if len == 126 then
          local b = sock:receive(2)
          len = b:byte(1) * 256 + b:byte(2)
        end
        payload = sock:receive(len)
      end
    end
    sock:close()
    return status, hs, payload
  end

  local function ticket_for(port, vm, key)
    local status, body = http(port, "POST", "/console/" .. vm .. "/ticket",
      { ["X-API-Key"] = key or KEY_ONE })
    assert.are.equal(200, status, body)
    local doc = cjson.decode(body)
    return secret(doc.ticket), doc
  end

  local function openssl(cmd)
    local out, ok = helpers.run("cd " .. dir .. " && openssl " .. cmd)
    assert(ok, out)
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    secret(KEY_ONE)
    secret(KEY_ALL)
    secret("sim-token")
    write_file(dir .. "/keys", ("# key vm ids\n%s vm-1,vm-3,fault-null\n%s *\n"):format(KEY_ONE, KEY_ALL))
    -- certificates: a cluster CA and a cluster signed by it for 127.0.0.2,
    -- one signed by it for another name, and a self-signed impostor that
    -- names every address but is trusted by nobody
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    openssl("req -x509 " .. ec .. " -keyout ca.key -out ca.pem -days 2 -subj /CN=ctvnc-spec-cluster-ca 2>&1")
    write_file(dir .. "/cluster.ext", "subjectAltName=DNS:127.0.0.2,IP:127.0.0.2\n")
    write_file(dir .. "/other.ext", "subjectAltName=DNS:other.test\n")
    openssl("req -new " .. ec .. " -keyout cluster.key -out cluster.csr -subj /CN=127.0.0.2 2>&1")
    openssl("x509 -req -in cluster.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      .. "-extfile cluster.ext -out cluster.pem 2>&1")
    openssl("req -new " .. ec .. " -keyout other.key -out other.csr -subj /CN=other.test 2>&1")
    openssl("x509 -req -in other.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      .. "-extfile other.ext -out other.pem 2>&1")
    openssl("req -x509 " .. ec .. " -keyout impostor.key -out impostor.pem -days 2 -subj /CN=localhost "
      .. "-addext subjectAltName=DNS:localhost,DNS:127.0.0.2,IP:127.0.0.1,IP:127.0.0.2 2>&1")
    -- the DNS server: console.test is the simulator's address
    dns_port = helpers.free_port("127.0.0.1")
    dns_log = dir .. "/dns.log"
    write_file(dns_log, "")
    spawn("dns", ("lua5.4 %s/spec/gateway/dns.lua %d %s console.test=127.0.0.1")
      :format(ROOT, dns_port, dns_log))
    -- clusters on 127.0.0.2 (vm-1's cluster): plain, verified TLS, impostors
    upstream("cluster", "127.0.0.2")
    upstream("cluster-tls", "127.0.0.2", dir .. "/cluster.pem", dir .. "/cluster.key")
    upstream("cluster-tls13", "127.0.0.2", dir .. "/cluster.pem", dir .. "/cluster.key", "TLSv1.3")
    upstream("cluster-other", "127.0.0.2", dir .. "/other.pem", dir .. "/other.key")
    upstream("cluster-impostor", "127.0.0.2", dir .. "/impostor.pem", dir .. "/impostor.key")
    upstream("tower-impostor", "127.0.0.1", dir .. "/impostor.pem", dir .. "/impostor.key")
    -- the desktop behind the simulator's /websockify/ (proxy mode)
    upstream("desktop", "127.0.0.1")
    helpers.control("desktop", { ws = "http://127.0.0.1:" .. servers.desktop.port })
    lab:wait_output("dns", "ready")
  end)

  teardown(function()
    pcall(helpers.control, "desktop", {})
    if lab then lab:stop() end
  end)

  describe("TLS on every hop", function()
    it("refuses an impostor CloudTower: tls, and no request reaches it", function()
      local p = start_gateway("tower-impostor", { TOWER = "127.0.0.1:" .. servers["tower-impostor"].port })
      local status, body = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, status)
      assert.are.equal("tls", cjson.decode(body).kind)
      assert.are.same({}, reached("tower-impostor"))
    end)

    it("verifies CloudTower against the system store when TOWER_CA is unset", function()
      local p = start_gateway("system-store", { TOWER_CA = false })
      local status, body = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, status)
      assert.are.equal("tls", cjson.decode(body).kind)
    end)

    it("checks CloudTower's name (TOWER_NAME)", function()
      local p = start_gateway("tower-name", { TOWER_NAME = "other.test" })
      local status, body = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, status)
      assert.are.equal("tls", cjson.decode(body).kind)
    end)

    it("turns verification off only with TOWER_TLS=insecure, and warns at start", function()
      local p = start_gateway("tower-insecure", { TOWER_CA = false, TOWER_TLS = "insecure" })
      local status = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(200, status)
      local log = read_file(lab.gateways["tower-insecure"].dir .. "/error.log")
      assert.truthy(log:find("[warn]", 1, true) and log:find("NOT verified", 1, true), log)
      assert.truthy(lab.gateways["tower-insecure"].out:find("WARNING", 1, true))
    end)

    it("refuses an impostor on CloudTower's console proxy: tls, no request reaches it", function()
      local p = start_gateway("proxy-impostor", { MODE = "proxy", SCHEME = "wss",
        CTVNC_ENDPOINT = "https://127.0.0.1:" .. servers["tower-impostor"].port })
      local status, hs = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, status)
      assert.are.equal("tls", hs["x-ctvnc-error"])
      assert.are.same({}, reached("tower-impostor"))
    end)

    it("carries the websocket through CloudTower's proxy, verified", function()
      local p = start_gateway("proxy-tls", { MODE = "proxy", SCHEME = "wss" })
      local status, _, payload = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status)
      assert.truthy(payload and payload:find("sec-websocket-key", 1, true))
    end)

    it("verifies clusters against CLUSTER_CA, with the address CloudTower gave", function()
      local p = start_gateway("cluster-tls", { MODE = "direct", SCHEME = "wss",
        CLUSTER_PORT = servers["cluster-tls"].port, CLUSTER_CA = dir .. "/ca.pem" })
      local status, _, payload = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status)
      assert.truthy(payload and payload:find("sec-websocket-key", 1, true))
      assert.are.equal(1, #reached("cluster-tls"))
    end)

    it("speaks TLS 1.3 to a cluster that speaks nothing older", function()
      local p = start_gateway("cluster-tls13", { MODE = "direct", SCHEME = "wss",
        CLUSTER_PORT = servers["cluster-tls13"].port, CLUSTER_CA = dir .. "/ca.pem" })
      local status, hs = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status, hs and hs["x-ctvnc-error"])
      assert.are.equal(1, #reached("cluster-tls13"))
    end)

    it("refuses an impostor cluster and a cluster certificate for another name", function()
      for _, name in ipairs({ "cluster-impostor", "cluster-other" }) do
        local p = start_gateway("gw-" .. name, { MODE = "direct", SCHEME = "wss",
          CLUSTER_PORT = servers[name].port, CLUSTER_CA = dir .. "/ca.pem" })
        local status, hs = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
        assert.are.equal(502, status, name)
        assert.are.equal("tls", hs["x-ctvnc-error"], name)
        assert.are.same({}, reached(name), name)
      end
      -- the system store by default: the test CA is not in it
      local p = start_gateway("cluster-store", { MODE = "direct", SCHEME = "wss",
        CLUSTER_PORT = servers["cluster-tls"].port })
      local status = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, status)
      assert.are.equal(1, #reached("cluster-tls"))   -- only the verified one of the case above
    end)

    it("skips the cluster check only with CLUSTER_TLS=insecure, and warns", function()
      local p = start_gateway("cluster-insecure", { MODE = "direct", SCHEME = "wss",
        CLUSTER_PORT = servers["cluster-impostor"].port, CLUSTER_TLS = "insecure" })
      local status = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status)
      local log = read_file(lab.gateways["cluster-insecure"].dir .. "/error.log")
      assert.truthy(log:find("CLUSTER_TLS", 1, true), log)
    end)
  end)

  describe("the websocket leg", function()
    local p
    setup(function()
      p = start_gateway("gw", { MODE = "direct", SCHEME = "ws", CLUSTER_PORT = servers.cluster.port,
        ALLOWED_ORIGINS = "https://portal.example" })
    end)

    it("carries only the handshake headers, none of the browser's", function()
      local t = ticket_for(p, "vm-1")
      local before = #reached("cluster")
      local status, _, payload = ws(p, "/console/vm-1/ws", {
        Cookie = "ctvnc_ticket=" .. t .. "; other=1",
        Authorization = "Basic " .. secret("YWxhZGRpbjpvcGVuc2VzYW1l"),
        ["Proxy-Authorization"] = "Basic " .. secret("cHJveHk6c2VjcmV0"),
        ["X-Forwarded-For"] = "10.9.8.7", ["User-Agent"] = "spec-browser/1.0",
        Origin = "http://127.0.0.1:" .. p, ["Sec-WebSocket-Protocol"] = "binary",
        ["Sec-WebSocket-Extensions"] = "permessage-deflate", ["X-Custom"] = "x",
      })
      assert.are.equal(101, status)
      local got = reached("cluster")
      assert.are.equal(before + 1, #got)
      local names = {}
      for k in pairs(got[#got].headers) do names[#names + 1] = k end
      table.sort(names)
      -- the gateway's own handshake: its own key, no extension offered
      assert.are.same({ "connection", "host", "sec-websocket-key",
        "sec-websocket-protocol", "sec-websocket-version", "upgrade" }, names)
      assert.are.equal("127.0.0.2:" .. servers.cluster.port, got[#got].headers.host)
      assert.are_not.equal("dGhlIHNhbXBsZSBub25jZQ==", got[#got].headers["sec-websocket-key"])
      assert.are.equal("binary", got[#got].headers["sec-websocket-protocol"])
      assert.truthy(payload:find("sec-websocket-key", 1, true))
    end)

    it("takes only GET, and no other method reaches the cluster", function()
      local before = #reached("cluster")
      for _, m in ipairs({ "POST", "PUT", "DELETE", "PATCH", "OPTIONS" }) do
        local status, _, hs = http(p, m, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE,
          Upgrade = "websocket", Connection = "Upgrade" }, "body")
        assert.are.equal(405, status, m)
        assert.are.equal("GET", hs.allow, m)
      end
      assert.are.equal(before, #reached("cluster"))
    end)

    it("refuses a foreign Origin, takes its own and ALLOWED_ORIGINS", function()
      local before = #reached("cluster")
      local status = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE, Origin = "https://evil.example" })
      assert.are.equal(403, status)
      status = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE, Origin = "http://127.0.0.1:" .. (p + 1) })
      assert.are.equal(403, status)
      assert.are.equal(before, #reached("cluster"))
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE,
        Origin = "https://portal.example" })))
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE,
        Origin = "http://127.0.0.1:" .. p })))
    end)

    -- issue 19.8: VM ids come %XX-decoded, CR and LF included
    it("never lets a VM id split a line of its log", function()
      local forged = "2026-01-01 [emerg] 1#1: forged"
      local path = "/console/vm" .. ("\r\n" .. forged):gsub("[^%w]", function(c)
        return ("%%%02X"):format(c:byte()) end) .. "/ws"
      assert.are.equal(403, (ws(p, path, { ["X-API-Key"] = KEY_ONE, Origin = "https://evil.example" })))
      local log, escaped = lab.gateways.gw.dir .. "/error.log", "vm\\x0D\\x0A" .. forged
      local deadline = helpers.now() + 5
      while not (read_file(log) or ""):find(escaped, 1, true) and helpers.now() < deadline do
        socket.sleep(0.05)
      end
      local text = read_file(log) or ""
      assert.truthy(text:find(escaped, 1, true), text)
      for line in text:gmatch("[^\n]+") do
        assert.is_nil(line:find("^2026%-01%-01 %[emerg%]"), line)
        assert.is_nil(line:find("\r", 1, true), line)
      end
    end)

    it("needs a key or a ticket", function()
      assert.are.equal(403, (ws(p, "/console/vm-1/ws")))
      assert.are.equal(403, (ws(p, "/console/vm-2/ws", { ["X-API-Key"] = KEY_ONE })))
      assert.are.equal(403, (ws(p, "/console/vm-1/ws?key=" .. KEY_ONE)))
    end)
  end)

  describe("tickets instead of keys in URLs", function()
    local p
    setup(function()
      p = lab.gateways.gw and lab.gateways.gw.port or start_gateway("gw", { MODE = "direct", SCHEME = "ws",
        CLUSTER_PORT = servers.cluster.port })
    end)

    it("mints a ticket link for a key, moves it into a cookie, and the page opens", function()
      local t, doc = ticket_for(p, "vm-1")
      assert.is_true(doc.expires_in <= 60)
      assert.are.equal("/console/vm-1?ticket=" .. t, doc.url)
      local status, _, hs = http(p, "GET", doc.url)
      assert.are.equal(303, status)
      assert.are.equal("/console/vm-1", hs.location)
      assert.truthy(hs["set-cookie"]:find("^ctvnc_ticket=" .. t:gsub("%-", "%%-") .. "; Path=/console/vm%-1;"))
      assert.truthy(hs["set-cookie"]:find("HttpOnly", 1, true))
      local body
      status, body = http(p, "GET", "/console/vm-1", { Cookie = "ctvnc_ticket=" .. t })
      assert.are.equal(200, status)
      assert.truthy(body:find('src="app/ui.js"', 1, true))          -- noVNC's full page
      assert.truthy(body:find('<base href="/novnc/">', 1, true))
      assert.truthy(body:find("ctvnc_status", 1, true))
      assert.is_nil(body:find(t, 1, true))
      assert.is_nil(body:find(KEY_ONE, 1, true))
    end)

    it("opens the websocket once per ticket", function()
      local t = ticket_for(p, "vm-1")
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. t })))
      assert.are.equal(403, (ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. t })))
      -- and the page says so
      local status, body = http(p, "GET", "/console/vm-1", { Cookie = "ctvnc_ticket=" .. t })
      assert.are.equal(403, status)
      assert.truthy(body:find("expired or been used", 1, true))
    end)

    it("renews the ticket with the 101, for noVNC's Connect button", function()
      local t = ticket_for(p, "vm-1")
      local status, hs = ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. t })
      assert.are.equal(101, status)
      local fresh = (hs["set-cookie"] or ""):match("^ctvnc_ticket=([^;]+); Path=/console/vm%-1;")
      assert.truthy(fresh, hs["set-cookie"])
      secret(fresh)
      assert.are_not.equal(t, fresh)
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. fresh })))
      -- an API client's console gets no cookie
      status, hs = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status)
      assert.is_nil(hs["set-cookie"])
    end)

    it("refuses a tampered ticket, one for another VM, and keys in URLs", function()
      local t = ticket_for(p, "vm-1")
      local tampered = t:sub(1, -2) .. (t:sub(-1) == "A" and "B" or "A")
      assert.are.equal(403, (ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. tampered })))
      assert.are.equal(403, (ws(p, "/console/vm-3/ws", { Cookie = "ctvnc_ticket=" .. t })))
      assert.are.equal(403, (http(p, "GET", "/console/vm-3?ticket=" .. t)))
      helpers.reset()
      assert.are.equal(400, (http(p, "GET", "/console/vm-1?key=" .. KEY_ONE)))
      assert.is_nil(helpers.stats().vm["vm-1"])
      -- the untouched ticket still works
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. t })))
    end)

    it("lets a ticket expire", function()
      local q = start_gateway("short-ticket", { MODE = "direct", SCHEME = "ws",
        CLUSTER_PORT = servers.cluster.port, TICKET_TTL = 1 })
      local t = ticket_for(q, "vm-1")
      socket.sleep(2.1)
      assert.are.equal(403, (ws(q, "/console/vm-1/ws", { Cookie = "ctvnc_ticket=" .. t })))
    end)

    it("keeps X-API-Key for API clients on every route", function()
      assert.are.equal(200, (http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })))
      assert.are.equal(200, (http(p, "GET", "/console/vm-1", { ["X-API-Key"] = KEY_ONE })))
      assert.are.equal(101, (ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })))
      local status, body = http(p, "POST", "/console/batch", { ["X-API-Key"] = KEY_ONE }, '["vm-1"]')
      assert.are.equal(200, status)
      assert.is_true(cjson.decode(body)[1].ok)
      for _, u in ipairs(cjson.decode(body)) do secret(u.url and u.url:match("token=(%x+)")) end
    end)
  end)

  describe("browser-facing hardening", function()
    local p
    setup(function() p = lab.gateways.gw.port end)

    it("answers only GET and HEAD on the page and URL routes; HEAD asks CloudTower nothing", function()
      for _, route in ipairs({ "/console/vm-1", "/console/vm-1/url" }) do
        for _, m in ipairs({ "POST", "PUT", "DELETE", "PATCH", "OPTIONS" }) do
          helpers.reset()
          local status, _, hs = http(p, m, route, { ["X-API-Key"] = KEY_ONE }, "x=1")
          assert.are.equal(405, status, m .. " " .. route)
          assert.are.equal("GET, HEAD", hs.allow)
          assert.are.equal(0, helpers.stats().requests["/api"], m .. " " .. route)
        end
        helpers.reset()
        assert.are.equal(200, (http(p, "HEAD", route, { ["X-API-Key"] = KEY_ONE })))
        assert.are.equal(403, (http(p, "HEAD", route, { ["X-API-Key"] = "wrong" })))
        assert.are.equal(0, helpers.stats().requests["/api"], "HEAD " .. route)
      end
      assert.are.equal(405, (http(p, "GET", "/console/vm-1/ticket", { ["X-API-Key"] = KEY_ONE })))
      assert.are.equal(405, (http(p, "GET", "/console/batch", { ["X-API-Key"] = KEY_ONE })))
    end)

    it("sends framing, sniffing, referrer and cache headers", function()
      local pages = {
        { "GET", "/console/vm-1", { ["X-API-Key"] = KEY_ONE } },
        { "GET", "/console/vm-2", { ["X-API-Key"] = KEY_ONE } },                     -- 403 page
        { "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE } },
        { "POST", "/console/vm-1/ticket", { ["X-API-Key"] = KEY_ONE } },
      }
      for _, c in ipairs(pages) do
        local _, body, hs = http(p, c[1], c[2], c[3])
        if c[1] == "POST" then secret(cjson.decode(body).ticket) end
        assert.are.equal("frame-ancestors 'self'", hs["content-security-policy"], c[2])
        assert.are.equal("nosniff", hs["x-content-type-options"], c[2])
        assert.are.equal("no-referrer", hs["referrer-policy"], c[2])
        assert.are.equal("no-store", hs["cache-control"], c[2])
      end
      local _, _, hs = http(p, "GET", "/novnc/app/ui.js")
      assert.are.equal("frame-ancestors 'self'", hs["content-security-policy"])
      assert.are.equal("nosniff", hs["x-content-type-options"])
      assert.are.equal("no-referrer", hs["referrer-policy"])
    end)

    it("decodes VM ids exactly once", function()
      local status = http(p, "GET", "/console/vm%2D1/url", { ["X-API-Key"] = KEY_ALL })
      assert.are.equal(200, status)
      helpers.reset()
      local body
      status, body = http(p, "GET", "/console/vm%252D1/url", { ["X-API-Key"] = KEY_ALL })
      assert.are.equal(404, status)
      assert.are.equal("vm%2D1", cjson.decode(body).vm_id)
      assert.are.equal(1, helpers.stats().vm["vm%2D1"])
      assert.is_nil(helpers.stats().vm["vm-1"])
      -- "+" in a path is a plus, "%20" a space
      status, body = http(p, "GET", "/console/a+b%20c/url", { ["X-API-Key"] = KEY_ALL })
      assert.are.equal(404, status)
      assert.are.equal("a+b c", cjson.decode(body).vm_id)
    end)

    it("shows an HTML page with a sentence for each failure", function()
      -- (the page asks CloudTower nothing: an unknown VM fails in its websocket)
      local cases = {
        { "/console/vm-2", KEY_ONE, 403, "You may not open this console." },
        { "/console/", KEY_ALL, 400, "This console address is not valid." },
        { "/console/vm-1?key=x", KEY_ALL, 400, "This console address is not valid." },
      }
      local q = start_gateway("short-timeout", { MODE = "direct", SCHEME = "ws", TOWER_TIMEOUT = "1s",
        CLUSTER_PORT = servers.cluster.port })
      for _, c in ipairs(cases) do
        local status, body, hs = http(q, "GET", c[1], { ["X-API-Key"] = c[2] })
        assert.are.equal(c[3], status, c[1])
        assert.truthy(hs["content-type"]:find("text/html", 1, true), c[1])
        assert.truthy(body:find(c[4], 1, true), c[1] .. ": " .. body)
      end
    end)
  end)

  it("shows an HTML page when a client asks too often (429)", function()
    local q = start_gateway("busy", { MODE = "direct", SCHEME = "ws", RATE = "1r/m", BURST = 1,
      CLUSTER_PORT = servers.cluster.port })
    assert.are.equal(200, (http(q, "GET", "/console/vm-1", { ["X-API-Key"] = KEY_ONE })))
    assert.are.equal(200, (http(q, "GET", "/console/vm-1", { ["X-API-Key"] = KEY_ONE })))  -- burst
    local status, body, hs = http(q, "GET", "/console/vm-1", { ["X-API-Key"] = KEY_ONE })
    assert.are.equal(429, status)
    assert.truthy(hs["content-type"]:find("text/html", 1, true))
    assert.truthy(body:find("Too many consoles were asked for at once.", 1, true), body)
    status, body, hs = http(q, "GET", "/console/vm-1/url", { ["X-API-Key"] = KEY_ONE })
    assert.are.equal(429, status)
    assert.are.equal("application/json", hs["content-type"])
    assert.are.equal("busy", cjson.decode(body).kind)
  end)

  describe("bounded work", function()
    local p
    setup(function()
      p = start_gateway("bounded", { MODE = "proxy", SCHEME = "ws", ID_RATE = 101, TOWER_TIMEOUT = "2s" })
    end)

    it("takes a 12 KB batch body (nginx buffers it to disk), also in a DIR only root enters", function()
      local ids = {}
      for i = 1, 100 do ids[i] = ("vm-%d"):format(i) .. ("-"):rep(0) end
      local body = cjson.encode(ids)
      -- pad with whitespace JSON allows, to 12 KB
      body = body:sub(1, -2) .. (" "):rep(12 * 1024 - #body) .. "]"
      assert.is_true(#body >= 12 * 1024)
      -- nginx's workers (ctvnc, under a root master) cannot enter this DIR:
      -- run.sh gives them a temp directory they can write
      helpers.run("mkdir -m 700 " .. dir .. "/closed")
      local q = start_gateway("closed/gw", { MODE = "proxy", SCHEME = "ws", TOWER_TIMEOUT = "2s" })
      for _, port in ipairs({ p, q }) do
        local status, out = http(port, "POST", "/console/batch", { ["X-API-Key"] = KEY_ALL }, body)
        assert.are.equal(200, status, out:sub(1, 200))
        local results = cjson.decode(out)
        assert.are.equal(100, #results)
        assert.is_true(results[1].ok)
        for _, r in ipairs(results) do secret(r.url and r.url:match("token=([^&]+)")) end
      end
      local tmp = read_file(dir .. "/closed/gw/tmpdir")
      lab:stop_gateways("closed/gw")
      -- stop removes the temp directory it made
      if tmp then
        local _, left = helpers.run("test -e '" .. tmp:gsub("%s+$", "") .. "'")
        assert.is_false(left)
      end
    end)

    it("refuses more than BATCH_MAX ids with 413 before asking CloudTower", function()
      socket.sleep(1.1)   -- the id budget refilled
      helpers.reset()
      local ids = {}
      for i = 1, 101 do ids[i] = "vm-" .. i end
      local status, body = http(p, "POST", "/console/batch", { ["X-API-Key"] = KEY_ALL }, cjson.encode(ids))
      assert.are.equal(413, status)
      assert.truthy(cjson.decode(body).error:find("at most 100", 1, true))
      assert.are.equal(0, helpers.stats().requests["/api"])
    end)

    it("counts every id against a rate limit of its own", function()
      socket.sleep(1.1)
      local ids = {}
      for i = 1, 100 do ids[i] = "vm-" .. i end
      local first = http(p, "POST", "/console/batch", { ["X-API-Key"] = KEY_ALL }, cjson.encode(ids))
      helpers.reset()
      local second, body = http(p, "POST", "/console/batch", { ["X-API-Key"] = KEY_ALL }, cjson.encode(ids))
      assert.are.equal(200, first)
      assert.are.equal(429, second)
      assert.truthy(cjson.decode(body).error:find("per second", 1, true))
      assert.are.equal(0, helpers.stats().requests["/api"])
    end)

    it("answers within TOWER_TIMEOUT when CloudTower dribbles", function()
      for _, route in ipairs({ "/console/fault-dribble/url" }) do
        local t0 = socket.gettime()
        local status = http(p, "GET", route, { ["X-API-Key"] = KEY_ALL })
        local took = socket.gettime() - t0
        assert.are.equal(504, status, route)
        assert.is_true(took < 2.5, ("%s took %.2f s"):format(route, took))
      end
    end)
  end)

  describe("DNS-named targets", function()
    it("resolves them with RESOLVER, here a loopback DNS server", function()
      local p = start_gateway("dns", { MODE = "proxy", SCHEME = "ws",
        CTVNC_ENDPOINT = "http://console.test:" .. sim.http_port })
      local status, _, payload = ws(p, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(101, status)
      assert.truthy(payload and payload:find("sec-websocket-key", 1, true))
      assert.truthy(read_file(dns_log):find("console.test 1", 1, true))
      -- an unknown name is a connect failure, not a hang
      local q = start_gateway("dns-unknown", { MODE = "proxy", SCHEME = "ws",
        CTVNC_ENDPOINT = "http://nowhere.test:" .. sim.http_port })
      local s2, hs = ws(q, "/console/vm-1/ws", { ["X-API-Key"] = KEY_ONE })
      assert.are.equal(502, s2)
      assert.are.equal("connect", hs["x-ctvnc-error"])
    end)
  end)

  it("is a package of the rock: every file of ctvnc.gateway and its templates installed", function()
    local spec = {}
    local chunk = assert(loadfile(ROOT .. "/ctvnc-scm-1.rockspec", "t", spec))
    if setfenv then setfenv(chunk, spec) end
    chunk()
    local listed = {}
    for _, file in pairs(spec.build.modules) do
      if type(file) == "string" then listed[file] = true end
    end
    for _, file in pairs(spec.build.install.lua) do listed[file] = true end
    local files = helpers.run("cd " .. ROOT .. " && find lua/ctvnc/gateway -type f | sort")
    local n = 0
    for file in files:gmatch("[^\n]+") do
      n = n + 1
      assert.is_true(listed[file] == true, file .. " is not in the rockspec")
    end
    assert.is_true(n > 10)
    assert.are.equal("lua/ctvnc/gateway/init.lua", spec.build.modules["ctvnc.gateway"])
    assert.are.equal("lua/ctvnc/ticket.lua", spec.build.modules["ctvnc.ticket"])
    -- and the reference configuration requires the module, not a file of its own
    local conf = read_file(ROOT .. "/lua/ctvnc/gateway/nginx.tpl")
    assert.truthy(conf:find('require("ctvnc.gateway")', 1, true))
    assert.is_nil(io.open(ROOT .. "/examples/openresty/gateway.lua"))
  end)

  it("leaves no secret in any log line of any gateway", function()
    assert.is_true(#lab.secrets > 8)
    local checked = lab:assert_logs_clean({ "ticket=", "token=", "key=", "[Aa]uthorization" })
    assert.is_true(checked > 1000)
  end)
end)
