--- ctvnc wall: one self-contained HTML page of console thumbnails, each
-- with its VM's name, status and time, errors shown in place.
local shot = require "ctvnc.cli.shot"
local console = require "ctvnc.cli.console"
local vms = require "ctvnc.cli.vms"
local batch = require "ctvnc.cli.batch"
local usage_error = require("ctvnc.cli.flags").usage_error

local ipairs, tostring, concat, format, byte = ipairs, tostring, table.concat,
  string.format, string.byte
local floor, date = math.floor, os.date

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- base64 of s (data: URIs), in plain arithmetic for Lua 5.1 to 5.4.
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 1, 4 do
      local v = floor(n / 64 ^ (4 - k)) % 64
      q[k] = B64:sub(v + 1, v + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = concat(q)
  end
  return concat(out)
end

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
local function html(s)
  return (tostring(s or ""):gsub("[%z\1-\31\127]", " "):gsub("[&<>\"']", ESC))
end

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>ctvnc wall</title>
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<style>
body{font:13px sans-serif;background:#222;color:#ddd;margin:1em}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(%dpx,1fr));gap:12px}
figure{margin:0;background:#333;padding:6px;border-radius:4px}
img{width:100%%;image-rendering:auto;display:block}
.err{min-height:60px;color:#f88;white-space:pre-wrap;word-break:break-word}
figcaption span{color:#999;margin-left:.5em}
</style></head><body>
<h1>%d consoles, %d failed, %s</h1>
<main>
%s
</main></body></html>
]]

local _M = {
  name = "wall",
  args = "[--out FILE] [--width N] (VM_ID... | --file F | --contains TEXT)",
  summary = "one HTML page of console thumbnails (name, status, time; errors in place)",
  console = true,
  columns = { "vm_id", "ok", "mode", "width", "height", "kind", "message" },
}

function _M.text(r)
  if r.ok then return { r.vm_id, r.mode, r.width .. "x" .. r.height } end
  return shot.text(r)
end

_M.flags = console.flags({
  shot.OUT, shot.WIDTH, batch.FILE, vms.flags[1],
}, console.CHOICE)

function _M.check(flags, words)
  if #words == 0 and not flags.contains and not flags.file then
    return usage_error("wall needs VM ids, --file F or --contains TEXT")
  end
end

function _M.run(ctx)
  local c, flags = ctx.client, ctx.flags
  local ids, about = {}, {}
  for _, id in ipairs(ctx.words) do ids[#ids + 1] = id end
  if flags.file then
    local more, err = batch.read_ids(flags.file, ctx.stdin, "--file")
    if not more then return nil, err end
    for _, id in ipairs(more) do ids[#ids + 1] = id end
  end
  local query = flags.contains and { name_contains = flags.contains } or { id_in = ids }
  local found, msg, kind = c:find_vms(query)
  if not found then return nil, msg, kind end
  for _, vm in ipairs(found) do
    about[vm.id] = vm
    if flags.contains then ids[#ids + 1] = vm.id end
  end
  local opts = shot.options(ctx)
  opts.width = opts.width or 320
  local results = c:screenshots(ids, opts)
  local cells, failed, ok = {}, 0, true
  for i, r in ipairs(results) do
    local vm = about[r.vm_id] or {}
    local head = format("<figcaption>%s<span>%s</span><span>%s</span></figcaption>",
      html(vm.name or r.vm_id), html(vm.status), html(date("!%H:%M:%SZ")))
    if r.ok then
      cells[i] = format('<figure title="%s">%s<img alt="%s" src="data:image/png;base64,%s">'
        .. "</figure>", html(r.vm_id), head, html(r.vm_id), base64(r.png))
    else
      failed, ok = failed + 1, false
      cells[i] = format('<figure title="%s">%s<div class="err">%s: %s</div></figure>',
        html(r.vm_id), head, html(r.kind), html(r.message))
    end
    r.png = nil
    ctx.out.row(r)
  end
  local path = flags.out or "wall.html"
  local f = io.open(path, "wb")
  if not f then return nil, "cannot write " .. path, "invalid" end
  f:write(format(PAGE, opts.width, #results, failed, html(date("!%Y-%m-%d %H:%M:%SZ")),
    concat(cells, "\n")))
  f:close()
  return ok
end

return _M
