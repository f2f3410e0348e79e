-- Specs for ctvnc.b64url, the gateway's one base64url (tickets, JWTs).
-- The oracle for arbitrary bytes is coreutils' base64 with the URL
-- alphabet swapped in, never the code under test.

local helpers = require "helpers"
local b64 = require "ctvnc.b64url"

local oracle = helpers.b64url

describe("ctvnc.b64url", function()
  it("encodes and decodes RFC 4648 vectors in the URL alphabet, unpadded", function()
    local vectors = { { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
      { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
      { "\251\255", "-_8" }, { "\251\255\191", "-_-_" } }
    for _, v in ipairs(vectors) do
      assert.equal(v[2], b64.encode(v[1]))
      assert.equal(v[1], b64.decode(v[2]))
    end
  end)

  it("agrees with base64(1) on every byte value and every tail length", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    for _, s in ipairs({ all, all:sub(1, 254), all:sub(2, 256), all:reverse():sub(1, 100) }) do
      local want = oracle(s)
      assert.equal(want, b64.encode(s))
      assert.equal(s, b64.decode(want))
    end
  end)

  it("decodes strictly: no padding, other characters, 4k+1 lengths or unused bits", function()
    for _, bad in ipairs({ "Zg==", "Zm9=", "Zm9v+A", "Zm9v/A", "Zm 9v", "Zm9v.", "Z", "Zm9vY",
      "Zh", "Zm9", "eyK" }) do
      assert.is_nil(b64.decode(bad), bad)
    end
    assert.equal("fo", b64.decode("Zm8"))   -- and "Zm9" is "fo" with unused bits set
  end)
end)
