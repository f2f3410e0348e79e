-- Specs for the websocket frame and RFB byte work in ctvnc.core (csrc/frames.c,
-- csrc/lframes.c) and the view-only filter the gateway's relay uses.
--
-- Every expected byte string is written here by hand: the frames of
-- RFC 6455 section 5.7, RFB messages laid out as RFC 6143 section 7 (and
-- rfbproto for the extensions noVNC sends). Frames the filter emits are read
-- back with the small decoder below, not with the code under test.
-- Runs under Lua 5.4 and LuaJIT 2.1: plain Lua 5.1 arithmetic only.

local core = require "ctvnc.core"
local viewonly = require "ctvnc.viewonly"

-- "81 85 37 fa" -> bytes
local function h(s)
  return (s:gsub("%s+", ""):gsub("%x%x", function(x)
    return string.char(tonumber(x, 16))
  end))
end

local function rep(byte, n)
  return string.rep(string.char(byte), n)
end

-- XOR of two bytes by arithmetic (no bit library in 5.1/5.4 alike).
local function bxor(a, b)
  local r, bit = 0, 1
  for _ = 1, 8 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + bit end
    a, b, bit = (a - x) / 2, (b - y) / 2, bit * 2
  end
  return r
end

local function xor_mask(s, key, offset)
  offset = offset or 0
  local out = {}
  for i = 1, #s do
    out[i] = string.char(bxor(s:byte(i), key:byte((offset + i - 1) % 4 + 1)))
  end
  return table.concat(out)
end

