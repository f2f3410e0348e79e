--- ctvnc.cli: the `ctvnc` command. Exit status 0 when everything
-- succeeded, 1 when something failed, 2 on usage errors.
local ctvnc = require "ctvnc"
local json = require("cjson.safe").new()

local ipairs, tonumber, format = ipairs, tonumber, string.format
local concat = table.concat

local _M = {}

local USAGE = [[
usage: ctvnc [options] url VM_ID...          one console URL per VM
       ctvnc [options] batch [--file F | -] [VM_ID...]
                                             many VMs at once, in parallel
       ctvnc [options] login                 print a login token (for CTVNC_TOKEN)
       ctvnc [options] vms NAME              find VMs by name

options:
  --endpoint URL      CloudTower address (or CTVNC_ENDPOINT), e.g.
                      https://tower.example.com or tower.example.com:8443
  --username NAME     login name (or CTVNC_USERNAME); the password comes
                      from CTVNC_PASSWORD only, never from the command line
  --mode MODE         auto (default), direct or proxy
  --scheme SCHEME     wss (default) or ws
  --port N            the cluster's websocket port (direct URLs and probes)
  --concurrency N     most requests in flight in a batch (default 16)
  --format FORMAT     text (default), json or csv
  --timeout SECONDS   whole-request timeout (default 10)
  --insecure          skip TLS verification (or CTVNC_INSECURE=1)
  --ca-file FILE      PEM bundle to verify the tower (or CTVNC_CA_FILE)
  --file FILE         batch: read VM ids from FILE, one per line ('-': stdin)
  --help, --version

environment:
  CTVNC_ENDPOINT, CTVNC_TOKEN (token or API key), CTVNC_USERNAME,
  CTVNC_PASSWORD, CTVNC_INSECURE (1 or true), CTVNC_CA_FILE,
  CTVNC_PROGRESS (1 or 0: force the batch progress bar on or off; by
  default it shows when stderr is a terminal)

A direct URL is chosen in auto mode when this machine reaches the cluster on
the websocket port; a browser elsewhere may see the network differently.
]]

local FLAGS = {   -- flag -> takes a value
  endpoint = true, username = true, mode = true, scheme = true, port = true,
  concurrency = true, format = true, timeout = true, ["ca-file"] = true, file = true,
  insecure = false, help = false, version = false,
}

