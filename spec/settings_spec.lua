local helpers = require "helpers"
local config = require "ctvnc.gateway.config"

-- The gateway's settings are declared once (ctvnc.gateway.config); the docs,
-- run.sh and the reference nginx.conf follow the declaration, and a
-- setting one of them has and the declaration has not (or the other way
-- round) fails here.
local ROOT = helpers.ROOT
local function doc(name) return assert(helpers.read_file(ROOT .. "/" .. name), name) end

--- The rows of the markdown table that follows `heading` in text: { first
-- cell (without backticks) = the whole row }.
local function table_after(text, heading)
  local at = assert(text:find("\n" .. heading .. "\n", 1, true), "no heading " .. heading)
  local rows = {}
  local started
  for line in text:sub(at + #heading + 2):gmatch("([^\n]*)\n") do
    if line:find("^|") then
      started = true
      local first = line:match("^|%s*`([^`]+)`%s*|")
      if first then rows[first] = line end
    elseif started then
      break
    end
  end
  return rows
end

--- The body of gateway.configure({ ... }) in the reference nginx.conf.
local function configure_block()
  local conf = doc("examples/openresty/nginx.conf")
  local body = conf:match("gateway%.configure%(%{(.-)\n%s*%}%)")
  return assert(body, "no gateway.configure({...}) in nginx.conf")
end

describe("the gateway's settings", function()
  local gateway_md = doc("docs/gateway.md")
  local by_env = table_after(gateway_md, "## Settings")
  local configure_only = table_after(gateway_md, "### Settings of `gateway.configure` only")

  it("are each documented once: with its run.sh variable and default, or as configure's only",
     function()
    assert.is_true(#config.SETTINGS >= 30)
    for _, s in ipairs(config.SETTINGS) do
      local row
      if s.env then
        row = by_env[s.env]
        assert.truthy(row, s.env .. " (" .. s.name .. ") is not in the settings table")
        assert.truthy(row:find("`" .. s.name .. "`", 1, true), s.env .. "'s row does not name "
          .. s.name)
        assert.is_nil(configure_only[s.name], s.name .. " is in both tables")
      else
        row = configure_only[s.name]
        assert.truthy(row, s.name .. " is not in the configure-only table")
      end
      if s.default ~= nil then
        assert.truthy(row:find(tostring(s.default), 1, true), s.name .. ": the docs do not say "
          .. "its default " .. tostring(s.default))
      end
    end
  end)

  it("are declared when the docs name them", function()
    local declared = {}
    for _, s in ipairs(config.SETTINGS) do declared[s.name] = s end
    for name in pairs(configure_only) do
      assert.truthy(declared[name], name .. " is documented, not declared")
    end
    -- a run.sh row that gives its configure name: "(`name`)"
    for env, row in pairs(by_env) do
      for name in row:gmatch("%(`([%l_]+)`%)") do
        assert.truthy(declared[name], env .. " names " .. name .. ", which is not declared")
        assert.are.equal(env, declared[name].env, name .. " is set by another variable")
      end
    end
  end)

  it("reach configure{} through run.sh and nginx.conf, and nothing else does", function()
    local body = configure_block()
    local run = doc("examples/openresty/run.sh")
    local conf = doc("examples/openresty/nginx.conf")
    local given = {}
    for name in body:gsub("%-%-[^\n]*", ""):gmatch("([%a_][%w_]*)%s*=[^=]") do
      given[name] = true
    end
    local declared = {}
    for _, s in ipairs(config.SETTINGS) do
      declared[s.name] = true
      if s.env then
        assert.truthy(given[s.name], s.name .. " is declared, not set in nginx.conf's configure{}")
        local read = run:find("${" .. s.env, 1, true) or run:find("$" .. s.env, 1, true)
          or conf:find("\nenv " .. s.env .. ";", 1, true)
        assert.truthy(read, s.env .. " (" .. s.name .. ") is not read by run.sh or nginx.conf")
        assert.truthy(run:find("#   [^\n]*" .. s.env), s.env .. " is not in run.sh's header")
      end
    end
    for name in pairs(given) do
      assert.truthy(declared[name], "nginx.conf sets " .. name .. ", which is not declared")
    end
  end)

  it("are checked by configure: a bad value is one line naming the setting", function()
    local base = { endpoint = "https://tower.test" }
    local function with(k, v)
      local c = { endpoint = base.endpoint }
      c[k] = v
      return c
    end
    local cases = {
      { with("max_per_vm", -1), "ctvnc: setting max_per_vm: must be at least 0" },
      { with("ticket_ttl", 61), "ctvnc: setting ticket_ttl: must be at most 60" },
      { with("slot_ttl", "10"), "ctvnc: setting slot_ttl: must be a number" },
      { with("mode", "fast"), "ctvnc: setting mode: must be one of auto, direct, proxy" },
      { with("port", 70000), "ctvnc: setting port: must be an integer 1-65535" },
      { with("authorize", "keys.txt"), "ctvnc: setting authorize: must be a function" },
      { with("store", "memcached"), "ctvnc: setting store: must be shdict or a redis:// or "
        .. "rediss:// URL" },
      { with("store", "redis://:pw@[::1/0"), "ctvnc: setting store: STORE: no valid host in "
        .. "the URL" },
      { with("max_per_mv", 1), "ctvnc: setting max_per_mv: no such setting" },
      { with("proxy_scheme", "ws"), "ctvnc: setting proxy_scheme: ws would send console "
        .. "tokens in clear to a tower reached over https" },
      { { endpoint = "" }, "ctvnc: setting endpoint: is required" },
      { with("id_rate", 50), "ctvnc: setting id_rate: must be 0 (off) or at least batch_max" },
      { with("ticket_secret", "short"), "ctvnc: setting ticket_secret: must be at least 32 bytes" },
    }
    for _, c in ipairs(cases) do
      local conf, err = config.check(c[1])
      assert.is_nil(conf)
      assert.are.equal(c[2], err)
    end
    local conf = assert(config.check({ endpoint = "http://tower.test", proxy_scheme = "ws",
      allowed_origins = "" }))
    assert.are.same({ 10, 0.5, "shdict", "ws", nil },
      { conf.slot_ttl, conf.probe_timeout, conf.store, conf.proxy_scheme, conf.allowed_origins })
    assert.are.equal("wss", config.proxy_scheme(assert(config.check(base))))
    assert.are.equal("ws", config.proxy_scheme(assert(config.check({ endpoint = "HTTP://t" }))))
  end)
end)
