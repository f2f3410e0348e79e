--- ctvnc.cli: the `ctvnc` command. A table of commands (COMMANDS) over one
-- output writer (writer()). Exit status: 0 all succeeded, 1 something
-- failed, 2 usage error, 128 + signal number when interrupted.
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local json = require("cjson.safe").new()

local ipairs, pairs, tonumber, tostring, type = ipairs, pairs, tonumber, tostring, type
local format, concat, floor = string.format, table.concat, math.floor
local unpack = table.unpack or unpack  -- luacheck: ignore

local _M = {}

local USAGE = [[
usage: ctvnc [options] url [--name NAME]... [VM_ID...]
                                   one console URL per VM (id, mode, URL)
       ctvnc [options] batch [--file F | -] [VM_ID...]
                                   many VMs at once, in parallel, with progress
       ctvnc [options] vms [NAME] [--contains TEXT] [--cluster NAME] [--first N]
                                   find VMs (id, name, status, cluster, host)
       ctvnc [options] login       print a login token (for CTVNC_TOKEN)

options:
  --endpoint URL       CloudTower address (or CTVNC_ENDPOINT), e.g.
                       https://tower.example.com or tower.example.com:8443
  --username NAME      login name (or CTVNC_USERNAME); the password comes
                       from CTVNC_PASSWORD only, never from the command line
  --source SOURCE      login source: LOCAL (default), LDAP or AUTHN (or CTVNC_SOURCE)
  --auth-config-id ID  with --source AUTHN: the tower's authentication source
  --header 'N: V'      an extra request header (repeatable)
  --mode MODE          auto (default), direct or proxy
  --scheme SCHEME      wss (default) or ws
  --port N             the cluster's websocket port (direct URLs and probes)
  --novnc PAGE         also print a link to the noVNC page PAGE that opens the URL
  --concurrency N      most requests in flight in a batch (default 16)
  --per-request N      VMs asked for in one request by batch (default 1)
  --no-http2           HTTP/1.1 only
  --format FORMAT      text (default), json or csv
  --timeout SECONDS    whole-request timeout (default 10)
  --insecure           skip TLS verification (or CTVNC_INSECURE=1)
  --ca-file FILE       PEM bundle to verify the tower (or CTVNC_CA_FILE)
  --file FILE          batch: read VM ids from FILE, one per line ('-': stdin)
  -q, --quiet          no progress bar
  -h, --help           this text
  --version            the version
  --                   the end of the options: what follows are VM ids

environment:
  CTVNC_ENDPOINT, CTVNC_TOKEN (token or API key), CTVNC_USERNAME,
  CTVNC_PASSWORD, CTVNC_SOURCE, CTVNC_INSECURE (1 or true), CTVNC_CA_FILE,
  CTVNC_PROGRESS (1 or 0: force the batch progress bar on or off; by
  default it shows when stderr is a terminal), COLUMNS, NO_COLOR, TERM

Text output is one line per VM, fields separated by tabs:
  <vm id> <mode> <url>            or    <vm id> error <kind> <message>
JSON and CSV hold one record per VM in input order: vm_id, ok, mode, url,
kind, message. Ctrl-C stops a batch at once and prints what was fetched
(the rest with kind "interrupted").

A direct URL is chosen in auto mode when this machine reaches the cluster on
the websocket port; a browser elsewhere may see the network differently.
]]

-- Flags: the value they take (nil: none), the commands they belong to
-- (nil: all), whether they repeat.
local FLAGS = {
  endpoint = { value = "URL" }, username = { value = "NAME" },
  source = { value = "SOURCE" }, ["auth-config-id"] = { value = "ID" },
  header = { value = "'NAME: VALUE'", many = true },
  mode = { value = "MODE", only = { url = true, batch = true } },
  scheme = { value = "SCHEME", only = { url = true, batch = true } },
  port = { value = "N", only = { url = true, batch = true } },
  novnc = { value = "PAGE", only = { url = true, batch = true } },
  concurrency = { value = "N", only = { batch = true } },
  ["per-request"] = { value = "N", only = { batch = true } },
  ["no-http2"] = {},
  format = { value = "FORMAT" }, timeout = { value = "SECONDS" },
  insecure = {}, ["ca-file"] = { value = "FILE" },
  file = { value = "FILE", only = { batch = true } },
  name = { value = "NAME", many = true, only = { url = true } },
  contains = { value = "TEXT", only = { vms = true } },
  cluster = { value = "NAME", only = { vms = true } },
  first = { value = "N", only = { vms = true } },
  quiet = {}, help = {}, version = {},
}
local SHORT = { h = "help", q = "quiet" }

