--- ctvnc.gateway.keyframe: what makes a recording seekable. Tight, ZRLE
-- and zlib keep compression state from one update to the next, so no
-- point in such a stream decodes alone. While a session is recorded the
-- browser's SetEncodings is cut down to encodings that keep no state (Raw)
-- and pseudo-encodings whose rectangles can be sized, the recorder asks
-- the target for a full, non-incremental update every RECORD_KEYFRAME
-- seconds, and this module splits the target's messages to find where
-- that update starts and ends: an update that covers the whole desktop
-- starts a keyframe chunk. Pure Lua, no ngx: the recorder feeds it.
--
--   local k = keyframe.new(width, height, bits_per_pixel)
--   bytes = k:client(rfb_bytes)    the browser's normal-phase bytes, SetEncodings cut down
--   events = k:server(rfb_bytes)   { {pos, "start"} | {pos, "end", full} }, pos 1-based
--   k:request()                    a full non-incremental FramebufferUpdateRequest (and
--                                  the next update's start is reported)
-- A message the splitter cannot size (an encoding the browser could not
-- have asked for) turns it off: k.off is why, no more events.
local byte, char, sub, floor, concat = string.byte, string.char, string.sub, math.floor,
  table.concat

local _M = {}

-- Rectangles of these carry no bytes; -224 (LastRect) ends its update.
local EMPTY = { [-223] = true, [-224] = true, [-258] = true }

--- Encodings kept in a recorded session's SetEncodings: Raw, the sized
-- pseudo-encodings (DesktopSize, LastRect, Cursor, ExtendedDesktopSize,
-- QEMU extended keys) and the JPEG quality and compression levels (no
-- rectangles).
function _M.kept(e)
  return e == 0 or EMPTY[e] or e == -239 or e == -308 or (e >= -32 and e <= -23)
    or (e >= -256 and e <= -247)
end

local function u16(s, i) return byte(s, i) * 256 + byte(s, i + 1) end
local function u32(s, i) return u16(s, i) * 65536 + u16(s, i + 2) end
local function s32(s, i)
  local v = u32(s, i)
  return v >= 2147483648 and v - 4294967296 or v
end
local function be16(v) return char(floor(v / 256) % 256, v % 256) end

_M.CLIENT_MAX = 4 * 1048576   -- bytes of one browser message held to follow it

local K = {}
K.__index = K

function _M.new(width, height, bpp)
  return setmetatable({ width = width, height = height, Bpp = floor(bpp / 8),
    cbuf = "", head = "", need = 1, skip = 0, state = "msg", rects = 0, area = 0 }, K)
end

--- A full, non-incremental FramebufferUpdateRequest of the desktop; the
-- next update that starts is reported.
function K:request()
  self.pending = true
  return "\3\0\0\0\0\0" .. be16(self.width) .. be16(self.height)
end

-- The length of the client message at the start of s, false when s is
-- shorter than its head, nil when it cannot be sized.
local function client_len(s)
  local t = byte(s, 1)
  if t == 0 then return 20 end
  if t == 2 then return #s >= 4 and 4 + 4 * u16(s, 3) end
  if t == 3 then return 10 end
  if t == 4 then return 8 end
  if t == 5 then return 6 end
  if t == 6 then return #s >= 8 and 8 + u32(s, 5) end
  if t == 255 then return 12 end               -- QEMU extended key event
  if t == 150 then return 10 end               -- EnableContinuousUpdates
  if t == 251 then return #s >= 8 and 8 + 16 * byte(s, 7) end   -- SetDesktopSize
  return nil
end

--- The browser's normal-phase RFB bytes, with each SetEncodings cut down
-- and SetPixelFormat followed (the size of a pixel).
function K:client(bytes)
  if self.coff then return bytes end
  local s = self.cbuf .. bytes
  local out, i = {}, 1
  while i <= #s do
    local len = client_len(sub(s, i, i + 7))
    if len == nil or (not len or len > #s - i + 1) and #s - i + 1 > _M.CLIENT_MAX then
      -- a message it cannot size or will not hold: passed on as it is, unfollowed
      self.coff = "client message " .. byte(s, i)
      out[#out + 1] = sub(s, i)
      i = #s + 1
      break
    end
    if not len or #s - i + 1 < len then break end
    local msg = sub(s, i, i + len - 1)
    local t = byte(msg, 1)
    if t == 0 then
      self.Bpp = floor(byte(msg, 5) / 8)
    elseif t == 2 then
      local keep = {}
      for j = 5, len, 4 do
        if _M.kept(s32(msg, j)) then keep[#keep + 1] = sub(msg, j, j + 3) end
      end
      msg = "\2\0" .. be16(#keep) .. concat(keep)
    end
    out[#out + 1] = msg
    i = i + len
  end
  self.cbuf = sub(s, i)
  return concat(out)
end

-- Server message steps: each takes the head bytes and returns what comes
-- next (skip bytes, then the next head of `need` bytes).
local STEP = {}

function STEP.msg(self, h)
  local t = byte(h, 1)
  if t == 0 then return "fbu", 3, 0 end
  if t == 1 then return "colours", 5, 0 end
  if t == 2 then return "msg", 1, 0 end
  if t == 3 then return "cut", 7, 0 end
  self.off = "server message " .. t
end

function STEP.fbu(self, h)
  self.rects = u16(h, 2)
  if self.rects == 0 then return "msg", 1, 0, true end
  return "rect", 12, 0
end

function STEP.colours(_, h) return "msg", 1, 6 * u16(h, 4) end
function STEP.cut(_, h) return "msg", 1, u32(h, 4) end

function STEP.rect(self, h)
  local w, hh, enc = u16(h, 5), u16(h, 7), s32(h, 9)
  self.rects = self.rects - 1
  local n
  if enc == 0 then
    n = w * hh * self.Bpp
    self.area = self.area + w * hh
  elseif enc == -239 then
    n = w * hh * self.Bpp + floor((w + 7) / 8) * hh
  elseif enc == -308 then
    self.width, self.height = w, hh
    return "screens", 4, 0
  elseif EMPTY[enc] then
    n = 0
    if enc == -223 then self.width, self.height = w, hh end
    if enc == -224 then self.rects = 0 end
  else
    self.off = "encoding " .. enc
    return nil
  end
  if self.rects <= 0 then return "msg", 1, n, true end
  return "rect", 12, n
end

function STEP.screens(self, h)
  local n = 16 * byte(h, 1)
  if self.rects <= 0 then return "msg", 1, n, true end
  return "rect", 12, n
end

--- The target's normal-phase RFB bytes: where a reported update starts
-- and where it ends (pos of its first byte after), full when its raw
-- rectangles cover the desktop.
function K:server(bytes)
  local events, i, n = {}, 1, #bytes
  while i <= n and not self.off do
    if self.skip > 0 then
      local take = self.skip < n - i + 1 and self.skip or n - i + 1
      self.skip, i = self.skip - take, i + take
    else
      local want = self.need - #self.head
      local part = sub(bytes, i, i + want - 1)
      if #self.head == 0 and self.state == "msg" and byte(part, 1) == 0 and self.pending
        and not self.open then
        events[#events + 1] = { i, "start" }
        self.open, self.area = true, 0
      end
      self.head, i = self.head .. part, i + #part
      if #self.head == self.need then
        local state, need, skip, ended = STEP[self.state](self, self.head)
        if not state then break end
        self.state, self.need, self.skip, self.head = state, need, skip, ""
        if ended then self.ended = true end
      end
    end
    if self.ended and self.skip == 0 then
      self.ended = nil
      if self.open then
        local full = self.area >= self.width * self.height
        events[#events + 1] = { i, "end", full }
        self.open = nil
        if full then self.pending = nil end
      end
    end
  end
  return events
end

return _M
