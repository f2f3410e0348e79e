-- The ctvnc command's flags, help and rough edges: docs/cli.md against the
-- declared flag tables, bin/ctvnc under a Lua with no module, a refused
-- token that stops a batch, TLS advice, suggestions, the progress line,
-- and no secret typed on the command line ever echoed.
local helpers = require "helpers"
local cli = require "ctvnc.cli"

local ROOT = helpers.ROOT
local ABS = helpers.run("cd " .. ROOT .. " && pwd"):match("^(.-)\n")   -- for symlinks
local ABI = helpers.CLI.abi
local LUA, PATHS, UNSET = helpers.CLI.lua, helpers.CLI.paths, helpers.CLI.unset
local NOPATHS = "-u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u LUA_PATH_5_3 "
  .. "-u LUA_CPATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "

local sim
local function token_env() return "CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=sim-token " end

--- bin/ctvnc `args` in `env` -> stdout, exit status, stderr
local function ctvnc(args, env)
  local err_file = os.tmpname()
  local f = assert(helpers.popen(("cd %s && %s CTVNC_PROGRESS=0 %s %s %s bin/ctvnc %s 2>%s; "
    .. "echo \"::rc=$?\""):format(ROOT, UNSET, env or token_env(), PATHS, LUA, args, err_file)))
  local all = f:read("*a")
  f:close()
  local out, rc = all:match("^(.*)::rc=(%d+)%s*$")
  local err = helpers.read_file(err_file)
  os.remove(err_file)
  return out, tonumber(rc), err
end

setup(function() sim = helpers.sim() end)

