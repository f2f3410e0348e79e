--- ctvnc gateway check FILE | start FILE | stop | reload | status [FILE]:
-- the console gateway as a service. FILE holds the settings, one `NAME =
-- value` a line (environment variables of the same names override it);
-- the prefix directory (nginx.conf, nginx.pid, the logs) is PREFIX_DIR or
-- --prefix. `start` renders nginx.conf from the template the rock
-- installed (ctvnc.gateway.render) and starts nginx; `stop` quits it by
-- its pid (QUIT, KILL after 5 s), `reload` sends HUP (graceful: open
-- consoles stay), `status` says whether it runs, its pid and listeners.
local service = require "ctvnc.gateway.service"
local render = require "ctvnc.gateway.render"
local usage_error = require("ctvnc.cli.flags").usage_error
local printable = require("ctvnc.cli.output").printable

local ipairs, tonumber, tostring = ipairs, tonumber, tostring
local format = string.format

-- what nginx's workers read from its environment (its env lines): the
-- endpoint and every secret
local PASSED = { "CTVNC_ENDPOINT" }
for _, s in ipairs(service.SETTINGS) do
  if s.kind == "secret" then PASSED[#PASSED + 1] = s.name end
end
local VERBS = { check = "FILE", start = "FILE", stop = "FILE?", reload = "FILE?",
  status = "FILE?" }

--- Writes "ctvnc: ..." to err; returns `code`.
local function fail(ctx, code, ...)
  ctx.stderr:write("ctvnc: ", ...)
  ctx.stderr:write("\n")
  return code
end
local NO_PREFIX = "no prefix directory: set PREFIX_DIR or --prefix"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end     -- Lua 5.1: a wait status
  return ok == true and how == "exit" and code == 0
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function spit(path, text, mode)
  local f, why = io.open(path, "wb")
  if not f then return nil, why end
  f:write(text)
  f:close()
  if mode then sh(format("chmod %s %s", mode, q(path))) end
  return true
end

--- Whether process pid lives (a zombie nobody reaped does not).
local function alive(pid)
  local stat = slurp("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

local function pid_of(dir)
  local pid = tonumber((slurp(dir .. "/nginx.pid") or ""):match("^%s*(%d+)"))
  if pid and alive(pid) then return pid end
end

--- The first line `cmd` prints, or nil.
local function line_of(cmd)
  local f = io.popen(cmd)
  local l = f and f:read("*l")
  if f then f:close() end
  return l
end

local function is_root() return line_of("id -u") == "0" end

--- A port nobody listens on now, on 127.0.0.1 (LuaSocket), for a gateway
-- given neither LISTEN nor GATEWAY_PORT.
local function free_port()
  local ok, socket = pcall(require, "socket")
  if not ok then return nil end
  local s = socket.bind("127.0.0.1", 0)
  local port = s and select(2, s:getsockname())
  if s then s:close() end
  return tonumber(port)
end

--- The settings of FILE (nil: none) and the environment -> v, or the
-- problems written to err.
local function settings(ctx, file)
  local text, why = service.read(file)
  if not text then
    ctx.stderr:write("ctvnc: ", printable(file), ": ", printable(tostring(why)), "\n")
    return nil
  end
  local v, problems = service.resolve(text, ctx.env, file or "(no file)")
  if not v then
    for _, p in ipairs(problems) do ctx.stderr:write(printable(p), "\n") end
    return nil
  end
  return v
end

--- The prefix directory: --prefix, else PREFIX_DIR, absolute, no slash at the end.
local function prefix_of(ctx, v)
  local dir = ctx.flags.prefix or (v and v.PREFIX_DIR) or ctx.env("PREFIX_DIR")
  if not dir or dir == "" then return nil end
  if dir:sub(1, 1) ~= "/" then dir = ctx.cwd .. "/" .. dir end
  return (dir:gsub("/+$", ""))
end

--- The workers' temp directory: DIR/tmp, theirs; when they cannot enter
-- DIR (a root master, a closed DIR), a fresh one under /tmp, named in
-- DIR/tmpdir for stop to remove.
local function temp_dir(ctx, dir, v, root)
  local tmp = dir .. "/tmp"
  if not sh("mkdir -p " .. q(tmp)) then return nil end
  if not root then return tmp end
  local user = q(v.WORKER_USER)
  if not sh(format("chown %s %s && chmod 700 %s", user, q(tmp), q(tmp))) then return nil end
  if sh(format("runuser -u %s -- test -w %s/ 2>/dev/null", user, q(tmp))) then return tmp end
  tmp = line_of("mktemp -d /tmp/ctvnc-gateway.XXXXXXXX")
  if not tmp or not sh(format("chown %s %s && chmod 700 %s", user, q(tmp), q(tmp))) then
    return nil
  end
  spit(dir .. "/tmpdir", tmp .. "\n")
  fail(ctx, nil, format("nginx's workers (%s) cannot enter %s: their temp files go to %s",
    v.WORKER_USER, dir, tmp))
  return tmp
end

--- WORKER_USER's group, the user made when missing (a user of their own)
-- | nil (told on err). Only a root master switches its workers' user.
local function worker_group(ctx, v)
  local user = q(v.WORKER_USER)
  if not line_of(format("id -u %s 2>/dev/null", user)) then
    sh(format("useradd --system --no-create-home --home-dir /nonexistent --shell "
      .. "/usr/sbin/nologin %s 2>/dev/null", user))
  end
  local group = line_of(format("id -gn %s 2>/dev/null", user))
  if not group then
    return fail(ctx, nil, "WORKER_USER ", v.WORKER_USER, ": no such user, and none could be made")
  end
  return group
end

--- Renders DIR/nginx.conf (or `name` in DIR), the workers' user and group
-- when `group` is given -> port | nil (told on err).
local function write_conf(ctx, v, dir, name, group, tmp)
  local where, why = render.locate(package.path, package.cpath, ctx.abi, ctx.cwd)
  if not where then ctx.stderr:write("ctvnc: ", why, "\n") return nil end
  local port = v.GATEWAY_PORT or (not v.LISTEN and free_port()) or nil
  if not port and not v.LISTEN then
    ctx.stderr:write("ctvnc: set LISTEN or GATEWAY_PORT (no LuaSocket to pick a free port)\n")
    return nil
  end
  local conf, first = render.render(v, { template = slurp(where.template), lua = where.lua,
    so = where.so, tmp = tmp, port = port, group = group })
  if not conf then ctx.stderr:write("ctvnc: ", why or first, "\n") return nil end
  assert(spit(dir .. "/" .. name, conf, "644"))
  return first
end

--- Runs nginx with the secrets in its environment, given on sh's stdin
-- (never on a command line, never in a file) -> ok, what it said.
local function nginx(ctx, v, dir, conf, test)
  local errfile = dir .. "/start.err"
  local f = io.popen(format("cd / && while IFS= read -r l; do export \"$l\"; done; "
    .. "nginx -p %s/ -c %s -e %s/error.log %s> %s 2>&1; echo $? > %s.rc",
    q(dir), q(dir .. "/" .. conf), q(dir), test and "-t " or "", q(errfile), q(errfile)), "w")
  for _, name in ipairs(PASSED) do
    local val = v[name] or ctx.env(name)
    if val then f:write(name, "=", val, "\n") end
  end
  f:close()
  local said = slurp(errfile) or ""
  local rc = tonumber((slurp(errfile .. ".rc") or ""):match("%d+"))
  os.remove(errfile .. ".rc")
  return rc == 0, said
end

--- nginx's complaint in one line: configure's own ("ctvnc: setting ..."),
-- else nginx's emerg line.
local function complaint(said)
  return said:match("(ctvnc: setting [^\n]*)") or said:match("%[emerg%] %d+#%d+: ([^\n]*)")
    or said:match("([^\n]+)") or "nginx failed"
end

local verbs = {}

function verbs.check(ctx, _, file)
  ctx.stdout:write(printable(file), ": ok (", #service.SETTINGS, " settings known)\n")
  return 0
end

function verbs.start(ctx, v)
  local dir = prefix_of(ctx, v)
  if not dir then return fail(ctx, 1, NO_PREFIX) end
  local pid = pid_of(dir)
  if pid then ctx.stderr:write(format("ctvnc: the gateway in %s already runs (pid %d)\n", dir, pid))
    return 1 end
  for _, hop in ipairs({ { "TOWER_TLS", "CloudTower's certificate" },
                         { "CLUSTER_TLS", "the clusters' certificates" } }) do
    if v[hop[1]] == "insecure" then
      ctx.stderr:write("ctvnc: WARNING: ", hop[1], "=insecure: ", hop[2], " not verified\n")
    end
  end
  if not v.KEYS and not v.JWT then
    ctx.stderr:write("ctvnc: WARNING: neither KEYS nor JWT: the gateway denies every console "
      .. "request\n")
  end
  local root = is_root()
  local group = root and worker_group(ctx, v)
  if root and not group then return 1 end
  local tmp = temp_dir(ctx, dir, v, root)
  if not tmp then return fail(ctx, 1, "no temp directory for the workers in ", dir) end
  -- recordings: DIR/recordings, made here for the workers alone; a
  -- RECORD_DIR given is the operator's to prepare
  if v.RECORD ~= "off" and not v.RECORD_DIR then
    local rec = q(dir .. "/recordings")
    sh(format("mkdir -p %s && chmod 700 %s", rec, rec))
    if root then sh(format("chown %s %s", q(v.WORKER_USER), rec)) end
  end
  local port = write_conf(ctx, v, dir, "nginx.conf", group or nil, tmp)
  if not port then return 1 end
  local ok, said = nginx(ctx, v, dir, "nginx.conf")
  if not ok then
    ctx.stderr:write("ctvnc: nginx did not start: ", printable(complaint(said)), "\n")
    return 1
  end
  spit(dir .. "/env", "GATEWAY_PORT=" .. port .. "\n")
  ctx.stdout:write(format("ctvnc: the gateway runs in %s (pid %s), on %s\n", dir,
    tostring(pid_of(dir)), v.LISTEN or ("127.0.0.1:" .. port)))
  ctx.stdout:write("GATEWAY_PORT=", port, "\n")
  return 0
end

local function running(ctx, v)
  local dir = prefix_of(ctx, v)
  if not dir then return fail(ctx, nil, NO_PREFIX) end
  return dir, pid_of(dir)
end

function verbs.stop(ctx, v)
  local dir, pid = running(ctx, v)
  if not dir then return 1 end
  if pid then
    sh(format("kill -QUIT %d", pid))
    for _ = 1, 50 do
      if not alive(pid) then break end
      sh("sleep 0.1")
    end
    if alive(pid) then
      sh(format("kill -KILL %d 2>/dev/null", pid))
      for _ = 1, 20 do
        if not alive(pid) then break end
        sh("sleep 0.05")
      end
    end
  end
  local tmp = slurp(dir .. "/tmpdir")
  if tmp then
    sh("rm -rf " .. q(tmp:match("^[^\n]*")))
    os.remove(dir .. "/tmpdir")
  end
  ctx.stdout:write(pid and format("ctvnc: stopped the gateway in %s (pid %d)\n", dir, pid)
    or format("ctvnc: no gateway runs in %s\n", dir))
  return 0
end

function verbs.reload(ctx, v)
  local dir, pid = running(ctx, v)
  if not dir then return 1 end
  if not pid then ctx.stderr:write("ctvnc: no gateway runs in ", dir, "\n") return 1 end
  if v then
    -- the new configuration is tested (configure included) before it replaces the old
    local tmp = (slurp(dir .. "/tmpdir") or ""):match("^[^\n]+") or dir .. "/tmp"
    local group = is_root() and worker_group(ctx, v)
    if group == nil or not write_conf(ctx, v, dir, "nginx.conf.new", group or nil, tmp) then
      return 1
    end
    local ok, said = nginx(ctx, v, dir, "nginx.conf.new", true)
    if not ok then
      os.remove(dir .. "/nginx.conf.new")
      ctx.stderr:write("ctvnc: the new settings do not start: ", printable(complaint(said)), "\n")
      return 1
    end
    assert(os.rename(dir .. "/nginx.conf.new", dir .. "/nginx.conf"))
  end
  sh(format("kill -HUP %d", pid))
  ctx.stdout:write(format("ctvnc: reloaded the gateway in %s (pid %d)\n", dir, pid))
  return 0
end

function verbs.status(ctx, v)
  local dir, pid = running(ctx, v)
  if not dir then return 1 end
  if not pid then ctx.stdout:write("ctvnc: no gateway runs in ", dir, "\n") return 3 end
  local listen = {}
  for addr in (slurp(dir .. "/nginx.conf") or ""):gmatch("\n%s*listen ([^;]+);") do
    listen[#listen + 1] = (addr:gsub(" reuseport", ""))
  end
  ctx.stdout:write(format("running\npid %d\nprefix %s\n", pid, dir))
  for _, l in ipairs(listen) do ctx.stdout:write("listen ", l, "\n") end
  return 0
end

return {
  name = "gateway",
  args = "check FILE | start FILE | stop [FILE] | reload [FILE] | status [FILE]",
  summary = "run the console gateway (nginx) from a settings file",
  flags = {
    { name = "prefix", value = "DIR", help = "nginx's prefix directory (nginx.conf, pid, logs; "
      .. "or PREFIX_DIR)" },
  },
  columns = {},
  offline = true,   -- asks no CloudTower: no client is made
  check = function(_, words)
    local verb = words[1]
    if verb == nil then return usage_error("gateway needs check, start, stop, reload or status") end
    local want = VERBS[verb]
    if want == nil then
      return usage_error("gateway " .. printable(verb) .. ": must be check, start, stop, "
        .. "reload or status")
    end
    if #words > 2 or (want == "FILE" and #words ~= 2) then
      return usage_error(format("gateway %s takes %s", verb,
        want == "FILE" and "one FILE" or "at most one FILE"))
    end
  end,
  run = function(ctx)
    local verb, file = ctx.words[1], ctx.words[2]
    ctx.abi = _VERSION:match("%d+%.%d+")
    ctx.cwd = line_of("pwd") or "."
    local v
    if file then
      v = settings(ctx, file)
      if not v then return 1 end
    end
    return verbs[verb](ctx, v, file)
  end,
}
