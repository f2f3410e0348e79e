--- ctvnc shot and ctvnc check against spec/support/rfbserver.py (see
-- spec/shot_spec.lua): the files written decode (Python's zlib) to the
-- framebuffers served, and check stops at each step where a target does.
local helpers = require "helpers"
local cjson = require "cjson"
local rfblab = require "support.rfblab"

local ROOT = helpers.ROOT
local LUA, PATHS, UNSET = helpers.CLI.lua, helpers.CLI.paths, helpers.CLI.unset

describe("ctvnc shot and check", function()
  local sim, lab

  --- bin/ctvnc `args` -> stdout, exit status
  local function ctvnc(args, env)
    local f = assert(helpers.popen(("cd %s && %s CTVNC_PROGRESS=0 CTVNC_ENDPOINT=%s "
      .. "CTVNC_TOKEN=sim-token CTVNC_CA_FILE=%s %s %s %s bin/ctvnc %s 2>&1; echo \"::rc=$?\"")
      :format(ROOT, UNSET, sim.https, sim.cert, env or "", PATHS, LUA, args)))
    local all = f:read("*a")
    f:close()
    local out, rc = all:match("^(.*)::rc=(%d+)%s*$")
    return out, tonumber(rc)
  end

  local function lines(s)
    local t = {}
    for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
    return t
  end

  setup(function()
    sim = helpers.sim()
    lab = rfblab.start()
  end)

  teardown(function()
    if lab then lab.stop() end
  end)

  describe("ctvnc shot", function()
    it("writes DIR/<vm id>.png and prints id, path and size", function()
      local dir = lab.dir .. "/out"
      assert(os.execute("mkdir -p " .. dir))
      local out, rc = ctvnc(("shot --out %s --mode proxy vm-2 vm-13"):format(dir))
      assert.equal(0, rc, out)
      assert.same({ "vm-2\t" .. dir .. "/vm-2.png\t64x48",
                    "vm-13\t" .. dir .. "/vm-13.png\t17x9" }, lines(out))
      assert.same({ 64, 48, 0 }, { rfblab.check_file(dir .. "/vm-2.png", 2) })
      assert.same({ 17, 9, 0 }, { rfblab.check_file(dir .. "/vm-13.png", 13) })
    end)

    it("scales with --width, takes the VNC password from the environment", function()
      local dir = lab.dir .. "/thumbs"
      assert(os.execute("mkdir -p " .. dir))
      local out, rc = ctvnc(("shot --out %s --width 20 --scheme ws --port %d --mode direct vm-21")
        :format(dir, lab.cluster_port), "CTVNC_VNC_PASSWORD=secret")
      assert.equal(0, rc, out)
      assert.same({ "vm-21\t" .. dir .. "/vm-21.png\t20x15" }, lines(out))
      assert.same({ 20, 15, 0 }, { rfblab.check_file(dir .. "/vm-21.png", 21, 20) })
    end)

    it("prints the error record and exits 1 when a VM fails", function()
      local out, rc = ctvnc(("shot --out %s --mode proxy --format json vm-4 vm-15")
        :format(lab.dir))
      assert.equal(1, rc, out)
      local rows = cjson.decode(out)
      assert.same({ true, false }, { rows[1].ok, rows[2].ok })
      assert.equal("rfb", rows[2].kind)
      assert.is_nil(out:find("sim-token", 1, true))
      assert.is_nil(out:find("\27", 1, true))
    end)

    it("stops at once on SIGINT: what came back, the rest interrupted, exit 130", function()
      local script = lab.dir .. "/int.sh"
      helpers.write_file(script, ([[
cd %s
%s CTVNC_PROGRESS=1 CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token CTVNC_CA_FILE=%s %s %s \
  bin/ctvnc shot --out %s --mode proxy --format json vm-2 vm-25 > %s/int.out 2> %s/int.err &
pid=$!
n=0
until grep -q '1/2' %s/int.err 2>/dev/null || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
t0=$(date +%%s%%N)
kill -INT $pid
wait $pid
rc=$?
echo "$rc $(( ($(date +%%s%%N) - t0) / 1000000 ))"
]]):format(ROOT, UNSET, sim.https, sim.cert, PATHS, LUA, lab.dir, lab.dir, lab.dir, lab.dir))
      local res = helpers.run("sh " .. script)
      local rc, ms = res:match("(%d+) (%d+)%s*$")
      assert.equal(130, tonumber(rc), res)
      assert.is_true(tonumber(ms) < 1000, ms .. " ms from SIGINT to exit")
      local rows = cjson.decode((assert(helpers.read_file(lab.dir .. "/int.out"))))
      assert.same({ true, false, "interrupted" }, { rows[1].ok, rows[2].ok, rows[2].kind })
    end)

    it("needs a VM id", function()
      local _, rc = ctvnc("shot")
      assert.equal(2, rc)
    end)
  end)

  describe("ctvnc wall", function()
    it("writes one page: a thumbnail per VM with name and status, errors in place", function()
      local page = lab.dir .. "/wall.html"
      local out, rc = ctvnc(("wall --out %s --width 32 --mode proxy --contains web-1"):format(page))
      assert.equal(1, rc, out)          -- web-11 (vm-11) asks for a password, web-15 refuses
      local html = assert(helpers.read_file(page))
      local figures, imgs = 0, {}
      for fig in html:gmatch("<figure.-</figure>") do
        figures = figures + 1
        local id, data = fig:match('<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"')
        if id then imgs[id] = data end
      end
      assert.equal(11, figures)        -- web-1, web-10 .. web-19
      assert.truthy(html:find("<figcaption>web-12<span>RUNNING</span>", 1, true))
      assert.truthy(html:find("rfb: screenshot vm-15 (proxy): the server refused", 1, true))
      assert.is_nil(html:find("\27", 1, true))
      assert.truthy(html:find("default-src 'none'", 1, true))
      -- a thumbnail decodes (Python) to the framebuffer scaled to 32 wide
      local file = lab.dir .. "/vm-12.png"
      local _, ok = helpers.run(("printf '%%s' '%s' | base64 -d > %s"):format(imgs["vm-12"], file))
      assert.is_true(ok)
      assert.same({ 32, 24, 0 }, { rfblab.check_file(file, 12, 32) })
    end)

    it("takes the VMs of --file", function()
      local ids, page = lab.dir .. "/ids.txt", lab.dir .. "/wall2.html"
      helpers.write_file(ids, "vm-12\n# a comment\n\nvm-14\n")
      local out, rc = ctvnc(("wall --out %s --mode proxy --file %s"):format(page, ids))
      assert.equal(0, rc, out)
      assert.same({ "vm-12\tproxy\t64x48", "vm-14\tproxy\t64x48" }, lines(out))
      local _, figures = assert(helpers.read_file(page)):gsub("<figure", "")
      assert.equal(2, figures)
    end)
  end)

  describe("ctvnc check", function()
    --- The rows of `check` for a VM, direct over ws to the cluster port.
    local function check(vm, extra)
      local out = ctvnc(("check --format json --scheme ws --port %d %s %s")
        :format(lab.cluster_port, extra or "", vm))
      return cjson.decode(out)
    end

    it("reaches frame when the console works, with the time of every step", function()
      local rows = check("vm-1")
      assert.same({ "direct", true, "frame" }, { rows[1].path, rows[1].ok, rows[1].stage })
      for _, step in ipairs({ "tcp", "websocket", "rfb", "frame" }) do
        assert.is_number(rows[1][step], step)
      end
      -- the proxy with ws:// to the tower's TLS port: no 101
      assert.same({ "proxy", false, "http" }, { rows[2].path, rows[2].ok, rows[2].kind })
    end)

    it("goes through TLS on the proxy path with wss", function()
      local rows = cjson.decode((ctvnc("check --format json vm-2")))
      assert.same({ "proxy", true, "frame" }, { rows[2].path, rows[2].ok, rows[2].stage })
      assert.is_number(rows[2].tls)
      assert.same({ "direct", false, "none" }, { rows[1].path, rows[1].ok, rows[1].stage })
    end)

    it("stops where the target stops, with the reason", function()
      local want = {
        ["vm-3"] = { "frame" },
        ["vm-23"] = { "tcp", "auth" },          -- the handshake is refused
        ["vm-17"] = { "websocket", "rfb" },     -- not RFB
        ["vm-15"] = { "rfb", "rfb" },           -- refused after the banner
        ["vm-25"] = { "websocket", "timeout" }, -- silent
      }
      for vm, w in pairs(want) do
        local r = check(vm, vm == "vm-25" and "--timeout 1" or "")[1]
        assert.same(w, { r.stage, r.kind }, vm)
      end
      local text = ctvnc(("check --scheme ws --port %d vm-15"):format(lab.cluster_port))
      assert.matches("^vm%-15\tdirect\trfb\ttcp [%d.]+ms websocket [%d.]+ms rfb [%d.]+ms\t"
        .. "rfb: the server refused: console in use", text)
      assert.matches("<redacted>", text, 1, true)
    end)

    it("stops at tls when the target does not speak TLS, and at none when nothing listens",
      function()
        -- wss to the cluster's plain ws port: the TCP connect works, the TLS
        -- handshake never ends (the server waits for an HTTP request)
        local out = ctvnc(("check --format json --timeout 1 --scheme wss --port %d vm-1")
          :format(lab.cluster_port))
        local r = cjson.decode(out)[1]
        assert.same({ "direct", false, "tcp", "timeout" }, { r.path, r.ok, r.stage, r.kind },
          out)
        assert.is_nil(r.tls)
        -- vm-4's cluster is 127.0.0.3, where nothing listens
        r = check("vm-4")[1]
        assert.same({ "direct", false, "none", "connect" }, { r.path, r.ok, r.stage, r.kind })
      end)
  end)
end)
