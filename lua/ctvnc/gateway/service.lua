--- ctvnc.gateway.service: the settings of `ctvnc gateway` (a settings file,
-- one `NAME = value` a line, and environment variables of the same names
-- over it), read, checked line by line and resolved. Pure Lua, no ngx.
--
-- The names are the environment's (the settings table of docs/gateway.md):
-- those of a gateway.configure setting come from its declaration in
-- ctvnc.gateway.config (its `env` column: type, bounds, default, doc), the
-- others, which only the rendered nginx.conf uses, are declared here once.
local config = require "ctvnc.gateway.config"
local nearest = require("ctvnc.cli.flags").nearest

local tonumber, ipairs, pairs = tonumber, ipairs, pairs
local format, concat = string.format, table.concat

local _M = {}

-- The settings only nginx.conf uses, as ctvnc.gateway.config declares
-- configure's: a line with the name, its kind and its default ("-": none),
-- then an indented line of doc. Kinds: word (one token nginx reads as it
-- is), path (a directory), file (a file that must be readable), port,
-- numberMIN..MAX, {a,b}, listen, rate, size, secret.
local DECLARED = [[
PREFIX_DIR       path                 -
    nginx's prefix directory: nginx.conf, nginx.pid, the logs, temp files (or --prefix DIR)
LISTEN           listen               -
    addresses between commas: [host:]port, "ssl" after one for HTTPS (unset: 127.0.0.1:GATEWAY_PORT)
GATEWAY_PORT     port                 -
    the port on 127.0.0.1 when LISTEN is unset (unset: a free port at each start)
TLS_CERT         file                 -
    PEM certificate chain of the ssl listeners (TLS 1.2 and 1.3 only)
TLS_KEY          file                 -
    PEM private key of TLS_CERT
HSTS_MAX_AGE     number0..            31536000
    seconds of Strict-Transport-Security on HTTPS answers (0: none)
WORKERS          number1..64          1
    nginx worker processes
WORKER_USER      word                 ctvnc
    the user nginx's workers run as under a root master (created when missing; never root)
LIMIT_CONN       number1..            100
    requests and websockets at a time per client address (429 past it)
HEADER_TIMEOUT   time                 10s
    for a request's head or body (nginx's client_header_timeout, client_body_timeout)
SERVER_NAMES     words                localhost 127.0.0.1
    Host names answered, between spaces; any other Host is 421
TOWER            word                 -
    CloudTower's host:port, the upstream of its API (unset: CTVNC_ENDPOINT's)
TOWER_PREFIX     word                 -
    CloudTower's path prefix, with both slashes (unset: CTVNC_ENDPOINT's path, else /)
TOWER_CA         file                 -
    PEM bundle CloudTower's certificate is verified with (unset: the system store)
CLUSTER_CA       file                 -
    PEM bundle the clusters' certificates are verified with (unset: the system store)
RESOLVER         words                -
    nginx's resolver, host[:port] ... (unset: the nameservers of /etc/resolv.conf)
RESOLVER_IPV6    {on,off}             -
    IPv6 lookups (unset: on when the system has IPv6)
RATE             rate                 50r/s
    requests per second and client address (nginx's limit_req)
BURST            number0..            200
    the limit_req burst
TOWER_KEEPALIVE  number1..            64
    kept-alive connections to CloudTower per worker
RELAY_BUFFER     size                 64k
    the relay's read buffer, per side of a session (lua_socket_buffer_size)
JWT              {hs256,rs256}        -
    gateway.jwt{} as the authorize hook; with KEYS too, either may allow
CTVNC_JWT_SECRET secret               -
    the HS256 secret of JWT users, 32 bytes or more
JWT_PUBLIC_KEY   file                 -
    PEM file of the RS256 public key (2048 bits or more)
JWT_AUDIENCE     word                 -
    the aud a token must carry
JWT_ISSUER       word                 -
    the iss a token must carry
JWT_LEEWAY       number0..            0
    seconds of clock skew allowed on exp and nbf
JWT_COOKIE       word                 -
    a cookie the token may come in, besides Authorization: Bearer
]]

--- The kind of a configure setting's value in the settings file.
local function configure_kind(s)
  if s.env == "TOWER_TIMEOUT" then return "duration" end
  if s.type == "hook" then return "file" end
  return s.type
end