local Usage = {}   -- the metatable of usage errors: exit status 2

local function usage_error(msg)
  return setmetatable({ msg = msg }, Usage)
end

--- argv -> flags, words | nil, usage error. `--` ends the flags; `-` is a
-- word (stdin for batch).
local function parse(args)
  local flags, words, i, rest = {}, {}, 1, false
  while i <= #args do
    local a = args[i]
    local name, value
    if rest or a == "-" or a:sub(1, 1) ~= "-" then
      words[#words + 1] = a
    elseif a == "--" then
      rest = true
    else
      name, value = a:match("^%-%-([%w-]+)=(.*)$")
      name = name or a:match("^%-%-([%w-]+)$") or SHORT[a:match("^%-(%w)$") or ""]
      local spec = name and FLAGS[name]
      if not spec then return nil, usage_error("unknown option " .. a) end
      if spec.value and not value then
        i = i + 1
        value = args[i]
        if value == nil then return nil, usage_error("--" .. name .. " needs a value") end
      elseif not spec.value and value then
        return nil, usage_error("--" .. name .. " takes no value")
      end
      if spec.many then
        flags[name] = flags[name] or {}
        local list = flags[name]
        list[#list + 1] = value
      else
        flags[name] = spec.value and value or true
      end
    end
    i = i + 1
  end
  return flags, words
end

--- Text that came from a server or an input file, safe on a terminal: ASCII
-- and C1 control characters go (an escape sequence cannot recolour or
-- rewrite the screen), tabs and line ends become spaces.
local function printable(s)
  s = tostring(s == nil and "" or s)
  s = s:gsub("[\t\r\n]", " "):gsub("[%z\1-\31\127]", ""):gsub("\194[\128-\159]", "")
  return s
end
_M.printable = printable

--- An RFC 4180 cell that a spreadsheet will not run: one that would start
-- with = + - @ (or a tab or CR) is prefixed with '.
local function csv_cell(v)
  v = v == nil and "" or tostring(v)
  if v:find("^[=+%-@\t\r]") then v = "'" .. v end
  if v:find('[,"\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end
_M.csv_cell = csv_cell

--- The one output writer: rows of `columns` in the chosen format.
-- `text(row) -> fields` gives a row's text line (default: the columns).
-- JSON rows are held until close(), so the output is one valid document
-- even when the run is interrupted.
local function writer(out, fmt, columns, text)
  local rows, started = {}, false
  local w = {}
  function w.row(r)
    if fmt == "json" then
      rows[#rows + 1] = r
    elseif fmt == "csv" then
      if not started then out:write(concat(columns, ","), "\r\n") end
      local cells = {}
      for i, k in ipairs(columns) do cells[i] = csv_cell(r[k]) end
      out:write(concat(cells, ","), "\r\n")
    else
      local fields = text and text(r) or {}
      if not text then
        for i, k in ipairs(columns) do fields[i] = r[k] end
      end
      for i = 1, #fields do fields[i] = printable(fields[i]) end
      out:write(concat(fields, "\t"), "\n")
    end
    started = true
  end
  function w.close()
    if fmt == "json" then
      local doc = {}
      for i, r in ipairs(rows) do
        local o = {}
        for _, k in ipairs(columns) do o[k] = r[k] end
        doc[i] = o
      end
      out:write((json.encode(doc):gsub("^{}$", "[]")), "\n")
    elseif fmt == "csv" and not started then
      out:write(concat(columns, ","), "\r\n")
    end
    out:flush()
  end
  return w
end
_M.writer = writer

--- A progress line on stderr that fits the terminal and redraws in place:
-- `[#####.....] 5/10  12.3/s  1 failed`. Plain (no escape sequences) for
-- NO_COLOR or TERM=dumb.
local function progress(err, width, plain, now)
  local start, last = now(), -1
  local p = {}
  local shown = false
  function p.update(done, total, failed)
    local t = now()
    if done < total and t - last < 0.1 then return end
    last = t
    local rate = done / math.max(t - start, 1e-3)
    local tail = format(" %d/%d  %.1f/s", done, total, rate)
    local bad = (failed or 0) > 0 and format("  %d failed", failed) or ""
    local room = width - 1 - #tail - #bad - 2
    local bar = ""
    if room >= 5 then
      local filled = total > 0 and floor(room * done / total) or room
      bar = "[" .. ("#"):rep(filled) .. ("."):rep(room - filled) .. "]"
    end
    local line = (bar .. tail .. bad):sub(1, width - 1)
    if plain then
      err:write("\r", line, (" "):rep(width - 1 - #line))
    else
      if bad ~= "" and #bar + #tail + #bad <= width - 1 then
        line = bar .. tail .. "\27[31m" .. bad .. "\27[0m"
      end
      err:write("\r\27[K", line)
    end
    shown = true
    err:flush()
  end
  function p.finish()
    if shown then err:write("\n") err:flush() end
    shown = false
  end
  return p
end
_M.progress = progress

--- The width of the terminal on stderr: COLUMNS, else what stty says.
local function term_width(env)
  local n = tonumber(env("COLUMNS") or "")
  if n and n >= 10 then return floor(n) end
  local f, size = io.popen("stty size <&2 2>/dev/null"), nil
  if f then size = f:read("*a") f:close() end
  n = tonumber(size and size:match("^%d+%s+(%d+)") or "")
  return n and n >= 10 and n or 80
end

local function stderr_is_tty()
  local ok = os.execute("test -t 2")
  return ok == true or ok == 0
end

--- Requests through the client's transport stop at once after SIGINT or
-- SIGTERM (core.catch_signals): the answers that arrive after the signal
-- and every later call come back as kind "interrupted", backoffs are
-- skipped. The transfers in flight are cut by the signal itself.
local function interruptible(t)
  local w = setmetatable({}, { __index = t })
  local stopped = core.interrupted
  local function over() core.release_signals() end
  function w.request_many(reqs, concurrency, on_done)
    if stopped() then   -- the signal came before: nothing goes out
      for i = 1, #reqs do on_done(i, nil, "interrupted", "interrupted") end
      return
    end
    t.request_many(reqs, concurrency, function(i, status, body, kind)
      if not status and stopped() then return on_done(i, nil, "interrupted", "interrupted") end
      return on_done(i, status, body, kind)
    end)
    if stopped() then over() end
  end
  function w.sleep(s)
    if not stopped() then return t.sleep(s) end
  end
  return w
end

-- Options of ctvnc.new: the flag, the environment variable, the key.
local CONNECTION = {
  { flag = "--endpoint", env = "CTVNC_ENDPOINT", key = "endpoint" },
  { env = "CTVNC_TOKEN", key = "token" },
  { flag = "--username", env = "CTVNC_USERNAME", key = "username" },
  { env = "CTVNC_PASSWORD", key = "password" },
  { flag = "--source", env = "CTVNC_SOURCE", key = "source" },
  { flag = "--auth-config-id", key = "auth_config_id" },
  { flag = "--ca-file", env = "CTVNC_CA_FILE", key = "ca_file" },
}

local function truthy(s) return s == "1" or s == "true" or s == "yes" end

local function number(flags, name, integer, min, max)
  local v = flags[name]
  if v == nil then return true end
  local n = tonumber(v)
  if not n or n ~= n or (integer and n % 1 ~= 0) or n < min or (max and n > max) then
    local what = integer and ("an integer " .. min .. (max and "-" .. max or " or more"))
      or "a number above 0"
    return nil, usage_error(format("--%s %s: must be %s", name, printable(v), what))
  end
  flags[name] = n
  return true
end

--- The flags and the environment -> ctvnc.new options, with the name the
-- user typed for each (labels) | nil, usage error.
local function client_options(flags, env)
  local opts, labels = {}, {}
  for _, o in ipairs(CONNECTION) do
    local v, label
    local fv = o.flag and flags[o.flag:sub(3)]
    if fv ~= nil then v, label = fv, o.flag
    elseif o.env and env(o.env) ~= nil then v, label = env(o.env), o.env end
    if v ~= nil then
      if v == "" then return nil, usage_error(label .. " is empty") end
      opts[o.key], labels[o.key] = v, label
    end
  end
  if not opts.endpoint then
    return nil, usage_error("no endpoint: set CTVNC_ENDPOINT or --endpoint")
  end
  local ep, why = core.endpoint(opts.endpoint)   -- the value may hold a password: never quoted
  if not ep then return nil, usage_error(labels.endpoint .. ": " .. tostring(why)) end
  if not opts.token and not (opts.username and opts.password) then
    return nil, usage_error("no credentials: set CTVNC_TOKEN, or CTVNC_USERNAME (or --username)"
      .. " and CTVNC_PASSWORD")
  end
  if opts.ca_file then
    local f = io.open(opts.ca_file, "rb")
    if not f then return nil, usage_error(labels.ca_file .. " " .. printable(opts.ca_file)
      .. ": cannot read it") end
    f:close()
  end
  local src = opts.source
  if src and src ~= "LOCAL" and src ~= "LDAP" and src ~= "AUTHN" then
    return nil, usage_error(labels.source .. " " .. printable(opts.source)
      .. ": must be LOCAL, LDAP or AUTHN")
  end
  if flags.header then
    opts.headers = {}
    for _, h in ipairs(flags.header) do
      local name, value = h:match("^([!#$%%&'*+%-.^_`|~%w]+):%s*(.-)%s*$")
      if not name then    -- the name only: what follows may be a secret
        return nil, usage_error("--header " .. printable(h:match("^[^:]*")) .. ": must be "
          .. "'Name: value'")
      end
      opts.headers[name] = value
    end
  end
  opts.insecure = flags.insecure or truthy(env("CTVNC_INSECURE")) or nil
  opts.timeout = flags.timeout
  opts.concurrency = flags.concurrency
  opts.per_request = flags["per-request"]
  if flags["no-http2"] then opts.http2 = false end
  return opts, labels
end

--- A ctvnc.new refusal in the words of the command line.
local function new_error(msg, labels)
  local key = msg:match("^new: ([%w_]+)")
  local label = key and labels[key]
  if label then return (msg:gsub("^new: [%w_]+", label)) end
  return (msg:gsub("^new: ", ""))
end

local RECORD = { "vm_id", "ok", "mode", "url", "kind", "message" }

local function record_text(r)
  if r.ok then return { r.vm_id or "", r.mode or "", r.novnc or r.url or "" } end
  return { r.vm_id or "", "error", r.kind or "", r.message or "" }
end

--- Adds the noVNC link to successful records (--novnc PAGE).
local function add_novnc(records, page)
  for _, r in ipairs(records) do
    if r.ok then
      local link, msg, kind = ctvnc.novnc_url(page, r.url)
      if link then r.novnc = link
      else r.ok, r.url, r.mode, r.message, r.kind = false, nil, nil, msg, kind end
    end
  end
end

local function read_ids(path, stdin, label)
  local f = path == "-" and stdin or io.open(path, "r")
  if not f then return nil, usage_error(label .. " " .. printable(path) .. ": cannot read it") end
  local ids = {}
  for line in f:lines() do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then ids[#ids + 1] = line end
  end
  if f ~= stdin then f:close() end
  return ids
end

local function console_opts(flags)   -- concurrency and per_request went to ctvnc.new
  return { mode = flags.mode, scheme = flags.scheme, port = flags.port }
end

-- The commands: check(flags, words) refuses bad usage before any request;
-- run(ctx) writes its rows through ctx.out and returns true when all
-- succeeded, false when some failed, or nil, message, kind.
local COMMANDS = {}

--- A check refusing a command given no word and no --<flag>.
local function needs_words_or(flag, msg)
  return function(flags, words)
    if #words == 0 and not flags[flag] then return usage_error(msg) end
  end
end

COMMANDS.url = {
  columns = RECORD, text = record_text,
  check = needs_words_or("name", "url needs at least one VM id or --name"),
  run = function(ctx)
    local c, w = ctx.client, ctx.out
    local ok = true
    local function emit(r)
      if r.ok and ctx.flags.novnc then add_novnc({ r }, ctx.flags.novnc) end
      if not r.ok then ok = false end
      w.row(r)
    end
    -- every --name resolved before any row goes out: an ambiguous one is a
    -- usage error with no partial output
    local ids, unresolved = {}, {}
    for _, id in ipairs(ctx.words) do ids[#ids + 1] = id end
    for _, name in ipairs(ctx.flags.name or {}) do
      local vms, msg, kind = c:find_vms(name)
      if not vms then
        unresolved[#unresolved + 1] = { vm_id = name, ok = false, message = msg, kind = kind }
      elseif #vms == 0 then
        unresolved[#unresolved + 1] = { vm_id = name, ok = false,
          message = "no VM is named " .. name, kind = "not_found" }
      elseif #vms > 1 then     -- names are not unique across clusters
        local where = {}
        for i, vm in ipairs(vms) do
          where[i] = vm.id .. " in " .. (vm.cluster and vm.cluster.name or "an unnamed cluster")
        end
        return nil, ("--name %s: %d VMs have this name (%s): give the VM id"):format(name, #vms,
          concat(where, ", ")), "invalid"
      else
        ids[#ids + 1] = vms[1].id
      end
    end
    for _, r in ipairs(unresolved) do emit(r) end
    for _, id in ipairs(ids) do
      if core.interrupted() then
        emit({ vm_id = id, ok = false, message = "interrupted", kind = "interrupted" })
      else
        local url, how, kind = c:console_url(id, ctx.console)
        if url then emit({ vm_id = id, ok = true, url = url, mode = how })
        else emit({ vm_id = id, ok = false, message = how, kind = kind }) end
      end
    end
    return ok
  end,
}

COMMANDS.batch = {
  columns = RECORD, text = record_text,
  check = needs_words_or("file", "batch needs VM ids, --file FILE or - (stdin)"),
  run = function(ctx)
    local ids = {}
    for _, id in ipairs(ctx.words) do
      if id == "-" then
        local more, err = read_ids("-", ctx.stdin, "stdin")
        if not more then return nil, err end
        for _, m in ipairs(more) do ids[#ids + 1] = m end
      else
        ids[#ids + 1] = id
      end
    end
    if ctx.flags.file then
      local more, err = read_ids(ctx.flags.file, ctx.stdin, "--file")
      if not more then return nil, err end
      for _, m in ipairs(more) do ids[#ids + 1] = m end
    end
    if #ids == 0 then return nil, usage_error("batch: no VM ids") end
    local console = ctx.console
    local bar = ctx.progress
    if bar then console.on_progress = bar.update end
    local records = ctx.client:batch(ids, console)
    if bar then bar.finish() end
    if ctx.flags.novnc then add_novnc(records, ctx.flags.novnc) end
    local ok = true
    for _, r in ipairs(records) do
      if not r.ok then ok = false end
      ctx.out.row(r)
    end
    return ok
  end,
}

COMMANDS.vms = {
  columns = { "id", "name", "local_id", "status", "cluster", "host" },
  text = function(vm)
    return { vm.id or "", vm.name or "", vm.status or "", vm.cluster or "", vm.host or "" }
  end,
  check = function(flags, words)
    if #words > 1 then return usage_error("vms takes at most one NAME") end
    if #words == 0 and not flags.contains and not flags.cluster and not flags.first then
      return usage_error("vms needs a NAME, --contains, --cluster or --first")
    end
  end,
  run = function(ctx)
    local flags, name = ctx.flags, ctx.words[1]
    local query, opts = name, nil
    if flags.contains or flags.cluster or flags.first then
      query = {}
      if name then query.name = name end
      if flags.contains then query.name_contains = flags.contains end
      if flags.cluster then query.cluster = { name = flags.cluster } end
      opts = { first = flags.first }
    end
    local vms, msg, kind = ctx.client:find_vms(query, opts)
    if not vms then return nil, msg, kind end
    for _, vm in ipairs(vms) do
      local row = {}
      for k, v in pairs(vm) do row[k] = v end
      if ctx.format ~= "json" then
        row.cluster = type(vm.cluster) == "table" and vm.cluster.name or nil
        row.host = type(vm.host) == "table" and vm.host.name or nil
      end
      ctx.out.row(row)
    end
    return true
  end,
}

COMMANDS.login = {
  columns = { "token" },
  check = function(_, words)
    if #words > 0 then return usage_error("login takes no arguments") end
  end,
  run = function(ctx)
    local token, msg, kind = ctx.client:login()
    if not token then return nil, msg, kind end
    ctx.stdout:write(token, "\n")
    return true
  end,
  raw = true,   -- the token alone, whatever the format
}

--- main(args, env [, stdio]) -> exit status. `env` is os.getenv or a
-- stand-in; `stdio` may replace io's stdin, stdout and stderr.
function _M.main(args, env, stdio)
  stdio = stdio or io
  local out, err = stdio.stdout, stdio.stderr
  local function fail(e)
    if getmetatable(e) == Usage then
      err:write("ctvnc: ", e.msg, "\n", "try 'ctvnc --help'\n")
      return 2
    end
    return 1
  end

  local flags, words = parse(args)
  if not flags then return fail(words) end
  if flags.help then out:write(USAGE) return 0 end
  if flags.version then out:write(ctvnc._VERSION, "\n") return 0 end

  local name = table.remove(words, 1)
  if name == nil then return fail(usage_error("no command")) end
  local command = COMMANDS[name]
  if not command then return fail(usage_error("unknown command " .. printable(name))) end
  for flag in pairs(flags) do
    local only = FLAGS[flag].only
    if only and not only[name] then
      return fail(usage_error("--" .. flag .. " does not apply to " .. name))
    end
  end
  local checks = {
    { "concurrency", true, 1 }, { "per-request", true, 1 },
    { "first", true, 1 }, { "timeout", false, 1e-3 },
  }
  for _, c in ipairs(checks) do
    local ok, e = number(flags, c[1], c[2], c[3], c[4])
    if not ok then return fail(e) end
  end
  -- the console options: the library's one validator, in the flags' words
  flags.port = tonumber(flags.port) or flags.port
  local valid, why = core.check_options("ctvnc",
    { mode = flags.mode, scheme = flags.scheme, port = flags.port })
  if not valid then
    local key, rule = why:match("opts%.(%w+) (must be .*)$")
    return fail(usage_error(format("--%s %s: %s", key, printable(tostring(flags[key])), rule)))
  end
  local fmt = flags.format or "text"
  if not ({ text = true, json = true, csv = true })[fmt] then
    return fail(usage_error(("--format %s: must be text, json or csv"):format(printable(fmt))))
  end
  local e = command.check(flags, words)
  if e then return fail(e) end

  local opts, labels = client_options(flags, env)
  if not opts then return fail(labels) end
  opts.transport = interruptible     -- Ctrl-C and SIGTERM: see below
  local client, msg, kind = ctvnc.new(opts)
  if not client then
    if kind == "invalid" then return fail(usage_error(new_error(msg, labels))) end
    err:write("ctvnc: ", printable(msg), " (", kind, ")\n")
    return 1
  end

  local columns = command.columns
  if flags.novnc then
    columns = { unpack(command.columns) }
    columns[#columns + 1] = "novnc"
  end
  local ctx = {
    client = client, flags = flags, words = words, format = fmt, console = console_opts(flags),
    stdin = stdio.stdin, stdout = out,
    out = writer(out, fmt, columns, command.text),
  }
  local show = env("CTVNC_PROGRESS")
  if not flags.quiet and (show == "1" or (show ~= "0" and stderr_is_tty())) then
    local plain = env("NO_COLOR") ~= nil or env("TERM") == "dumb"
    ctx.progress = progress(err, term_width(env), plain, core.now)
  end

  -- Ctrl-C and SIGTERM: stop the requests, keep what came back.
  core.catch_signals()
  local ok
  ok, msg, kind = command.run(ctx)
  core.release_signals()
  client:close()
  if ok ~= nil and not command.raw then ctx.out.close() end

  local sig = core.interrupted()
  if sig then
    err:write("ctvnc: interrupted\n")
    return 128 + sig
  end
  if ok == nil then
    if getmetatable(msg) == Usage then return fail(msg) end
    err:write("ctvnc: ", printable(msg), " (", tostring(kind), ")\n")
    return kind == "invalid" and 2 or 1
  end
  return ok and 0 or 1
end

return _M
