--- ctvnc shot: one PNG screenshot per VM, written to DIR/<vm id>.png.
local console = require "ctvnc.cli.console"
local usage_error = require("ctvnc.cli.flags").usage_error

local ipairs, pairs, open, match = ipairs, pairs, io.open, string.match

local _M = {
  name = "shot",
  args = "[--out DIR] [--width N] VM_ID...",
  summary = "a PNG screenshot per VM into DIR/<vm id>.png (id, path, size)",
  console = true, progress = true,
  columns = { "vm_id", "ok", "mode", "path", "width", "height", "kind", "message" },
}

--- Flags the screenshot commands share (one table each, so the help and
-- docs/cli.md name every command that takes them).
_M.WIDTH = { name = "width", value = "N", number = { integer = true, min = 1 },
  help = "scale down to at most N pixels wide" }

_M.OUT = { name = "out", value = "PATH", help = "where to write: shot's folder of PNGs "
  .. "(default .), wall's page (default wall.html)" }

_M.flags = console.flags({ _M.OUT, _M.WIDTH }, console.CHOICE)

function _M.text(r)
  if r.ok then return { r.vm_id, r.path, r.width .. "x" .. r.height } end
  return { r.vm_id or "", "error", r.kind or "", r.message or "" }
end

function _M.check(_, words)
  if #words == 0 then return usage_error("shot needs at least one VM id") end
end

--- The screenshot options of the flags and the environment.
function _M.options(ctx)
  local opts = {}
  for k, v in pairs(ctx.console) do opts[k] = v end
  opts.width = ctx.flags.width
  opts.password = ctx.env("CTVNC_VNC_PASSWORD")
  if ctx.progress then opts.on_progress = ctx.progress.update end
  return opts
end

function _M.run(ctx)
  local dir = ctx.flags.out or "."
  local results = ctx.client:screenshots(ctx.words, _M.options(ctx))
  if ctx.progress then ctx.progress.finish(0) end
  local ok = true
  for _, r in ipairs(results) do
    if r.ok then
      -- a VM id names the file: ids with a path in them are refused
      local path = dir .. "/" .. r.vm_id .. ".png"
      local f = match(r.vm_id, "^[%w][%w._-]*$") and open(path, "wb")
      if f and f:write(r.png) and f:close() then
        r.path = path
      else
        if f then f:close() end
        r.ok, r.kind = false, "invalid"
        r.message = f == false and "the VM id cannot name a file" or "cannot write " .. path
      end
      r.png = nil
    end
    if not r.ok then ok = false end
    ctx.out.row(r)
  end
  return ok
end

return _M
