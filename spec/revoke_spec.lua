local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local common = require "gateway.common"

-- Issue 19's attacks on access that should have ended, each against a
-- real gateway (examples/openresty) with the simulator as CloudTower and
-- websockify in front of a minimal RFB server as vm-1's cluster: a ticket
-- renewing itself past its family's lifetime, past its key's removal and
-- a reload, past its JWT's expiry, past an admin's kill; the raw target
-- URL (its console token) handed out by default; /admin/ guessed without
-- limit; the ticket cookie without Secure behind a TLS terminator; a full
-- used-ticket store evicting nonces; a rotated audit.log left 0666 or
-- never written again. The last case greps every log for every secret.
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

describe("revocation and what a grant may get #novalgrind", function()
  local sim, lab, dir, ws_port
  local K1, K2, K_ADMIN = "k1-" .. random_hex(8), "k2-" .. random_hex(8), "ka-" .. random_hex(8)
  local JWT_SECRET, TICKET_SECRET = random_hex(24), random_hex(24)

  local function secret(s) return lab:secret(s) end

  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = ws_port,
      ADMIN_KEYS = dir .. "/admin-keys", RAW_TARGET_URLS = false,
    }, env)
  end

  local function http(port, method, path, headers)
    local status, body, hs = lab:http(port, method, path, headers)
    return status, body, hs
  end

  local function json(port, method, path, headers)
    local status, body = http(port, method, path, headers)
    return status, cjson.decode(body)
  end

  --- The websocket of vm on port: status, headers, the JSON body of a
  -- refusal; an accepted one is closed at once (its session ends).
  local function ws(port, vm, headers)
    local sock, status, hs = common.ws_handshake(port, ("/console/%s/ws"):format(vm), headers)
    local body
    if status ~= 101 then body = cjson.decode(common.read_body(sock, hs) or "") end
    sock:close()
    return status, hs, body
  end

  --- The ticket a Set-Cookie header carries (registered as a secret).
  local function cookie_ticket(hs)
    return secret((hs["set-cookie"] or ""):match("^ctvnc_ticket=([^;]+)"))
  end

  local function ticket(port, headers)
    local status, doc = json(port, "POST", "/console/vm-1/ticket", headers)
    assert.are.equal(200, status)
    return secret(doc.ticket), doc
  end

  local function with_ticket(t) return { Cookie = "ctvnc_ticket=" .. t } end

  local wait_for = common.wait_for

  --- Reloads gateway name (HUP) and waits until its old workers are gone
  -- and `workers` new ones run (an old one may still take a connection).
  local function reload(name, workers)
    local master = read_file(lab.gateways[name].dir .. "/nginx.pid"):match("%d+")
    local list = "pgrep -P " .. master
    local before = {}
    for pid in helpers.run(list):gmatch("%d+") do before[pid] = true end
    helpers.run("kill -HUP " .. master)
    assert.is_true(wait_for(function()
      local n = 0
      for pid in helpers.run(list):gmatch("%d+") do
        if before[pid] then return false end
        n = n + 1
      end
      return n == workers
    end), "nginx did not reload")
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K1, K2, K_ADMIN, JWT_SECRET, TICKET_SECRET, "sim-token" }) do secret(s) end
    write_file(dir .. "/keys", ("%s vm-1,vm-3\n%s vm-1\n"):format(K1, K2))
    write_file(dir .. "/admin-keys", K_ADMIN .. "\n")
    ws_port = lab:rfb_cluster("rfb", dir .. "/rfb.jsonl")
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  describe("a ticket's renewals", function()
    it("end with the family's lifetime, however often the page reconnects", function()
      local p = start_gateway("family", { TICKET_LIFETIME = 3 })
      local t0 = socket.gettime()
      local t = ticket(p, { ["X-API-Key"] = K1 })
      local renewed, last_ok = 0, 0
      while socket.gettime() - t0 < 6 do
        local status, hs = ws(p, "vm-1", with_ticket(t))
        if status ~= 101 then break end
        last_ok = socket.gettime() - t0
        renewed = renewed + 1
        t = cookie_ticket(hs)
        if not t then break end
        socket.sleep(0.3)
      end
      assert.is_true(renewed >= 3, "renewals: " .. renewed)
      assert.is_true(last_ok < 3.5, ("a session opened %.1f s after the first mint"):format(last_ok))
    end)

    it("are bounded by MAX_SESSION when it is set", function()
      local p = start_gateway("family-cap", { MAX_SESSION = 2 })
      local status, hs = ws(p, "vm-1", with_ticket((ticket(p, { ["X-API-Key"] = K1 }))))
      assert.are.equal(101, status)
      local age = tonumber((hs["set-cookie"] or ""):match("Max%-Age=(%d+)"))
      assert.is_true(age ~= nil and age <= 2, hs["set-cookie"])
    end)

    it("stop when the key leaves the key file and nginx reloads", function()
      write_file(dir .. "/keys-reload", ("%s vm-1\n%s vm-1\n"):format(K1, K2))
      local p = start_gateway("reload", { KEYS = dir .. "/keys-reload",
        CTVNC_TICKET_SECRET = TICKET_SECRET })
      local status, hs = ws(p, "vm-1", with_ticket((ticket(p, { ["X-API-Key"] = K1 }))))
      assert.are.equal(101, status)
      local renewal1 = assert(cookie_ticket(hs))
      status, hs = ws(p, "vm-1", with_ticket((ticket(p, { ["X-API-Key"] = K2 }))))
      assert.are.equal(101, status)
      local renewal2 = assert(cookie_ticket(hs))
      write_file(dir .. "/keys-reload", ("%s vm-1\n"):format(K2))
      reload("reload", 1)
      assert.are.equal(403, (http(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = K1 })))
      -- K2's renewal still opens (same secret): K1's is refused
      assert.are.equal(101, (ws(p, "vm-1", with_ticket(renewal2))))
      assert.are.equal(403, (ws(p, "vm-1", with_ticket(renewal1))))
    end)

    it("stop at the JWT's expiry", function()
      local p = start_gateway("jwt", { JWT = "hs256", CTVNC_JWT_SECRET = JWT_SECRET, KEYS = false })
      local exp = os.time() + 3
      local token = secret(helpers.hs256(JWT_SECRET, { sub = "alice", exp = exp,
        vms = { "vm-1" } }))
      local t, doc = ticket(p, { Authorization = "Bearer " .. token })
      assert.is_true(doc.expires_in <= 3, tostring(doc.expires_in))
      local status, hs = ws(p, "vm-1", with_ticket(t))
      assert.are.equal(101, status)
      local renewal = assert(cookie_ticket(hs))
      while os.time() < exp + 1 do socket.sleep(0.2) end
      assert.are.equal(403, (ws(p, "vm-1", with_ticket(renewal))))
    end)
  end)

  describe("a kill", function()
    local p
    local admin = { ["X-API-Key"] = K_ADMIN }
    setup(function() p = start_gateway("kill") end)

    it("locks the user out of that VM: renewals, websockets, tickets and pages", function()
      local sock, status, hs = common.ws_handshake(p, "/console/vm-1/ws",
        with_ticket((ticket(p, { ["X-API-Key"] = K1 }))))
      assert.are.equal(101, status)
      local renewal = assert(cookie_ticket(hs))
      local _, list = json(p, "GET", "/admin/sessions", admin)
      assert.are.equal(1, #list.sessions)
      assert.are.equal(200, (http(p, "POST", "/admin/sessions/" .. list.sessions[1].id .. "/kill",
        admin)))
      sock:close()
      local body
      status, _, body = ws(p, "vm-1", with_ticket(renewal))
      assert.are.equal(403, status)
      assert.are.equal("locked", body.kind)
      status, _, body = ws(p, "vm-1", { ["X-API-Key"] = K1 })
      assert.are.equal(403, status)
      assert.are.equal("locked", body.kind)
      local doc
      status, doc = json(p, "POST", "/console/vm-1/ticket", { ["X-API-Key"] = K1 })
      assert.are.equal(403, status)
      assert.are.equal("locked", doc.kind)
      local page
      status, page = http(p, "GET", "/console/vm-1", { ["X-API-Key"] = K1 })
      assert.are.equal(403, status)
      assert.truthy(page:find("Console locked", 1, true))
      status, doc = json(p, "GET", "/console/vm-1/screenshot.png", { ["X-API-Key"] = K1 })
      assert.are.same({ 403, "locked" }, { status, doc.kind })
      -- another user of the VM, and the user on another VM, are not locked
      assert.are.equal(101, (ws(p, "vm-1", { ["X-API-Key"] = K2 })))
      assert.are.equal(200, (http(p, "GET", "/console/vm-3", { ["X-API-Key"] = K1 })))
    end)

    it("is listed under /admin/locks and lifted there", function()
      assert.are.equal(403, (http(p, "GET", "/admin/locks", { ["X-API-Key"] = K1 })))
      local status, doc = json(p, "GET", "/admin/locks", admin)
      assert.are.equal(200, status)
      assert.are.equal(1, #doc.locks)
      local lock = doc.locks[1]
      assert.are.same({ "key#1", "vm-1", "admin#1" }, { lock.user, lock.vm_id, lock.by })
      assert.truthy(lock["until"]:match("^%d+%-%d+%-%d+T"))
      assert.are.equal(405, (http(p, "POST", "/admin/locks/" .. lock.id, admin)))
      assert.are.equal(200, (http(p, "DELETE", "/admin/locks/" .. lock.id, admin)))
      assert.are.equal(404, (http(p, "DELETE", "/admin/locks/" .. lock.id, admin)))
      assert.are.equal(101, (ws(p, "vm-1", { ["X-API-Key"] = K1 })))
      local _, after = json(p, "GET", "/admin/locks", admin)
      assert.are.same({}, after.locks)
    end)
  end)

  describe("console links", function()
    local p
    setup(function() p = start_gateway("links") end)

    it("are the gateway's own by default: /url and /console/batch hold no target or token", function()
      local status, body = http(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = K1 })
      assert.are.equal(200, status)
      local doc = cjson.decode(body)
      assert.are.equal("gateway", doc.mode)
      local t = secret(doc.url:match("^/console/vm%-1%?ticket=([%w%-_]+%.[%w%-_]+)$"))
      assert.truthy(t, doc.url)
      assert.is_nil(body:find("wss?://") or body:find("token=", 1, true))
      local _, _, hs = http(p, "GET", doc.url)
      assert.truthy((hs["set-cookie"] or ""):find("ctvnc_ticket=", 1, true))
      write_file(dir .. "/batch.json", '["vm-1","vm-3","vm-2"]')
      local out = helpers.run(("curl -s -m 20 -X POST -H 'X-API-Key: %s' --data-binary @%s "
        .. "http://127.0.0.1:%d/console/batch"):format(K1, dir .. "/batch.json", p))
      local results = cjson.decode(out)
      assert.is_nil(out:find("wss?://") or out:find("token=", 1, true))
      for i = 1, 2 do
        assert.are.equal("gateway", results[i].mode)
        secret(results[i].url:match("ticket=(.*)$"))
      end
      assert.are.same({ false, "denied" }, { results[3].ok, results[3].kind })
      -- the raw target only when the operator says so
      local q = start_gateway("raw", { RAW_TARGET_URLS = "on" })
      local _, raw = json(q, "GET", "/console/vm-1/url", { ["X-API-Key"] = K1 })
      assert.are.equal("direct", raw.mode)
      assert.truthy(raw.url:find("^ws://"))
    end)

    it("carry a Secure cookie behind a trusted TLS terminator, only there", function()
      local https = { ["X-Forwarded-Proto"] = "https" }
      local _, doc = json(p, "GET", "/console/vm-1/url", { ["X-API-Key"] = K1 })
      local _, _, hs = http(p, "GET", doc.url, https)
      assert.is_nil(hs["set-cookie"]:find("Secure", 1, true))
      local q = start_gateway("proxied", { TRUSTED_PROXIES = "127.0.0.1" })
      _, doc = json(q, "GET", "/console/vm-1/url", { ["X-API-Key"] = K1 })
      secret(doc.url:match("ticket=(.*)$"))
      _, _, hs = http(q, "GET", doc.url, https)
      assert.truthy(hs["set-cookie"]:find("; Secure", 1, true), hs["set-cookie"])
      local t = doc.url:match("ticket=(.*)$")
      _, hs = ws(q, "vm-1", { Cookie = "ctvnc_ticket=" .. t, ["X-Forwarded-Proto"] = "https" })
      assert.truthy((hs["set-cookie"] or ""):find("; Secure", 1, true))
    end)
  end)

  describe("/admin/", function()
    it("is rate-limited per address, and a failed authentication is logged without the key",
       function()
      local p = start_gateway("admin-rate", { ADMIN_RATE = "1r/m" })
      local bad = secret("bad-" .. random_hex(8))
      local seen = {}
      for _ = 1, 30 do
        local status = http(p, "GET", "/admin/sessions", { ["X-API-Key"] = bad })
        seen[tostring(status)] = (seen[tostring(status)] or 0) + 1
      end
      assert.truthy(seen["403"] and seen["403"] <= 21, cjson.encode(seen))
      assert.truthy(seen["429"] and seen["429"] >= 9, cjson.encode(seen))
      local log = read_file(lab.gateways["admin-rate"].dir .. "/error.log") or ""
      assert.truthy(wait_for(function()
        log = read_file(lab.gateways["admin-rate"].dir .. "/error.log") or ""
        return log:find("admin authentication failed from 127.0.0.1 (a key was given)", 1, true)
      end), log)
    end)
  end)

  describe("audit.log", function()
    local adir
    local AUDIT_KEY = random_hex(16)

    --- ctvnc audit verify FILE...: exit status, output.
    local function verify(...)
      local rc, out = helpers.cli_main({ "audit", "verify", ... }, { CTVNC_AUDIT_KEY = AUDIT_KEY })
      return rc, out
    end

    it("is 0640, and after mv and USR1 the next line lands in a new 0640 file", function()
      adir = dir .. "/auditdir"
      assert(helpers.run(("mkdir -p %s && chmod 777 %s"):format(adir, adir)))
      local p = start_gateway("audit", { AUDIT_LOG = adir .. "/audit.log",
        CTVNC_AUDIT_KEY = secret(AUDIT_KEY), WORKERS = 2 })
      local function mode(f)
        return (helpers.run("stat -c %a " .. f):gsub("%s+$", ""))
      end
      local function events(f)
        local n = 0
        for line in (read_file(f) or ""):gmatch("[^\n]+") do
          n = n + 1
          assert(cjson.decode(line), line)
        end
        return n
      end
      assert.are.equal(101, (ws(p, "vm-1", { ["X-API-Key"] = K1 })))
      assert.is_true(wait_for(function() return events(adir .. "/audit.log") >= 2 end))
      assert.are.equal("640", mode(adir .. "/audit.log"))
      assert(os.rename(adir .. "/audit.log", adir .. "/audit.log.1"))
      helpers.run(("kill -USR1 $(cat %s/nginx.pid)"):format(lab.gateways.audit.dir))
      assert.are.equal(101, (ws(p, "vm-1", { ["X-API-Key"] = K1 })))
      assert.is_true(wait_for(function() return events(adir .. "/audit.log") >= 2 end))
      assert.are.equal("640", mode(adir .. "/audit.log"))
      assert.are.equal(2, events(adir .. "/audit.log.1"))
      -- a reload's master (umask 0) creates it 0640 too
      assert(os.rename(adir .. "/audit.log", adir .. "/audit.log.2"))
      reload("audit", 2)
      assert.are.equal("640", mode(adir .. "/audit.log"))
      assert.are.equal(101, (ws(p, "vm-1", { ["X-API-Key"] = K1 })))
      assert.is_true(wait_for(function() return events(adir .. "/audit.log") >= 2 end))
    end)

    it("is one hash chain across workers, rotation and reload: ctvnc audit verify", function()
      -- two workers writing at once: 12 sessions opened side by side
      local cmd = {}
      for _ = 1, 12 do
        cmd[#cmd + 1] = ("curl -s -o /dev/null -m 1 -H 'Connection: Upgrade' -H 'Upgrade: "
          .. "websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: "
          .. "dGhlIHNhbXBsZSBub25jZQ==' -H 'X-API-Key: %s' http://127.0.0.1:%d/console/vm-1/ws &")
          :format(K1, lab.gateways.audit.port)
      end
      helpers.run(table.concat(cmd, " ") .. " wait")
      local log = adir .. "/audit.log"
      assert.is_true(wait_for(function()
        return select(2, (read_file(log) or ""):gsub("\n", "")) >= 26
      end))
      local files = { adir .. "/audit.log.1", adir .. "/audit.log.2", log }
      local rc, out = verify(table.unpack(files))
      assert.are.equal(0, rc, out)
      assert.truthy(out:find("intact, 26 lines", 1, true), out)
      -- a line appended by hand, and one sealed without the key, are caught
      local text = read_file(log)
      write_file(dir .. "/forged.log", text .. '{"event":"open","user":"mallory"}\n')
      rc, out = verify(dir .. "/forged.log")
      assert.are_not.equal(0, rc)
      assert.truthy(out:find("line 27 breaks the chain", 1, true), out)
      local chain = require "ctvnc.auditchain"
      local sealed = chain.seal(text:match('"hash":"(%x+)"}\n$'), '{"event":"open","user":"mallory"}')
      write_file(dir .. "/forged.log", text .. sealed .. "\n")
      out = select(2, verify(dir .. "/forged.log"))
      assert.truthy(out:find("line 27 breaks the chain", 1, true), out)
      -- and an edited line
      write_file(dir .. "/forged.log", (text:gsub('"user":"key#1"', '"user":"key#2"', 1)))
      out = select(2, verify(dir .. "/forged.log"))
      assert.truthy(out:find("line 1 breaks the chain", 1, true), out)
    end)
  end)

  describe("used tickets' nonces", function()
    it("are never evicted: a full store refuses tickets instead (fail closed)", function()
      local out = assert(common.nginx_lua([[
        local cjson = require "cjson"
        local store = require("ctvnc.gateway.store.shdict").new({ dict = "ctvnc_tickets" })
        local t = require("ctvnc.ticket").new({ secret = ("s"):rep(32), store = store })
        local used, refused = {}, nil
        for _ = 1, 5000 do
          local tk = assert(t.mint("vm-1", "u", false, { ends = ngx.now() + 60 }))
          local doc, _, kind = t.consume(tk, "vm-1")
          if not doc then refused = kind break end
          used[#used + 1] = tk
        end
        local again = 0
        for _, tk in ipairs(used) do
          if t.consume(tk, "vm-1") then again = again + 1 end
        end
        return cjson.encode({ refused = refused, used = #used, again = again })
      ]], "lua_shared_dict ctvnc_tickets 64k;"))
      local doc = cjson.decode(out)
      assert.are.equal("store", doc.refused)
      assert.is_true(doc.used >= 10, out)
      assert.are.equal(0, doc.again)
    end)
  end)

  it("leaves no secret in any log", function()
    local checked = lab:assert_logs_clean()
    assert.is_true(checked > 1000)
  end)
end)
