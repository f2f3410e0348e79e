-- The documentation says what the code does: README.md is short and its
-- links lead somewhere, docs/api.md runs (every `-->` line is what that
-- line prints) and names every public function, docs/gateway.md lists
-- every setting run.sh reads and no other.
local helpers = require "helpers"
local ctvnc = require "ctvnc"

local ROOT = helpers.ROOT
local function doc(name) return assert(helpers.read_file(ROOT .. "/" .. name), name) end

--- The fenced blocks of a markdown text: { info =, first = line, lines = {...} }.
local function blocks(text)
  local out, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    local fence = line:match("^```(.*)$")
    if fence and not cur then
      cur = { info = fence, first = n + 1, lines = {} }
    elseif fence then
      out[#out + 1], cur = cur, nil
    elseif cur then
      cur.lines[#cur.lines + 1] = line
    end
  end
  assert(not cur, "a code block is not closed")
  return out
end

--- Loads `src` with `env` as its globals, under every Lua of the matrix.
local function load_in(src, name, env)
  if setfenv then
    local f = assert(loadstring(src, name))
    return setfenv(f, env)
  end
  return assert(load(src, name, "t", env))
end

describe("README.md", function()
  it("is at most 200 lines and starts with the two commands", function()
    local text = doc("README.md")
    local _, lines = text:gsub("\n", "")
    assert.is_true(lines <= 200, lines .. " lines")
    local first = blocks(text)[1]
    assert.same({ "sh" }, { first.info })
    assert.truthy(first.lines[1]:find("^make demo"))
    assert.truthy(first.lines[2]:find("^make test"))
  end)

  it("links only to files that exist, and to every docs/ topic", function()
    local linked = {}
    for _, name in ipairs({ "README.md", "docs/api.md", "docs/cli.md", "docs/gateway.md",
                            "docs/sessions.md", "docs/operations.md", "docs/benchmarks.md",
                            "docs/testing.md", "docs/redis.md", "CHANGELOG.md" }) do
      local dir = name:match("^(.*)/") or "."
      for target in doc(name):gmatch("%]%(([^)#%s]+)[^)]*%)") do
        if not target:find("^%a+:") then
          local path = dir .. "/" .. target
          assert.truthy(io.open(ROOT .. "/" .. path), name .. " links to " .. target)
          if name == "README.md" then linked[target] = true end
        end
      end
    end
    for _, topic in ipairs({ "api", "cli", "gateway", "sessions", "operations", "benchmarks",
                             "testing", "redis" }) do
      assert.truthy(linked["docs/" .. topic .. ".md"], "README does not link docs/" .. topic)
    end
    assert.truthy(linked["LICENSE"])
    assert.truthy(linked["CHANGELOG.md"])
  end)

  it("LICENSE is the MIT licence the rockspec names", function()
    local spec = {}
    assert(load_in(doc("ctvnc-scm-1.rockspec"), "rockspec", spec))()
    assert.equal("MIT", spec.description.license)
    local license = doc("LICENSE")
    assert.truthy(license:find("^MIT License\n"))
    assert.truthy(license:find("Copyright %(c%) %d+ the ctvnc authors"))
    assert.truthy(license:find("WITHOUT WARRANTY OF ANY KIND", 1, true))
  end)
end)

describe("docs/api.md", function()
  local text = doc("docs/api.md")

  it("has a syntax: line for every function of the module and of a client", function()
    local names = {}
    for k in pairs(ctvnc) do names[#names + 1] = "ctvnc." .. k end
    local client = assert(ctvnc.new({ endpoint = "https://127.0.0.1", token = "t" }))
    for k, v in pairs(getmetatable(client).__index) do
      if type(v) == "function" and not k:find("^_") then names[#names + 1] = "client:" .. k end
    end
    client:close()
    assert.is_true(#names >= 14, #names)
    for _, name in ipairs(names) do
      local pattern = "\n`syntax: [^`\n]*" .. name:gsub("[%.:]", "%%%0") .. "[%(`]"
      assert.truthy(text:find(pattern), name .. " has no syntax: line")
    end
  end)

  it("runs, in order, against the simulator, and prints what every --> line says", function()
    local sim = helpers.sim()
    local src, expect, from = {}, {}, {}
    local last_print
    for _, b in ipairs(blocks(text)) do
      if b.info == "lua" then
        for i, line in ipairs(b.lines) do
          src[#src + 1] = line
          from[#src] = b.first + i - 1
          if line:find("print(", 1, true) then last_print = #src end
          local want = line:match("%-%->%s(.*)$")
          if want then
            assert(last_print, "docs/api.md:" .. from[#src] .. ": --> with no print before it")
            expect[last_print] = want
          end
        end
      else
        assert.truthy(b.info == "lua openresty" or b.info == "nginx",
          "docs/api.md:" .. b.first .. ": a block that does not run: " .. b.info)
      end
    end
    local printed = {}
    local env_vars = { CTVNC_ENDPOINT = sim.https, CTVNC_TOKEN = "sim-token",
                       CTVNC_CA_FILE = sim.cert }
    local env = setmetatable({
      print = function(...)
        local line = debug.getinfo(2, "l").currentline
        local t = { n = select("#", ...), ... }
        for i = 1, t.n do t[i] = tostring(t[i]) end
        printed[line] = table.concat(t, "\t", 1, t.n)
      end,
      os = setmetatable({ getenv = function(k) return env_vars[k] end }, { __index = os }),
    }, { __index = _G })
    load_in(table.concat(src, "\n"), "=docs/api.md", env)()
    local checked = 0
    for line, want in pairs(expect) do
      assert.equal(want, printed[line], "docs/api.md:" .. from[line])
      checked = checked + 1
    end
    assert.is_true(checked >= 14, checked .. " checked lines")
  end)
end)

describe("docs/redis.md", function()
  it("has a syntax: line for every function of ctvnc.redis and of a reply reader", function()
    local syntax = {}
    for line in doc("docs/redis.md"):gmatch("\n(`syntax:[^\n]*)") do syntax[#syntax + 1] = line end
    local names = {}
    for k, v in pairs(require("ctvnc.redis")) do
      if type(v) == "function" then names[#names + 1] = k end
    end
    assert.is_true(#names >= 20, #names)
    local reader = require("ctvnc.core").resp_reader()
    for k in pairs(getmetatable(reader).__index) do names[#names + 1] = "reader:" .. k end
    reader:close()
    for _, name in ipairs(names) do
      local pattern = (name:find(":", 1, true) and "" or "[%.:]") .. name:gsub("[%.:]", "%%%0") .. "[%(`]"
      local found = false
      for _, line in ipairs(syntax) do found = found or line:find(pattern) ~= nil end
      assert.is_true(found, name .. " has no syntax: line")
    end
  end)
end)

describe("docs/gateway.md", function()
  it("lists every setting of ctvnc gateway in its settings table, and no other", function()
    local read = { SIM_ENV = true }   -- run.sh's own: the simulator to use
    for _, s in ipairs(require("ctvnc.gateway.service").SETTINGS) do read[s.name] = true end
    local run = doc("examples/openresty/run.sh")
    for name in run:gmatch("%${([A-Z][A-Z0-9_]+)") do
      assert.truthy(read[name], "run.sh reads " .. name .. ", which is no setting")
    end
    local table_rows = {}
    for row in doc("docs/gateway.md"):gmatch("\n| `([A-Z][A-Z0-9_]+)` |") do
      table_rows[row] = true
    end
    for name in pairs(read) do
      assert.truthy(table_rows[name], name .. " is a setting, not in the settings table")
    end
    for name in pairs(table_rows) do
      assert.truthy(read[name], name .. " is in the settings table, no setting")
    end
  end)
end)
