--- ctvnc.cli.flags: the flags every command takes, the parser, and the
-- usage text, which is made from the flag tables (these and each
-- command's own), so help and parser never disagree. docs/cli.md lists the
-- same flags (spec/cli_flags_spec.lua holds them equal).
--
-- A flag: { name = "format", value = "FORMAT" (nil: takes none),
--           help = "one line", many = true (repeatable), short = "q",
--           number = { integer = true, min = 1 } (checked before any request) }
local ipairs, pairs, tonumber, type = ipairs, pairs, tonumber, type
local format, concat, rep = string.format, table.concat, string.rep

local _M = {}

-- The flags of every command, in the order --help lists them.
_M.GLOBAL = {
  { name = "endpoint", value = "URL", help = "CloudTower address (or CTVNC_ENDPOINT), e.g. "
    .. "https://tower.example.com or tower.example.com:8443" },
  { name = "username", value = "NAME", help = "login name (or CTVNC_USERNAME); the password "
    .. "comes from CTVNC_PASSWORD only, never from the command line" },
  { name = "source", value = "SOURCE", help = "login source: LOCAL (default), LDAP or AUTHN "
    .. "(or CTVNC_SOURCE)" },
  { name = "auth-config-id", value = "ID", help = "with --source AUTHN: the tower's "
    .. "authentication source" },
  { name = "header", value = "'N: V'", many = true, help = "an extra request header "
    .. "(repeatable)" },
  { name = "no-http2", help = "HTTP/1.1 only" },
  { name = "format", value = "FORMAT", help = "text (default), json or csv" },
  { name = "timeout", value = "SECONDS", number = { min = 1e-3 },
    help = "whole-request timeout (default 10)" },
  { name = "insecure", help = "skip TLS verification (or CTVNC_INSECURE=1)" },
  { name = "ca-file", value = "FILE", help = "PEM bundle to verify the tower (or "
    .. "CTVNC_CA_FILE)" },
  { name = "quiet", short = "q", help = "no progress bar" },
  { name = "help", short = "h", help = "this text" },
  { name = "version", help = "the version" },
}

local Usage = {}   -- the metatable of usage errors: exit status 2

function _M.usage_error(msg) return setmetatable({ msg = msg }, Usage) end
function _M.is_usage(e) return getmetatable(e) == Usage end
local usage_error = _M.usage_error

--- Levenshtein distance of two short strings.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The candidate nearest to `word` (a prefix of it, or at most a third of
-- its letters apart), or nil.
function _M.nearest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = c:sub(1, #word) == word and 0 or distance(word, c)
    if d <= math.max(1, math.floor(#c / 3)) and (not best_d or d < best_d) then
      best, best_d = c, d
    end
  end
  return best
end

--- " (did you mean X?)" for `word` among `candidates`, or "".
function _M.did_you_mean(word, candidates, prefix)
  local near = _M.nearest(word, candidates)
  return near and format(" (did you mean %s%s?)", prefix or "", near) or ""
end

--- argv, known (name -> flag, "-" .. short -> flag) -> flags, words | nil, usage
-- error. `--` ends the flags; `-` is a word (stdin for batch). An unknown
-- flag is named without what follows its `=` (it may be a secret) and
-- with the nearest known one.
function _M.parse(args, known)
  local flags, words, i, rest = {}, {}, 1, false
  local longs = {}
  for name in pairs(known) do
    if name:sub(1, 1) ~= "-" then longs[#longs + 1] = name end
  end
  table.sort(longs)
  while i <= #args do
    local a = args[i]
    local name, value
    if rest or a == "-" or a:sub(1, 1) ~= "-" then
      words[#words + 1] = a
    elseif a == "--" then
      rest = true
    else
      name, value = a:match("^%-%-([%w-]+)=(.*)$")
      name = name or a:match("^%-%-([%w-]+)$")
      local short = a:match("^%-(%w)$")
      local spec = (name and name:sub(1, 1) ~= "-" and known[name])
        or (short and known["-" .. short]) or nil
      if not spec then
        local typed = a:match("^(%-%-?[^=]*)") or a
        if a:sub(2, 2) ~= "-" then typed = a:sub(1, 2) end   -- -pSECRET: -p
        local bare = typed:gsub("^%-+", "")
        return nil, usage_error("unknown option " .. typed:gsub("[^%w-]", "?")
          .. _M.did_you_mean(bare, longs, "--"))
      end
      name = spec.name
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

--- Numbers where a flag's `number` says so: flags[name] becomes a number
-- | nil, usage error.
function _M.numbers(flags, known, printable)
  for name, v in pairs(flags) do
    local rule = known[name].number
    if rule and type(v) == "string" then
      local n = tonumber(v)
      if not n or n ~= n or (rule.integer and n % 1 ~= 0) or n < rule.min then
        local what = rule.integer and ("an integer " .. rule.min .. " or more")
          or "a number above 0"
        return nil, usage_error(format("--%s %s: must be %s", name, printable(v), what))
      end
      flags[name] = n
    end
  end
  return true
end

--- `text` wrapped at 79 columns, every line but the first indented `indent`.
local function wrap(text, indent, first)
  local lines, line = {}, first
  for word in text:gmatch("%S+") do
    if #line + 1 + #word > 79 and #line > indent then
      lines[#lines + 1] = line
      line = rep(" ", indent) .. word
    elseif #line < indent then
      line = line .. rep(" ", indent - #line) .. word
    else
      line = line .. " " .. word
    end
  end
  lines[#lines + 1] = line
  return concat(lines, "\n")
end

local function flag_label(f)
  local label = "--" .. f.name .. (f.value and " " .. f.value or "")
  if f.short then label = "-" .. f.short .. ", " .. label end
  return label
end

local function flag_line(f, note)
  local label = "  " .. flag_label(f)
  if #label > 21 then return label .. "\n" .. wrap(note .. f.help, 23, "") end
  return wrap(note .. f.help, 23, label)
end

--- The usage text: each command's line, the common flags, every command's
-- own (once, with the commands that take it), and `trailer`.
function _M.usage(commands, trailer)
  local out = {}
  for i, c in ipairs(commands) do
    local head = (i == 1 and "usage: " or "       ") .. "ctvnc [options] " .. c.name
      .. (c.args ~= "" and " " .. c.args or "")
    out[#out + 1] = head
    out[#out + 1] = rep(" ", 35) .. c.summary
  end
  out[#out + 1] = "\noptions:"
  for _, f in ipairs(_M.GLOBAL) do out[#out + 1] = flag_line(f, "") end
  out[#out + 1] = "  --                   the end of the options: what follows are VM ids"
  local seen, order, takers = {}, {}, {}
  for _, c in ipairs(commands) do
    for _, f in ipairs(c.flags) do
      if not seen[f] then seen[f], order[#order + 1], takers[f] = true, f, {} end
      local t = takers[f]
      t[#t + 1] = c.name
    end
  end
  if #order > 0 then out[#out + 1] = "\ncommand options:" end
  for _, f in ipairs(order) do
    out[#out + 1] = flag_line(f, concat(takers[f], ", ") .. ": ")
  end
  return concat(out, "\n") .. "\n" .. trailer
end

return _M
