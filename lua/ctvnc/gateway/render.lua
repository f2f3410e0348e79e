--- ctvnc.gateway.render: the nginx.conf of `ctvnc gateway start`, from
-- the template the rock installs beside this module (nginx.tpl) and the
-- resolved settings (ctvnc.gateway.service). Pure Lua, no ngx.
--
-- In the template, @NAME@ is nginx text made here from the settings and
-- @=NAME@ the setting NAME as a Lua literal (inside configure{}); a
-- placeholder left over is an error, never text nginx would guess at.
local format, concat = string.format, table.concat
local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs

local service = require "ctvnc.gateway.service"
local config = require "ctvnc.gateway.config"

local _M = {}

local SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function absolute(path, cwd)
  if path:sub(1, 1) == "/" then return path end
  return cwd .. "/" .. path:gsub("^%./", "")
end

--- The first file `name` (a module name) names along `path` (package.path
-- or cpath), like package.searchpath (which Lua 5.1 has not).
local function search(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    if exists(candidate) then return candidate end
  end
end

--- Where this running ctvnc loads its Lua modules and the C core built for
-- LuaJIT (the 5.1 ABI) from -> { lua = dir, so = dir, template = file } |
-- nil, why. `path` and `cpath`: package.path and package.cpath; `abi` the
-- running Lua's ("5.4"); `cwd` makes relative entries absolute.
function _M.locate(path, cpath, abi, cwd)
  local found = search("ctvnc.gateway.config", path)
  local core = search("ctvnc.core", cpath)
  if not found or not core then return nil, "ctvnc's modules are not on this Lua's paths" end
  local lua_dir = absolute(found, cwd):match("^(.*)/ctvnc/gateway/config%.lua$")
  core = absolute(core, cwd)
  if abi ~= "5.1" then
    local jit = core:gsub("/5%.%d(/ctvnc/core%.so)$", "/5.1%1")
    if jit == core or not exists(jit) then
      return nil, ("nginx runs ctvnc's core under LuaJIT (Lua 5.1's ABI), and there is no "
        .. "5.1 build beside %s: install the rock for Lua 5.1 too (luarocks --lua-version=5.1 "
        .. "make, or make build in a checkout)"):format(core)
    end
    core = jit
  end
  local template = lua_dir .. "/ctvnc/gateway/nginx.tpl"
  if not exists(template) then return nil, template .. " is missing" end
  return { lua = lua_dir, so = core:match("^(.*)/ctvnc/core%.so$"), template = template }
end

--- A Lua literal of v (nil, a number or a string).
local function lua_value(v)
  if v == nil then return "nil" end
  if type(v) == "number" then return tostring(v) end
  return format("%q", v)
end

--- nginx's resolver line: RESOLVER, else /etc/resolv.conf's nameservers.
local function resolver(v)
  if v.RESOLVER then return v.RESOLVER end
  local found = {}
  local f = io.open("/etc/resolv.conf")
  for line in f and f:lines() or function() end do
    local a = line:match("^%s*nameserver%s+(%S+)")
    if a and not a:find("[;{}\"'$\\]") then
      found[#found + 1] = a:find(":") and "[" .. a .. "]" or a
    end
  end
  if f then f:close() end
  return #found > 0 and concat(found, " ") or "127.0.0.53"
end

local function has_ipv6()
  local f = io.open("/proc/net/if_inet6")
  if not f then return false end
  for line in f:lines() do
    if not line:match("%slo$") then f:close() return true end
  end
  f:close()
  return false
end

--- The authorize hook's Lua expression: KEYS, JWT, or both.
local function authorize(v)
  local keys = v.KEYS and format("gateway.key_file(%q)", v.KEYS)
  local jwt
  if v.JWT then
    local opts = format("audience = %s, issuer = %s, leeway = %s, cookie = %s",
      lua_value(v.JWT_AUDIENCE), lua_value(v.JWT_ISSUER), lua_value(v.JWT_LEEWAY),
      lua_value(v.JWT_COOKIE))
    if v.JWT == "hs256" then
      jwt = format('gateway.jwt({ secret = os.getenv("CTVNC_JWT_SECRET"), %s })', opts)
    else
      jwt = format('gateway.jwt({ public_key = assert(io.open(%q)):read("*a"), %s })',
        v.JWT_PUBLIC_KEY, opts)
    end
  end
  if keys and jwt then return format("gateway.either(%s, %s)", keys, jwt) end
  return keys or jwt or "nil"
end

--- The listen lines, the TLS lines and the redirecting server.
local function listeners(v, port)
  local list = service.listeners(v.LISTEN or ("127.0.0.1:" .. port))
  local main, plain, https_port = {}, {}, nil
  for _, l in ipairs(list) do
    if l.ssl then
      main[#main + 1] = "        listen " .. l.addr .. " ssl reuseport;"
      https_port = https_port or l.port
    elseif v.tls then
      plain[#plain + 1] = "        listen " .. l.addr .. ";"
    else   -- reuseport: each worker its own queue, none fills alone
      main[#main + 1] = "        listen " .. l.addr .. " reuseport;"
    end
  end
  local tls, hsts, redirect = "", "", ""
  if v.tls then
    if v.HSTS_MAX_AGE > 0 then
      hsts = format('            add_header Strict-Transport-Security "max-age=%d" always;',
        v.HSTS_MAX_AGE)
    end
    tls = concat({
      "        ssl_certificate " .. v.TLS_CERT .. ";",
      "        ssl_certificate_key " .. v.TLS_KEY .. ";",
      "        ssl_protocols TLSv1.2 TLSv1.3;",
      "        ssl_session_cache shared:ctvnc_tls:1m;",
      hsts:sub(5) }, "\n")
  end
  if #plain > 0 then
    local to = https_port == 443 and "" or ":" .. https_port
    redirect = concat({
      "    # plain HTTP: every request redirected to HTTPS",
      "    server {",
      concat(plain, "\n"),
      "        location / { return 301 https://$host" .. to .. "$request_uri; }",
      "    }" }, "\n")
  end
  return concat(main, "\n"), tls, hsts, redirect, list[1].port
end

--- A file of the PEM files a and b, one after the other: its path | nil.
local function bundle(path, a, b)
  local out = io.open(path, "w")
  if not out then return nil end
  for _, f in ipairs({ a, b }) do
    local src = io.open(f)
    if not src then out:close() return nil end
    out:write(src:read("*a"), "\n")
    src:close()
  end
  out:close()
  return path
end

--- render(v, opts) -> nginx.conf's text, the first port | nil, why.
-- v: service.resolve's settings; opts: { template = text, lua = dir, so =
-- dir, tmp = dir, port = GATEWAY_PORT or a free one, group = WORKER_USER's group
-- when the master starts as root (nil: no user line) }.
function _M.render(v, opts)
  local port = v.GATEWAY_PORT or opts.port
  local listen, tls, hsts, redirect, first = listeners(v, port)
  local tower_host = v.TOWER:match("^%[(.*)%]:%d+$") or v.TOWER:match("^(.*):%d+$") or v.TOWER
  local lua = {}
  for k, x in pairs(v) do lua[k] = x end
  lua.TOWER_NAME = v.TOWER_NAME or tower_host
  local names = { '"" 1;' }    -- no Host (HTTP/1.0 health checks): no browser sends none
  for n in v.SERVER_NAMES:gmatch("%S+") do names[#names + 1] = format('"%s" 1;', n:lower()) end
  local real_ip = {}
  for _, a in ipairs(config.items(v.TRUSTED_PROXIES)) do
    real_ip[#real_ip + 1] = "set_real_ip_from " .. a .. ";"
  end
  if #real_ip > 0 then
    real_ip[#real_ip + 1] = "real_ip_header X-Forwarded-For; real_ip_recursive on;"
  end
  -- two connections a session in any one worker, 512 more (pages, API,
  -- /health, CloudTower), files 256 more; 2 KiB of session book a session
  local connections = 2 * v.MAX_SESSIONS + 512
  -- a rediss:// store is reached from the relays' locations too: their
  -- bundles trust STORE_CA as well (written beside the workers' temp files)
  local store_ca = v.STORE_CA or SYSTEM_CA
  local tower_ca, cluster_ca = v.TOWER_CA or SYSTEM_CA, v.CLUSTER_CA or SYSTEM_CA
  local store_trust = "# (no rediss:// store)"
  if (v.STORE or os.getenv("STORE") or ""):match("^rediss:") then
    store_trust = "lua_ssl_trusted_certificate " .. store_ca .. "; lua_ssl_verify_depth 4;"
    tower_ca = bundle(opts.tmp .. "/tower-ca.pem", tower_ca, store_ca)
    cluster_ca = bundle(opts.tmp .. "/cluster-ca.pem", cluster_ca, store_ca)
    if not tower_ca or not cluster_ca then return nil, "the CA bundles cannot be written" end
  end
  local text = {
    WORKER_CONNECTIONS = tostring(connections), NOFILE = tostring(connections + 256),
    BOOK_SIZE = math.max(2 * v.MAX_SESSIONS, 1024) .. "k",
    TOWER_KEEPALIVE = tostring(v.TOWER_KEEPALIVE),
    LIMIT_CONN = tostring(v.LIMIT_CONN), HEADER_TIMEOUT = v.HEADER_TIMEOUT,
    SERVER_NAMES_MAP = concat(names, " "), REAL_IP = concat(real_ip, " "),
    USER_LINE = opts.group and ("user " .. v.WORKER_USER .. " " .. opts.group .. ";")
      or "# (no user line: the master does not start as root)",
    WORKERS = tostring(v.WORKERS), TMP = opts.tmp, LUA_DIR = opts.lua, SO_DIR = opts.so,
    RESOLVER = resolver(v),
    RESOLVER_IPV6 = v.RESOLVER_IPV6 or (has_ipv6() and "on" or "off"),
    RATE = v.RATE, ADMIN_RATE = v.ADMIN_RATE, BURST = tostring(v.BURST),
    RELAY_BUFFER = v.RELAY_BUFFER,
    TOWER = v.TOWER, TOWER_SCHEME = v.TOWER_SCHEME, TOWER_PREFIX = v.TOWER_PREFIX,
    TOWER_VERIFY = v.TOWER_TLS == "insecure" and "off" or "on",
    TOWER_CA = tower_ca, CLUSTER_CA = cluster_ca, STORE_TRUST = store_trust,
    TOWER_NAME = lua.TOWER_NAME,
    TOWER_TIMEOUT = format("%dms", math.ceil(v.TOWER_TIMEOUT * 1000)),
    FRAME_ANCESTORS = v.FRAME_ANCESTORS,
    LISTEN = listen, TLS = tls, HSTS = hsts, REDIRECT = redirect,
    AUTHORIZE = authorize(v),
    ADMIN_AUTHORIZE = v.ADMIN_KEYS and format("gateway.admin_keys(%q)", v.ADMIN_KEYS) or "nil",
  }
  local missing
  local out = opts.template:gsub("@(=?)([%u_%d]+)@", function(is_lua, name)
    if is_lua == "=" then
      if not service.named(name) and lua[name] == nil then missing = name return "" end
      return lua_value(lua[name])
    end
    if text[name] == nil then missing = name return "" end
    return text[name]
  end)
  if missing then return nil, "the template names @" .. missing .. "@, which no setting makes" end
  return out, first
end

return _M