local SETTINGS, BY_NAME = {}, {}
local function declare(s)
  SETTINGS[#SETTINGS + 1] = s
  BY_NAME[s.name] = s
end
for line in DECLARED:gmatch("[^\n]+") do
  local doc = line:match("^%s+(.-)%s*$")
  if doc then
    SETTINGS[#SETTINGS].doc = doc
  else
    -- a default may hold spaces
    local name, kind, default = line:match("^(%S+)%s+(%S+)%s+(.-)%s*$")
    local s = config.type_of(kind, { name = name, default = default ~= "-" and default or nil })
    s.kind, s.type = s.type, nil
    declare(s)
  end
end
for _, c in ipairs(config.SETTINGS) do
  if c.env then
    declare({ name = c.env, kind = configure_kind(c), default = c.default, doc = c.doc,
              min = c.min, max = c.max, values = c.values, configure = c.name })
  end
end
_M.SETTINGS = SETTINGS

-- characters nginx's parser would read as syntax, and control bytes
local UNSAFE = "[%c;{}\"'\\$]"
local NO_PATH = "must be a path without spaces or ;{}\"'\\$"

local function readable(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok = f:read(1) ~= nil or f:read(0) ~= nil
  f:close()
  return ok
end

--- Seconds of "10s", "500ms", "1m" or "10" | nil.
local function seconds(v)
  local n, unit = v:match("^(%d+%.?%d*)(m?s?)$")
  n = tonumber(n)
  if not n then return nil end
  if unit == "ms" then return n / 1000 elseif unit == "m" then return n * 60 end
  return n
end

--- The listeners of a LISTEN value: { { addr = "127.0.0.1:8443", port = 8443,
-- ssl = true }, ... } | nil, why.
function _M.listeners(v)
  local out = {}
  for item in v:gmatch("[^,]+") do
    local addr, rest = item:match("^%s*(%S+)%s*(.-)%s*$")
    if rest ~= "" and rest ~= "ssl" then
      return nil, format("%q: only \"ssl\" may follow an address", item)
    end
    local host, port = addr:match("^(.*):(%d+)$")
    if not host then host, port = "", addr:match("^(%d+)$") end
    port = tonumber(port)
    if not port or port < 1 or port > 65535 or host:find(UNSAFE) then
      return nil, format("%q: must be [host:]port with a port 1-65535", addr)
    end
    out[#out + 1] = { addr = addr, port = port, ssl = rest == "ssl" }
  end
  if #out == 0 then return nil, "names no address" end
  return out
end

-- Each kind: value (a string) -> the resolved value | nil, why.
local KIND = {
  word = function(v)
    if v:find(UNSAFE) or v:find("%s") then return nil, "must be one word, without ;{}\"'\\$" end
    return v
  end,
  words = function(v)
    if v:find(UNSAFE) then return nil, "must not hold ;{}\"'\\$ or control characters" end
    return v
  end,
  string = function(v)
    if v:find("[%c\"\\;{}$]") then return nil, "must not hold \";{}\\$ or control characters" end
    return v
  end,
  list = function(v)
    if v:find(UNSAFE) then return nil, "must not hold ;{}\"'\\$ or control characters" end
    return v
  end,
  secret = function(v)
    if v:find("[\r\n%z]") then return nil, "must be one line" end
    return v
  end,
  path = function(v)
    if v:find(UNSAFE) or v:find("%s") then return nil, NO_PATH end
    return v
  end,
  file = function(v)
    if v:find(UNSAFE) or v:find("%s") then return nil, NO_PATH end
    if not readable(v) then return nil, v .. " cannot be read" end
    return v
  end,
  number = function(v, s)
    local n = tonumber(v)
    if not n or n ~= n then return nil, "must be a number" end
    if s.min and n < s.min then return nil, "must be at least " .. s.min end
    if s.max and n > s.max then return nil, "must be at most " .. s.max end
    return n
  end,
  port = function(v)
    local n = tonumber(v)
    if not n or n % 1 ~= 0 or n < 1 or n > 65535 then return nil, "must be an integer 1-65535" end
    return n
  end,
  enum = function(v, s)
    for _, ok in ipairs(s.values) do if v == ok then return v end end
    return nil, "must be one of " .. concat(s.values, ", ")
  end,
  duration = function(v, s)
    local n = seconds(v)
    if not n then return nil, "must be like 10s, 500ms or 1m" end
    if n < s.min then return nil, "must be at least " .. s.min .. "s" end
    return n
  end,
  listen = function(v)
    local l, why = _M.listeners(v)
    if not l then return nil, why end
    return v
  end,
  time = function(v)
    if not v:match("^%d+[smh]?$") then return nil, "must be like 10s, 1m or 30" end
    return v
  end,
  rate = function(v)
    if not v:match("^%d+r/[sm]$") then return nil, "must be like 50r/s or 600r/m" end
    return v
  end,
  size = function(v)
    if not v:match("^%d+[kKmM]?$") then return nil, "must be like 64k, 1m or 4096" end
    return v
  end,
}

--- Reads a settings file: { NAME = { value =, line = } } and a list of
-- problems { line =, name =, msg = }. Lines: `NAME = value`, blank, or a
-- comment starting with `#` (the whole line: a value may hold `#`).
local function read_file(text)
  local found, problems, n = {}, {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if not line:match("^%s*$") and not line:match("^%s*#") then
      local name, value = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
      if not name then
        problems[#problems + 1] = { line = n, msg = "not NAME = value" }
      elseif not BY_NAME[name] then
        local names = {}
        for _, s in ipairs(SETTINGS) do names[#names + 1] = s.name end
        local near = nearest(name, names)
        problems[#problems + 1] = { line = n, name = name, msg = "no such setting"
          .. (near and " (did you mean " .. near .. "?)" or "") }
      elseif found[name] then
        problems[#problems + 1] = { line = n, name = name,
          msg = "set twice (first on line " .. found[name].line .. ")" }
      else
        found[name] = { value = value, line = n }
      end
    end
  end
  return found, problems
end

--- The CloudTower upstream from CTVNC_ENDPOINT: host:port, path prefix.
local function from_endpoint(endpoint)
  local scheme, hostport, path = endpoint:match("^(%a+)://([^/]+)(.*)$")
  if not scheme then hostport, path, scheme = endpoint:match("^([^/]+)(.*)$"), nil, "https" end
  if not hostport then return nil end
  if not hostport:find(":%d+$") then
    hostport = hostport .. (scheme:lower() == "http" and ":80" or ":443")
  end
  path = (path or ""):gsub("%?.*$", "")
  if path == "" or path:sub(-1) ~= "/" then path = path .. "/" end
  return hostport, path
end

--- resolve(text, env, file): the settings of `text` (a settings file's
-- contents; "" for none), environment variables of the same names over
-- them, checked against their declaration.
-- -> { NAME = value } (defaults filled in, numbers as numbers), the
-- configure table (without hooks), nil | nil, { "FILE:LINE: NAME: problem", ... }
function _M.resolve(text, env, file)
  local found, read_problems = read_file(text)
  local problems, where, raw = {}, {}, {}
  for _, p in ipairs(read_problems) do
    problems[#problems + 1] = file .. ":" .. p.line .. ": " .. (p.name and p.name .. ": " or "")
      .. p.msg
  end
  local function problem(name, msg)
    local at = where[name]
    problems[#problems + 1] = at == "environment" and (name .. " (environment): " .. msg)
      or ((at or file) .. ": " .. name .. ": " .. msg)
  end
  for name, f in pairs(found) do raw[name], where[name] = f.value, file .. ":" .. f.line end
  for _, s in ipairs(SETTINGS) do
    local e = env(s.name)
    if e ~= nil then raw[s.name], where[s.name] = e, "environment" end
  end
  local v = {}
  for _, s in ipairs(SETTINGS) do
    local r = raw[s.name]
    if r == "" then r = nil end
    if r ~= nil then
      local val, why = KIND[s.kind](r, s)
      if val == nil then problem(s.name, why) end
      v[s.name] = val
    elseif s.default ~= nil then
      v[s.name] = s.kind == "duration" and s.default or KIND[s.kind](s.default, s)
    end
  end
  if v.CTVNC_ENDPOINT then
    local hostport, path = from_endpoint(v.CTVNC_ENDPOINT)
    v.TOWER, v.TOWER_PREFIX = v.TOWER or hostport, v.TOWER_PREFIX or path
  end
  v.TOWER_PREFIX = v.TOWER_PREFIX or "/"
  if v.LISTEN then
    local tls, plain = false, false
    for _, l in ipairs(_M.listeners(v.LISTEN) or {}) do
      if l.ssl then tls = true else plain = true end
    end
    if tls and not (v.TLS_CERT and v.TLS_KEY) then
      problem("LISTEN", "an ssl address needs TLS_CERT and TLS_KEY")
    end
    v.tls, v.plain = tls, plain
  end
  if (v.TLS_CERT or v.TLS_KEY) and not v.tls then
    problem(v.TLS_CERT and "TLS_CERT" or "TLS_KEY", "is set, but no LISTEN address has ssl")
  end
  if v.WORKER_USER == "root" or not v.WORKER_USER:match("^[a-z_][a-z0-9_-]*$") then
    problem("WORKER_USER", "must be a user name other than root")
  end
  for _, a in ipairs(config.items(v.TRUSTED_PROXIES)) do
    if a:find("[^%x.:/]") then problem("TRUSTED_PROXIES", "lists addresses or CIDRs: " .. a) end
  end
  for n in (v.SERVER_NAMES or ""):gmatch("%S+") do
    if n:find("[^%w.:_%[%]-]") then problem("SERVER_NAMES", "lists host names: " .. n) end
  end
  if not v.CTVNC_TOKEN then   -- username and password are configure's only
    problem("CTVNC_TOKEN", "is required (CloudTower's token or API key; the environment will do)")
  end
  if v.JWT == "rs256" and not v.JWT_PUBLIC_KEY then
    problem("JWT", "rs256 needs JWT_PUBLIC_KEY")
  end
  -- what configure itself checks (the same words nginx's start would say)
  local c = {}
  for _, s in ipairs(SETTINGS) do
    if s.configure then
      if s.kind == "file" then c[s.configure] = v[s.name] and function() end
      else c[s.configure] = v[s.name] end
    end
  end
  local ok, why = config.check(c)
  if not ok then
    local name, msg = why:match("^ctvnc: setting ([%w_]+): (.*)$")
    for _, s in ipairs(SETTINGS) do
      if s.configure == name then problem(s.name, msg) end
    end
  end
  if #problems > 0 then return nil, problems end
  return v, c
end

--- The settings file at `path` -> its text | nil, why. "-" or nil: none.
function _M.read(path)
  if not path then return "" end
  local f, why = io.open(path, "rb")
  if not f then return nil, why end
  local text = f:read("*a")
  f:close()
  return text
end

function _M.named(name) return BY_NAME[name] end

return _M
