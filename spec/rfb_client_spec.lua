local helpers = require "helpers"
local core = require "ctvnc.core"
local rfblab = require "support.rfblab"

-- core.rfb_client: rfb.c fed bytes by its caller (the gateway's
-- screenshots move them over cosockets). A server's stream written here by
-- hand, the PNG decoded by pngcheck.py (Python's zlib) against the known
-- framebuffer of rfbpattern.py's VM 1.
local char, floor = string.char, math.floor

--- rfbpattern.py's pixel(1, x, y) as Raw bytes (B, G, R, 0).
local function raw_pixels(w, h)
  local out = {}
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      local bx, by = floor(x / 8), floor(y / 8)
      out[#out + 1] = char(((bx + by) * 30 + 7) % 256, (by * 60 + 3) % 256, (bx * 40 + 1) % 256, 0)
    end
  end
  return table.concat(out)
end

local function u16(v) return char(floor(v / 256), v % 256) end

describe("core.rfb_client", function()
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(helpers.run("mkdir -p " .. dir))
  end)

  teardown(function() helpers.run("rm -rf " .. dir) end)

  --- A client through RFB 3.8, security None, ServerInit 64x48: the
  -- client and every byte it sent.
  local function greeted()
    local c = core.rfb_client()
    local sent = {}
    local function feed(bytes)
      local out, st = assert(c:feed(bytes))
      sent[#sent + 1] = out
      return st
    end
    assert.are.equal("more", feed("RFB 003.008\n"))
    assert.are.equal("more", feed("\1\1"))
    assert.are.equal("more", feed("\0\0\0\0"))
    local init = u16(64) .. u16(48) .. "\32\24\0\1\0\255\0\255\0\255\16\8\0\0\0\0" .. "\0\0\0\4desk"
    assert.are.equal("more", feed(init))
    return c, sent, feed
  end

  it("shares the desktop, asks for one whole frame and encodes it pixel-exact", function()
    local c, sent, feed = greeted()
    assert.are.equal("RFB 003.008\n", sent[1])
    assert.are.equal("\1", sent[2])                 -- security None
    assert.are.equal("\1", sent[3])                 -- ClientInit: shared
    local msgs = sent[4]
    assert.are.equal(0, msgs:byte(1))               -- SetPixelFormat
    assert.are.equal(2, msgs:byte(21))              -- SetEncodings
    assert.are.equal("\3\0\0\0\0\0" .. u16(64) .. u16(48), msgs:sub(-10))  -- not incremental
    local pixels = raw_pixels(64, 48)
    -- the update split at odd places, as a websocket may deliver it
    local update = "\0\0\0\1" .. "\0\0\0\0" .. u16(64) .. u16(48) .. "\0\0\0\0" .. pixels
    local chunks = {}
    for i = 1, #update, 997 do chunks[#chunks + 1] = update:sub(i, i + 996) end
    for i = 1, #chunks - 1 do assert.are.equal("more", feed(chunks[i])) end
    assert.are.equal("done", feed(chunks[#chunks]))
    assert.are.same({ width = 64, height = 48, name = "desk", version = 8 }, c:info())
    local png, w, h = c:png()
    assert.are.same({ 64, 48 }, { w, h })
    helpers.write_file(dir .. "/full.png", png)
    assert.are.same({ 64, 48, 0 }, { rfblab.check_file(dir .. "/full.png", 1) })
    png, w, h = c:png(32)
    assert.are.same({ 32, 24 }, { w, h })
    helpers.write_file(dir .. "/thumb.png", png)
    assert.are.same({ 32, 24, 0 }, { rfblab.check_file(dir .. "/thumb.png", 1, 32) })
    c:close()
    c:close()
    assert.has_error(function() c:feed("x") end)
    assert.matches("closed", tostring(c))
  end)

  it("fails as rfb on a server that is not RFB, and has no frame before one", function()
    local c = core.rfb_client()
    local out, msg, kind = c:feed("HTTP/1.1 200 OK\r\n")
    assert.is_nil(out)
    assert.are.equal("rfb", kind)
    assert.matches("RFB ProtocolVersion", msg)
    local d = greeted()
    local png, why, k = d:png()
    assert.is_nil(png)
    assert.are.same({ "invalid", "rfb_client: no whole frame yet" }, { k, why })
    assert.has_error(function() core.rfb_client({ password = 1 }) end)
    assert.has_error(function() core.rfb_client({ max_pixels = -1 }) end)
  end)

  it("answers VNC Authentication only with a password", function()
    local c = core.rfb_client({ password = "secret" })
    assert(c:feed("RFB 003.008\n"))
    local out = assert(c:feed("\1\2"))
    assert.are.equal("\2", out)
    out = assert(c:feed(("\0"):rep(16)))
    assert.are.equal(16, #out)
    local none = core.rfb_client()
    assert(none:feed("RFB 003.008\n"))
    local _, msg, kind = none:feed("\1\2")
    assert.are.equal("rfb", kind)
    assert.matches("password", msg)
  end)

  it("ws_parse tells a frame's whole size once its header is in", function()
    local frame = core.ws_frame("binary", ("x"):rep(300))
    assert.are.same({ false }, { core.ws_parse(frame:sub(1, 1), "server") })
    assert.are.same({ false, #frame }, { core.ws_parse(frame:sub(1, 10), "server") })
    local f, size = core.ws_parse(frame, "server")
    assert.are.same({ "binary", 300, #frame }, { f.opcode, #f.payload, size })
  end)
end)
