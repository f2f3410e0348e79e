--- ctvnc.recording: reads a console recording file (docs/recording-format.md)
-- and says whether it is intact. The bytes are read a block at a time: a
-- recording of any length is checked in the memory of its largest record.
--
--   local recording = require "ctvnc.recording"
--   local report, err, kind = recording.check(path [, key])
--
-- The writer is ctvnc.core's (core.recording_writer): the gateway writes
-- its bytes, this module and `ctvnc recording` read them.
local core = require "ctvnc.core"

local io_open, max, concat, tostring = io.open, math.max, table.concat, tostring

local _M = {}

local BLOCK = 65536

--- report | nil, message, kind ("io": the file cannot be read).
-- report: header (the header item, nil when the file is not a recording),
-- chunks (read), bytes, keyframes ({ offset, t_ms } in order), last_ms,
-- first_bad (the first chunk that is not intact, or the record that could
-- not be read, 1-based), trailer (the trailer item, nil when the file ends
-- before it), truncated (the file ends inside a record or before the
-- trailer), malformed (why a record could not be read), intact (every
-- chunk and the trailer check, signature not "bad"), verdict (one line).
-- key: RECORD_KEY, to check the trailer's signature.
function _M.check(path, key)
  local f, err = io_open(path, "rb")
  if not f then return nil, "cannot read " .. tostring(err), "io" end
  local reader = core.recording_reader(key)
  local r = { chunks = 0, bytes = 0, keyframes = {} }
  local buf, pos = "", 1
  while true do
    local item, n = reader:next(buf, pos)   -- item, next | false, need | nil, why
    if item then
      pos = n
      if item.kind == "header" then
        r.header, r.last_ms = item, item.start_ms
      elseif item.kind == "chunk" then
        r.chunks, r.bytes, r.last_ms = item.index, r.bytes + item.len, item.t_ms
        if item.keyframe then
          r.keyframes[#r.keyframes + 1] = { offset = item.offset, t_ms = item.t_ms }
        end
        if not item.intact and not r.first_bad then r.first_bad = item.index end
      else
        r.trailer = item
      end
    elseif item == false then
      local more = f:read(max(n - (#buf - pos + 1), BLOCK))
      if not more then
        r.truncated = n > 0
        break
      end
      buf, pos = buf:sub(pos) .. more, 1
    else
      r.malformed = n
      if r.header and not r.trailer and not r.first_bad then r.first_bad = r.chunks + 1 end
      break
    end
  end
  f:close()
  local t = r.trailer
  r.intact = r.header ~= nil and not r.first_bad and not r.malformed and not r.truncated
    and t ~= nil and t.intact and t.signature ~= "bad"
  r.verdict = _M.verdict(r, key)
  return r
end

--- The one line `ctvnc recording verify` prints for a report.
function _M.verdict(r, key)
  local t = r.trailer
  if not r.header then
    return "not a recording: " .. (r.malformed or "the file ends in its header")
  end
  if r.first_bad then
    return ("chunk %d is not intact%s%s"):format(r.first_bad,
      r.malformed and ": " .. r.malformed or ": its hash, time or keyframe link does not follow "
        .. "from the chunks before it",
      r.first_bad > 1 and (" (chunks 1-%d intact)"):format(r.first_bad - 1) or "")
  end
  if r.malformed then return "malformed: " .. r.malformed end
  if not t then
    return ("incomplete: the file ends before the trailer (chunks 1-%d intact)"):format(r.chunks)
  end
  if not t.intact then return "the trailer does not match the chunks (counts or final hash)" end
  if t.signature == "bad" then return "the signature does not match the key" end
  if key and t.signature == "none" then return "not signed (a key was given)" end
  local words = { "intact", ("%d chunks"):format(r.chunks),
    t.complete and "complete" or "incomplete (the recorder stopped early)",
    "sha256 " .. t.hash }
  if t.signature == "good" then words[#words + 1] = "signature good" end
  if t.signature == "unchecked" then words[#words + 1] = "signed (no key to check it)" end
  return concat(words, ", ")
end

--- true when verify should exit 0: intact, and signed with key when one
-- is given.
function _M.ok(r, key)
  return r.intact and (not key or r.trailer.signature == "good")
end

return _M
