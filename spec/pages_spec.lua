local helpers = require "helpers"
local cjson = require "cjson"
local core = require "ctvnc.core"
local common = require "gateway.common"

-- Issue 20.4: what the gateway's pages and answers say. Every JSON refusal
-- has a kind and a reason that tells an unknown key from a key without
-- this VM; the admin routes say how to turn them on; a gateway that can
-- authorize nobody says so at start; the console page learns the VM's
-- name from /console/<vm>/about (one get-vms call) and whether the grant
-- is view-only; a browser's refused websocket is closed with the reason
-- (a page cannot read a refused handshake's status). The simulator is
-- CloudTower (vm-1 is named web-1); no cluster is needed here.
describe("the gateway's pages and answers #novalgrind", function()
  local sim, lab, port
  local K_FULL, K_VIEW = "k-full-" .. helpers.random_hex(8), "k-view-" .. helpers.random_hex(8)

  local function http(method, path, headers, p)
    local status, body, hs = lab:http(p or port, method, path, headers)
    return status, body, hs
  end

  local function json(method, path, headers, p)
    local status, body = http(method, path, headers, p)
    return status, assert(cjson.decode(body), body)
  end

  --- A websocket handshake to the gateway: status, and the close frame's
  -- code and reason when it answered 101 and closed; else the JSON body.
  local function ws(path, headers, p)
    local sock, status, hs = common.ws_handshake(p or port, path, headers)
    if status ~= 101 then
      local len = tonumber(hs["content-length"] or "")
      -- else chunked: ngx.say's one chunk
      if not len then len = tonumber((sock:receive("*l") or ""):match("^%x+") or "0", 16) end
      local body = sock:receive(len)
      sock:close()
      return status, assert(cjson.decode(body or ""), body)
    end
    local _, code, reason = common.ws_stream(sock):read(1, 5)
    sock:send(core.ws_frame("close", "\3\232", true))
    sock:close()
    return status, { code = code, reason = reason }
  end

  local function ticket(vm, key)
    local status, doc = json("POST", "/console/" .. vm .. "/ticket", { ["X-API-Key"] = key or K_FULL })
    assert.are.equal(200, status)
    return lab:secret(doc.ticket)
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    for _, s in ipairs({ K_FULL, K_VIEW, helpers.STATIC_TOKEN }) do lab:secret(s) end
    helpers.write_file(lab.dir .. "/keys", ("%s vm-1,vm-3,nope\n%s vm-1:view\n"):format(K_FULL, K_VIEW))
    port = lab:start_gateway("gw", common.tower_env(sim), { KEYS = lab.dir .. "/keys" })
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  it("gives every JSON refusal a kind, and tells an unknown key from a key without the VM",
    function()
      local cases = {
        { "GET", "/console/vm-1/url", { ["X-API-Key"] = "no-such-key" }, 403, "denied", "unknown key" },
        { "GET", "/console/vm-3/url", { ["X-API-Key"] = K_VIEW }, 403, "denied",
          "the key does not grant this VM" },
        { "POST", "/console/vm-3/ticket", { ["X-API-Key"] = K_VIEW }, 403, "denied",
          "the key does not grant this VM" },
        { "GET", "/console/vm-1/url", {}, 403, "denied", "no key" },
        { "POST", "/console/vm-1/url", { ["X-API-Key"] = K_FULL }, 405, "method" },
        { "GET", "/console/vm-1/ws", { ["X-API-Key"] = K_FULL }, 400, "invalid" },
        { "GET", "/console/nope/url", { ["X-API-Key"] = K_FULL }, 404, "not_found" },
        { "GET", "/console/vm-1/about", {}, 403, "denied", "no key" },
      }
      for _, c in ipairs(cases) do
        local status, doc = json(c[1], c[2], c[3])
        local what = c[1] .. " " .. c[2]
        assert.are.equal(c[4], status, what)
        assert.are.equal(c[5], doc.kind, what)
        if c[6] then assert.are.equal(c[6], doc.reason, what) end
      end
      -- the websocket's refusals, for clients without an Origin: status and JSON
      local status, doc = ws("/console/vm-1/ws", { ["X-API-Key"] = "no-such-key" })
      assert.are.same({ 403, "denied", "unknown key" }, { status, doc.kind, doc.reason })
      status, doc = ws("/console/nope/ws", { ["X-API-Key"] = K_FULL })
      assert.are.same({ 404, "not_found" }, { status, doc.kind })
      status, doc = ws("/console/vm-1/ws", { ["X-API-Key"] = K_FULL, Origin = "https://evil.example" })
      assert.are.same({ 403, "denied" }, { status, doc.kind })
    end)

  it("says how to turn the admin routes on when they are off", function()
    local status, doc = json("GET", "/admin/sessions", { ["X-API-Key"] = K_FULL })
    assert.are.equal(403, status)
    assert.are.equal("denied", doc.kind)
    assert.truthy(doc.reason:find("ADMIN_KEYS", 1, true), doc.reason)
    assert.truthy(doc.reason:find("admin_authorize", 1, true), doc.reason)
  end)

  it("warns at start, in run.sh's output and error.log, when it can authorize nobody", function()
    local p = lab:start_gateway("nobody", common.tower_env(sim))
    local g = lab.gateways.nobody
    assert.truthy(g.out:find("WARNING: neither KEYS nor JWT: the gateway denies every console request",
      1, true), g.out)
    local log = helpers.read_file(g.dir .. "/error.log") or ""
    assert.truthy(log:find("[warn]", 1, true) and log:find("denies every console request", 1, true),
      log)
    assert.are.equal(403, (http("GET", "/console/vm-1/url", { ["X-API-Key"] = K_FULL }, p)))
    -- and a gateway with keys does not
    assert.is_nil(lab.gateways.gw.out:find("denies every", 1, true))
    assert.is_nil((helpers.read_file(lab.gateways.gw.dir .. "/error.log") or "")
      :find("denies every", 1, true))
  end)

  it("names the VM for the page with one get-vms call, and says when it is view-only", function()
    helpers.reset()
    local status, doc = json("GET", "/console/vm-1/about", { ["X-API-Key"] = K_FULL })
    assert.are.equal(200, status)
    assert.are.same({ vm_id = "vm-1", name = "web-1", view_only = false }, doc)
    local stats = helpers.stats()
    assert.are.equal(1, stats.requests["/v2/api/get-vms"])
    assert.are.equal(0, stats.requests["/api"])      -- no console credentials asked
    status, doc = json("GET", "/console/vm-1/about", { ["X-API-Key"] = K_VIEW })
    assert.are.same({ 200, "web-1", true }, { status, doc.name, doc.view_only })
    status, doc = json("GET", "/console/nope/about", { ["X-API-Key"] = K_FULL })
    assert.are.same({ 404, "not_found" }, { status, doc.kind })
    -- the page's cookie ticket, not used up: the websocket uses it
    local t = ticket("vm-1", K_VIEW)
    local cookie = { Cookie = "ctvnc_ticket=" .. t }
    for _ = 1, 2 do
      status, doc = json("GET", "/console/vm-1/about", cookie)
      assert.are.same({ 200, "web-1", true }, { status, doc.name, doc.view_only })
    end
    local body
    status, body = http("GET", "/console/vm-1", cookie)
    assert.are.equal(200, status)
    assert.truthy(body:find('const vm = "vm-1", view = true;', 1, true))
    assert.truthy(body:find('"/console/" + encodeURIComponent(vm) + "/about"', 1, true))
    status, body = http("GET", "/console/vm-1", { ["X-API-Key"] = K_FULL })
    assert.are.equal(200, status)
    assert.truthy(body:find('const vm = "vm-1", view = false;', 1, true))
    -- a ticket for another VM names nothing
    assert.are.equal(403, (http("GET", "/console/vm-3/about", cookie)))
  end)

  --- ctvnc_requests_total of the ws route's not_found answers.
  local function ws_not_found()
    local text = select(2, http("GET", "/metrics"))
    return tonumber(text:match('ctvnc_requests_total{result="not_found",route="ws"} (%d+)') or "0")
  end

  it("closes a browser's refused websocket with the reason, for the page to show", function()
    local origin = "http://127.0.0.1:" .. port
    local not_found = ws_not_found()
    -- an unknown VM: the ticket is used, CloudTower knows no such VM
    local t = ticket("nope")
    local status, close = ws("/console/nope/ws", { Cookie = "ctvnc_ticket=" .. t, Origin = origin })
    assert.are.equal(101, status)
    assert.are.same({ code = 4404, reason = "not_found: no such VM" }, close)
    -- the same ticket again
    status, close = ws("/console/nope/ws", { Cookie = "ctvnc_ticket=" .. t, Origin = origin })
    assert.are.equal(101, status)
    assert.are.same({ code = 4403,
      reason = "denied: the console link has expired or was used already" }, close)
    assert.are.equal(403, (http("GET", "/console/nope/about", { Cookie = "ctvnc_ticket=" .. t })))
    -- a key that does not grant the VM
    status, close = ws("/console/vm-3/ws", { ["X-API-Key"] = K_VIEW, Origin = origin })
    assert.are.same({ 101, 4403, "denied: the key does not grant this VM" },
      { status, close.code, close.reason })
    -- /metrics counts them by their kind, not as upgrades
    assert.are.equal(not_found + 1, ws_not_found())
  end)

  it("closes a browser's websocket over the rate limit with the reason too", function()
    local p = lab:start_gateway("slow", common.tower_env(sim), { KEYS = lab.dir .. "/keys",
      RATE = "1r/m", BURST = 1 })
    local origin = { ["X-API-Key"] = K_FULL, Origin = "http://127.0.0.1:" .. p }
    local saw = {}
    for _ = 1, 3 do
      local status, close = ws("/console/nope/ws", origin, p)
      saw[#saw + 1] = status .. " " .. tostring(close.code) .. " " .. tostring(close.reason)
    end
    assert.are.equal("101 4429 busy: too many requests", saw[3], table.concat(saw, "\n"))
    -- a client without an Origin gets the JSON answer
    local status, doc = ws("/console/nope/ws", { ["X-API-Key"] = K_FULL }, p)
    assert.are.same({ 429, "busy" }, { status, doc.kind })
  end)

  it("leaves no key or ticket in any log", function()
    lab:assert_logs_clean({ "ticket=", "key=" })
  end)
end)
