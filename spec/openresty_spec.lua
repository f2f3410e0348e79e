local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- The example OpenResty gateway (examples/openresty) in a real nginx with
-- Debian's ngx_lua, one worker, the simulator as its CloudTower.
describe("the OpenResty gateway #novalgrind", function()
  local sim, port, keys, lab

  local function get(path, headers, p)
    local status, body = lab:http(p or port, "GET", path, headers)
    return status, body
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    for _, s in ipairs({ helpers.STATIC_TOKEN, "k-one", "k-all" }) do lab:secret(s) end
    keys = lab.dir .. "/keys"
    helpers.write_file(keys, "# key vm ids\nk-one vm-1,fault-null\nk-all *\n")
    -- a websockify standing for vm-1's cluster (127.0.0.2), in front of the
    -- simulator's plain HTTP port: bytes through it come back as HTTP
    local wsport = helpers.free_port("127.0.0.2")
    lab:spawn("websockify", ("websockify 127.0.0.2:%d 127.0.0.1:%d"):format(wsport, sim.http_port))
    helpers.wait_port("127.0.0.2", wsport)
    -- its websocket carries HTTP, not RFB: a full session whose handshake
    -- the relay cannot follow to ClientInit (to make it shared) is closed,
    -- unless exclusive consoles are allowed (then it passes unwatched)
    port = lab:start_gateway("gw", common.tower_env(sim), {
      KEYS = keys, CLUSTER_PORT = wsport, SCHEME = "ws", TOWER_TIMEOUT = "1s",
      EXCLUSIVE_CONSOLES = "on" })
  end)

  teardown(function()
    helpers.control("config", { latency_ms = 0 })
    if lab then lab:stop() end
  end)

  it("answers /console/<vm>/url with the URL and mode ctvnc chose", function()
    local status, body = get("/console/vm-1/url", { ["X-API-Key"] = "k-one" })
    assert.are.equal(200, status)
    local doc = cjson.decode(body)
    assert.are.equal("direct", doc.mode)
    assert.truthy(doc.url:find("^ws://127%.0%.0%.2:%d+/websockify/%?uuid=00000001%-0000%-4000%-8000%-000000000001&token=%x+&host=127%.0%.0%.1$"))
    status, body = get("/console/vm-2/url", { ["X-API-Key"] = "k-all" })
    assert.are.equal(200, status)
    doc = cjson.decode(body)
    assert.are.equal("proxy", doc.mode)   -- nothing listens on 127.0.0.3
    -- SCHEME=ws is the cluster's: the proxy URL follows the tower (https: wss)
    assert.truthy(doc.url:find("^wss://127%.0%.0%.1:" .. sim.https_port .. "/websockify/%?token=[%w%%]+&uuid="))
  end)

  it("keeps the console proxy on the tower's scheme, in a batch too; PROXY_SCHEME=ws refused", function()
    local status, body = lab:http(port, "POST", "/console/batch", { ["X-API-Key"] = "k-all" },
      '["vm-2"]')
    assert.are.equal(200, status)
    local r = cjson.decode(body)[1]
    assert.are.same({ true, "proxy" }, { r.ok, r.mode })
    assert.truthy(r.url:find("^wss://127%.0%.0%.1:" .. sim.https_port .. "/websockify/%?token="))
    -- never a console token over plain ws to a tower reached over https
    local ok, err = pcall(lab.start_gateway, lab, "ws-proxy", common.tower_env(sim),
      { KEYS = keys, PROXY_SCHEME = "ws" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("PROXY_SCHEME (environment): ws would send console "
      .. "tokens in clear", 1, true), tostring(err))
    assert.is_nil(tostring(err):find("traceback", 1, true))
  end)

  it("serves the console page without asking CloudTower: the websocket asks", function()
    helpers.reset()
    for _, method in ipairs({ "GET", "HEAD" }) do
      local status = lab:http(port, method, "/console/vm-1", { ["X-API-Key"] = "k-one" })
      assert.are.equal(200, status)
    end
    assert.is_nil(helpers.stats().vm["vm-1"])
    assert.are.equal(0, helpers.stats().requests["/api"] or 0)
  end)

  it("serves noVNC's full console page, with noVNC beside it", function()
    local status, body = get("/console/vm-1", { ["X-API-Key"] = "k-one" })
    assert.are.equal(200, status)
    assert.truthy(body:find('src="app/ui.js"', 1, true))
    assert.truthy(body:find('<base href="/novnc/">', 1, true))
    assert.truthy(body:find('const vm = "vm-1", view = false;', 1, true))
    local s2, js = get("/novnc/core/rfb.js")
    assert.are.equal(200, s2)
    assert.truthy(js:find("export default class RFB", 1, true))
  end)

  it("escapes the VM id in its error page", function()
    local status, body = get("/console/a%22b%3Cscript%3E", { ["X-API-Key"] = "k-one" })
    assert.are.equal(403, status)
    assert.truthy(body:find("VM a&quot;b&lt;script&gt;", 1, true))
    assert.is_nil(body:find("<script", 1, true))
  end)

  it("maps each error kind to its HTTP status, with no secret in the body", function()
    local cases = {
      { "fault-null", 404, "not_found" }, { "fault-401", 502, "auth" },
      { "fault-500", 502, "http" }, { "fault-graphql", 404, "not_found" },  -- VM_NOT_FOUND
      { "fault-nonjson", 502, "decode" }, { "fault-slow", 504, "timeout" },
      { "fault-huge", 502, "too_large" }, { "fault-endless", 502, "too_large" },
    }
    for _, c in ipairs(cases) do
      local status, body = get("/console/" .. c[1] .. "/url", { ["X-API-Key"] = "k-all" })
      assert.are.equal(c[2], status, c[1])
      local doc = cjson.decode(body)
      assert.are.equal(c[3], doc.kind, c[1])
      assert.is_nil(body:find("sim-token", 1, true))
      assert.is_nil(body:find("Authorization", 1, true))
    end
    local status = get("/console//url", { ["X-API-Key"] = "k-all" })
    assert.are.equal(400, status)
    -- an unknown VM is not_found in a batch too: one classification, in ctvnc.api
    local _, out = lab:http(port, "POST", "/console/batch", { ["X-API-Key"] = "k-all" },
      '["fault-graphql", "no-such-vm"]')
    for _, r in ipairs(cjson.decode(out)) do
      assert.are.same({ false, "not_found", "no such VM" }, { r.ok, r.kind, r.message }, r.vm_id)
    end
  end)

  it("denies a wrong key, a key for another VM, and no key", function()
    assert.are.equal(403, (get("/console/vm-1/url", { ["X-API-Key"] = "nope" })))
    assert.are.equal(403, (get("/console/vm-2/url", { ["X-API-Key"] = "k-one" })))
    assert.are.equal(403, (get("/console/vm-1/url")))
    assert.are.equal(403, (get("/console/vm-1", { ["X-API-Key"] = "wrong" })))
    assert.are.equal(400, (get("/console/vm-1?key=k-one")))   -- keys never in URLs
  end)

  it("denies everything when no authorize hook is configured", function()
    local p = lab:start_gateway("nohook", common.tower_env(sim))
    local s1 = get("/console/vm-1/url", { ["X-API-Key"] = "k-all" }, p)
    local s2 = get("/console/vm-1", { ["X-API-Key"] = "k-all" }, p)
    lab:stop_gateways("nohook")
    assert.are.same({ 403, 403 }, { s1, s2 })
  end)

  it("does not block its one worker: 50 requests at 300 ms latency overlap", function()
    helpers.control("config", { latency_ms = 300 })
    local urls = {}
    for i = 1, 50 do
      urls[i] = ("-o /dev/null -w '%%{http_code}\\n' 'http://127.0.0.1:%d/console/vm-%d/url'")
        :format(port, i)
    end
    local t0 = socket.gettime()
    local out = helpers.run("curl -s -m 20 -Z --parallel-max 50 -H 'X-API-Key: k-all' "
      .. table.concat(urls, " "))
    local elapsed = socket.gettime() - t0
    helpers.control("config", { latency_ms = 0 })
    local _, n200 = out:gsub("200\n", "")
    assert.are.equal(50, n200, out)
    -- one at a time would take 50 x 0.3 = 15 s, two at a time 7.5 s; the
    -- bound leaves room for a loaded machine and still fails a blocked worker
    assert.is_true(elapsed < 5, ("50 requests took %.2f s"):format(elapsed))
  end)

  it("runs client:batch over nginx subrequests in parallel", function()
    helpers.control("config", { latency_ms = 300 })
    local ids = { "vm-2", "vm-3", "fault-null", "vm-1" }
    for i = 5, 16 do ids[i] = "vm-" .. (i + 10) end
    local t0 = socket.gettime()
    local out = helpers.run(("curl -s -m 20 -H 'X-API-Key: k-one' -d '%s' http://127.0.0.1:%d/console/batch")
      :format(cjson.encode(ids), port))
    local elapsed = socket.gettime() - t0
    local results = cjson.decode(out)
    assert.are.equal(16, #results)
    assert.are.same({ "vm-2", false, "denied" }, { results[1].vm_id, results[1].ok, results[1].kind })
    assert.are.same({ "fault-null", false, "not_found" }, { results[3].vm_id, results[3].ok, results[3].kind })
    assert.are.same({ "vm-1", true, "direct" }, { results[4].vm_id, results[4].ok, results[4].mode })
    assert.is_true(elapsed < 3 * 0.3, ("two answered VMs took %.2f s"):format(elapsed))
    -- the same with a key for every VM: 15 fetches at once
    t0 = socket.gettime()
    out = helpers.run(("curl -s -m 20 -H 'X-API-Key: k-all' -d '%s' http://127.0.0.1:%d/console/batch")
      :format(cjson.encode(ids), port))
    elapsed = socket.gettime() - t0
    results = cjson.decode(out)
    helpers.control("config", { latency_ms = 0 })
    local ok = 0
    for _, r in ipairs(results) do if r.ok then ok = ok + 1 end end
    assert.are.equal(15, ok)
    assert.are.equal("proxy", results[1].mode)
    assert.is_true(elapsed < 3 * 0.3, ("16 VMs took %.2f s"):format(elapsed))
  end)

  it("caches probe verdicts for all workers, and credentials only when configured", function()
    -- the cluster of vm-1 is this listener: each probe is one queued connection
    local srv = assert(socket.bind("127.0.0.2", 0))
    local _, cport = srv:getsockname()
    local p = lab:start_gateway("cache", common.tower_env(sim), {
      KEYS = keys, CLUSTER_PORT = cport, SCHEME = "ws", WORKERS = 2, CREDENTIAL_TTL = 5 })
    helpers.reset()
    local modes = {}
    for i = 1, 4 do
      local status, body = get("/console/vm-1/url", { ["X-API-Key"] = "k-one" }, p)
      modes[i] = status == 200 and cjson.decode(body).mode
    end
    lab:stop_gateways("cache")
    srv:settimeout(0)
    local probes = 0
    while srv:accept() do probes = probes + 1 end
    srv:close()
    assert.are.same({ "direct", "direct", "direct", "direct" }, modes)
    assert.are.equal(1, probes)
    assert.are.equal(1, helpers.stats().vm["vm-1"])  -- credentials cached for 5 s
    -- the default gateway (credential_ttl 0) asks CloudTower every time
    helpers.reset()
    get("/console/vm-1/url", { ["X-API-Key"] = "k-one" })
    get("/console/vm-1/url", { ["X-API-Key"] = "k-one" })
    assert.are.equal(2, helpers.stats().vm["vm-1"])
  end)

  it("carries the console websocket to the target ctvnc chose", function()
    -- a ticket for the page, used up by the websocket (the cookie the page
    -- redirect sets)
    local _, out = lab:http(port, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = "k-one" })
    local ticket = lab:secret(cjson.decode(out).ticket)
    -- helpers.websocket fails unless the answer is 101
    local ws = helpers.websocket("127.0.0.1", port, "/console/vm-1/ws",
      { Cookie = "ctvnc_ticket=" .. ticket })
    -- one masked binary frame (a zero mask), then the raw answer's frames
    ws:send("GET /_sim/stats HTTP/1.0\r\nHost: x\r\n\r\n")
    local got = ws:receive_until("in_flight_max")
    ws:close()
    assert.truthy(got:find("^HTTP/1%.1 200"), got:sub(1, 80))
  end)

  it("leaves no secret in its logs", function()
    -- "sim-token", "k-one", "k-all" and the ticket are the lab's secrets
    local _, sizes = lab:assert_logs_clean({ "ticket=", "token=", "key=" })
    for _, file in ipairs({ "access.log", "error.log", "audit.log" }) do
      assert.is_true((sizes["gw/" .. file] or 0) > 100, file)
    end
  end)
end)

