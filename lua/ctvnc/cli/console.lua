--- ctvnc.cli.console: what the commands that print console URLs share
-- (url, batch): their flags, their record and its text line, noVNC links.
local ctvnc = require "ctvnc"
local core = require "ctvnc.core"
local usage_error = require("ctvnc.cli.flags").usage_error
local printable = require("ctvnc.cli.output").printable

local ipairs, tonumber, tostring, format = ipairs, tonumber, tostring, string.format

local _M = {}

--- The choice of URL (every command that opens or prints consoles).
_M.CHOICE = {
  { name = "mode", value = "MODE", help = "auto (default), direct or proxy" },
  { name = "scheme", value = "SCHEME", help = "wss (default) or ws" },
  { name = "port", value = "N", help = "the cluster's websocket port (direct URLs and probes)" },
}
_M.FLAGS = { _M.CHOICE[1], _M.CHOICE[2], _M.CHOICE[3],
  { name = "novnc", value = "PAGE", help = "also print a link to the noVNC page PAGE that "
    .. "opens the URL" },
}

--- A command's flags: the console ones (`base`: FLAGS unless given), then
-- its own.
function _M.flags(own, base)
  local list = {}
  for _, f in ipairs(base or _M.FLAGS) do list[#list + 1] = f end
  for _, f in ipairs(own) do list[#list + 1] = f end
  return list
end

_M.RECORD = { "vm_id", "ok", "mode", "url", "kind", "message" }

function _M.text(r)
  if r.ok then return { r.vm_id or "", r.mode or "", r.novnc or r.url or "" } end
  return { r.vm_id or "", "error", r.kind or "", r.message or "" }
end

--- The console options of the flags, checked by the library's one
-- validator and refused in the flags' words | nil, usage error.
function _M.options(flags)
  flags.port = tonumber(flags.port) or flags.port
  local opts = { mode = flags.mode, scheme = flags.scheme, port = flags.port }
  local valid, why = core.check_options("ctvnc", opts)
  if not valid then
    local key, rule = why:match("opts%.(%w+) (must be .*)$")
    return nil, usage_error(format("--%s %s: %s", key, printable(tostring(flags[key])), rule))
  end
  return opts
end

--- Adds the noVNC link to successful records (--novnc PAGE).
function _M.add_novnc(records, page)
  if not page then return end
  for _, r in ipairs(records) do
    if r.ok then
      local link, msg, kind = ctvnc.novnc_url(page, r.url)
      if link then r.novnc = link
      else r.ok, r.url, r.mode, r.message, r.kind = false, nil, nil, msg, kind end
    end
  end
end

return _M
