-- The audit log's hash chain (ctvnc.auditchain) and `ctvnc audit verify`:
-- each line's hash recomputed here from the documented rule, and the first
-- line named after an edit, a removal, a reordering, an insertion or a
-- forged line appended.
local chain = require "ctvnc.auditchain"
local core = require "ctvnc.core"
local helpers = require "helpers"

local KEY = "audit-key-of-the-console-gateway-0123456789"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- n sealed lines (each a JSON object as the gateway writes them)
local function log(n, key, prev)
  local lines = {}
  prev = prev or chain.GENESIS
  for i = 1, n do
    lines[i], prev = assert(chain.seal(prev, ('{"event":"open","session":"s%d","user":"u"}')
      :format(i), key))
  end
  return lines, prev
end

local function iter(lines)
  local i = 0
  return function() i = i + 1 return lines[i] end
end

-- verify's first two answers
local function verdict(lines, opts)
  local ok, n = chain.verify(iter(lines), opts)
  return { ok, n }
end

local function copy(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  return c
end

describe("ctvnc.auditchain.seal", function()
  it("ends the line with prev and the SHA-256 of the line up to prev, closed", function()
    local line, hash = chain.seal(chain.GENESIS, '{"event":"open","user":"alice"}')
    local body = '{"event":"open","user":"alice","prev":"' .. ("0"):rep(64) .. '"'
    assert.are.equal(hex(core.sha256(body .. "}")), hash)
    assert.are.equal(body .. ',"hash":"' .. hash .. '"}', line)
    assert.are.same({ event = "open", user = "alice", prev = ("0"):rep(64), hash = hash },
      require("cjson").decode(line))
    local keyed = select(2, chain.seal(chain.GENESIS, '{"event":"open","user":"alice"}', KEY))
    assert.are.equal(hex(core.hmac_sha256(KEY, body .. "}")), keyed)
    local empty = chain.seal(hash, "{}")
    assert.are.equal('{"prev":"' .. hash .. '"', empty:match('^(.*),"hash"'))
  end)

  it("refuses a bad prev or a line that is not one JSON object on one line", function()
    for _, args in ipairs({ { "abc", "{}" }, { ("g"):rep(64), "{}" },
        { chain.GENESIS, "[1]" }, { chain.GENESIS, '{"a":"b\n"}' }, { chain.GENESIS, 7 } }) do
      local line, _, kind = chain.seal(args[1], args[2])
      assert.is_nil(line)
      assert.are.equal("invalid", kind)
    end
  end)
end)

describe("ctvnc.auditchain.verify", function()
  it("accepts an intact log and gives its count and last hash", function()
    local lines, last = log(5)
    assert.are.same({ true, 5, last }, { chain.verify(iter(lines)) })
    assert.are.same({ true, 5, last },
      { chain.verify(iter(lines), { prev = chain.GENESIS }) })
  end)

  it("names an edited line", function()
    local lines = log(5)
    lines[3] = lines[3]:gsub('"user":"u"', '"user":"x"')
    local ok, n, why = chain.verify(iter(lines))
    assert.are.same({ nil, 3 }, { ok, n })
    assert.matches("hash does not match", why)
  end)

  it("names the line after a removed one, and a reordered pair", function()
    local lines = log(6)
    local removed = copy(lines)
    table.remove(removed, 4)
    local ok, n, why = chain.verify(iter(removed))
    assert.are.same({ nil, 4 }, { ok, n })
    assert.matches("removed, inserted or reordered", why)
    local swapped = copy(lines)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert.are.same({ nil, 2 }, verdict(swapped))
    -- the first line removed: only a known start (the file before) tells
    local headless = copy(lines)
    table.remove(headless, 1)
    assert.is_true((chain.verify(iter(headless))))
    assert.are.same({ nil, 1 }, verdict(headless, { prev = chain.GENESIS }))
  end)

  it("names a forged line appended: unsealed, or chained without the key", function()
    local lines, last = log(3, KEY)
    local naive = copy(lines)
    naive[4] = '{"event":"close","session":"s9","user":"mallory"}'
    local ok, n = chain.verify(iter(naive), { key = KEY })
    assert.are.same({ nil, 4 }, { ok, n })
    local chained = copy(lines)
    chained[4] = chain.seal(last, '{"event":"close","session":"s9"}')   -- SHA-256, no key
    ok, n = chain.verify(iter(chained), { key = KEY })
    assert.are.same({ nil, 4 }, { ok, n })
    assert.is_true((chain.verify(iter(lines), { key = KEY })))
  end)

  it("finds the hash to go on from at the end of a file", function()
    local dir = helpers.run("mktemp -d"):match("^(%S+)")
    assert.are.equal(chain.GENESIS, chain.tail_hash(dir .. "/none.log"))
    local lines, last = log(200)
    helpers.write_file(dir .. "/a.log", table.concat(lines, "\n") .. "\n")
    assert.are.equal(last, chain.tail_hash(dir .. "/a.log"))
    helpers.write_file(dir .. "/b.log", '{"event":"open"}\n')
    local hash, _, kind = chain.tail_hash(dir .. "/b.log")
    assert.is_nil(hash)
    assert.are.equal("io", kind)
    helpers.run("rm -rf " .. dir)
  end)
end)

describe("ctvnc audit verify", function()
  local dir
  setup(function() dir = helpers.run("mktemp -d"):match("^(%S+)") end)
  teardown(function() helpers.run("rm -rf " .. dir) end)

  local ctvnc = helpers.cli_main

  local function write(name, lines)
    local path = dir .. "/" .. name
    helpers.write_file(path, table.concat(lines, "\n") .. "\n")
    return path
  end

  it("exits 0 for intact files, chained from one to the next (oldest first)", function()
    local old, last = log(4, KEY)
    local new = log(3, KEY, last)
    local a, b = write("audit.log.1", old), write("audit.log", new)
    local rc, out = ctvnc({ "audit", "verify", a, b }, { CTVNC_AUDIT_KEY = KEY })
    assert.are.equal(0, rc, out)
    assert.matches("audit.log.1: intact, 4 lines", out, 1, true)
    assert.matches("audit.log: intact, 3 lines, last hash ", out, 1, true)
    rc, out = ctvnc({ "audit", "verify", b, a }, { CTVNC_AUDIT_KEY = KEY })
    assert.are.equal(1, rc)
    assert.matches("audit.log.1: line 1 breaks the chain", out, 1, true)
  end)

  it("exits 1 naming the first line that breaks the chain", function()
    local lines = log(5)
    lines[4] = lines[4]:gsub("s4", "s5")
    local rc, out = ctvnc({ "audit", "verify", write("edited.log", lines) })
    assert.are.equal(1, rc)
    assert.matches("edited.log: line 4 breaks the chain: its hash does not match", out, 1, true)
    local key_file = dir .. "/key"
    helpers.write_file(key_file, KEY .. "\n")
    rc, out = ctvnc({ "audit", "verify", "--key-file", key_file, write("plain.log", log(2)) })
    assert.are.equal(1, rc)
    assert.matches("plain.log: line 1 breaks the chain", out, 1, true)
    rc = ctvnc({ "audit", "verify" })
    assert.are.equal(2, rc)
    rc = ctvnc({ "--format", "json", "audit", "verify", key_file })
    assert.are.equal(2, rc)
  end)
end)