-- ctvnc.core built for LuaJIT, loaded by nginx's LuaJIT, builds the same
-- URLs as under Lua 5.4.
describe("ctvnc.core in nginx #novalgrind", function()
  it("gives the same URLs as Lua 5.4", function()
    local dir = os.tmpname()
    os.remove(dir)
    local p = helpers.free_port("127.0.0.1")
    local script = [[
      local ctvnc = require "ctvnc"
      local vectors = {
        { cluster_ip = "192.168.5.2", host_ip = "192.168.5.4", vm_uuid = "00000000-0000-0000-0000-000000000000", -- URL strings only
          raw_token = "1a2bc3d4567e89f0a1b2c3d4e5f6a7b8", token = "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=" },
        { cluster_ip = "fd00::1", host_ip = "::1", vm_uuid = "a b/c", raw_token = "é+/=", token = "+/=\0" },
      }
      local out = {}
      for _, info in ipairs(vectors) do
        out[#out + 1] = ctvnc.direct_url(info, { port = 8443 })
        out[#out + 1] = ctvnc.proxy_url("https://gw.example.com/ct/", info)
        out[#out + 1] = ctvnc.encode_uri_component(info.token)
      end
      return table.concat(out, "\n")
    ]]
    helpers.write_file(dir .. ".lua", script)
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
  server { listen 127.0.0.1:%d; location / { content_by_lua_block { ngx.print(dofile("%s.lua")) } } }
}]]):format(dir, dir, dir, dir, dir, dir, dir, helpers.ROOT, helpers.ROOT, helpers.ROOT, p, dir)
    assert(os.execute("mkdir -p " .. dir .. "/tmp"))
    helpers.write_file(dir .. "/nginx.conf", conf)
    -- nginx returns once its master listens: curl's connection waits in the
    -- backlog for a worker, no sleep needed
    local out, ok = helpers.run(("nginx -p %s/ -c %s/nginx.conf && curl -s -m 5 http://127.0.0.1:%d/; "
      .. "kill -QUIT $(cat %s/nginx.pid)"):format(dir, dir, p, dir))
    assert(ok, out)
    local expected = (loadstring or load)(script)()  -- luacheck: ignore
    helpers.run("rm -rf " .. dir .. " " .. dir .. ".lua")
    assert.are.equal(expected, out)
  end)
end)
