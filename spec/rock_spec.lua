local helpers = require "helpers"

-- The rock for the Lua running this spec (LuaJIT: the 5.1 rock): a plain
-- `luarocks --lua-version=V make`, with no LUA_INCDIR or other hint, into a
-- fresh tree, from a copy of the sources (LuaRocks builds in place).
-- --deps-mode=none: lua-cjson comes from Debian's lua-cjson package, which
-- LuaRocks does not see, and there is no rock registry here.
-- CTVNC_ROCK_DIR keeps the copy and the tree (`make test` sets it per
-- suite); otherwise a temporary directory is used and removed.
describe("the rock #rock #novalgrind", function()
  local ABI = _VERSION:match("%d+%.%d+")
  local JIT = type(rawget(_G, "jit")) == "table"
  local LUA = JIT and "luajit" or "lua" .. ABI
  -- child processes see only the tree, never this checkout's paths
  local CLEAN = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u LUA_PATH_5_3 "
    .. "-u LUA_CPATH_5_3 -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT "
  local dir, tree, so, keep, built, build_log, sim

  setup(function()
    sim = helpers.sim()
    keep = os.getenv("CTVNC_ROCK_DIR")
    dir = keep
    if not dir then
      dir = os.tmpname()
      os.remove(dir)
    end
    if dir:sub(1, 1) ~= "/" then dir = helpers.run("pwd"):match("^(.-)\n") .. "/" .. dir end
    tree = dir .. "/tree"
    so = ("%s/lib/lua/%s/ctvnc/core.so"):format(tree, ABI)
    local _, ok = helpers.run(("rm -rf %s/src %s && mkdir -p %s/src && cd %s && "
      .. "cp -r csrc lua bin *.rockspec %s/src/"):format(dir, tree, dir, helpers.ROOT, dir))
    assert(ok)
    build_log, built = helpers.run(("cd %s/src && %s luarocks --lua-version=%s --tree %s "
      .. "make --deps-mode=none ctvnc-scm-1.rockspec"):format(dir, CLEAN, ABI, tree))
  end)

  teardown(function()
    if not keep then helpers.run("rm -rf " .. dir) end
  end)

  it("builds with luarocks make for Lua " .. ABI .. ", with no warning", function()
    assert(built, build_log)
    assert.is_nil(build_log:find("warning:", 1, true), build_log)
    local f = io.open(so, "rb")
    assert(f, so .. " is missing")
    f:close()
  end)

  it("exports luaopen_ctvnc_core and nothing else", function()
    local out, ok = helpers.run("nm -D --defined-only " .. so)
    assert(ok, out)
    local names = {}
    for name in out:gmatch("%x+ [A-Za-z] ([%w_@.]+)") do names[#names + 1] = name end
    assert.are.same({ "luaopen_ctvnc_core" }, names)
  end)

  it("loads under " .. LUA .. " from the tree", function()
    local check = [[local c = require("ctvnc"); print(c._VERSION .. " " ..
      c.encode_uri_component("a b") .. " " .. package.searchpath("ctvnc.core", package.cpath))]]
    if JIT or ABI == "5.1" then   -- no package.searchpath in 5.1
      check = [[local c = require("ctvnc"); print(c._VERSION .. " " ..
        c.encode_uri_component("a b") .. " " .. package.loaded["ctvnc.core"].direct_url(
        { cluster_ip = "h", vm_uuid = "u", raw_token = "r", host_ip = "i" }))]]
    end
    local script = dir .. "/check.lua"
    local f = assert(io.open(script, "w"))
    f:write(check, "\n")
    f:close()
    local out, ok = helpers.run(("%s sh -c 'eval \"$(luarocks --lua-version=%s --tree %s path)\" "
      .. "&& cd / && %s %s'"):format(CLEAN, ABI, tree, LUA, script))
    assert(ok, out)
    if JIT or ABI == "5.1" then
      assert.are.equal("ctvnc 0.1.0 a%20b wss://h/websockify/?uuid=u&token=r&host=i\n", out)
    else
      assert.are.equal("ctvnc 0.1.0 a%20b " .. so .. "\n", out)
    end
  end)

  it("installs the gateway package with its page templates beside it", function()
    local share = ("%s/share/lua/%s/ctvnc/gateway/"):format(tree, ABI)
    for _, file in ipairs({ "init.lua", "config.lua", "respond.lua", "relay.lua",
                            "store/shdict.lua", "console.html", "error.html" }) do
      local f = io.open(share .. file)
      assert.truthy(f, share .. file .. " is missing")
      f:close()
    end
    local script = dir .. "/settings.lua"
    helpers.write_file(script, 'print(#require("ctvnc.gateway.config").SETTINGS)\n')
    local out, ok = helpers.run(("%s sh -c 'eval \"$(luarocks --lua-version=%s --tree %s path)\" "
      .. "&& cd / && %s %s'"):format(CLEAN, ABI, tree, LUA, script))
    assert(ok, out)
    assert.is_true(tonumber(out) >= 30, out)
  end)

  it("installs a ctvnc command that runs with the Lua it was built for", function()
    local f = assert(io.open(tree .. "/bin/ctvnc"))
    local wrapper = f:read("*a")
    f:close()
    assert.truthy(wrapper:find("lua" .. ABI, 1, true), wrapper)
    local out, ok = helpers.run(("cd / && %s %s/bin/ctvnc --version"):format(CLEAN, tree))
    assert(ok, out)
    assert.are.equal("ctvnc 0.1.0\n", out)
  end)

  it("installs from a packed source rock too", function()
    -- what `luarocks pack` makes of a git source: the rockspec beside the
    -- sources in a folder named after the repository
    local rock = dir .. "/ctvnc-scm-1.src.rock"
    local out, ok = helpers.run(("rm -rf %s/pack %s/tree2 %s && mkdir -p %s/pack/ctvnc && "
      .. "cp -r %s/src/csrc %s/src/lua %s/src/bin %s/src/ctvnc-scm-1.rockspec %s/pack/ctvnc/ && "
      .. "cp %s/src/ctvnc-scm-1.rockspec %s/pack/ && cd %s/pack && "
      .. "zip -qr %s ctvnc-scm-1.rockspec ctvnc")
      :format(dir, dir, rock, dir, dir, dir, dir, dir, dir, dir, dir, dir, rock))
    assert(ok, out)
    out, ok = helpers.run(("cd %s && %s luarocks --lua-version=%s --tree %s/tree2 install "
      .. "--deps-mode=none %s"):format(dir, CLEAN, ABI, dir, rock))
    assert(ok, out)
    out, ok = helpers.run(("cd / && %s %s/tree2/bin/ctvnc --version"):format(CLEAN, dir))
    assert(ok, out)
    assert.are.equal("ctvnc 0.1.0\n", out)
    out = helpers.run(("nm -D --defined-only %s/tree2/lib/lua/%s/ctvnc/core.so"):format(dir, ABI))
    assert.are.equal("luaopen_ctvnc_core", out:match("%x+ %a ([%w_]+)\n$"))
    assert.are.equal(1, select(2, out:gsub("\n", "")))
  end)

  it("installs a ctvnc command that asks the simulator for a URL", function()
    local f = assert(helpers.popen(("cd / && %s CTVNC_ENDPOINT=%s CTVNC_TOKEN=sim-token "
      .. "CTVNC_PROGRESS=0 %s/bin/ctvnc url --mode proxy vm-1 2>&1; echo \"::rc=$?\"")
      :format(CLEAN, sim.http, tree)))
    local out = f:read("*a")
    f:close()
    assert.matches("^vm%-1\tproxy\tws://127%.0%.0%.1:" .. sim.http_port
      .. "/websockify/%?token=[^\n]+\n::rc=0\n$", out)
  end)
end)
