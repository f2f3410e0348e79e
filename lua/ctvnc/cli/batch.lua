--- ctvnc batch: console URLs for many VMs at once, with a progress bar.
local console = require "ctvnc.cli.console"
local flags = require "ctvnc.cli.flags"
local printable = require("ctvnc.cli.output").printable

local ipairs, usage_error = ipairs, flags.usage_error

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

local FILE = { name = "file", value = "FILE",
  help = "read VM ids from FILE, one per line ('-': stdin)" }

return {
  name = "batch",
  FILE = FILE, read_ids = read_ids,   -- for wall
  args = "[--file F | -] [VM_ID...]",
  summary = "many VMs at once, in parallel, with progress",
  flags = console.flags({
    { name = "concurrency", value = "N", number = { integer = true, min = 1 },
      help = "most requests in flight (default 16)" },
    { name = "per-request", value = "N", number = { integer = true, min = 1 },
      help = "VMs asked for in one request (default 1)" },
    FILE,
  }),
  console = true, progress = true,
  columns = console.RECORD, text = console.text,
  check = function(f, words)
    if #words == 0 and not f.file then
      return usage_error("batch needs VM ids, --file FILE or - (stdin)")
    end
  end,
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
    local opts = ctx.console
    if ctx.progress then opts.on_progress = ctx.progress.update end
    local records = ctx.client:batch(ids, opts)
    if ctx.progress then       -- its last line says how many a signal left
      local cut = 0
      for _, r in ipairs(records) do
        if r.kind == "interrupted" then cut = cut + 1 end
      end
      ctx.progress.finish(cut)
    end
    console.add_novnc(records, ctx.flags.novnc)
    local ok = true
    for _, r in ipairs(records) do
      if not r.ok then ok = false end
      ctx.out.row(r)
    end
    return ok
  end,
}
