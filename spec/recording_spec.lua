-- Console recordings (docs/recording-format.md): the writer's bytes read
-- back here by this file's own reading of the documented layout, the
-- chain rebuilt with the vector-tested core.sha256, and `ctvnc recording
-- verify|info` naming the first bad chunk, a truncated file, a wrong key.
local core = require "ctvnc.core"
local helpers = require "helpers"

local START = 1700000000000
local KEY = "record-key-of-the-console-gateway-0123456789"  -- 44 bytes
local PF = "\32\24\0\1\0\255\0\255\0\255\16\8\0\0\0\0"      -- 32 bpp, depth 24

local function be(s, i, n)   -- a big-endian integer of n bytes at i
  local v = 0
  for k = i, i + n - 1 do v = v * 256 + s:byte(k) end
  return v
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function writer(key)
  return assert(core.recording_writer({ session = "sess-1", vm_id = "vm-1", user = "alice",
    node = "node-a", start_ms = START, width = 1024, height = 768, pixel_format = PF,
    rfb = "RFB 003.008\n", key = key }))
end

-- A recording of n chunks (chunk i: i*37 bytes at START + 250*i ms; every
-- third a keyframe, from the first): bytes, final hash, the chunks' data.
local function record(n, key, complete)
  local w = writer(key)
  local parts, data = { w:header() }, {}
  for i = 1, n do
    data[i] = ("%d:"):format(i) .. ("\7"):rep(i * 37)
    parts[#parts + 1] = assert(w:chunk(START + 250 * i, data[i], i % 3 == 1))
  end
  local trailer, hash = w:trailer(complete ~= false, START + 250 * n + 100)
  parts[#parts + 1] = trailer
  return table.concat(parts), hash, data
end

-- The layout as docs/recording-format.md states it, read here: header
-- size, then per record its offset, kind, time, length, link, data, hash.
local function layout(bytes)
  local size = be(bytes, 11, 4)
  local recs, at = {}, size + 1
  while at <= #bytes and bytes:byte(at) ~= 255 do
    local len = be(bytes, at + 5, 4)
    recs[#recs + 1] = { offset = at - 1, kind = bytes:byte(at), t = be(bytes, at + 1, 4),
      len = len, link = be(bytes, at + 9, 8), head = bytes:sub(at, at + 16),
      data = bytes:sub(at + 17, at + 16 + len), hash = bytes:sub(at + 17 + len, at + 48 + len) }
    at = at + 49 + len
  end
  return size, recs, bytes:sub(at)
end

local dir
setup(function() dir = helpers.run("mktemp -d"):match("^(%S+)") end)
teardown(function() helpers.run("rm -rf " .. dir) end)

local function file(name, bytes)
  local path = dir .. "/" .. name
  helpers.write_file(path, bytes)
  return path
end

local ctvnc = helpers.cli_main

describe("core.recording_writer", function()
  it("writes the header, chunks and trailer docs/recording-format.md describes", function()
    local bytes, final, data = record(7, KEY)
    assert.are.equal("CTVNCREC", bytes:sub(1, 8))
    assert.are.equal(1, be(bytes, 9, 2))
    local size, recs, trailer = layout(bytes)
    assert.are.equal(START, be(bytes, 15, 8))
    assert.are.equal(1024, be(bytes, 23, 2))
    assert.are.equal(768, be(bytes, 25, 2))
    assert.are.equal(PF, bytes:sub(27, 42))
    assert.are.equal("RFB 003.008\n", bytes:sub(43, 54))
    local at, strings = 55, {}
    for i = 1, 4 do
      local n = be(bytes, at, 2)
      strings[i] = bytes:sub(at + 2, at + 1 + n)
      at = at + 2 + n
    end
    assert.are.same({ "sess-1", "vm-1", "alice", "node-a" }, strings)
    assert.are.equal(size + 1, at)

    -- the chain: SHA-256 of the header, then of the previous hash and the
    -- chunk's bytes before its hash
    local chain, last_key, keyframes = core.sha256(bytes:sub(1, size)), 0, 0
    assert.are.equal(7, #recs)
    for i, r in ipairs(recs) do
      assert.are.equal(i % 3 == 1 and 2 or 1, r.kind)
      assert.are.equal(250 * i, r.t)
      assert.are.equal(data[i], r.data)
      assert.are.equal(last_key, r.link, "chunk " .. i .. "'s keyframe link")
      chain = core.sha256(chain .. r.head .. r.data)
      assert.are.equal(hex(chain), hex(r.hash), "chunk " .. i)
      if r.kind == 2 then last_key, keyframes = r.offset, keyframes + 1 end
    end
    assert.are.equal(103, #trailer)
    assert.are.equal(255, trailer:byte(1))
    assert.are.equal(1, trailer:byte(2))
    assert.are.equal(7, be(trailer, 3, 8))
    local total = 0
    for _, d in ipairs(data) do total = total + #d end
    assert.are.equal(total, be(trailer, 11, 8))
    assert.are.equal(keyframes, be(trailer, 19, 8))
    assert.are.equal(last_key, be(trailer, 27, 8))
    assert.are.equal(250 * 7 + 100, be(trailer, 35, 4))
    assert.are.equal(hex(chain), hex(trailer:sub(39, 70)))
    assert.are.equal(final, hex(chain))
    assert.are.equal(1, trailer:byte(71))
    assert.are.equal(hex(core.hmac_sha256(KEY, trailer:sub(1, 71))), hex(trailer:sub(72)))
  end)

  it("leaves the signature empty without a key, and marks an early stop", function()
    local bytes = record(2, nil, false)
    local _, _, trailer = layout(bytes)
    assert.are.equal(0, trailer:byte(2))
    assert.are.equal(0, trailer:byte(71))
    assert.are.equal(("\0"):rep(32), trailer:sub(72))
  end)

  it("refuses a time going back, a chunk after the trailer, a second header", function()
    local w = writer()
    w:header()
    assert(w:chunk(START + 10, "a"))
    local _, msg, kind = w:chunk(START + 9, "b")
    assert.are.equal("invalid", kind)
    assert.matches("time", msg)
    _, msg = w:header()
    assert.matches("out of order", msg)
    assert(w:trailer(true))
    _, _, kind = w:chunk(START + 20, "c")
    assert.are.equal("invalid", kind)
    local w2 = writer()
    _, _, kind = w2:chunk(START, "x")         -- before the header
    assert.are.equal("invalid", kind)
  end)

  it("refuses header values out of bounds", function()
    local function try(over)
      local meta = { session = "s", vm_id = "v", user = "u", node = "n", start_ms = START,
        width = 1, height = 1, pixel_format = PF, rfb = "RFB 003.008\n" }
      for k, v in pairs(over) do meta[k] = v end
      return core.recording_writer(meta)
    end
    for _, over in ipairs({ { user = ("u"):rep(1025) }, { pixel_format = "short" },
        { rfb = "RFB 3.8" }, { width = 65536 }, { start_ms = -1 }, { start_ms = 1.5 },
        { vm_id = 7 }, { key = {} } }) do
      local w, _, kind = try(over)
      assert.is_nil(w)
      assert.are.equal("invalid", kind)
    end
    assert(try({ user = ("u"):rep(1024) }))
  end)
end)

describe("ctvnc recording verify", function()
  it("exits 0 for an intact recording, with its hash", function()
    local bytes, final = record(9, KEY)
    local rc, out = ctvnc({ "recording", "verify", file("ok.rec", bytes) })
    assert.are.equal(0, rc, out)
    assert.matches("ok.rec: intact, 9 chunks, complete, sha256 " .. final, out, 1, true)
  end)

  for _, where in ipairs({ "head", "data", "hash" }) do
    it("names chunk k when one byte of its " .. where .. " is flipped", function()
      local bytes = record(9, KEY)
      local _, recs = layout(bytes)
      for _, k in ipairs({ 1, 5, 9 }) do
        local r = recs[k]
        local at = r.offset + ({ head = 2, data = 17 + 3, hash = 17 + r.len + 5 })[where]
        local b = bytes:sub(1, at) .. string.char((bytes:byte(at + 1) + 1) % 256)
          .. bytes:sub(at + 2)
        local rc, out = ctvnc({ "recording", "verify", file("bad.rec", b) })
        assert.are.equal(1, rc)
        assert.matches("bad.rec: chunk " .. k .. " is not intact", out, 1, true)
      end
    end)
  end

  it("says a truncated file is incomplete and how many chunks are intact", function()
    local bytes = record(6, KEY)
    local _, recs = layout(bytes)
    for _, cut in ipairs({ recs[4].offset, recs[4].offset + 20, #bytes - 1 }) do
      local rc, out = ctvnc({ "recording", "verify", file("cut.rec", bytes:sub(1, cut)) })
      assert.are.equal(1, rc)
      local n = cut == #bytes - 1 and 6 or 3
      assert.matches(("incomplete: the file ends before the trailer (chunks 1-%d intact)")
        :format(n), out, 1, true)
    end
  end)

  it("checks the signature with --key-file or CTVNC_RECORD_KEY", function()
    local path = file("signed.rec", (record(4, KEY)))
    local key_file = file("key", KEY .. "\n")
    local rc, out = ctvnc({ "recording", "verify", "--key-file", key_file, path })
    assert.are.equal(0, rc, out)
    assert.matches("signature good", out, 1, true)
    rc, out = ctvnc({ "recording", "verify", path }, { CTVNC_RECORD_KEY = KEY })
    assert.are.equal(0, rc, out)
    rc, out = ctvnc({ "recording", "verify", path }, { CTVNC_RECORD_KEY = KEY:upper() })
    assert.are.equal(1, rc)
    assert.matches("the signature does not match the key", out, 1, true)
    rc, out = ctvnc({ "recording", "verify", path })
    assert.are.equal(0, rc)
    assert.matches("signed (no key to check it)", out, 1, true)
    -- not signed, and a key given: not accepted
    rc, out = ctvnc({ "recording", "verify", file("plain.rec", (record(4))) },
      { CTVNC_RECORD_KEY = KEY })
    assert.are.equal(1, rc)
    assert.matches("not signed", out, 1, true)
    local _, _, err = ctvnc({ "recording", "verify", path }, { CTVNC_RECORD_KEY = "short" })
    assert.matches("at least 32 bytes", err, 1, true)
    assert.not_matches("short", err:gsub("at least", ""), 1, true)
  end)

  it("with the key, catches a chunk edited and the whole chain recomputed", function()
    -- an editor who rewrites chunk 2 and every hash after it (no key)
    local bytes = record(3, KEY)
    local size, recs, trailer = layout(bytes)
    local chain = core.sha256(bytes:sub(1, size))
    local parts = { bytes:sub(1, size) }
    for i, r in ipairs(recs) do
      local d = i == 2 and r.data:gsub("\7", "\8") or r.data
      chain = core.sha256(chain .. r.head .. d)
      parts[#parts + 1] = r.head .. d .. chain
    end
    parts[#parts + 1] = trailer:sub(1, 38) .. chain .. trailer:sub(71)
    local path = file("forged.rec", table.concat(parts))
    local rc, out = ctvnc({ "recording", "verify", path })
    assert.are.equal(0, rc, out)                 -- the chain alone cannot tell
    rc, out = ctvnc({ "recording", "verify", path }, { CTVNC_RECORD_KEY = KEY })
    assert.are.equal(1, rc)
    assert.matches("the signature does not match the key", out, 1, true)
  end)

  it("names a trailer that disagrees, bytes after it, and a file that is no recording",
     function()
    local bytes = record(3)
    local _, recs, trailer = layout(bytes)
    local head = bytes:sub(1, #bytes - #trailer)
    local wrong = trailer:sub(1, 9) .. string.char(trailer:byte(10) + 1) .. trailer:sub(11)
    local rc, out = ctvnc({ "recording", "verify", file("t.rec", head .. wrong) })
    assert.are.equal(1, rc)
    assert.matches("the trailer does not match the chunks", out, 1, true)
    rc, out = ctvnc({ "recording", "verify", file("a.rec", bytes .. "x") })
    assert.are.equal(1, rc)
    assert.matches("malformed: bytes after the trailer", out, 1, true)
    rc, out = ctvnc({ "recording", "verify", file("k.rec", bytes:sub(1, recs[2].offset)
      .. "\9" .. bytes:sub(recs[2].offset + 2)) })
    assert.are.equal(1, rc)
    assert.matches("chunk 2 is not intact: an unknown record kind", out, 1, true)
    rc, out = ctvnc({ "recording", "verify", file("n.rec", "GIF89a....................") })
    assert.are.equal(1, rc)
    assert.matches("not a recording: not a ctvnc recording", out, 1, true)
    local err
    rc, _, err = ctvnc({ "recording", "verify", dir .. "/missing.rec" })
    assert.are.equal(1, rc)
    assert.matches("missing.rec: cannot read", err, 1, true)
  end)

  it("is a usage error without verify or info and a file", function()
    for _, args in ipairs({ { "recording" }, { "recording", "check", "x" },
        { "recording", "verify" }, { "recording", "info", "a", "b" },
        { "--format", "csv", "recording", "info", "x" } }) do
      local rc, _, err = ctvnc(args)
      assert.are.equal(2, rc, table.concat(args, " "))
      assert.matches("try 'ctvnc --help'", err, 1, true)
    end
  end)
end)

describe("ctvnc recording info", function()
  it("prints the header, duration, counts, keyframes, completeness and hash", function()
    local bytes, final = record(7, KEY)
    local _, recs = layout(bytes)
    local rc, out = ctvnc({ "recording", "info", file("i.rec", bytes) })
    assert.are.equal(0, rc, out)
    for _, line in ipairs({ "session       sess-1", "vm_id         vm-1", "user          alice",
        "node          node-a", "start         2023-11-14T22:13:20.000Z",
        "desktop       1024x768", "pixel_format  32 bpp, depth 24, little-endian, true colour",
        "duration      1.850 s", "chunks        7",
        ("keyframes     3 (0.250 s@%d, 1.000 s@%d, 1.750 s@%d)"):format(recs[1].offset,
          recs[4].offset, recs[7].offset),
        "rfb           RFB 003.008", "complete      yes", "sha256        " .. final,
        "signature     unchecked" }) do
      assert.matches(line .. "\n", out, 1, true)
    end
  end)

  it("writes JSON with --format json, intact false and the first bad chunk", function()
    local bytes = record(4, KEY, false)
    local _, recs = layout(bytes)
    local at = recs[3].offset + 20
    bytes = bytes:sub(1, at) .. "\0" .. bytes:sub(at + 2)
    local rc, out = ctvnc({ "--format", "json", "recording", "info", file("j.rec", bytes) })
    assert.are.equal(0, rc)
    local doc = require("cjson").decode(out)
    assert.are.equal(false, doc.intact)
    assert.are.equal(3, doc.first_bad_chunk)
    assert.are.equal(false, doc.complete)
    assert.are.equal("vm-1", doc.vm_id)
    assert.are.equal(2, #doc.keyframes)
  end)

  it("runs as bin/ctvnc with no tower configured", function()
    local path = file("b.rec", (record(2)))
    local out, ok = helpers.run(("cd %s && %s %s %s bin/ctvnc recording verify %s")
      :format(helpers.ROOT, helpers.CLI.unset, helpers.CLI.paths, helpers.CLI.lua, path))
    assert(ok, out)
    assert.matches("intact, 2 chunks", out, 1, true)
  end)
end)
