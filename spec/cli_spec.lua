local helpers = require "helpers"
local cjson = require "cjson"

-- bin/ctvnc as a real process against the simulator.
describe("the ctvnc command", function()
  local sim

  local function ctvnc(args, env)
    local cmd = ("cd %s && env -u CTVNC_TOKEN -u CTVNC_ENDPOINT CTVNC_PROGRESS=0 %s "
      .. "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH_5_4='build/5.4/?.so;;' "
      .. "lua5.4 bin/ctvnc %s 2>%s/err; echo \"::rc=$?\"")
      :format(helpers.ROOT, env or ("CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=sim-token"),
        args, sim.dir)
    local f = assert(helpers.popen(cmd))
    local all = f:read("*a")
    f:close()
    local out, rc = all:match("^(.*)::rc=(%d+)%s*$")
    local e = assert(io.open(sim.dir .. "/err"))
    local err = e:read("*a")
    e:close()
    return out, tonumber(rc), err
  end

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

  setup(function() sim = helpers.sim() end)

  it("prints one URL per VM and exits 0", function()
    local out, rc = ctvnc("url --mode direct vm-1 vm-3")
    assert.are.equal(0, rc)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(2, #lines)
    assert.truthy(lines[1]:find("^wss://127%.0%.0%.2/websockify/%?uuid=00000001%-"))
    assert.truthy(lines[2]:find("^wss://127%.0%.0%.2/websockify/%?uuid=00000003%-"))
  end)

  it("writes JSON that cjson reads back, in input order, with kinds for failures", function()
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

  it("writes CSV that a reader parses back", function()
    local out, rc = ctvnc("batch --mode proxy --format csv vm-1 fault-graphql")
    assert.are.equal(1, rc)
    local rows = read_csv(out)
    assert.are.same({ "vm_id", "ok", "mode", "url", "kind", "message" }, rows[1])
    assert.are.equal(3, #rows)
    assert.are.same({ "vm-1", "true", "proxy" }, { rows[2][1], rows[2][2], rows[2][3] })
    assert.truthy(rows[2][4]:find("^ws://"))
    assert.are.same({ "fault-graphql", "false", "", "", "graphql" },
      { rows[3][1], rows[3][2], rows[3][3], rows[3][4], rows[3][5] })
  end)

  it("reads VM ids from a file, skipping blanks and comments", function()
    local path = sim.dir .. "/ids.txt"
    local f = assert(io.open(path, "w"))
    f:write("# ids\nvm-1\n\n  vm-2  \n")
    f:close()
    local out, rc = ctvnc("batch --mode proxy --format json --file " .. path)
    assert.are.equal(0, rc)
    local rows = cjson.decode(out)
    assert.are.same({ "vm-1", "vm-2" }, { rows[1].vm_id, rows[2].vm_id })
  end)

  it("prints a failure's message and kind on stderr and exits 1", function()
    local out, rc, err = ctvnc("url fault-403")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.truthy(err:find("(auth)", 1, true))
    assert.is_nil(err:find("sim-token", 1, true))
  end)

  it("exits 2 on usage errors", function()
    for _, args in ipairs({ "", "frobnicate", "url", "--mode fast url vm-1",
                            "--format xml url vm-1", "--port 0 url vm-1", "--bogus url vm-1" }) do
      local _, rc, err = ctvnc(args)
      assert.are.equal(2, rc, "ctvnc " .. args)
      assert.truthy(err:find("^ctvnc: "), "ctvnc " .. args)
    end
    local _, rc = ctvnc("url vm-1", "CTVNC_ENDPOINT=ftp://x CTVNC_TOKEN=t")
    assert.are.equal(2, rc)
  end)

  it("logs in and prints a token that works as CTVNC_TOKEN", function()
    local env = ("CTVNC_ENDPOINT=%s CTVNC_USERNAME=admin CTVNC_PASSWORD=sim-pass"):format(sim.http)
    local out, rc = ctvnc("login", env)
    assert.are.equal(0, rc)
    local token = out:match("^(%S+)\n$")
    assert.truthy(token)
    local _, rc2 = ctvnc("url --mode proxy vm-1", ("CTVNC_ENDPOINT=%s CTVNC_TOKEN=%s"):format(sim.http, token))
    assert.are.equal(0, rc2)
  end)

  it("finds VMs by name", function()
    local out, rc = ctvnc("vms --format json web-5")
    assert.are.equal(0, rc)
    assert.are.same({ { id = "vm-5", name = "web-5", local_id = "local-5", status = "RUNNING" } },
      cjson.decode(out))
  end)

  it("shows a progress bar on stderr when asked, and --help and --version", function()
    local env = ("CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token CTVNC_PROGRESS=1"):format(sim.http)
    local _, rc, err = ctvnc("batch --mode proxy vm-1 vm-2 fault-null", env)
    assert.are.equal(1, rc)
    assert.truthy(err:find("3/3", 1, true))
    assert.truthy(err:find("1 failed", 1, true))
    local out = ctvnc("--help")
    for _, word in ipairs({ "CTVNC_ENDPOINT", "CTVNC_TOKEN", "CTVNC_PASSWORD", "--format", "batch" }) do
      assert.truthy(out:find(word, 1, true), word)
    end
    assert.are.equal("ctvnc 0.1.0\n", (ctvnc("--version")))
  end)
end)
