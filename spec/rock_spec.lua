local helpers = require "helpers"

-- `luarocks make` of the rockspec into a fresh tree, for each Lua, from a
-- copy of the sources (LuaRocks builds in place), must give a working
-- `require "ctvnc"`. No registry here, hence --deps-mode=none.
describe("the rockspec #novalgrind", function()
  local tmp

  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    local _, ok = helpers.run(("mkdir -p %s/src && cd %s && cp -r csrc lua bin *.rockspec %s/src/")
      :format(tmp, helpers.ROOT, tmp))
    assert(ok)
  end)

  teardown(function()
    helpers.run("rm -rf " .. tmp)
  end)

  local check = [[print(require("ctvnc")._VERSION .. " " ..
    require("ctvnc").encode_uri_component("a b") .. " " .. package.searchpath("ctvnc.core", package.cpath))]]

  for _, lua in ipairs({ { "5.4", "lua5.4", "" }, { "5.1", "luajit", "LUA_INCDIR=/usr/include/luajit-2.1" } }) do
    local version, interp, extra = lua[1], lua[2], lua[3]
    it("installs and loads under " .. interp, function()
      local tree = tmp .. "/tree"
      local out, ok = helpers.run(("cd %s/src && luarocks --lua-version=%s --tree %s make --deps-mode=none %s %s")
        :format(tmp, version, tree, "ctvnc-scm-1.rockspec", extra))
      assert(ok, out)
      out, ok = helpers.run(("eval \"$(luarocks --lua-version=%s --tree %s path)\" && cd / && %s -e '%s'")
        :format(version, tree, interp, check))
      assert(ok, out)
      assert.matches("^ctvnc 0%.1%.0 a%%20b " .. tree:gsub("%p", "%%%0") .. "/lib/lua/" .. version
        .. "/ctvnc/core%.so", out)
    end)
    if version == "5.4" then -- the command runs on Lua 5.4; LuaJIT is for OpenResty
      it("installs a working ctvnc command", function()
        local out, ok = helpers.run(("eval \"$(luarocks --lua-version=5.4 --tree %s/tree path)\" "
          .. "&& cd / && %s/tree/bin/ctvnc --version"):format(tmp, tmp))
        assert(ok, out)
        assert.are.equal("ctvnc 0.1.0\n", out)
      end)
    end
  end
end)
