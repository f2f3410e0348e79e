--- ctvnc.cli: the `ctvnc` command. Each command is a module of its own
-- (ctvnc.cli.<name>: its name, arguments, summary, flags with their help,
-- columns, check and run); COMMANDS lists them, so adding one is one entry
-- here. The usage text is made from the flag tables (ctvnc.cli.flags).
-- Exit status: 0 all succeeded, 1 something failed, 2 usage error, 128 +
-- signal number when interrupted.
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local flagset = require "ctvnc.cli.flags"
local output = require "ctvnc.cli.output"
local connect = require "ctvnc.cli.connect"
local console = require "ctvnc.cli.console"

local ipairs, pairs, tostring = ipairs, pairs, tostring
local unpack = table.unpack or unpack  -- luacheck: ignore
local printable, usage_error = output.printable, flagset.usage_error

local _M = {
  printable = output.printable, csv_cell = output.csv_cell,
  writer = output.writer, progress = output.progress,
}

--- The commands, in the order --help lists them.
local COMMANDS = { "url", "batch", "vms", "login", "shot", "check", "wall", "recording",
  "audit", "gateway" }

local commands, by_name = {}, {}
for i, name in ipairs(COMMANDS) do
  commands[i] = require("ctvnc.cli." .. name)
  by_name[name] = commands[i]
end
_M.commands = commands

--- Every flag by its name (and "-" .. short), and the commands taking each.
local known, takers = {}, {}
local function know(f, command)
  known[f.name] = f
  if f.short then known["-" .. f.short] = f end
  if command then
    takers[f.name] = takers[f.name] or {}
    takers[f.name][command] = true
  end
end
for _, f in ipairs(flagset.GLOBAL) do know(f) end
for _, c in ipairs(commands) do
  for _, f in ipairs(c.flags) do know(f, c.name) end
end
_M.flags = known

_M.USAGE = flagset.usage(commands, [[

environment:
  CTVNC_ENDPOINT, CTVNC_TOKEN (token or API key), CTVNC_USERNAME,
  CTVNC_PASSWORD, CTVNC_VNC_PASSWORD (shot, check), CTVNC_SOURCE,
  CTVNC_INSECURE (1 or true), CTVNC_CA_FILE,
  CTVNC_PROGRESS (1 or 0: force the batch progress bar on or off; by
  default it shows when stderr is a terminal), COLUMNS, NO_COLOR, TERM,
  CTVNC_RECORD_KEY and CTVNC_AUDIT_KEY (keys for recording and audit verify)

Text output is one line per VM, fields separated by tabs:
  <vm id> <mode> <url>            or    <vm id> error <kind> <message>
JSON and CSV hold one record per VM in input order: vm_id, ok, mode, url,
kind, message. Ctrl-C stops a batch at once and prints what was fetched
(the rest with kind "interrupted").

A direct URL is chosen in auto mode when this machine reaches the cluster on
the websocket port; a browser elsewhere may see the network differently.
]])

--- The checks before any request: usage error | nil; ctx.console set.
local function check(command, flags, words, ctx)
  for flag in pairs(flags) do
    local only = takers[flag]
    if only and not only[command.name] then
      return usage_error("--" .. flag .. " does not apply to " .. command.name)
    end
  end
  local ok, e = flagset.numbers(flags, known, printable)
  if not ok then return e end
  if command.console then
    ctx.console, e = console.options(flags)
    if not ctx.console then return e end
  end
  ctx.format = flags.format or "text"
  if not ({ text = true, json = true, csv = true })[ctx.format] then
    return usage_error(("--format %s: must be text, json or csv"):format(printable(ctx.format)))
  end
  return command.check(flags, words)
end

--- main(args, env [, stdio]) -> exit status. `env` is os.getenv or a
-- stand-in; `stdio` may replace io's stdin, stdout and stderr.
function _M.main(args, env, stdio)
  stdio = stdio or io
  local out, err = stdio.stdout, stdio.stderr
  local function fail(e)
    if flagset.is_usage(e) then
      err:write("ctvnc: ", e.msg, "\n", "try 'ctvnc --help'\n")
      return 2
    end
    return 1
  end
  -- the exit status of a command's ok | nil, msg, kind, its error written
  local function status(ok, msg, kind, hint)
    if type(ok) == "number" then return ok end   -- the command's own exit status
    if ok == nil then
      if flagset.is_usage(msg) then return fail(msg) end
      err:write("ctvnc: ", printable(msg), " (", tostring(kind), ")\n")
    end
    if hint then err:write("ctvnc: ", hint, "\n") end
    if ok == nil then return kind == "invalid" and 2 or 1 end
    return ok and 0 or 1
  end

  local flags, words = flagset.parse(args, known)
  if not flags then return fail(words) end
  if flags.help then out:write(_M.USAGE) return 0 end
  if flags.version then out:write(ctvnc._VERSION, "\n") return 0 end

  local name = table.remove(words, 1)
  if name == nil then return fail(usage_error("no command")) end
  local command = by_name[name]
  if not command then
    return fail(usage_error("unknown command " .. printable(name)
      .. flagset.did_you_mean(name, COMMANDS)))
  end
  local ctx = { flags = flags, words = words, stdin = stdio.stdin, stdout = out, stderr = err,
    env = env }
  local e = check(command, flags, words, ctx)
  if e then return fail(e) end
  if command.offline then return status(command.run(ctx)) end

  local opts, labels = connect.options(flags, env)
  if not opts then return fail(labels) end
  local client, msg, kind = ctvnc.new(opts)
  if not client then
    if kind == "invalid" then return fail(usage_error(connect.new_error(msg, labels))) end
    err:write("ctvnc: ", printable(msg), " (", kind, ")\n")
    return 1
  end
  ctx.client = client

  local columns = command.columns
  if flags.novnc then
    columns = { unpack(command.columns) }
    columns[#columns + 1] = "novnc"
  end
  local rows, writer = {}, output.writer(out, ctx.format, columns, command.text)
  ctx.out = { row = function(r) rows[#rows + 1] = r writer.row(r) end }
  local show = env("CTVNC_PROGRESS")
  if command.progress and not flags.quiet
      and (show == "1" or (show ~= "0" and output.stderr_is_tty())) then
    local plain = env("NO_COLOR") ~= nil or env("TERM") == "dumb"
    ctx.progress = output.progress(err, output.term_width(env), plain, core.now)
  end

  -- Ctrl-C and SIGTERM: stop the requests, keep what came back.
  core.catch_signals()
  local ok
  ok, msg, kind = command.run(ctx)
  core.release_signals()
  client:close()
  local sig = core.interrupted()
  if ok ~= nil and not command.raw then writer.close() end

  local tls = kind == "tls"
  for _, r in ipairs(rows) do tls = tls or r.kind == "tls" end
  if sig then
    err:write("ctvnc: interrupted\n")
    return 128 + sig
  end
  return status(ok, msg, kind, tls and connect.tls_hint(opts))
end

return _M