local function be(n, width)
  local out = {}
  for i = width, 1, -1 do
    out[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(out)
end

-- A masked client frame, built by hand: FIN + opcode, MASK + length, key.
local KEY = h "37 fa 21 3d"
local function cframe(payload, opcode, fin, key)
  opcode = opcode or 2
  key = key or KEY
  local first = string.char((fin == false and 0 or 128) + opcode)
  local n = #payload
  local len
  if n < 126 then
    len = string.char(128 + n)
  elseif n < 65536 then
    len = string.char(128 + 126) .. be(n, 2)
  else
    len = string.char(128 + 127) .. be(n, 8)
  end
  return first .. len .. key .. xor_mask(payload, key)
end

-- An unmasked server binary frame.
local function sframe(payload)
  local n = #payload
  if n < 126 then return h "82" .. string.char(n) .. payload end
  return h "82 7e" .. be(n, 2) .. payload
end

-- Reads the frames the filter sends to the target: every one must be a
-- masked client frame with FIN set; returns the concatenated payloads of the
-- data frames, the list of frames and the list of keys.
local function read_frames(s)
  local pos, data, frames, keys = 1, {}, {}, {}
  while pos <= #s do
    local b0, b1 = s:byte(pos, pos + 1)
    assert(b0 >= 128, "FIN not set")
    assert(b1 >= 128, "frame not masked")
    local opcode = b0 - 128
    local n = b1 - 128
    pos = pos + 2
    if n == 126 then
      n = s:byte(pos) * 256 + s:byte(pos + 1)
      assert(n >= 126, "non-minimal 16-bit length")
      pos = pos + 2
    elseif n == 127 then
      n = 0
      for i = 0, 7 do n = n * 256 + s:byte(pos + i) end
      assert(n >= 65536, "non-minimal 64-bit length")
      pos = pos + 8
    end
    local key = s:sub(pos, pos + 3)
    pos = pos + 4
    local payload = xor_mask(s:sub(pos, pos + n - 1), key)
    assert(#payload == n, "frame cut short")
    pos = pos + n
    frames[#frames + 1] = { opcode = opcode, payload = payload }
    keys[#keys + 1] = key
    if opcode == 2 then data[#data + 1] = payload end
  end
  return table.concat(data), frames, keys
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x ", c:byte()) end))
end

-- RFB messages (RFC 6143 section 7.5), written out field by field.
local PIXEL_FORMAT = h "20 18 00 01 00 ff 00 ff 00 ff 10 08 00 00 00 00"
local MSG = {
  set_pixel_format = h "00 00 00 00" .. PIXEL_FORMAT,
  -- 2 encodings: Raw (0) and the DesktopSize pseudo-encoding (-223)
  set_encodings = h "02 00 00 02  00 00 00 00  ff ff ff 21",
  fb_update_request = h "03 01 00 00 00 00 04 00 03 00",
  key_event = h "04 01 00 00 00 00 00 61",             -- 'a' down
  pointer_event = h "05 01 00 10 00 20",               -- button 1 at 16,32
  client_cut_text = h "06 00 00 00 00 00 00 05" .. "hello",
  -- extended clipboard: length -4 (0xfffffffc), 4 bytes of flags
  client_cut_ext = h "06 00 00 00 ff ff ff fc 00 00 00 01",
  continuous_updates = h "96 01 00 00 00 00 04 00 03 00",
  fence = h "f8 00 00 00 80 00 00 02 03" .. "abc",
  xvp_reboot = h "fa 00 01 03",
  set_desktop_size = h "fb 00 04 00 03 00 01 00" .. h "00 00 00 01 00 00 00 00 04 00 03 00 00 00 00 00",
  qemu_key = h "ff 00 00 01 00 00 00 61 00 00 00 1e",
}

local NAME = "ctvnc test"
local SERVER_INIT = h "04 00 03 00" .. PIXEL_FORMAT .. be(#NAME, 4) .. NAME

-- Feeds one handshake step to the filter: server bytes go to from_target
-- (which must accept them), client bytes to from_browser (which must pass
-- them byte-exact).
local function server(f, bytes)
  local ok, msg = f:from_target(sframe(bytes))
  assert(ok == true, msg)
end
local function client(f, bytes)
  local out, msg = f:from_browser(cframe(bytes))
  assert(out, msg)
  local data = read_frames(out)
  assert(data == bytes, "handshake bytes changed: " .. hex(data))
end

local HANDSHAKES = {
  ["3.8, None"] = {
    { "s", "RFB 003.008\n" }, { "c", "RFB 003.008\n" },
    { "s", h "01 01" }, { "c", h "01" }, { "s", h "00 00 00 00" },
    { "c", h "01" }, { "s", SERVER_INIT },
  },
  ["3.8, VNC Authentication"] = {
    { "s", "RFB 003.008\n" }, { "c", "RFB 003.008\n" },
    { "s", h "02 02 10" }, { "c", h "02" },
    { "s", rep(0x5a, 16) }, { "c", rep(0xa5, 16) }, { "s", h "00 00 00 00" },
    { "c", h "02" }, { "s", SERVER_INIT },  -- any non-zero ClientInit is shared
  },
  ["3.7, None"] = {
    { "s", "RFB 003.007\n" }, { "c", "RFB 003.007\n" },
    { "s", h "01 01" }, { "c", h "01" }, -- no SecurityResult for None in 3.7
    { "c", h "01" }, { "s", SERVER_INIT },
  },
  ["3.3, VNC Authentication"] = {
    { "s", "RFB 003.003\n" }, { "c", "RFB 003.003\n" },
    { "s", h "00 00 00 02" }, -- the server decides in 3.3
    { "s", rep(1, 16) }, { "c", rep(2, 16) }, { "s", h "00 00 00 00" },
    { "c", h "01" }, { "s", SERVER_INIT },
  },
  ["3.3, None"] = {
    { "s", "RFB 003.003\n" }, { "c", "RFB 003.003\n" },
    { "s", h "00 00 00 01" }, { "c", h "01" }, { "s", SERVER_INIT },
  },
  ["a 3.8 server and a 3.3 client"] = {
    { "s", "RFB 003.008\n" }, { "c", "RFB 003.003\n" },
    { "s", h "00 00 00 01" }, { "c", h "01" }, { "s", SERVER_INIT },
  },
}

-- The 3.8, None handshake up to the ClientInit the caller sends.
local function up_to_client_init(f)
  local steps = HANDSHAKES["3.8, None"]
  for i = 1, 5 do
    if steps[i][1] == "s" then server(f, steps[i][2]) else client(f, steps[i][2]) end
  end
end

local function session(name, opts)
  local f = assert(core.viewonly_filter(opts))
  for _, step in ipairs(HANDSHAKES[name or "3.8, None"]) do
    if step[1] == "s" then server(f, step[2]) else client(f, step[2]) end
  end
  return f
end

describe("core.ws_parse (RFC 6455 section 5.7)", function()
  it("reads a single-frame unmasked text message", function()
    local f, n = core.ws_parse(h "81 05 48 65 6c 6c 6f", "server")
    assert.same({ fin = true, opcode = "text", masked = false, payload = "Hello" }, f)
    assert.equal(7, n)
  end)

  it("reads and unmasks a single-frame masked text message", function()
    local f, n = core.ws_parse(h "81 85 37 fa 21 3d 7f 9f 4d 51 58", "client")
    assert.same({ fin = true, opcode = "text", masked = true, payload = "Hello" }, f)
    assert.equal(11, n)
  end)

  it("reads a fragmented unmasked text message frame by frame", function()
    local a = core.ws_parse(h "01 03 48 65 6c", "server")
    local b = core.ws_parse(h "80 02 6c 6f", "server")
    assert.same({ fin = false, opcode = "text", masked = false, payload = "Hel" }, a)
    assert.same({ fin = true, opcode = "continuation", masked = false, payload = "lo" }, b)
  end)

  it("reads an unmasked ping and a masked pong", function()
    assert.same({ fin = true, opcode = "ping", masked = false, payload = "Hello" },
      (core.ws_parse(h "89 05 48 65 6c 6c 6f", "server")))
    assert.same({ fin = true, opcode = "pong", masked = true, payload = "Hello" },
      (core.ws_parse(h "8a 85 37 fa 21 3d 7f 9f 4d 51 58", "client")))
  end)

  it("reads a 256-byte binary frame with a 16-bit length", function()
    local body = rep(0x42, 256)
    local f, n = core.ws_parse(h "82 7e 01 00" .. body, "server")
    assert.equal(body, f.payload)
    assert.equal(260, n)
  end)

  it("reads a 64 KiB binary frame with a 64-bit length", function()
    local body = rep(0x42, 65536)
    local f, n = core.ws_parse(h "82 7f 00 00 00 00 00 01 00 00" .. body, "server")
    assert.equal(body, f.payload)
    assert.equal(65546, n)
  end)

  it("reads only the first of two frames", function()
    local f, n = core.ws_parse(h "82 01 41 82 01 42", "server")
    assert.equal("A", f.payload)
    assert.equal(3, n)
  end)

  it("says 'need more' (false) for every proper prefix of a frame", function()
    for _, frame in ipairs {
      h "81 85 37 fa 21 3d 7f 9f 4d 51 58",
      h "82 7e 01 00" .. rep(1, 256),
      h "82 7f 00 00 00 00 00 01 00 00" .. rep(1, 65536),
    } do
      local role = frame:byte(2) >= 128 and "client" or "server"
      for i = 0, #frame - 1, (#frame > 300 and 997 or 1) do
        assert.is_false(core.ws_parse(frame:sub(1, i), role), "prefix " .. i)
      end
      for i = 1, math.min(14, #frame - 1) do
        assert.is_false(core.ws_parse(frame:sub(1, i), role), "prefix " .. i)
      end
      assert.truthy(core.ws_parse(frame, role))
    end
  end)

  local bad = {
    { "RSV1 set", h "c1 05 48 65 6c 6c 6f", "server", "RSV" },
    { "RSV3 set", h "92 00", "server", "RSV" },
    { "opcode 3", h "83 00", "server", "opcode" },
    { "opcode 0xB", h "8b 00", "server", "opcode" },
    { "a masked frame from a server", h "81 85 37 fa 21 3d 7f 9f 4d 51 58", "server", "MASK" },
    { "an unmasked frame from a client", h "81 05 48 65 6c 6c 6f", "client", "MASK" },
    { "a 16-bit length under 126", h "82 7e 00 7d" .. rep(0, 125), "server", "length" },
    { "a 64-bit length under 65536", h "82 7f 00 00 00 00 00 00 ff ff" .. rep(0, 65535), "server", "length" },
    { "a 64-bit length with the top bit set", h "82 7f 80 00 00 00 00 00 00 00", "server", "length" },
    { "a fragmented ping", h "09 00", "server", "control" },
    { "a 126-byte ping", h "89 7e 00 7e" .. rep(0, 126), "server", "control" },
    { "a close frame with a 1-byte payload", h "88 01 03", "server", "close" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1], function()
      local f, msg, kind = core.ws_parse(case[2], case[3])
      assert.is_nil(f)
      assert.equal("protocol", kind)
      assert.matches(case[4], msg)
    end)
  end

  it("refuses a header error before the rest of the frame arrives", function()
    assert.is_nil((core.ws_parse(h "c1", "server")))
    assert.is_nil((core.ws_parse(h "82 7f 80", "server")))
  end)

  it("refuses a payload over the caller's maximum", function()
    local f, msg = core.ws_parse(h "82 7e 01 00", "server", 255)
    assert.is_nil(f)
    assert.matches("maximum", msg)
    assert.truthy(core.ws_parse(h "82 7e 01 00" .. rep(0, 256), "server", 256))
  end)
end)

describe("core.ws_frame", function()
  it("writes RFC 6455's masked and unmasked 'Hello'", function()
    assert.equal(h "81 85 37 fa 21 3d 7f 9f 4d 51 58", core.ws_frame("text", "Hello", KEY))
    assert.equal(h "81 05 48 65 6c 6c 6f", core.ws_frame("text", "Hello"))
    assert.equal(h "01 03 48 65 6c", core.ws_frame("text", "Hel", nil, false))
    assert.equal(h "80 02 6c 6f", core.ws_frame("continuation", "lo"))
    assert.equal(h "89 05 48 65 6c 6c 6f", core.ws_frame("ping", "Hello"))
  end)

  it("writes minimal 7, 16 and 64-bit lengths", function()
    assert.equal(h "82 7d", core.ws_frame("binary", rep(0, 125)):sub(1, 2))
    assert.equal(h "82 7e 00 7e", core.ws_frame("binary", rep(0, 126)):sub(1, 4))
    assert.equal(h "82 7e ff ff", core.ws_frame("binary", rep(0, 65535)):sub(1, 4))
    local big = core.ws_frame("binary", rep(7, 65536))
    assert.equal(h "82 7f 00 00 00 00 00 01 00 00", big:sub(1, 10))
    assert.equal(65546, #big)
  end)

  it("writes a close frame with its status code", function()
    assert.equal(h "88 06 03 f0" .. "gone", core.ws_frame("close", h "03 f0" .. "gone"))
  end)

  it("masks with a random key when asked", function()
    local a = core.ws_frame("binary", "Hello", true)
    local b = core.ws_frame("binary", "Hello", true)
    assert.equal(h "82 85", a:sub(1, 2))
    assert.equal("Hello", xor_mask(a:sub(7), a:sub(3, 6)))
    assert.equal("Hello", xor_mask(b:sub(7), b:sub(3, 6)))
    assert.not_equal(a:sub(3, 6), b:sub(3, 6)) -- 1 in 2^32 to fail by chance
  end)

  it("refuses control frames over 125 bytes or fragmented", function()
    local f, msg, kind = core.ws_frame("ping", rep(0, 126))
    assert.is_nil(f)
    assert.equal("invalid", kind)
    assert.matches("125", msg)
    assert.is_nil((core.ws_frame("close", "x")))
    assert.is_nil((core.ws_frame("pong", "", nil, false)))
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.ws_frame("nope", "") end)
    assert.has_error(function() core.ws_frame("text", "", "abc") end)
  end)
end)

describe("core.ws_mask", function()
  it("masks RFC 6455's 'Hello' and its tail from an offset", function()
    assert.equal(h "7f 9f 4d 51 58", core.ws_mask("Hello", KEY))
    assert.equal(h "4d 51 58", core.ws_mask("llo", KEY, 2))
  end)

  it("agrees with byte-by-byte XOR at every length and offset", function()
    local data = {}
    for i = 1, 300 do data[i] = string.char((i * 37 + 11) % 256) end
    data = table.concat(data)
    local key = h "01 80 ff 7e"
    for _, len in ipairs { 0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 300 } do
      for offset = 0, 5 do
        local s = data:sub(1, len)
        local m = core.ws_mask(s, key, offset)
        assert.equal(xor_mask(s, key, offset), m, len .. "/" .. offset)
        assert.equal(s, core.ws_mask(m, key, offset))
      end
    end
  end)
end)

describe("core.rfb_client_msg (RFC 6143 section 7.5)", function()
  local cases = {
    { "SetPixelFormat", MSG.set_pixel_format, 0, 20, "view" },
    { "SetEncodings", MSG.set_encodings, 2, 12, "view" },
    { "SetEncodings with none", h "02 00 00 00", 2, 4, "view" },
    { "FramebufferUpdateRequest", MSG.fb_update_request, 3, 10, "view" },
    { "KeyEvent", MSG.key_event, 4, 8, "input" },
    { "PointerEvent", MSG.pointer_event, 5, 6, "input" },
    { "ClientCutText", MSG.client_cut_text, 6, 13, "input" },
    { "ClientCutText, extended clipboard", MSG.client_cut_ext, 6, 12, "input" },
    { "EnableContinuousUpdates", MSG.continuous_updates, 150, 10, "view" },
    { "ClientFence", MSG.fence, 248, 12, "view" },
    { "xvp", MSG.xvp_reboot, 250, 4, "control" },
    { "SetDesktopSize", MSG.set_desktop_size, 251, 24, "control" },
    { "QEMU Extended Key Event", MSG.qemu_key, 255, 12, "input" },
  }
  for _, c in ipairs(cases) do
    it("splits " .. c[1], function()
      local t, len, class = core.rfb_client_msg(c[2] .. MSG.key_event)
      assert.same({ c[3], c[4], c[5] }, { t, len, class })
      for i = 0, #c[2] - 1 do
        assert.is_false(core.rfb_client_msg(c[2]:sub(1, i)), c[1] .. " prefix " .. i)
      end
    end)
  end

  for _, c in ipairs {
    { "type 1", h "01 00 00 00" },
    { "type 7", h "07" },
    { "type 127", h "7f" },
    { "type 249", h "f9" },
    { "QEMU sub-type 1 (audio)", h "ff 01 00 00" },
  } do
    it("refuses unknown " .. c[1], function()
      local t, msg, kind = core.rfb_client_msg(c[2])
      assert.is_nil(t)
      assert.equal("protocol", kind)
      assert.matches("unknown", msg)
    end)
  end

  it("refuses cut text over the maximum and fences over 64 bytes", function()
    assert.is_nil((core.rfb_client_msg(MSG.client_cut_text, 4)))
    assert.equal(6, (core.rfb_client_msg(MSG.client_cut_text, 5)))
    assert.is_nil((core.rfb_client_msg(h "06 00 00 00 80 00 00 00")))
    assert.is_nil((core.rfb_client_msg(h "f8 00 00 00 00 00 00 00 41")))
  end)
end)

describe("core.viewonly_filter", function()
  for name in pairs(HANDSHAKES) do
    it("follows the handshake: " .. name, function()
      local f = session(name)
      local st = f:stats()
      assert.equal("normal", st.phase)
      assert.is_true(st.target_done)
      -- input dropped, the rest passed byte-exact
      local out = assert(f:from_browser(cframe(MSG.key_event .. MSG.fb_update_request)))
      assert.equal(MSG.fb_update_request, (read_frames(out)))
    end)
  end

  it("reports the version and security type", function()
    local st = session("3.8, VNC Authentication"):stats()
    assert.equal("3.8", st.version)
    assert.equal("vnc", st.security)
    st = session("3.3, None"):stats()
    assert.equal("3.3", st.version)
    assert.equal("none", st.security)
  end)

  local dropped = {
    { "KeyEvent", "key_event", "dropped_key", 1 },
    { "PointerEvent", "pointer_event", "dropped_pointer", 1 },
    { "ClientCutText", "client_cut_text", "dropped_cut", 1 },
    { "extended ClientCutText", "client_cut_ext", "dropped_cut", 1 },
    { "QEMU Extended Key Event", "qemu_key", "dropped_key", 1 },
    { "xvp (power operations)", "xvp_reboot", "dropped_control", 0 },
    { "SetDesktopSize", "set_desktop_size", "dropped_control", 0 },
  }
  for _, d in ipairs(dropped) do
    it("drops " .. d[1], function()
      local f = session()
      local out, inputs = f:from_browser(cframe(MSG[d[2]]))
      assert.equal("", out)
      assert.equal(d[4], inputs)
      local st = f:stats()
      assert.equal(1, st[d[3]])
      assert.equal(1, st.dropped)
      assert.equal(0, st.passed)
    end)
  end

  local passed = { "set_pixel_format", "set_encodings", "fb_update_request",
    "continuous_updates", "fence" }
  for _, p in ipairs(passed) do
    it("passes " .. p .. " byte-exact in a masked binary frame", function()
      local f = session()
      local out = assert(f:from_browser(cframe(MSG[p])))
      local data, frames = read_frames(out)
      assert.equal(MSG[p], data)
      assert.equal(1, #frames)
      assert.equal(1, f:stats().passed)
    end)
  end

  it("keeps only the view messages of a frame that mixes them", function()
    local f = session()
    local all = MSG.set_encodings .. MSG.key_event .. MSG.pointer_event
      .. MSG.fb_update_request .. MSG.client_cut_text .. MSG.qemu_key
      .. MSG.set_pixel_format .. MSG.pointer_event
    local out, inputs = f:from_browser(cframe(all))
    assert.equal(MSG.set_encodings .. MSG.fb_update_request .. MSG.set_pixel_format,
      (read_frames(out)))
    assert.equal(5, inputs)
    local st = f:stats()
    assert.equal(3, st.passed)
    assert.equal(5, st.dropped)
    assert.equal(2, st.dropped_pointer)
  end)

  it("follows messages that span frames, split at every byte", function()
    local stream = MSG.key_event .. MSG.set_encodings .. MSG.client_cut_text
      .. MSG.fence .. MSG.pointer_event .. MSG.fb_update_request .. MSG.set_desktop_size
    local want = MSG.set_encodings .. MSG.fence .. MSG.fb_update_request
    for cut = 1, 13 do
      local f = session()
      local got = {}
      for i = 1, #stream, cut do
        got[#got + 1] = read_frames(assert(f:from_browser(cframe(stream:sub(i, i + cut - 1)))))
      end
      assert.equal(hex(want), hex(table.concat(got)), "pieces of " .. cut)
      assert.equal(3, f:stats().passed)
      assert.equal(4, f:stats().dropped)
    end
  end)

  it("follows frames that arrive one byte at a time", function()
    local f = session()
    local wire = cframe(MSG.key_event .. MSG.fb_update_request)
      .. cframe(MSG.set_encodings .. MSG.pointer_event)
    local got = {}
    for i = 1, #wire do
      got[#got + 1] = read_frames(assert(f:from_browser(wire:sub(i, i))))
    end
    assert.equal(MSG.fb_update_request .. MSG.set_encodings, table.concat(got))
  end)

  it("follows a fragmented websocket message", function()
    local f = session()
    local wire = cframe(MSG.pointer_event .. h "03 01", 2, false)
      .. cframe(h "00 00 00 00 04 00", 0, false)
      .. cframe(h "03 00" .. MSG.key_event, 0, true)
    local out = assert(f:from_browser(wire))
    assert.equal(MSG.fb_update_request, (read_frames(out)))
  end)

  -- Found by fuzz/frames (script mode): bytes shaped like a whole frame that
  -- arrive while a frame is open are that frame's payload, header and key
  -- included, and are split as RFB like any payload.
  it("reads a frame-shaped run inside an open frame's payload as payload", function()
    local f = session()
    local before = f:stats().frames_in
    -- a binary frame of 8 bytes with the all-zero key (payload in clear)
    assert.equal("", (assert(f:from_browser(h "82 88 00 00 00 00"))))
    -- as a frame: binary, not FIN, masked, 2 bytes, key 00 01 ff ff;
    -- as RFB: SetEncodings (pad 0x82), 1 encoding, DesktopSize (-223)
    local inner = h "02 82 00 01 ff ff ff 21"
    assert.same({ fin = false, opcode = "binary", masked = true, payload = h "ff 20" },
      (core.ws_parse(inner, "client")))
    local data, frames = read_frames(assert(f:from_browser(inner)))
    assert.equal(hex(inner), hex(data))
    assert.equal(1, #frames)
    -- and the next frame is a frame again: its KeyEvent is dropped
    local out = assert(f:from_browser(cframe(MSG.key_event .. MSG.fb_update_request)))
    assert.equal(MSG.fb_update_request, (read_frames(out)))
    local st = f:stats()
    assert.equal(before + 2, st.frames_in)
    assert.equal(2, st.passed)
    assert.equal(1, st.dropped_key)
  end)

  it("streams a large dropped clipboard without passing any of it", function()
    local f = session()
    local text = rep(0x41, 200000)
    local msg = h "06 00 00 00" .. be(#text, 4) .. text
    for i = 1, #msg, 50000 do
      assert.equal("", assert(f:from_browser(cframe(msg:sub(i, i + 49999)))))
    end
    local out = assert(f:from_browser(cframe(MSG.fb_update_request)))
    assert.equal(MSG.fb_update_request, (read_frames(out)))
  end)

  it("passes a long SetEncodings across frames, then small messages again", function()
    local f = session()
    local list = {}
    for i = 1, 20000 do list[i] = be(i, 4) end
    local msg = h "02 00" .. be(20000, 2) .. table.concat(list)
    local wire = {}
    for i = 1, #msg, 40000 do wire[#wire + 1] = cframe(msg:sub(i, i + 39999)) end
    local out = assert(f:from_browser(table.concat(wire)))
    local data, frames = read_frames(out)
    assert.equal(80004, #data)
    assert.equal(msg, data)
    assert.equal(1, #frames) -- one call, one frame: 64-bit length
    assert.equal(h "82 ff 00 00 00 00 00 01 38 84", out:sub(1, 10))
    out = assert(f:from_browser(cframe(MSG.key_event .. MSG.fb_update_request)))
    assert.equal(MSG.fb_update_request, (read_frames(out)))
  end)

  it("re-frames pings, pongs and close with fresh masks, in order", function()
    local f = session()
    local wire = cframe(MSG.fb_update_request) .. cframe("are you there", 9)
      .. cframe(MSG.key_event .. MSG.set_encodings) .. cframe("", 10)
      .. cframe(h "03 e8" .. "bye", 8)
    local out = assert(f:from_browser(wire))
    local _, frames, keys = read_frames(out)
    assert.same({
      { opcode = 2, payload = MSG.fb_update_request },
      { opcode = 9, payload = "are you there" },
      { opcode = 2, payload = MSG.set_encodings },
      { opcode = 10, payload = "" },
      { opcode = 8, payload = h "03 e8" .. "bye" },
    }, frames)
    local seen = {}
    for _, k in ipairs(keys) do
      assert.not_equal(KEY, k)
      seen[k] = true
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    assert.is_true(distinct >= 4) -- 5 random keys; a repeat is 1 in ~2^29
    -- nothing after the browser's close
    local bad, msg = f:from_browser(cframe(MSG.fb_update_request))
    assert.is_nil(bad)
    assert.matches("close", msg)
  end)

  it("passes target bytes after the handshake without looking at them", function()
    local f = session()
    assert.is_true(f:from_target(h "ff ff ff ff 00 01 02"))
  end)

  -- issue 20.4: the audit's "the browser closed" / "the target closed"
  it("tells which side sent the first close frame, in either mode", function()
    local close = h "88 02 03 e8"
    for _, mode in ipairs({ "view", "watch" }) do
      local f = session(nil, { mode = mode })
      assert.is_true(f:from_target(sframe(MSG.fb_update_request)))
      assert.is_nil(f:stats().closed_by)
      assert.truthy(f:from_browser(cframe("\3\232", 8)))
      assert.is_true(f:from_target(close))         -- the target's answer
      assert.equal("browser", f:stats().closed_by, mode)
      f = session(nil, { mode = mode })
      assert.is_true(f:from_target(sframe(("x"):rep(300)) .. close:sub(1, 1)))
      assert.is_true(f:from_target(close:sub(2)))  -- a frame split across reads
      assert.truthy(f:from_browser(cframe("\3\232", 8)))
      assert.equal("target", f:stats().closed_by, mode)
      -- a bad frame past the handshake: no more following, no failure
      f = session(nil, { mode = mode })
      assert.is_true(f:from_target(h "ff ff ff ff"))
      assert.is_true(f:from_target(close))
      assert.is_nil(f:stats().closed_by)
    end
  end)

  it("reports a server's refusal as 'failed' and then refuses the browser", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.008\n")
    client(f, "RFB 003.008\n")
    server(f, h "01 02")
    client(f, h "02")
    server(f, rep(9, 16))
    client(f, rep(8, 16))
    server(f, h "00 00 00 01" .. be(13, 4) .. "auth failed!!")
    assert.equal("failed", f:stats().phase)
    assert.is_nil((f:from_browser(cframe(MSG.fb_update_request))))
  end)

  it("reports a 3.7 server's empty security list as 'failed'", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.007\n")
    client(f, "RFB 003.007\n")
    server(f, h "00" .. be(4, 4) .. "nope")
    assert.equal("failed", f:stats().phase)
  end)

  -- Fail closed: each of these ends the session with nil, msg, "protocol",
  -- and the filter stays closed afterwards.
  local function refuses(f, side, bytes, pattern)
    local r, msg, kind
    if side == "s" then r, msg, kind = f:from_target(bytes)
    else r, msg, kind = f:from_browser(bytes) end
    assert.is_nil(r)
    assert.equal("protocol", kind)
    assert.matches(pattern, msg)
    assert.is_nil((f:from_browser(cframe(MSG.fb_update_request))))
    assert.is_nil((f:from_target(sframe("x"))))
    assert.equal("error", f:stats().phase)
  end

  it("fails closed on a client choosing an unknown security type", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.008\n")
    client(f, "RFB 003.008\n")
    server(f, h "03 01 02 13") -- None, VNC Authentication, VeNCrypt offered
    refuses(f, "c", cframe(h "13"), "security type")
  end)

  it("fails closed on a client choosing a type the server did not offer", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.008\n")
    client(f, "RFB 003.008\n")
    server(f, h "01 02")
    refuses(f, "c", cframe(h "01"), "security type")
  end)

  it("fails closed on a 3.3 server's unknown security type", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.003\n")
    client(f, "RFB 003.003\n")
    refuses(f, "s", sframe(h "00 00 00 10"), "security type")
  end)

  for _, v in ipairs { "RFB 003.889\n", "RFB 004.001\n", "RFB 003.006\n", "RFB 003.008 " } do
    it("fails closed on server version " .. v:sub(1, 11), function()
      local f = assert(core.viewonly_filter())
      refuses(f, "s", sframe(v), "version")
    end)
  end

  it("fails closed on a client version above the server's", function()
    local f = assert(core.viewonly_filter())
    server(f, "RFB 003.007\n")
    refuses(f, "c", cframe("RFB 003.008\n"), "version")
  end)

  it("fails closed on a client that speaks out of turn", function()
    local f = assert(core.viewonly_filter())
    refuses(f, "c", cframe("RFB 003.008\n"), "turn")
  end)

  it("fails closed on an unknown client message type", function()
    local f = session()
    refuses(f, "c", cframe(MSG.fb_update_request .. h "07 00 00 00"), "unknown client message")
  end)

  it("fails closed on an unknown type hidden after a dropped message", function()
    local f = session()
    refuses(f, "c", cframe(MSG.key_event .. h "fe"), "unknown client message")
  end)

  it("fails closed on clipboard text over max_cut_text", function()
    local f = session(nil, { max_cut_text = 4 })
    refuses(f, "c", cframe(MSG.client_cut_text), "cut text")
  end)

  local frames = {
    { "an unmasked frame", h "82 0a" .. MSG.fb_update_request, "MASK" },
    { "an RSV bit", h "c2 8a" .. KEY .. xor_mask(MSG.fb_update_request, KEY), "RSV" },
    { "a reserved opcode", h "83 80" .. KEY, "opcode" },
    { "a non-minimal length", h "82 fe 00 0a" .. KEY .. xor_mask(MSG.fb_update_request, KEY), "length" },
    { "a frame over max_payload", cframe(rep(3, 70000)), "maximum" },
    { "a continuation with no message", cframe(MSG.fb_update_request, 0), "fragmentation" },
    { "a new message inside a fragmented one",
      cframe(h "03", 2, false) .. cframe(h "01", 2), "fragmentation" },
    { "a text frame", cframe(MSG.fb_update_request, 1), "text" },
    { "a fragmented ping", cframe("x", 9, false), "control" },
  }
  for _, c in ipairs(frames) do
    it("fails closed on " .. c[1] .. " from the browser", function()
      refuses(session(), "c", c[2], c[3])
    end)
  end

  it("fails closed on a masked frame from the target during the handshake", function()
    local f = assert(core.viewonly_filter())
    refuses(f, "s", cframe("RFB 003.008\n"), "MASK")
  end)

  it("fails closed on a desktop name over max_string", function()
    local f = assert(core.viewonly_filter { max_string = 4 })
    server(f, "RFB 003.008\n")
    client(f, "RFB 003.008\n")
    server(f, h "01 01")
    client(f, h "01")
    server(f, h "00 00 00 00")
    client(f, h "01")
    refuses(f, "s", sframe(SERVER_INIT), "name")
  end)

  it("refuses bad options with 'invalid' and raises on misuse", function()
    local f, msg, kind = core.viewonly_filter { max_payload = 0 }
    assert.is_nil(f)
    assert.equal("invalid", kind)
    assert.matches("max_payload", msg)
    assert.is_nil((core.viewonly_filter { max_cut_text = 1.5 }))
    assert.is_nil((core.viewonly_filter { max_string = "big" }))
    assert.is_nil((core.viewonly_filter { max_payloads = 10 }))
    assert.has_error(function() core.viewonly_filter(5) end)
    assert.has_error(function() session():from_browser({}) end)
  end)

  it("closes idempotently and refuses use after close", function()
    local f = session()
    f:close()
    f:close()
    local r, msg, kind = f:from_browser(cframe(MSG.fb_update_request))
    assert.is_nil(r)
    assert.equal("protocol", kind)
    assert.matches("closed", msg)
    assert.equal("closed", f:stats().phase)
    assert.matches("^ctvnc.ViewOnly: ", tostring(f))
  end)
end)

describe("core.viewonly_filter in watch mode", function()
  local function watching()
    local f = assert(core.viewonly_filter { mode = "watch" })
    for _, step in ipairs(HANDSHAKES["3.8, None"]) do
      if step[1] == "s" then
        assert.is_true(f:from_target(sframe(step[2])))
      else
        local wire = cframe(step[2])
        local out, inputs = f:from_browser(wire)
        assert.equal(wire, out)
        assert.equal(0, inputs)
      end
    end
    return f
  end

  it("passes everything unchanged and counts the input messages", function()
    local f = watching()
    local wire = cframe(MSG.key_event .. MSG.fb_update_request .. MSG.pointer_event)
      .. cframe(MSG.client_cut_text .. MSG.xvp_reboot) .. cframe("ping", 9)
    local out, inputs = f:from_browser(wire)
    assert.equal(wire, out)
    assert.equal(3, inputs)
    out, inputs = f:from_browser(cframe(MSG.fb_update_request .. MSG.set_encodings))
    assert.equal(cframe(MSG.fb_update_request .. MSG.set_encodings), out)
    assert.equal(0, inputs)
    local st = f:stats()
    assert.equal("watch", st.mode)
    assert.equal("normal", st.phase)
    assert.equal(3, st.inputs)
    assert.equal(0, st.dropped)
  end)

  it("counts a message split across calls once, when its first byte arrives", function()
    local f = watching()
    local wire = cframe(MSG.fb_update_request .. MSG.key_event)
    local a, n1 = f:from_browser(wire:sub(1, 17))
    local b, n2 = f:from_browser(wire:sub(18))
    assert.equal(wire, a .. b)
    assert.equal(1, n1 + n2)
  end)

  it("goes blind instead of failing, and then counts any bytes as input", function()
    local f = watching()
    local wire = cframe(h "07 00 00 00")
    local out, inputs = f:from_browser(wire)
    assert.equal(wire, out)
    assert.equal(1, inputs)
    assert.equal("blind", f:stats().phase)
    out, inputs = f:from_browser(cframe(MSG.fb_update_request))
    assert.equal(cframe(MSG.fb_update_request), out)
    assert.equal(1, inputs)
    assert.is_true(f:from_target(h "00 ff"))
    assert.same({ "", 0 }, { f:from_browser("") })
  end)

  it("sends a ClientInit of 0 (exclusive: the others dropped) as 1, once, by one bit", function()
    local f = assert(core.viewonly_filter { mode = "watch" })
    up_to_client_init(f)
    -- the ClientInit and a first message in one frame, cut in two calls
    local wire = cframe(h "00" .. MSG.set_encodings)
    local a = assert(f:from_browser(wire:sub(1, 3)))
    local b = assert(f:from_browser(wire:sub(4)))
    assert.equal(wire:sub(1, 3), a)
    -- b is its input (the key's last 3 bytes, the payload) but the flag:
    -- 1 masked with the key's first byte
    assert.equal(wire:sub(4, 6) .. string.char(bxor(1, KEY:byte(1))) .. wire:sub(8), b)
    assert.is_true(f:stats().shared_forced)
    local later = cframe(MSG.key_event)
    assert.equal(later, (f:from_browser(later)))
  end)

  it("lets a ClientInit of 0 pass only when exclusive, never in a view-only filter", function()
    local f = assert(core.viewonly_filter { mode = "watch", exclusive = true })
    up_to_client_init(f)
    local wire = cframe(h "00")
    assert.equal(wire, (f:from_browser(wire)))
    assert.is_false(f:stats().shared_forced)
    local g, msg, kind = core.viewonly_filter { exclusive = true }
    assert.is_nil(g)
    assert.equal("invalid", kind)
    assert.matches("always shared", msg)
  end)

  it("fails closed when it loses the stream before a ClientInit it must make shared", function()
    local f = assert(core.viewonly_filter { mode = "watch" })
    server(f, "RFB 003.008\n")
    local out, msg, kind = f:from_browser(cframe("RFB 009.000\n"))
    assert.is_nil(out)
    assert.equal("protocol", kind)
    assert.matches("version", msg)
    -- exclusive allowed: nothing to protect, it goes blind as before
    local g = assert(core.viewonly_filter { mode = "watch", exclusive = true })
    assert.is_true(g:from_target(sframe("RFB 003.008\n")))
    local wire = cframe("RFB 009.000\n")
    assert.equal(wire, (g:from_browser(wire)))
    assert.equal("blind", g:stats().phase)
  end)

  it("refuses an unknown mode", function()
    local f, msg, kind = core.viewonly_filter { mode = "edit" }
    assert.is_nil(f)
    assert.equal("invalid", kind)
    assert.matches("mode", msg)
  end)
end)

describe("ctvnc.viewonly", function()
  it("sends a view-only session's ClientInit of 0 as 1", function()
    local f = assert(viewonly.new())
    up_to_client_init(f)
    local out = assert(f:from_browser(cframe(h "00" .. MSG.key_event .. MSG.fb_update_request)))
    assert.equal(h "01" .. MSG.fb_update_request, (read_frames(out)))
    assert.is_true(f:stats().shared_forced)
  end)

  it("makes a filter with the default limits", function()
    local f = assert(viewonly.new())
    -- 65536 bytes pass the default max_payload, 65537 do not
    assert.equal("", f:from_browser(h "82 ff 00 00 00 00 00 01 00 00" .. KEY))
    local g = assert(viewonly.new())
    assert.is_nil((g:from_browser(h "82 ff 00 00 00 00 00 01 00 01" .. KEY)))
    local n = assert(viewonly.new { max_payload = 10 })
    assert.is_nil((n:from_browser(h "82 8b" .. KEY)))
    assert.is_nil((viewonly.new { max_payload = -1 }))
  end)

  it("answers a refused browser step with a policy close frame", function()
    local f = assert(viewonly.new())
    local out, msg, kind, close = viewonly.from_browser(f, cframe("RFB 003.008\n"))
    assert.is_nil(out)
    assert.equal("protocol", kind)
    assert.matches("turn", msg)
    assert.equal(h "88 1b 03 f0" .. "view-only: session closed", close)
  end)

  it("closes a full session it cannot follow to ClientInit, saying so", function()
    local f = assert(viewonly.watch())
    server(f, "RFB 003.008\n")
    local out, _, kind, close = viewonly.from_browser(f, cframe("RFB 009.000\n"))
    assert.is_nil(out)
    assert.equal("protocol", kind)
    assert.equal(viewonly.close_frame(1008, "the console's handshake could not be followed"),
      close)
  end)

  it("writes close frames with a code and a reason cut on a character", function()
    assert.equal(h "88 02 03 e9", viewonly.close_frame(1001))
    assert.equal(h "88 06 03 e9" .. "idle", viewonly.close_frame(1001, "idle"))
    local long = string.rep("a", 122) .. "\226\130\172" -- 122 bytes and a euro sign
    local frame = viewonly.close_frame(1000, long)
    assert.equal(2 + 2 + 122, #frame)
    assert.equal(h "88 7c 03 e8" .. string.rep("a", 122), frame)
    assert.equal(2 + 125, #viewonly.close_frame(1000, string.rep("b", 300)))
    assert.has_error(function() viewonly.close_frame(999) end)
    assert.has_error(function() viewonly.close_frame(1000, 5) end)
  end)

  it("makes watching filters", function()
    local f = assert(viewonly.watch())
    assert.equal("watch", f:stats().mode)
    assert.equal("view", assert(viewonly.new()):stats().mode)
    assert.is_nil((viewonly.watch { max_payload = 0 }))
  end)

  it("sums up counters without session bytes", function()
    local f = session()
    assert(f:from_browser(cframe(MSG.key_event .. MSG.key_event .. MSG.fb_update_request)))
    assert.equal("phase=normal passed=1 dropped=2 key=2 pointer=0 cut=0 control=0",
      viewonly.summary(f))
  end)
end)
