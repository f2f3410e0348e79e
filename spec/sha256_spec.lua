-- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 4231) in ctvnc.core, against
-- the published test vectors and against sha256sum at every length around
-- the block boundaries.
local core = require "ctvnc.core"
local helpers = require "helpers"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

describe("core.sha256", function()
  -- FIPS 180-4's examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf")
  local VECTORS = {
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
      .. "klmnopqrlmnopqrsmnopqrstnopqrstu",
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
    { ("a"):rep(1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
    { "\189", "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b" },
    { ("\0"):rep(55), "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7" },
    { ("\0"):rep(56), "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb" },
    { ("\0"):rep(57), "65a16cb7861335d5ace3c60718b5052e44660726da4cd13bb745381b235a1785" },
    { ("\0"):rep(64), "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b" },
  }
  for _, v in ipairs(VECTORS) do
    it(("gives FIPS 180-4's digest of %d bytes"):format(#v[1]), function()
      assert.are.equal(v[2], hex(core.sha256(v[1])))
    end)
  end

  it("agrees with sha256sum at every length from 0 to 200 bytes", function()
    local dir = helpers.run("mktemp -d"):match("^(%S+)")
    local s = ""
    for n = 0, 200 do
      local path = ("%s/%d"):format(dir, n)
      helpers.write_file(path, s)
      s = s .. string.char((n * 37 + 11) % 256)
    end
    local out = assert(helpers.run(("cd %s && sha256sum $(seq 0 200)"):format(dir)))
    s = ""
    local n = 0
    for digest, name in out:gmatch("(%x+)  (%d+)\n") do
      assert.are.equal(tostring(n), name)
      assert.are.equal(digest, hex(core.sha256(s)), "length " .. n)
      s = s .. string.char((n * 37 + 11) % 256)
      n = n + 1
    end
    assert.are.equal(201, n)
    helpers.run("rm -rf " .. dir)
  end)
end)

describe("core.hmac_sha256", function()
  -- RFC 4231 section 4: test cases 1-7 (case 5's output is truncated to
  -- 128 bits there, so only that prefix is compared)
  local CASES = {
    { ("0b"):rep(20), hex("Hi There"),
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { hex("Jefe"), hex("what do ya want for nothing?"),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { ("aa"):rep(20), ("dd"):rep(50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { "0102030405060708090a0b0c0d0e0f10111213141516171819", ("cd"):rep(50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { ("0c"):rep(20), hex("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b" },
    { ("aa"):rep(131), hex("Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { ("aa"):rep(131), hex("This is a test using a larger than block-size key and a larger "
      .. "than block-size data. The key needs to be hashed before being used by the HMAC "
      .. "algorithm."),
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for i, c in ipairs(CASES) do
    it(("gives RFC 4231 test case %d"):format(i), function()
      local mac = hex(core.hmac_sha256(unhex(c[1]), unhex(c[2])))
      assert.are.equal(c[3], mac:sub(1, #c[3]))
    end)
  end

  it("takes an empty key and empty data (openssl's answer)", function()
    local out = assert(helpers.run("printf '' | openssl dgst -sha256 -hmac '' -r"))
    assert.are.equal(out:match("^(%x+)"), hex(core.hmac_sha256("", "")))
  end)
end)