--- Splits argv into options and words: opts, words | nil, message.
local function parse(args)
  local opts, words, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if a == "-" or not name then
      if a:sub(1, 1) == "-" and a ~= "-" then return nil, "unknown option " .. a end
      words[#words + 1] = a
    else
      local takes = FLAGS[name]
      if takes == nil then return nil, "unknown option --" .. name end
      if takes and not value then
        i = i + 1
        value = args[i]
        if value == nil then return nil, "--" .. name .. " needs a value" end
      elseif not takes and value then
        return nil, "--" .. name .. " takes no value"
      end
      opts[name] = takes and value or true
    end
    i = i + 1
  end
  return opts, words
end

local function number_opt(opts, key)
  if opts[key] == nil then return true end
  local n = tonumber(opts[key])
  if not n then return nil, "--" .. key .. " must be a number" end
  opts[key] = n
  return true
end

local function truthy(s) return s == "1" or s == "true" or s == "yes" end

--- RFC 4180 field.
local function csv_field(v)
  v = v == nil and "" or tostring(v)
  if v:find('[,"\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local RECORD = { "vm_id", "ok", "mode", "url", "kind", "message" }

local function emit(out, fmt, records, text)
  if fmt == "json" then
    local rows = {}
    for i, r in ipairs(records) do
      rows[i] = { vm_id = r.vm_id, ok = r.ok, mode = r.mode, url = r.url,
                  kind = r.kind, message = r.message }
    end
    out:write((json.encode(rows):gsub("^{}$", "[]")), "\n")
  elseif fmt == "csv" then
    out:write(concat(RECORD, ","), "\r\n")
    for _, r in ipairs(records) do
      local row = {}
      for i, k in ipairs(RECORD) do row[i] = csv_field(r[k]) end
      out:write(concat(row, ","), "\r\n")
    end
  else
    for _, r in ipairs(records) do
      local line = text(r)
      if line then out:write(line, "\n") end
    end
  end
end

--- A progress bar on stderr: done/total, rate, failures.
local function progress_bar(err, now)
  local start = now()
  return function(done, total, failed)
    local width = 30
    local filled = total > 0 and math.floor(width * done / total) or width
    local rate = done / math.max(now() - start, 1e-3)
    err:write(format("\r[%s%s] %d/%d  %.1f/s  %d failed ", ("#"):rep(filled),
      ("."):rep(width - filled), done, total, rate, failed or 0))
    if done == total then err:write("\n") end
    err:flush()
  end
end

local function read_ids(path, stdin)
  local f = path == "-" and stdin or io.open(path, "r")
  if not f then return nil, "cannot read " .. path end
  local ids = {}
  for line in f:lines() do
    line = line:match("^%s*(.-)%s*$")
    if line ~= "" and line:sub(1, 1) ~= "#" then ids[#ids + 1] = line end
  end
  if f ~= stdin then f:close() end
  return ids
end

local function stderr_is_tty()
  local ok = os.execute("test -t 2")
  return ok == true or ok == 0
end

--- main(args, env) -> exit status. `env` is os.getenv or a stand-in;
-- `io` may carry stdin/stdout/stderr replacements.
function _M.main(args, env, stdio)
  stdio = stdio or io
  local out, err = stdio.stdout, stdio.stderr
  local function usage(msg)
    err:write("ctvnc: ", msg, "\n", "try 'ctvnc --help'\n")
    return 2
  end
  local opts, words = parse(args)
  if not opts then return usage(words) end
  if opts.help then out:write(USAGE) return 0 end
  if opts.version then out:write(ctvnc._VERSION, "\n") return 0 end
  for _, k in ipairs({ "port", "concurrency", "timeout" }) do
    local ok, msg = number_opt(opts, k)
    if not ok then return usage(msg) end
  end
  local mode, scheme, port = opts.mode, opts.scheme, opts.port
  if mode and mode ~= "auto" and mode ~= "direct" and mode ~= "proxy" then
    return usage("--mode must be auto, direct or proxy")
  end
  if scheme and scheme ~= "ws" and scheme ~= "wss" then
    return usage("--scheme must be ws or wss")
  end
  if port and (port < 1 or port > 65535 or port % 1 ~= 0) then
    return usage("--port must be an integer 1-65535")
  end
  local fmt = opts.format or "text"
  if fmt ~= "text" and fmt ~= "json" and fmt ~= "csv" then
    return usage("--format must be text, json or csv")
  end
  local command = table.remove(words, 1)
  if command == nil then return usage("no command") end
  if command ~= "url" and command ~= "batch" and command ~= "login" and command ~= "vms" then
    return usage("unknown command " .. command)
  end

  local endpoint = opts.endpoint or env("CTVNC_ENDPOINT")
  if not endpoint then return usage("no endpoint: set CTVNC_ENDPOINT or --endpoint") end
  local client, msg, kind = ctvnc.new({
    endpoint = endpoint,
    token = env("CTVNC_TOKEN"),
    username = opts.username or env("CTVNC_USERNAME"),
    password = env("CTVNC_PASSWORD"),
    insecure = opts.insecure or truthy(env("CTVNC_INSECURE")),
    ca_file = opts["ca-file"] or env("CTVNC_CA_FILE"),
    timeout = opts.timeout,
    concurrency = opts.concurrency,
  })
  if not client then return usage(msg .. " (" .. kind .. ")") end
  local console = { mode = mode, scheme = scheme, port = port, concurrency = opts.concurrency }

  if command == "login" then
    local token
    token, msg, kind = client:login()
    if not token then
      err:write("ctvnc: ", msg, " (", kind, ")\n")
      return kind == "invalid" and 2 or 1
    end
    out:write(token, "\n")
    return 0
  end

  if command == "vms" then
    if #words ~= 1 then return usage("vms takes one NAME") end
    local vms
    vms, msg, kind = client:find_vms(words[1])
    if not vms then
      err:write("ctvnc: ", msg, " (", kind, ")\n")
      return kind == "invalid" and 2 or 1
    end
    if fmt == "json" then
      out:write((json.encode(vms):gsub("^{}$", "[]")), "\n")
    else
      local sep = fmt == "csv" and "," or "\t"
      if fmt == "csv" then out:write("id,name,local_id,status\r\n") end
      for _, vm in ipairs(vms) do
        local row = {}
        for i, k in ipairs({ "id", "name", "local_id", "status" }) do
          row[i] = fmt == "csv" and csv_field(vm[k]) or (vm[k] or "")
        end
        out:write(concat(row, sep), fmt == "csv" and "\r\n" or "\n")
      end
    end
    return 0
  end

  local ids = words
  if command == "batch" and opts.file then
    local more
    more, msg = read_ids(opts.file, stdio.stdin)
    if not more then return usage(msg) end
    for _, id in ipairs(more) do ids[#ids + 1] = id end
  elseif command == "batch" and #ids == 1 and ids[1] == "-" then
    ids = read_ids("-", stdio.stdin)
  end
  if #ids == 0 then return usage(command .. " needs at least one VM id") end

  local records, failed = {}, 0
  if command == "url" then
    for i, id in ipairs(ids) do
      local url, how, k = client:console_url(id, console)
      if url then
        records[i] = { vm_id = id, ok = true, url = url, mode = how }
      else
        records[i] = { vm_id = id, ok = false, message = how, kind = k }
      end
    end
  else
    local show = env("CTVNC_PROGRESS")
    if show == "1" or (show ~= "0" and stderr_is_tty()) then
      console.on_progress = progress_bar(err, require("ctvnc.core").now)
    end
    records = client:batch(ids, console)
  end

  emit(out, fmt, records, function(r)
    if command == "url" then return r.ok and r.url or nil end
    if r.ok then return r.vm_id .. "\t" .. r.mode .. "\t" .. r.url end
    return r.vm_id .. "\terror\t" .. r.kind .. "\t" .. r.message
  end)
  for _, r in ipairs(records) do
    if not r.ok then
      failed = failed + 1
      if fmt == "text" and command == "url" then
        err:write("ctvnc: ", r.message, " (", r.kind, ")\n")
      end
    end
  end
  client:close()
  return failed == 0 and 0 or 1
end

return _M
