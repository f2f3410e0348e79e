local helpers = require "helpers"
local cjson = require "cjson"
local unpack = table.unpack or unpack  -- luacheck: ignore

local LUA, PATHS, UNSET = helpers.CLI.lua, helpers.CLI.paths, helpers.CLI.unset

-- RFC 4180 reader: rows of fields.
local function read_csv(s)
  local rows, row, field, i, quoted = {}, {}, {}, 1, false
  while i <= #s do
    local c = s:sub(i, i)
    if quoted then
      if c == '"' and s:sub(i + 1, i + 1) == '"' then field[#field + 1] = '"'; i = i + 1
      elseif c == '"' then quoted = false
      else field[#field + 1] = c end
    elseif c == '"' then quoted = true
    elseif c == "," then row[#row + 1] = table.concat(field); field = {}
    elseif c == "\r" and s:sub(i + 1, i + 1) == "\n" then
      row[#row + 1] = table.concat(field); rows[#rows + 1] = row; row, field = {}, {}
      i = i + 1
    else field[#field + 1] = c end
    i = i + 1
  end
  return rows
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function fields(line)
  local t = {}
  for f in (line .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = f end
  return t
end

-- bin/ctvnc as a real process against the simulator, under this Lua.
describe("the ctvnc command", function()
  local sim

  local function write(name, text)
    local path = sim.dir .. "/" .. name
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
    return path
  end

  -- ctvnc(args [, env]) -> stdout, exit status, stderr
  local function ctvnc(args, env)
    local cmd = ("cd %s && %s CTVNC_PROGRESS=0 %s %s %s bin/ctvnc %s 2>%s/err; echo \"::rc=$?\"")
      :format(helpers.ROOT, UNSET, env or ("CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=sim-token"),
        PATHS, LUA, args, sim.dir)
    local f = assert(helpers.popen(cmd))
    local all = f:read("*a")
    f:close()
    local out, rc = all:match("^(.*)::rc=(%d+)%s*$")
    local e = assert(io.open(sim.dir .. "/err", "rb"))
    local err = e:read("*a")
    e:close()
    return out, tonumber(rc), err
  end

  --- ctvnc `args` (in `env`) must exit 2 with the usage error `msg`;
  -- returns what it wrote to stdout.
  local function assert_usage(args, msg, env, label)
    local out, rc, err = ctvnc(args, env)
    assert.are.equal(2, rc, label)
    assert.are.equal("ctvnc: " .. msg .. "\ntry 'ctvnc --help'\n", err, label)
    return out
  end
  local TOKEN = function() return "CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=sim-token " end

  setup(function() sim = helpers.sim() end)

  it("prints each VM id, mode and URL on a line of its own and exits 0", function()
    local out, rc = ctvnc("url --mode direct vm-1 vm-3")
    assert.are.equal(0, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    local a, b = fields(l[1]), fields(l[2])
    assert.are.same({ "vm-1", "direct" }, { a[1], a[2] })
    assert.are.same({ "vm-3", "direct" }, { b[1], b[2] })
    assert.truthy(a[3]:find("^wss://127%.0%.0%.2/websockify/%?uuid=00000001%-"))
    assert.truthy(b[3]:find("^wss://127%.0%.0%.2/websockify/%?uuid=00000003%-"))
    assert.are.equal(3, #a)
  end)

  it("writes url records as JSON and CSV too", function()
    local out, rc = ctvnc("url --mode proxy --format json vm-2 fault-null")
    assert.are.equal(1, rc)
    local rows = cjson.decode(out)
    assert.are.same({ "vm-2", "fault-null" }, { rows[1].vm_id, rows[2].vm_id })
    assert.are.same({ true, "proxy" }, { rows[1].ok, rows[1].mode })
    assert.truthy(rows[1].url:find("^ws://127%.0%.0%.1:" .. sim.http_port .. "/websockify/%?token="))
    assert.are.same({ false, "not_found" }, { rows[2].ok, rows[2].kind })
    out, rc = ctvnc("url --mode proxy --format csv vm-2")
    assert.are.equal(0, rc)
    rows = read_csv(out)
    assert.are.same({ "vm_id", "ok", "mode", "url", "kind", "message" }, rows[1])
    assert.are.same({ "vm-2", "true", "proxy" }, { rows[2][1], rows[2][2], rows[2][3] })
  end)

  it("writes batch JSON that cjson reads back, in input order, with kinds for failures", function()
    local out, rc = ctvnc("batch --mode proxy --format json vm-1 fault-null vm-2")
    assert.are.equal(1, rc)
    local rows = cjson.decode(out)
    assert.are.equal(3, #rows)
    assert.are.same({ "vm-1", "fault-null", "vm-2" }, { rows[1].vm_id, rows[2].vm_id, rows[3].vm_id })
    assert.is_true(rows[1].ok)
    assert.are.equal("proxy", rows[1].mode)
    assert.truthy(rows[1].url:find("^ws://127%.0%.0%.1:" .. sim.http_port .. "/websockify/%?token="))
    assert.is_false(rows[2].ok)
    assert.are.equal("not_found", rows[2].kind)
    assert.truthy(rows[2].message:find("fault-null", 1, true))
  end)

  it("writes batch CSV that a reader parses back", function()
    local out, rc = ctvnc("batch --mode proxy --format csv vm-1 fault-graphql")
    assert.are.equal(1, rc)
    local rows = read_csv(out)
    assert.are.same({ "vm_id", "ok", "mode", "url", "kind", "message" }, rows[1])
    assert.are.equal(3, #rows)
    assert.are.same({ "vm-1", "true", "proxy" }, { rows[2][1], rows[2][2], rows[2][3] })
    assert.truthy(rows[2][4]:find("^ws://"))
    assert.are.same({ "fault-graphql", "false", "", "", "not_found" },
      { rows[3][1], rows[3][2], rows[3][3], rows[3][4], rows[3][5] })
  end)

  it("puts a failure in its record: id, error, kind, message; exit 1, no secret", function()
    local out, rc, err = ctvnc("url fault-403")
    assert.are.equal(1, rc)
    local f = fields(lines(out)[1])
    assert.are.same({ "fault-403", "error", "auth" }, { f[1], f[2], f[3] })
    assert.truthy(f[4]:find("HTTP 403", 1, true))
    assert.is_nil((out .. err):find("sim-token", 1, true))
  end)

  it("reads VM ids from a file (blanks and comments skipped) and from stdin", function()
    local path = write("ids.txt", "# ids\nvm-1\n\n  vm-2  \n")
    local out, rc = ctvnc("batch --mode proxy --format json --file " .. path)
    assert.are.equal(0, rc)
    local rows = cjson.decode(out)
    assert.are.same({ "vm-1", "vm-2" }, { rows[1].vm_id, rows[2].vm_id })
    out, rc = ctvnc("batch --mode proxy --format json - < " .. path)
    assert.are.equal(0, rc)
    rows = cjson.decode(out)
    assert.are.same({ "vm-1", "vm-2" }, { rows[1].vm_id, rows[2].vm_id })
  end)

  it("takes the words after -- as VM ids", function()
    local out, rc = ctvnc("batch --mode proxy --format json -- --not-a-flag vm-1")
    assert.are.equal(1, rc)
    local rows = cjson.decode(out)
    assert.are.same({ "--not-a-flag", "vm-1" }, { rows[1].vm_id, rows[2].vm_id })
    assert.are.same({ false, true }, { rows[1].ok, rows[2].ok })
  end)

  it("says what is wrong in the words the user typed, and exits 2", function()
    local cases = {
      { "", "no command" },
      { "frobnicate", "unknown command frobnicate" },
      { "url", "url needs at least one VM id or --name" },
      { "batch", "batch needs VM ids, --file FILE or - (stdin)" },
      { "--bogus url vm-1", "unknown option --bogus" },
      { "-x url vm-1", "unknown option -x" },
      { "--mode fast url vm-1", '--mode fast: must be "direct", "proxy" or "auto"' },
      { "--scheme http url vm-1", '--scheme http: must be "ws" or "wss"' },
      { "--format xml url vm-1", "--format xml: must be text, json or csv" },
      { "--port 0 url vm-1", "--port 0: must be an integer 1-65535" },
      { "--port 8.5 url vm-1", "--port 8.5: must be an integer 1-65535" },
      { "--port http url vm-1", "--port http: must be an integer 1-65535" },
      { "--timeout soon url vm-1", "--timeout soon: must be a number above 0" },
      { "--concurrency 0 batch vm-1", "--concurrency 0: must be an integer 1 or more" },
      { "--file x url vm-1", "--file does not apply to url" },
      { "--concurrency 2 url vm-1", "--concurrency does not apply to url" },
      { "--contains x url vm-1", "--contains does not apply to url" },
      { "url vm-1 --port", "--port needs a value" },
      { "--insecure=yes url vm-1", "--insecure takes no value" },
      { "batch --file " .. "/nonexistent/ids", "--file /nonexistent/ids: cannot read it" },
      { "--ca-file /nonexistent/ca.pem url vm-1", "--ca-file /nonexistent/ca.pem: cannot read it" },
      { "--source KERBEROS url vm-1", "--source KERBEROS: must be LOCAL, LDAP or AUTHN" },
      { "vms a b", "vms takes at most one NAME" },
      { "vms", "vms needs a NAME, --contains, --cluster or --first" },
      { "login now", "login takes no arguments" },
    }
    for _, c in ipairs(cases) do
      local out = assert_usage(c[1], c[2], nil, "ctvnc " .. c[1])
      assert.are.equal("", out, "ctvnc " .. c[1])
    end
  end)

  it("names the environment variable that is wrong", function()
    local cases = {
      { "CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=", "CTVNC_TOKEN is empty" },
      { "CTVNC_ENDPOINT= CTVNC_TOKEN=t", "CTVNC_ENDPOINT is empty" },
      { "CTVNC_TOKEN=t", "no endpoint: set CTVNC_ENDPOINT or --endpoint" },
      { "CTVNC_ENDPOINT=" .. sim.http,
        "no credentials: set CTVNC_TOKEN, or CTVNC_USERNAME (or --username) and CTVNC_PASSWORD" },
      { "CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=t CTVNC_CA_FILE=/nonexistent/ca.pem",
        "CTVNC_CA_FILE /nonexistent/ca.pem: cannot read it" },
    }
    for _, c in ipairs(cases) do
      assert_usage("url vm-1", c[2], c[1], c[1])
    end
    -- an endpoint may hold a password: named, never repeated
    local _, rc, err = ctvnc("url vm-1", "CTVNC_ENDPOINT=ftp://admin:hunter2@tower CTVNC_TOKEN=t")
    assert.are.equal(2, rc)
    assert.truthy(err:find("^ctvnc: CTVNC_ENDPOINT: "), err)
    assert.is_nil(err:find("hunter2", 1, true))
    _, rc, err = ctvnc("--endpoint ftp://tower url vm-1", "CTVNC_TOKEN=t")
    assert.are.equal(2, rc)
    assert.truthy(err:find("^ctvnc: %-%-endpoint: "), err)
  end)

  it("checks the flags for options of the newer library before any request", function()
    local cases = {
      { "--header nocolon url vm-1", "--header nocolon: must be 'Name: value'" },
      { "--header 'Bad Name: x' url vm-1", "--header Bad: must be 'Name: value'" },
      { "--per-request 0 batch vm-1", "--per-request 0: must be an integer 1 or more" },
      { "--per-request 2 url vm-1", "--per-request does not apply to url" },
      { "--first 0 vms", "--first 0: must be an integer 1 or more" },
      { "--cluster c url vm-1", "--cluster does not apply to url" },
      { "--name web-1 batch vm-1", "--name does not apply to batch" },
      { "--novnc http://x/vnc.html vms web-1", "--novnc does not apply to vms" },
      { "--no-http2=0 url vm-1", "--no-http2 takes no value" },
      { "url vm-1 --auth-config-id", "--auth-config-id needs a value" },
    }
    for _, c in ipairs(cases) do
      assert_usage(c[1], c[2], nil, "ctvnc " .. c[1])
    end
  end)

  it("logs in and prints a token that works as CTVNC_TOKEN", function()
    local env = ("CTVNC_ENDPOINT=%s CTVNC_USERNAME=admin CTVNC_PASSWORD=sim-pass"):format(sim.http)
    local out, rc = ctvnc("login", env)
    assert.are.equal(0, rc)
    local token = out:match("^(%S+)\n$")
    assert.truthy(token)
    local _, rc2 = ctvnc("url --mode proxy vm-1", ("CTVNC_ENDPOINT=%s CTVNC_TOKEN=%s"):format(sim.http, token))
    assert.are.equal(0, rc2)
    local _, rc3, err = ctvnc("login", ("CTVNC_ENDPOINT=%s CTVNC_USERNAME=admin CTVNC_PASSWORD=wrong")
      :format(sim.http))
    assert.are.equal(1, rc3)
    assert.truthy(err:find("(auth)", 1, true))
    assert.is_nil(err:find("wrong", 1, true))
  end)

  it("finds VMs by name: id, name, status, cluster, host", function()
    local out, rc = ctvnc("vms web-5")
    assert.are.equal(0, rc)
    local f = fields(lines(out)[1])
    assert.are.same({ "vm-5", "web-5", "RUNNING" }, { f[1], f[2], f[3] })
    assert.are.equal(5, #f)
    out, rc = ctvnc("vms --format json web-5")
    assert.are.equal(0, rc)
    local vms = cjson.decode(out)
    assert.are.equal(1, #vms)
    assert.are.same({ "vm-5", "web-5", "local-5", "RUNNING" },
      { vms[1].id, vms[1].name, vms[1].local_id, vms[1].status })
    out, rc = ctvnc("vms --format csv no-such-vm")
    assert.are.equal(0, rc)
    assert.are.equal("id,name,local_id,status,cluster,host\r\n", out)
    out, rc = ctvnc("vms --format json no-such-vm")
    assert.are.equal(0, rc)
    assert.are.equal("[]\n", out)
  end)

  it("searches with --contains, --cluster and --first, cluster and host shown", function()
    local out, rc = ctvnc("vms --contains web-1 --cluster cluster-a --first 3")
    assert.are.equal(0, rc)
    local l = lines(out)
    assert.are.equal(3, #l)
    for _, line in ipairs(l) do
      local f = fields(line)
      assert.truthy(f[2]:find("^web%-1"), line)
      assert.are.same({ "cluster-a", "host-a1" }, { f[4], f[5] })
    end
  end)

  it("refuses an ambiguous --name, naming the clusters", function()
    local _, rc, err = ctvnc("url --mode proxy --name twin")
    assert.are.equal(2, rc)
    assert.truthy(err:find("twin", 1, true), err)
    assert.truthy(err:find("cluster-a", 1, true) and err:find("cluster-b", 1, true), err)
  end)

  it("prints noVNC page links with --novnc", function()
    local out, rc = ctvnc("url --mode proxy --novnc https://gw.test/vnc.html vm-1")
    assert.are.equal(0, rc)
    local link = out:match("(https://gw%.test/vnc%.html%?%S+)")
    assert.truthy(link, out)
    assert.truthy(link:find("&path=websockify%2F%3Ftoken%3D", 1, true), link)
    assert.truthy(link:find("&autoconnect=1", 1, true), link)
  end)

  it("sends --header on every request and asks --per-request VMs at once", function()
    local env = "CTVNC_ENDPOINT=" .. sim.http .. "/allowlist CTVNC_TOKEN=sim-token"
    local out, rc = ctvnc("url --mode proxy vm-1", env)
    assert.are.equal(1, rc)
    assert.are.same({ "vm-1", "error", "auth" }, { unpack(fields(lines(out)[1]), 1, 3) })
    helpers.reset()
    out, rc = ctvnc("--header 'x-bypass-whitelist: true' --per-request 5 batch --mode proxy "
      .. "vm-1 vm-2 vm-3 vm-4 vm-5 vm-6", env)
    assert.are.equal(0, rc)
    assert.are.equal(6, #lines(out))
    -- the first VM alone, then five in one request
    assert.are.equal(2, helpers.stats().requests["/allowlist/api"])
  end)

  it("speaks HTTP/1.1 over TLS with --no-http2", function()
    local env = ("CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token CTVNC_CA_FILE=%s"):format(sim.https,
      sim.cert)
    helpers.reset()
    local _, rc = ctvnc("--no-http2 url --mode proxy vm-1", env)
    assert.are.equal(0, rc)
    assert.are.equal(1, helpers.stats().protocols["HTTP/1.1"])
    _, rc = ctvnc("url --mode proxy vm-1", env)
    assert.are.equal(0, rc)
    assert.are.equal(1, helpers.stats().protocols["HTTP/2.0"])
  end)

  it("turns --name into the VM's id for url", function()
    local out, rc = ctvnc("url --mode proxy --name web-4 --name nobody")
    assert.are.equal(1, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.are.same({ "nobody", "error", "not_found" }, { fields(l[1])[1], fields(l[1])[2], fields(l[1])[3] })
    assert.are.same({ "vm-4", "proxy" }, { fields(l[2])[1], fields(l[2])[2] })
  end)

  it("strips control characters in text and defuses formulas in CSV", function()
    local path = write("hostile.txt", "=HYPERLINK(\"http://x\")\n@SUM(A1)\nvm\27[2J\27]0;owned\7x\n+1\n")
    local out, rc = ctvnc("batch --mode proxy --file " .. path)
    assert.are.equal(1, rc)
    assert.is_nil(out:find("[%z\1-\8\11-\31\127]"), helpers.scrub(out))
    local l = lines(out)
    assert.are.equal(4, #l)
    for _, line in ipairs(l) do assert.are.equal(4, #fields(line), helpers.scrub(line)) end
    assert.are.equal("vm[2J]0;ownedx", fields(l[3])[1])
    out = ctvnc("batch --mode proxy --format csv --file " .. path)
    local rows = read_csv(out)
    assert.are.same({ "'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "vm\27[2J\27]0;owned\7x", "'+1" },
      { rows[2][1], rows[3][1], rows[4][1], rows[5][1] })
    for i = 2, 5 do
      assert.truthy(rows[i][6] == "" or not rows[i][6]:find("^[=+%-@]"), rows[i][6])
    end
    out = ctvnc("batch --mode proxy --format json --file " .. path)
    assert.are.equal("=HYPERLINK(\"http://x\")", cjson.decode(out)[1].vm_id)
  end)

  it("strips control characters from what the server says", function()
    -- the simulator quotes the VM id in its GraphQL error message
    local out = ctvnc("url --mode proxy 'vm\27[31mred\r\nline'")
    local l = lines(out)
    assert.are.equal(1, #l)
    local f = fields(l[1])
    assert.are.same({ "vm[31mred  line", "error" }, { f[1], f[2] })
    assert.is_nil(out:find("[%z\1-\8\11-\31\127]"), helpers.scrub(out))
  end)

  describe("progress bar", function()
    local function bar(env, args)
      local _, rc, err = ctvnc((args or "") .. " batch --mode proxy vm-1 vm-2 fault-null",
        TOKEN() .. env)
      assert.are.equal(1, rc)
      return err
    end

    it("fits COLUMNS and redraws in place", function()
      local err = bar("CTVNC_PROGRESS=1 COLUMNS=40 TERM=xterm")
      assert.truthy(err:find("3/3", 1, true))
      assert.truthy(err:find("1 failed", 1, true))
      assert.truthy(err:find("\r", 1, true))
      assert.are.equal(1, select(2, err:gsub("\n", "")))   -- one line, ended once done
      for draw in err:gmatch("\r([^\r]*)") do
        local visible = draw:gsub("\27%[[%d;]*[A-Za-z]", ""):gsub("\n$", "")
        assert.truthy(#visible <= 39, ("%d columns: %q"):format(#visible, visible))
      end
      local wide = bar("CTVNC_PROGRESS=1 COLUMNS=120 TERM=xterm")
      assert.truthy(wide:find("%[#+%]"))
      local longest = 0
      for bars in wide:gmatch("%[[#.]+%]") do longest = math.max(longest, #bars) end
      assert.truthy(longest > 60, wide)
    end)

    it("is plain text with NO_COLOR or TERM=dumb", function()
      for _, env in ipairs({ "NO_COLOR=1 TERM=xterm", "TERM=dumb" }) do
        local err = bar("CTVNC_PROGRESS=1 COLUMNS=60 " .. env)
        assert.truthy(err:find("3/3", 1, true), env)
        assert.is_nil(err:find("\27", 1, true), env)
      end
      assert.truthy(bar("CTVNC_PROGRESS=1 COLUMNS=60 TERM=xterm"):find("\27", 1, true))
    end)

    it("is off with --quiet, and when stderr is not a terminal", function()
      assert.are.equal("", bar("CTVNC_PROGRESS=1", "-q"))
      assert.are.equal("", bar("CTVNC_PROGRESS=1", "--quiet"))
      local f = assert(helpers.popen(("cd %s && %s %s %s %s bin/ctvnc batch --mode proxy vm-1 "
        .. "2>%s/err >/dev/null"):format(helpers.ROOT, UNSET, TOKEN(), PATHS, LUA, sim.dir)))
      f:read("*a")
      f:close()
      local e = assert(io.open(sim.dir .. "/err"))
      assert.are.equal("", e:read("*a"))
      e:close()
    end)
  end)

  describe("interrupted", function()
    -- Starts a batch in the background, waits until its progress shows the
    -- first answer, sends the signal; returns stdout, exit status, stderr
    -- and the seconds from the signal to the exit.
    local function interrupt(signal, fmt)
      local script = write("interrupt.sh", ([[
cd %s
rm -f %s/int.out %s/int.err
%s %s CTVNC_PROGRESS=1 COLUMNS=80 %s %s bin/ctvnc batch --mode proxy --format %s \
  vm-1 fault-slow fault-dribble > %s/int.out 2> %s/int.err &
pid=$!
n=0
until grep -q '1/3' %s/int.err 2>/dev/null || [ $n -ge 200 ]; do sleep 0.05; n=$((n + 1)); done
t0=$(date +%%s%%N)
kill -%s $pid
wait $pid
rc=$?
t1=$(date +%%s%%N)
echo "$rc $(( (t1 - t0) / 1000000 ))"
]]):format(helpers.ROOT, sim.dir, sim.dir, UNSET, TOKEN(), PATHS, LUA, fmt, sim.dir, sim.dir,
        sim.dir, signal))
      local f = assert(helpers.popen("sh " .. script))
      local res = f:read("*a")
      f:close()
      local rc, ms = res:match("^(%d+) (%d+)")
      local o = assert(io.open(sim.dir .. "/int.out", "rb"))
      local out = o:read("*a")
      o:close()
      local e = assert(io.open(sim.dir .. "/int.err", "rb"))
      local err = e:read("*a")
      e:close()
      return out, tonumber(rc), err, tonumber(ms) / 1000
    end

    it("by SIGINT: stops at once, prints what came back as valid JSON, exits 130", function()
      local out, rc, err, seconds = interrupt("INT", "json")
      assert.are.equal(130, rc, err)
      assert.truthy(seconds < 1, seconds .. " s from SIGINT to exit")
      local rows = cjson.decode(out)
      assert.are.same({ "vm-1", "fault-slow", "fault-dribble" },
        { rows[1].vm_id, rows[2].vm_id, rows[3].vm_id })
      assert.is_true(rows[1].ok)
      assert.truthy(rows[1].url:find("^ws://"))
      assert.are.same({ false, "interrupted", false, "interrupted" },
        { rows[2].ok, rows[2].kind, rows[3].ok, rows[3].kind })
      assert.truthy(err:find("ctvnc: interrupted\n", 1, true))
      assert.is_nil(err:find("traceback", 1, true))
      -- the bar's last line: how many the signal left
      local last = err:match("\r([^\r]*)\nctvnc: interrupted\n$")
      assert.truthy(last and last:find(" 1/3 .* 2 interrupted"), err)
    end)

    it("by SIGTERM: the same, as valid CSV, exits 143", function()
      local out, rc, err, seconds = interrupt("TERM", "csv")
      assert.are.equal(143, rc, err)
      assert.truthy(seconds < 1, seconds .. " s from SIGTERM to exit")
      local rows = read_csv(out)
      assert.are.equal(4, #rows)
      assert.are.same({ "vm-1", "true" }, { rows[2][1], rows[2][2] })
      assert.are.same({ "fault-slow", "false", "interrupted" }, { rows[3][1], rows[3][2], rows[3][5] })
      assert.are.same({ "fault-dribble", "false", "interrupted" }, { rows[4][1], rows[4][2], rows[4][5] })
      assert.truthy(err:find("ctvnc: interrupted\n", 1, true))
      assert.is_nil(err:find("traceback", 1, true))
    end)
  end)

  it("answers -h like --help, and --version", function()
    local out, rc = ctvnc("--help")
    assert.are.equal(0, rc)
    for _, word in ipairs({ "CTVNC_ENDPOINT", "CTVNC_TOKEN", "CTVNC_PASSWORD", "--format", "batch",
                            "--quiet", "--no-http2", "--header", "--per-request", "--novnc" }) do
      assert.truthy(out:find(word, 1, true), word)
    end
    assert.are.equal(out, (ctvnc("-h")))
    assert.are.equal(out, (ctvnc("url -h")))
    assert.are.equal("ctvnc 0.1.0\n", (ctvnc("--version")))
  end)
end)
