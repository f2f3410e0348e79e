--- ctvnc.b64url: base64url (RFC 4648 section 5) without padding, the
-- gateway's one implementation (tickets, JWTs). Pure Lua, every Lua.
--
--   encode(bytes) -> text
--   decode(text)  -> bytes | nil   strict: only the 64 characters, no
--                                   padding, no length of 4k+1, unused
--                                   trailing bits zero
local byte, char, floor, concat = string.byte, string.char, math.floor, table.concat

local _M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local DIGIT, VALUE = {}, {}   -- value -> character code, character code -> value
for i = 1, 64 do
  DIGIT[i - 1] = byte(ALPHABET, i)
  VALUE[byte(ALPHABET, i)] = i - 1
end

function _M.encode(s)
  local out, k = {}, 0
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local w, x, y, z = floor(v / 262144), floor(v / 4096) % 64, floor(v / 64) % 64, v % 64
    k = k + 1
    if c then
      out[k] = char(DIGIT[w], DIGIT[x], DIGIT[y], DIGIT[z])
    elseif b then
      out[k] = char(DIGIT[w], DIGIT[x], DIGIT[y])
    else
      out[k] = char(DIGIT[w], DIGIT[x])
    end
  end
  return concat(out)
end

function _M.decode(s)
  local n = #s
  if n % 4 == 1 then return nil end
  local out, k = {}, 0
  for i = 1, n, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    a, b = VALUE[a], VALUE[b]
    if not a or not b then return nil end
    if c then
      c = VALUE[c]
      if not c then return nil end
    end
    if d then
      d = VALUE[d]
      if not d then return nil end
    end
    local v = a * 262144 + b * 4096 + (c or 0) * 64 + (d or 0)
    local x, y, z = floor(v / 65536), floor(v / 256) % 256, v % 256
    k = k + 1
    if d then
      out[k] = char(x, y, z)
    elseif c then
      if z ~= 0 then return nil end
      out[k] = char(x, y)
    else
      if y ~= 0 then return nil end
      out[k] = char(x)
    end
  end
  return concat(out)
end

return _M
