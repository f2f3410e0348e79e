-- Specs for ctvnc.encode_uri_component (API.md, "URL primitives").
--
-- Runs under Lua 5.4 and LuaJIT 2.1: plain Lua 5.1 arithmetic only (no `//`,
-- no bit operators, no utf8 library, decimal string escapes only).

local ctvnc = require "ctvnc"

local encode = ctvnc.encode_uri_component

-- The 71 bytes that encodeURIComponent leaves alone.
local KEPT = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" .. "abcdefghijklmnopqrstuvwxyz" .. "0123456789" .. "-_.!~*'()"

-- Independent reference for arbitrary bytes: a lookup table of the kept
-- bytes, everything else %XX with upper-case hex.
local keep = {}
for i = 1, #KEPT do
  keep[KEPT:byte(i)] = true
end

local function reference(s)
  local out = {}
  for i = 1, #s do
    local b = s:byte(i)
    if keep[b] then
      out[#out + 1] = string.char(b)
    else
      out[#out + 1] = string.format("%%%02X", b)
    end
  end
  return table.concat(out)
end

local function decode(s)
  return (s:gsub("%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

local function hex(s)
  return (s:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

-- Deterministic generator, the same sequence under Lua 5.4 and LuaJIT
-- (math.random differs between them). Park-Miller minimal standard: every
-- product stays below 2^46, exact in doubles and in integers.
local function prng(seed)
  local state = seed
  return function(lo, hi)
    state = (16807 * state) % 2147483647
    return lo + state % (hi - lo + 1)
  end
end

-- One code point as UTF-8 bytes (valid for 0..0x10FFFF minus surrogates).
local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000),
      0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  else
    return string.char(0xF0 + math.floor(cp / 0x40000),
      0x80 + math.floor(cp / 0x1000) % 0x40,
      0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
end

local function random_code_point(rand)
  local kind = rand(1, 100)
  if kind <= 40 then
    return rand(0x20, 0x7E) -- printable ASCII
  elseif kind <= 50 then
    local c = rand(0, 0x20) -- control characters 0x00-0x1F and 0x7F
    return c == 0x20 and 0x7F or c
  elseif kind <= 65 then
    return rand(0x80, 0x7FF) -- two bytes
  elseif kind <= 85 then
    local cp = rand(0x800, 0xFFFF - 0x800) -- three bytes, no surrogates
    if cp >= 0xD800 then
      cp = cp + 0x800
    end
    return cp
  else
    return rand(0x10000, 0x10FFFF) -- four bytes
  end
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Directory of this spec file, so the helper is found from any cwd.
local SPEC_DIR = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "spec"
local NODE = os.getenv("NODE") or "node"

describe("ctvnc.encode_uri_component", function()
  local vectors = {
    { "keeps the empty string empty", "", "" },
    { "keeps lower-case letters", "abc", "abc" },
    { "encodes a space as %20", " ", "%20" },
    { "keeps all 71 unreserved characters", KEPT, KEPT },
    { "encodes a two-byte character (e acute)", "\195\169", "%C3%A9" },
    { "encodes a three-byte character (euro sign)", "\226\130\172", "%E2%82%AC" },
    { "encodes a four-byte character (G clef)", "\240\157\132\158", "%F0%9D%84%9E" },
    { "encodes plus, slash and equals", "+/=", "%2B%2F%3D" },
    { "encodes a NUL byte", "\0", "%00" },
    { "encodes byte 255", "\255", "%FF" },
    { "uses upper-case hex digits", "\171\205\239", "%AB%CD%EF" },
    { "encodes the percent sign", "100%", "100%25" },
    { "encodes URI reserved characters", ";,/?:@&=+$#", "%3B%2C%2F%3F%3A%40%26%3D%2B%24%23" },
    { "encodes other ASCII punctuation", "\"%<>[\\]^`{|}", "%22%25%3C%3E%5B%5C%5D%5E%60%7B%7C%7D" },
    { "encodes control characters", "\t\n\r\1\31", "%09%0A%0D%01%1F" },
    { "encodes DEL", "\127", "%7F" },
    { "encodes mixed text", "a b+c&d=e", "a%20b%2Bc%26d%3De" },
    { "encodes a base64 token", "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
      "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D" },
    { "keeps a UUID", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000" },
    { "encodes an IPv6 address", "fd00::1", "fd00%3A%3A1" },
    { "encodes bytes after a NUL", "a\0b", "a%00b" },
    { "encodes an overlong sequence byte by byte", "\192\128", "%C0%80" },
    { "encodes a lone continuation byte", "\128", "%80" },
    { "encodes an encoded surrogate byte by byte", "\237\160\128", "%ED%A0%80" },
    { "encodes a truncated sequence", "\226\130", "%E2%82" },
    { "encodes bytes that are never UTF-8", "\192\193\245\254\255", "%C0%C1%F5%FE%FF" },
  }

  for _, case in ipairs(vectors) do
    local name, input, expected = case[1], case[2], case[3]
    it(name, function()
      assert.are.equal(expected, encode(input))
    end)
  end

  it("has 71 unreserved characters", function()
    assert.are.equal(71, #KEPT)
  end)

  it("coerces a number to its string form", function()
    assert.are.equal("12", encode(12))
    assert.are.equal("-3", encode(-3))
  end)

  it("encodes a long string", function()
    local input = string.rep("\255a", 50000)
    assert.are.equal(string.rep("%FFa", 50000), encode(input))
  end)

  local misuse = {
    { "raises on a missing argument", function() return encode() end },
    { "raises on nil", function() return encode(nil) end },
    { "raises on a table", function() return encode({}) end },
    { "raises on a boolean", function() return encode(true) end },
    { "raises on a function", function() return encode(print) end },
  }

  for _, case in ipairs(misuse) do
    local name, fn = case[1], case[2]
    it(name .. " naming argument #1", function()
      local ok, err = pcall(fn)
      assert.is_false(ok, "expected an error")
      assert.is_truthy(tostring(err):find("#1", 1, true),
        "error does not name argument #1: " .. tostring(err))
    end)
  end

  describe("against node's encodeURIComponent", function()
    it("agrees on 2500 random valid UTF-8 strings", function()
      local rand = prng(20240611)
      local inputs = {}
      -- Boundary code points first, then random strings.
      local edges = { 0x00, 0x1F, 0x20, 0x7E, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000,
        0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x10FFFF }
      for _, cp in ipairs(edges) do
        inputs[#inputs + 1] = "x" .. utf8_char(cp) .. "y"
      end
      inputs[#inputs + 1] = ""
      while #inputs < 2500 do
        local chars = {}
        for i = 1, rand(0, 40) do
          chars[i] = utf8_char(random_code_point(rand))
        end
        inputs[#inputs + 1] = table.concat(chars)
      end

      local path = os.tmpname()
      finally(function() os.remove(path) end)
      local f = assert(io.open(path, "wb"))
      for _, s in ipairs(inputs) do
        f:write(hex(s), "\n")
      end
      f:close()

      local cmd = NODE .. " " .. shell_quote(SPEC_DIR .. "/support/encode.js") .. " " .. shell_quote(path)
      local pipe = assert(require("helpers").popen(cmd, "r"))
      local output = pipe:read("*a")
      pipe:close()

      local compared, mismatches, first = 0, 0, nil
      for line in output:gmatch("([^\n]*)\n") do
        compared = compared + 1
        local input = inputs[compared]
        local got = input and encode(input)
        if got ~= line then
          mismatches = mismatches + 1
          if not first then
            first = string.format("line %d: input hex %s, node %q, ctvnc %q",
              compared, input and hex(input) or "(none)", line, tostring(got))
          end
        end
      end

      assert.are.equal(#inputs, compared, "node produced a different number of lines (" .. cmd .. ")")
      assert.are.equal(0, mismatches, "mismatches: " .. mismatches .. "; first at " .. tostring(first))
    end)
  end)

  describe("on arbitrary bytes", function()
    it("encodes every single byte like the reference and decodes back", function()
      for b = 0, 255 do
        local input = string.char(b)
        local ok, got = pcall(encode, input)
        assert.is_true(ok, "failed on byte " .. b .. ": " .. tostring(got))
        assert.are.equal(reference(input), got, "byte " .. b)
        assert.are.equal(input, decode(got), "byte " .. b)
      end
    end)

    it("encodes 500 random byte strings like the reference and decodes back", function()
      local rand = prng(77)
      for n = 1, 500 do
        local bytes = {}
        for i = 1, rand(0, 64) do
          bytes[i] = string.char(rand(0, 255))
        end
        local input = table.concat(bytes)
        if n % 5 == 0 then
          input = "\0" .. input .. "\255"
        end
        local ok, got = pcall(encode, input)
        assert.is_true(ok, "failed on hex " .. hex(input) .. ": " .. tostring(got))
        assert.are.equal(reference(input), got, "hex " .. hex(input))
        assert.are.equal(input, decode(got), "hex " .. hex(input))
        assert.is_nil(got:find("[^A-Za-z0-9%-_%.!~%*'%(%)%%]"), "unsafe byte in " .. got)
      end
    end)
  end)
end)
