local helpers = require "helpers"
local config = require "ctvnc.gateway.config"
local service = require "ctvnc.gateway.service"

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

--- The body of gateway.configure({ ... }) in the nginx.conf template.
local function configure_block()
  local conf = doc("lua/ctvnc/gateway/nginx.tpl")
  local body = conf:match("gateway%.configure%(%{(.-)\n%s*%}%)")
  return assert(body, "no gateway.configure({...}) in nginx.tpl")
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

  it("reach configure{} through the nginx.conf template, and nothing else does", function()
    local body = configure_block()
    local given = {}
    for name, value in body:gsub("%-%-[^\n]*", ""):gmatch("([%a_][%w_]*)%s*=%s*([^,\n]+)") do
      given[name] = value
    end
    local hooks = { authorize = "@AUTHORIZE@", admin_authorize = "@ADMIN_AUTHORIZE@" }
    local declared = {}
    for _, s in ipairs(config.SETTINGS) do
      declared[s.name] = true
      if s.env then
        local from_env = ('os.getenv("%s")'):format(s.env)   -- the secrets, and the endpoint
        if given[s.name] ~= from_env then
          assert.are.equal(hooks[s.name] or ("@=" .. s.env .. "@"), given[s.name],
            s.name .. " is declared, not set from " .. s.env .. " in nginx.tpl's configure{}")
        end
        assert.truthy(service.named(s.env), s.env .. " is no setting of ctvnc gateway")
      end
    end
    for name in pairs(given) do
      assert.truthy(declared[name], "nginx.tpl sets " .. name .. ", which is not declared")
    end
  end)

  it("keep secrets out of nginx.conf: each reaches the workers through nginx's environment",
     function()
    local tpl = doc("lua/ctvnc/gateway/nginx.tpl")
    local n = 0
    for _, s in ipairs(service.SETTINGS) do
      if s.kind == "secret" then
        n = n + 1
        assert.truthy(tpl:find("\nenv " .. s.name .. ";", 1, true), s.name .. ": no env line")
        assert.is_nil(tpl:find("@=?" .. s.name .. "@"), s.name .. " is written into nginx.conf")
      end
    end
    assert.is_true(n >= 3)
  end)

  it("are all in the commented default settings file, with their defaults and docs", function()
    local text = doc("lua/ctvnc/gateway/gateway.conf")
    local seen = {}
    for doc_line, name, value in text:gmatch("# ([^\n]*)\n#([%u%d_]+) =([^\n]*)\n") do
      local s = service.named(name)
      assert.truthy(s, name .. " is in gateway.conf, not declared")
      assert.is_nil(seen[name], name .. " twice")
      seen[name] = true
      assert.are.equal(s.doc, doc_line, name)
      local want = s.default ~= nil and " " .. tostring(s.default) .. (s.kind == "duration"
        and "s" or "") or ""
      assert.are.equal(want, value, name .. "'s default")
    end
    for _, s in ipairs(service.SETTINGS) do
      assert.truthy(seen[s.name], s.name .. " is missing from gateway.conf")
    end
    -- every value there is one the check takes (all commented out: uncommented, they pass)
    local uncommented = text:gsub("\n#([%u%d_]+ = )", "\n%1")
    local v, problems = service.resolve(uncommented, function() end, "gateway.conf")
    assert.is_nil(v)
    assert.are.same({ "gateway.conf: CTVNC_TOKEN: is required (CloudTower's token or API key; "
      .. "the environment will do)", "gateway.conf: CTVNC_ENDPOINT: is required" }, problems)
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
      { with("audit_key", "short"), "ctvnc: setting audit_key: must be at least 32 bytes" },
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
