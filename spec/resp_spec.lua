local core = require "ctvnc.core"
local redis = require "ctvnc.redis"

-- The light userdata NULL that stands for a Redis nil (== ngx.null).
local NULL = (function()
  local r = core.resp_reader()
  r:feed("$-1\r\n")
  return r:read()
end)()

--- Every reply of `bytes`, read whole and then fed one byte at a time.
local function read_all(bytes, opts)
  local out = {}
  for _, step in ipairs({ #bytes, 1 }) do
    local r = assert(core.resp_reader(opts))
    local got, refused = {}, false
    for i = 1, #bytes, step do
      if refused then break end
      assert(r:feed(bytes:sub(i, i + step - 1)))
      while true do
        local v, a, kind = r:read()
        if v == nil then
          refused = kind ~= "more"
          if refused then got[#got + 1] = { "refused", a, kind } end
          break
        end
        got[#got + 1] = { v, a }
      end
    end
    if not refused then got.left = r:buffered() end
    r:close()
    out[#out + 1] = got
  end
  assert.are.same(out[1], out[2])
  return out[1]
end

describe("core.resp_reader", function()
  it("reads every RESP2 reply type", function()
    local got = read_all("+OK\r\n-ERR wrong\r\n:0\r\n:-9223372036854775807\r\n$5\r\nhe\0lo\r\n"
      .. "$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n-E inner\r\n$-1\r\n")
    assert.are.same({
      { "OK" }, { false, "ERR wrong" }, { 0 }, { -9223372036854775807 }, { "he\0lo" }, { "" },
      { NULL }, { NULL }, { {} }, { { 1, { "a", { false, "E inner" } }, NULL } }, left = 0,
    }, got)
  end)

  it("reads the RESP3 types: null, boolean, double, big number, blob error, verbatim, map, set, push", function()
    local got = read_all("_\r\n#t\r\n#f\r\n,1.5\r\n,-2e3\r\n,inf\r\n(123456789012345678901234567890\r\n"
      .. "!8\r\nE1 b\r\nob\r\n=9\r\ntxt:hello\r\n%2\r\n+k\r\n:1\r\n$1\r\nj\r\n_\r\n~1\r\n+m\r\n"
      .. ">2\r\n+message\r\n#t\r\n")
    assert.are.same({ { NULL }, { true }, { false }, { 1.5 }, { -2000 }, { math.huge },
      { "123456789012345678901234567890" }, { false, "E1 b\r\nob" }, { "hello" },
      { { "k", 1, "j", NULL } }, { { "m" } }, { { "message", true } }, left = 0 }, got)
    local r = core.resp_reader()
    r:feed(",nan\r\n")
    local nan = r:read()
    assert.is_true(nan ~= nan)
  end)

  it("waits for the rest of a reply, and keeps what follows it", function()
    local r = core.resp_reader()
    r:feed("*2\r\n$3\r\nab")
    assert.are.same({ nil, "redis reply: incomplete", "more" }, { r:read() })
    r:feed("c\r\n:7\r\n+next")
    assert.are.same({ "abc", 7 }, r:read())
    assert.are.equal(5, r:buffered())
    assert.are.same({ nil, "redis reply: incomplete", "more" }, { r:read() })
    r:feed("\r\n")
    assert.are.equal("next", r:read())
    assert.are.equal(0, r:buffered())
  end)

  it("refuses malformed replies, and stays refused", function()
    local cases = {
      { "?x\r\n", "unknown reply type" }, { "|1\r\n+a\r\n+b\r\n+c\r\n", "unknown reply type" },
      { "$?\r\n", "bad number" }, { "$abc\r\n", "bad number" }, { "$-2\r\n", "bad number" },
      { "$03\r\nabc\r\n", "bad number" }, { "*+1\r\n:1\r\n", "bad number" }, { ":-0\r\n", "bad number" },
      { ":9223372036854775808\r\n", "bad number" }, { ":-9223372036854775809\r\n", "bad number" },
      { ":1 \r\n", "bad number" }, { "%-1\r\n", "bad number" }, { "!-1\r\n", "bad number" },
      { "$3\r\nabcd\r\n", "bad line end" }, { "$3\r\nab\r\n\r\n", "bad line end" },
      { "+OK\n", "bad line end" }, { "+O\rK\r\n", "bad line end" }, { ":1\r\r\n", "bad line end" },
      { "#x\r\n", "bad value" }, { "_x\r\n", "bad value" }, { ("#"):rep(30) .. "\r\n", "bad value" },
      { ":" .. ("1"):rep(30), "bad number" }, { ",1.\r\n", "bad value" },
      { ",1e\r\n", "bad value" }, { ",0x10\r\n", "bad value" }, { "(1.5\r\n", "bad value" },
      { "=3\r\ntxt\r\n", "bad value" }, { "=5\r\ntxt-x\r\n", "bad value" },
      { "*1\r\n*1\r\n*1\r\n:1\r\n", "deeper than max_depth", { max_depth = 2 } },
      { "$5\r\nabcde\r\n", "longer than max_bulk", { max_bulk = 4 } },
      { "+abcde\r\n", "longer than max_bulk", { max_bulk = 4 } },
      { "*3\r\n:1\r\n:2\r\n:3\r\n", "more values in reply than max_elements", { max_elements = 3 } },
      { "%2\r\n", "more values in reply than max_elements", { max_elements = 4 } },
      { ("*1\r\n"):rep(100) .. ":1\r\n", "deeper than max_depth" },
    }
    for _, c in ipairs(cases) do
      local got = read_all(c[1], c[3])
      assert.are.equal(1, #got, c[1])
      assert.are.same({ "refused", "protocol" }, { got[1][1], got[1][3] }, c[1])
      assert.are.equal(1, select(2, got[1][2]:find("^redis reply: [^\r\n]*" .. c[2])) and 1, got[1][2])
    end
    local r = core.resp_reader()
    r:feed("+a\r\n?\r\n+b\r\n")
    assert.are.equal("a", r:read())
    assert.are.equal("protocol", select(3, r:read()))
    assert.are.equal("protocol", select(3, r:feed("+c\r\n")))
    assert.are.equal("protocol", select(3, r:read()))
  end)

  it("holds at most max_size bytes", function()
    local r = core.resp_reader({ max_size = 16 })
    assert.is_true(r:feed(("x"):rep(10)))
    local ok, msg, kind = r:feed(("x"):rep(7))
    assert.are.same({ nil, "redis reply: more than max_size (16) bytes", "protocol" }, { ok, msg, kind })
    assert.are.equal("protocol", select(3, r:read()))
    r = core.resp_reader({ max_size = 16 })
    for _ = 1, 100 do   -- whole replies read make room again
      assert.is_true(r:feed("$6\r\nabcdef\r\n"))
      assert.are.equal("abcdef", r:read())
    end
  end)

  it("reads a large reply fed in pieces", function()
    local items, n = {}, 20000
    for i = 1, n do items[i] = ("$%d\r\n%s\r\n"):format(#tostring(i), i) end
    local bytes = ("*%d\r\n"):format(n) .. table.concat(items)
    local r = core.resp_reader()
    local v
    for i = 1, #bytes, 4096 do
      r:feed(bytes:sub(i, i + 4095))
      v = r:read()
    end
    assert.are.equal(n, #v)
    assert.are.equal("20000", v[n])
  end)

  it("checks its options and closes once", function()
    for _, o in ipairs({ { max_depth = 0 }, { max_depth = 65 }, { max_bulk = -1 }, { max_elements = 0 },
        { max_size = 1.5 }, { max_size = "1" }, { maxdepth = 3 } }) do
      local r, msg, kind = core.resp_reader(o)
      assert.is_nil(r)
      assert.are.equal("invalid", kind, msg)
    end
    assert.has_error(function() core.resp_reader(5) end)
    local r = core.resp_reader()
    assert.truthy(tostring(r):find("^ctvnc%.RespReader: "))
    r:close()
    r:close()
    assert.are.same({ nil, "redis reply: reader closed", "protocol" }, { r:feed("+a\r\n") })
  end)
end)

describe("ctvnc.redis.parse_url", function()
  local function parse(url, pw)
    local c, msg, kind = redis.parse_url(url, pw)
    if not c then return { msg, kind } end
    return { host = c.host, port = c.port, db = c.db, ssl = c.ssl, server_name = c.server_name,
      username = c.username, password = c.password, text = tostring(c) }
  end

  it("reads host, port, database, TLS and the user info", function()
    assert.are.same({ host = "127.0.0.1", port = 6379, db = 0, ssl = false, server_name = "127.0.0.1",
      text = "redis://127.0.0.1:6379/0" }, parse("redis://127.0.0.1"))
    assert.are.same({ host = "redis.example", port = 6380, db = 5, ssl = true,
      server_name = "redis.example", password = "p@ss:/w", text = "rediss://:***@redis.example:6380/5" },
      parse("rediss://:p%40ss%3a%2Fw@redis.example:6380/5"))
    assert.are.same({ host = "[::1]", port = 6379, db = 0, ssl = false, server_name = "::1",
      username = "app", password = "pw", text = "redis://app:***@[::1]:6379/0" },
      parse("redis://app:pw@[::1]/"))
  end)

  it("takes the password given, else CTVNC_REDIS_PASSWORD, else the URL's", function()
    assert.are.equal("given", parse("redis://:inurl@h", "given").password)
    local env = os.getenv("CTVNC_REDIS_PASSWORD")
    if env and env ~= "" then
      assert.are.equal(env, parse("redis://:inurl@h").password)
    else
      assert.are.equal("inurl", parse("redis://:inurl@h").password)
    end
  end)

  it("refuses what is not a Redis URL, never quoting it", function()
    local bad = { "http://h", "redis:/h", "redis://", "redis://:s3cret@", "redis://h:0",
      "redis://h:65536", "redis://h:01", "redis://h:x", "redis://h/x", "redis://h/0/1",
      "redis://h/0?timeout=1", "redis://h#f", "redis://::1", "redis://[h]", "redis://a b",
      "redis://s3cret@h", "redis://:s3cr%zzt@h", "redis://:s3cret%@h", "redis://h/1234567890" }
    for _, url in ipairs(bad) do
      local r = parse(url)
      assert.are.equal("invalid", r[2], url)
      assert.is_nil(r[1]:find("s3cr", 1, true), r[1])
      assert.truthy(r[1]:find("^STORE: "), r[1])
    end
    assert.has_error(function() redis.parse_url(nil) end)
  end)
end)