describe("docs/cli.md", function()
  local text = assert(helpers.read_file(ROOT .. "/docs/cli.md"))

  it("lists every flag the commands declare, with the commands taking it, and no other",
     function()
    local documented = {}
    for first, who in text:gmatch("\n| ([^|\n]-) | ([^|\n]-) |") do
      for name in first:gmatch("`%-%-([%w-]+)") do documented["--" .. name] = who end
      for short in first:gmatch("`%-(%w)`") do documented["-" .. short] = who end
    end
    local declared = {}
    for name, f in pairs(cli.flags) do
      local key = name:sub(1, 1) == "-" and name or "--" .. name
      local takers = {}
      for _, c in ipairs(cli.commands) do
        for _, cf in ipairs(c.flags) do
          if cf == f then takers[#takers + 1] = c.name end
        end
      end
      declared[key] = #takers > 0 and table.concat(takers, ", ") or "all"
    end
    assert.is_true(next(declared) ~= nil)
    for flag, who in pairs(declared) do
      assert.are.equal(who, documented[flag], flag .. ": declared for " .. who
        .. ", documented for " .. tostring(documented[flag]))
    end
    for flag in pairs(documented) do
      assert.truthy(declared[flag], flag .. " is documented, not declared")
    end
  end)

  it("has a section for each command, with its arguments, and none for another", function()
    local sections = {}
    for name in text:gmatch("\n### ctvnc (%S+)\n") do sections[name] = true end
    for _, c in ipairs(cli.commands) do
      assert.truthy(sections[c.name], c.name .. " has no section")
      local line = "`ctvnc [options] " .. c.name .. (c.args ~= "" and " " .. c.args or "") .. "`"
      assert.truthy(text:find(line, 1, true), line)
      sections[c.name] = nil
    end
    assert.are.same({}, sections)
  end)

  it("is what --help says: each flag's help line comes from its declaration", function()
    local out, rc = ctvnc("--help")
    assert.are.equal(0, rc)
    assert.are.equal(cli.USAGE, out)
    for name, f in pairs(cli.flags) do
      if name:sub(1, 1) ~= "-" then
        local first_words = f.help:match("^(%S+%s+%S+)")
        assert.truthy(out:find("--" .. name .. (f.value and " " .. f.value or ""), 1, true), name)
        assert.truthy(out:find(first_words, 1, true), name .. ": " .. first_words)
      end
    end
  end)
end)

describe("bin/ctvnc", function()
  local other = ABI == "5.4" and "lua5.3" or "lua5.4"
  local dir

  before_each(function()
    dir = helpers.run("mktemp -d"):match("^(%S+)")
    assert(helpers.run(("mkdir -p %s/co/bin %s/co/build %s/path && cp %s/bin/ctvnc %s/co/bin/ "
      .. "&& ln -s %s/lua %s/co/lua && ln -s /usr/bin/%s %s/path/%s")
      :format(dir, dir, dir, ABS, dir, ABS, dir, other, dir, other)))
  end)
  after_each(function() helpers.run("rm -rf " .. dir) end)

  local function run(args, path)
    return helpers.run(("cd / && env %s %s %s %s %s/co/bin/ctvnc %s"):format(NOPATHS,
      path and "PATH=" .. path or "", token_env(), other, dir, args))
  end

  it("started by a Lua with no module built runs again with the Lua that has one", function()
    assert(helpers.run(("ln -s %s/build/%s %s/co/build/%s"):format(ABS, ABI, dir, ABI)))
    local out, ok = run("--version")
    assert(ok, out)
    assert.are.equal("ctvnc 0.1.0\n", out)
    out, ok = run("url --mode proxy vm-1")
    assert(ok, out)
    assert.matches("^vm%-1\tproxy\tws://[^\n]+\n$", out)
    out = run("url --bogus")               -- its exit status comes back too
    assert.are.equal("ctvnc: unknown option --bogus\ntry 'ctvnc --help'\n", out)
  end)

  it("says in one line which Lua to install when none that has the module is there", function()
    assert(helpers.run(("ln -s %s/build/%s %s/co/build/%s"):format(ABS, ABI, dir, ABI)))
    local out, ok = run("--help", dir .. "/path")
    assert.is_false(ok)
    local want = ABI == "5.1" and "lua5.1 or luajit" or "lua" .. ABI
    assert.are.equal(("ctvnc: this is Lua %s; ctvnc here is built for %s: install one "
      .. "(apt-get install %s)\n"):format(other:sub(4), want, want:match("^%S+")), out)
  end)

  it("says in one line that make build is missing when nothing is built", function()
    local out, ok = run("--help")
    assert.is_false(ok)
    assert.are.equal("ctvnc: ctvnc.core is not built: run make build in " .. dir .. "/co\n", out)
  end)

  it("runs straight from a checkout, with no LUA_PATH, from any directory", function()
    local out = helpers.run(("cd / && env %s %s CTVNC_PROGRESS=0 %s %s/bin/ctvnc url --mode "
      .. "proxy vm-1"):format(NOPATHS, token_env(), LUA, ABS))
    assert.matches("^vm%-1\tproxy\tws://[^\n]+\n$", out)
  end)
end)

describe("the ctvnc command", function()
  it("stops a batch at the first refusal of its token: one request, not one per VM", function()
    local ids = {}
    for i = 1, 500 do ids[i] = "vm-" .. i end
    helpers.reset()
    local out, rc = ctvnc("batch --mode proxy " .. table.concat(ids, " "),
      "CTVNC_ENDPOINT=" .. sim.http .. " CTVNC_TOKEN=refused-token")
    assert.are.equal(1, rc)
    local stats = helpers.stats()
    assert.are.equal(1, stats.requests["/api"])
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(500, #lines)
    assert.truthy(lines[1]:find("^vm%-1\terror\tauth\t"), lines[1])
    assert.is_nil(lines[1]:find("not asked", 1, true))
    for i = 2, 500 do
      assert.are.equal("vm-" .. i .. "\terror\tauth\tnot asked: the tower refused the token",
        lines[i])
    end
    assert.is_nil(out:find("refused-token", 1, true))
  end)

  it("names --ca-file and --insecure when TLS with the tower fails", function()
    local env = "CTVNC_ENDPOINT=" .. sim.https .. " CTVNC_TOKEN=sim-token"
    for _, args in ipairs({ "url --mode proxy vm-1", "batch --mode proxy vm-1 vm-2",
                            "vms web-1" }) do
      local out, rc, err = ctvnc(args, env)
      assert.are.equal(1, rc, args)
      assert.truthy((out .. err):find("tls", 1, true), args)
      local last = err:match("([^\n]*)\n$")
      assert.truthy(last:find("--ca-file FILE (or CTVNC_CA_FILE)", 1, true), args .. ": " .. err)
      assert.truthy(last:find("--insecure", 1, true), args .. ": " .. err)
    end
    local _, rc, err = ctvnc("--ca-file /etc/ssl/certs/ca-certificates.crt url --mode proxy vm-1",
      env)
    assert.are.equal(1, rc)
    assert.truthy(err:find("does the --ca-file (CTVNC_CA_FILE) bundle hold the CA", 1, true), err)
    assert.truthy(err:find("--insecure", 1, true), err)
    -- and none of it when TLS worked
    _, rc, err = ctvnc("url --mode proxy vm-1", env .. " CTVNC_CA_FILE=" .. sim.cert)
    assert.are.equal(0, rc)
    assert.are.equal("", err)
  end)

  it("suggests the nearest flag or command for an unknown one", function()
    local cases = {
      { "--concurency 4 batch vm-1", "unknown option --concurency (did you mean --concurrency?)" },
      { "url --formt json vm-1", "unknown option --formt (did you mean --format?)" },
      { "url --insecur vm-1", "unknown option --insecur (did you mean --insecure?)" },
      { "url --per-req=5 vm-1", "unknown option --per-req (did you mean --per-request?)" },
      { "url --zzzzzz vm-1", "unknown option --zzzzzz" },
      { "url -x vm-1", "unknown option -x" },
      { "bach vm-1", "unknown command bach (did you mean batch?)" },
      { "ur vm-1", "unknown command ur (did you mean url?)" },
      { "frobnicate", "unknown command frobnicate" },
    }
    for _, c in ipairs(cases) do
      local _, rc, err = ctvnc(c[1])
      assert.are.equal(2, rc, c[1])
      assert.are.equal("ctvnc: " .. c[2] .. "\ntry 'ctvnc --help'\n", err, c[1])
    end
  end)

  it("never echoes a secret typed on the command line, on any error or usage path", function()
    local S = "S3cr3tVALUE"
    -- each a list of words, as the shell hands them over
    local argvs = {
      { "--password=" .. S, "url", "vm-1" }, { "url", "--password=" .. S, "vm-1" },
      { "url", "vm-1", "--password=" .. S }, { "--password=" .. S, "--help" },
      { "--password=" .. S }, { "--password", S, "url", "vm-1" },
      { "-p=" .. S, "url", "vm-1" }, { "-p" .. S, "url", "vm-1" },
      { "--pasword=" .. S, "batch", "vm-1" }, { "--token=" .. S, "url", "vm-1" },
      { "--api-key=" .. S, "vms", "web" }, { "--insecure=" .. S, "url", "vm-1" },
      { "--quiet=" .. S, "login" }, { "--help=" .. S }, { "url", "--name=x", "--password=" .. S },
      { "--header", "Authorization " .. S, "url", "vm-1" },
      { "--header", "X-Key=" .. S, "url", "vm-1" },
      { "--endpoint=https://admin:" .. S .. "@127.0.0.1", "url", "vm-1" },
      { "--endpoint=https://admin:" .. S .. "@127.0.0.1:99999", "url", "vm-1" },
      { "--password=" .. S, "frobnicate" }, { "--password=" .. S, "vms" },
    }
    for _, words in ipairs(argvs) do
      for i, w in ipairs(words) do words[i] = "'" .. w .. "'" end
      local args = table.concat(words, " ")
      local out, rc, err = ctvnc(args)
      assert.is_true(rc ~= 0, args)
      assert.is_nil((out .. err):find(S, 1, true), args .. " -> " .. out .. err)
      assert.is_nil((out .. err):find("traceback", 1, true), args)
    end
  end)
end)

describe("the progress line", function()
  local function fake()
    local t, lines = 0, {}
    local err = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end,
                  flush = function() end }
    return err, function() return t end, function(s) t = s end, lines
  end

  it("shows an ETA from the rate so far, while VMs are left", function()
    local err, now, set, lines = fake()
    local p = cli.progress(err, 80, true, now)
    set(2)
    p.update(10, 100, 0)                   -- 5 a second: 18 s for the 90 left
    assert.truthy(lines[#lines]:find(" 10/100  5.0/s  ETA 18s", 1, true), lines[#lines])
    set(4)
    p.update(20, 400, 1)                   -- 380 left at 5 a second
    assert.truthy(lines[#lines]:find(" 20/400  5.0/s  ETA 1m16s  1 failed", 1, true),
      lines[#lines])
    set(5)
    p.update(400, 400, 1)
    assert.is_nil(lines[#lines]:find("ETA", 1, true))
  end)

  it("says in its last line after a signal how many were interrupted", function()
    local err, now, set, lines = fake()
    local p = cli.progress(err, 80, true, now)
    set(1)
    p.update(3, 10, 0)
    p.update(10, 10, 7)                    -- the interrupted ones settle as failures
    p.finish(7)
    assert.are.equal("\n", lines[#lines])
    local last = lines[#lines - 1]
    assert.truthy(last:find(" 3/10 ", 1, true), last)
    assert.truthy(last:find("  7 interrupted", 1, true), last)
    assert.is_nil(last:find("failed", 1, true), last)
    assert.is_nil(last:find("ETA", 1, true), last)
  end)
end)

describe("ctvnc.cli output", function()
  it("defuses spreadsheet formulas and quotes CSV cells", function()
    local cases = {
      { "plain", "plain" }, { "=1+2", "'=1+2" }, { "+1", "'+1" }, { "-1", "'-1" },
      { "@SUM(A1)", "'@SUM(A1)" }, { "\tx", "'\tx" }, { "a,b", '"a,b"' },
      { 'say "hi"', '"say ""hi"""' }, { "=a,b", "\"'=a,b\"" }, { "a=b", "a=b" }, { "", "" },
    }
    for _, c in ipairs(cases) do assert.are.equal(c[2], cli.csv_cell(c[1]), c[1]) end
  end)

  it("strips control characters, C1 included, and keeps UTF-8", function()
    local cases = {
      { "abc", "abc" }, { "a\27[31mb", "a[31mb" }, { "a\r\nb", "a  b" }, { "a\tb", "a b" },
      { "a\0b\7c\127d", "abcd" }, { "a\194\155b", "ab" }, { "虚拟机", "虚拟机" }, { "é", "é" },
    }
    for _, c in ipairs(cases) do assert.are.equal(c[2], cli.printable(c[1]), c[1]) end
  end)
end)
