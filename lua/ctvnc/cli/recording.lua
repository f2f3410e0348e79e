--- ctvnc recording: verify a console recording, or describe it.
local cjson = require "cjson.safe"
local recording = require "ctvnc.recording"
local keyfile = require "ctvnc.cli.keyfile"
local output = require "ctvnc.cli.output"
local usage_error = require("ctvnc.cli.flags").usage_error

local ipairs, byte, format, concat, floor = ipairs, string.byte, string.format, table.concat,
  math.floor
local printable = output.printable

-- "32 bpp, depth 24, little-endian, true colour" from RFB's PIXEL_FORMAT.
local function pixel_format(pf)
  local bpp, depth, big, true_colour = byte(pf, 1, 4)
  return format("%d bpp, depth %d, %s, %s", bpp, depth, big ~= 0 and "big-endian"
    or "little-endian", true_colour ~= 0 and "true colour" or "colour map")
end

local function seconds(ms) return format("%.3f s", ms / 1000) end

-- The facts `info` shows, in order: { name, value }.
local function facts(r)
  local h, t = r.header, r.trailer
  local keys = {}
  for i, k in ipairs(r.keyframes) do     -- the first ten: time@offset
    if i > 10 then keys[i] = "..." break end
    keys[i] = format("%s@%d", seconds(k.t_ms - h.start_ms), k.offset)
  end
  return {
    { "session", printable(h.session) }, { "vm_id", printable(h.vm_id) },
    { "user", printable(h.user) }, { "node", printable(h.node) },
    { "start", os.date("!%Y-%m-%dT%H:%M:%S", floor(h.start_ms / 1000))
      .. format(".%03dZ", h.start_ms % 1000) },
    { "rfb", printable((h.rfb:gsub("\n$", ""))) },
    { "desktop", format("%dx%d", h.width, h.height) },
    { "pixel_format", pixel_format(h.pixel_format) },
    { "duration", seconds((t and t.end_ms or r.last_ms) - h.start_ms) },
    { "chunks", format("%d", r.chunks) }, { "bytes", format("%d", r.bytes) },
    { "keyframes", format("%d", #r.keyframes) .. (#keys > 0 and " (" .. concat(keys, ", ")
      .. ")" or "") },
    { "complete", t and (t.complete and "yes" or "no (the recorder stopped early)")
      or "no (no trailer)" },
    { "sha256", t and t.hash or "none (no trailer)" },
    { "signature", t and t.signature or "none" },
    { "verify", r.verdict },
  }
end

-- The report as JSON: the header's fields, the counts, the verdict.
local function as_json(r, key)
  local h, t = r.header, r.trailer
  return cjson.encode({
    session = h and h.session, vm_id = h and h.vm_id, user = h and h.user,
    node = h and h.node, start_ms = h and h.start_ms, rfb = h and h.rfb,
    width = h and h.width, height = h and h.height,
    duration_ms = h and ((t and t.end_ms or r.last_ms) - h.start_ms),
    chunks = r.chunks, bytes = r.bytes, keyframes = r.keyframes,
    complete = t ~= nil and t.complete, sha256 = t and t.hash,
    signature = t and t.signature or "none",
    intact = recording.ok(r, key), first_bad_chunk = r.first_bad, verdict = r.verdict,
  })
end

return {
  name = "recording",
  args = "verify|info FILE",
  summary = "check a console recording's hash chain (verify) or describe it (info)",
  flags = { keyfile.FLAG },
  offline = true,   -- a file on this machine: no tower
  check = function(flags, words)
    if flags.format == "csv" then return usage_error("recording writes text or json") end
    if #words ~= 2 or (words[1] ~= "verify" and words[1] ~= "info") then
      return usage_error("recording takes verify or info, then one FILE")
    end
  end,
  run = function(ctx)
    local key, e = keyfile.read(ctx.flags, ctx.env, "CTVNC_RECORD_KEY")
    if e then return nil, e end
    local path = ctx.words[2]
    local r, msg, kind = recording.check(path, key)
    if not r then return nil, path .. ": " .. msg, kind end
    local ok = recording.ok(r, key)
    if ctx.format == "json" then
      ctx.stdout:write(as_json(r, key), "\n")
    elseif ctx.words[1] == "verify" or not r.header then
      ctx.stdout:write(printable(path), ": ", r.verdict, "\n")
    else
      for _, f in ipairs(facts(r)) do ctx.stdout:write(format("%-13s %s\n", f[1], f[2])) end
    end
    return ctx.words[1] == "info" and r.header ~= nil or ok
  end,
}
