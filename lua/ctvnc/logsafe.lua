--- ctvnc.logsafe: whatever the bytes, one log line.
--
--   logsafe.line(s) -> s with every control byte (0x00-0x1f, 0x7f) and the
--                      backslash written as \xHH
--
-- As nginx escapes variables in its access log. A VM id comes %XX-decoded
-- from the URL, so it may hold CR or LF: escaped, it never starts a line
-- of its own in error.log, and a literal "\x0a" in it cannot pass for an
-- escaped byte (its backslash is \x5C).
local format, byte, gsub = string.format, string.byte, string.gsub

local _M = {}

local function hex(c) return format("\\x%02X", byte(c)) end

function _M.line(s)
  return (gsub(s, "[%c\\\127]", hex))
end

return _M
