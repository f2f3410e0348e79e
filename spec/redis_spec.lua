local helpers = require "helpers"
local cjson = require "cjson"
local common = require "gateway.common"

-- ctvnc.redis inside a real nginx (Debian's ngx_lua, one worker) against
-- the suite's redis-server (spec/support/redis.sh: REDIS_* from
-- spec/support/test.sh) and a misbehaving fake one (spec/support/fake_redis.lua).
-- Each case is a chunk run by content_by_lua; it returns a table, sent back
-- as JSON (a nil shows as "<nil>", ngx.null as cjson.null).
describe("ctvnc.redis in nginx #novalgrind", function()
  local lab, port, E
  local null = cjson.null

  -- code runs after: local redis, E, R (R(...) packs results, nil as "<nil>")
  local function run(code)
    local f = ("%s/case%s.lua"):format(lab.dir, helpers.random_hex(4))
    helpers.write_file(f, [[
local redis = require "ctvnc.redis"
local E = ]] .. E .. [[

local function R(...)
  local t = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v == nil then v = "<nil>" end
    t[i] = v
  end
  return t
end
]] .. code)
    local status, body = lab:http(port, "GET", "/run?f=" .. f)
    assert.are.equal(200, status, body)
    return cjson.decode(body)
  end

  setup(function()
    assert(os.getenv("REDIS_PORT"), "no REDIS_PORT: run spec/support/test.sh, or "
      .. "`bash spec/support/redis.sh start DIR` and source DIR/env")
    lab = common.lab()
    lab:secret(os.getenv("REDIS_PASSWORD"))
    local fake = helpers.free_port("127.0.0.1")
    lab:spawn("fake", ("lua5.4 %s/spec/support/fake_redis.lua %d"):format(helpers.ROOT, fake))
    helpers.wait_port("127.0.0.1", fake)
    E = ("{ port = %s, tls = %s, fake = %d, socket = %q }"):format(os.getenv("REDIS_PORT"),
      os.getenv("REDIS_TLS_PORT"), fake, os.getenv("REDIS_SOCKET"))
    port = helpers.free_port("127.0.0.1")
    local d = lab.dir
    helpers.write_file(d .. "/nginx.conf", ([[
worker_processes 1; daemon on; pid %s/nginx.pid; error_log %s/error.log info;
env CTVNC_REDIS_PASSWORD;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events {}
http {
  access_log %s/access.log; client_body_temp_path %s/tmp; proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp; uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";
  lua_package_cpath "%s/build/jit/?.so;;";
  lua_ssl_trusted_certificate %s;
  server {
    listen 127.0.0.1:%d;
    location /run {
      content_by_lua_block {
        local cjson = require "cjson"
        cjson.encode_sparse_array(true)
        local ok, res = pcall(assert(loadfile(ngx.var.arg_f)))
        ngx.say(cjson.encode(ok and res or { lua_error = tostring(res) }))
      }
    }
  }
}]]):format(d, d, d, d, d, d, d, d, helpers.ROOT, helpers.ROOT, helpers.ROOT,
      os.getenv("REDIS_CA"), port))
    local out, ok = helpers.run(("mkdir -p %s/tmp && CTVNC_REDIS_PASSWORD='%s' nginx -p %s/ -c %s/nginx.conf")
      :format(d, os.getenv("REDIS_PASSWORD"), d, d))
    assert(ok, lab.show(out))
    helpers.wait_port("127.0.0.1", port)
  end)

  teardown(function()
    if lab then
      helpers.run(("kill -QUIT $(cat %s/nginx.pid)"):format(lab.dir))
      lab:stop()
    end
  end)

  it("runs commands and reads strings, integers, nils, arrays and errors", function()
    local r = run([[
      local red = assert(redis.new())
      assert(red:connect_url("redis://127.0.0.1:" .. E.port))   -- password from the environment
      red:del("s", "n", "l")
      local bin = "a\0b\r\nc"
      local got = {
        R(red:ping()), R(red:set("s", bin)), R(red:get("s") == bin), R(red:get("missing")),
        R(red:incr("n")), R(red:incrby("n", 41)), R(red:rpush("l", "x", "y")),
        R(red:lrange("l", 0, -1)), R(#red:lrange("missing", 0, -1)), R(red:incr("l")),
        R(red:eval("return {1, {2, 'x'}, redis.error_reply('E1 boom'), false, {}}", 0)),
        R(red:blpop("missing", 0.01)), R(red:set("f", 1e15)), R(red:get("f")),
        R(red:set("g", 0.5)), R(red:get("g")), R(pcall(red.set, red, "k", {})),
      }
      red:close()
      return got
    ]])
    assert.are.same({ "PONG" }, r[1])
    assert.are.same({ "OK" }, r[2])
    assert.are.same({ true }, r[3])
    assert.are.same({ null }, r[4])
    assert.are.same({ 1 }, r[5])
    assert.are.same({ 42 }, r[6])
    assert.are.same({ 2 }, r[7])
    assert.are.same({ { "x", "y" } }, r[8])
    assert.are.same({ 0 }, r[9])
    assert.are.same(false, r[10][1])
    assert.truthy(r[10][2]:find("^WRONGTYPE"))
    local e = r[11][1]
    assert.are.same({ 1, { 2, "x" }, { false, "E1 boom" }, null }, { e[1], e[2], e[3], e[4] })
    assert.are.same({ null }, r[12])
    assert.are.same({ "1000000000000000" }, r[14])
    assert.are.same({ "0.5" }, r[16])
    assert.are.same(false, r[17][1])
    assert.truthy(r[17][2]:find("string or number expected", 1, true))
  end)

  it("reads RESP3 maps, sets, booleans, doubles, big numbers, verbatim strings and nulls", function()
    local r = run([[
      local red = assert(redis.new())
      assert(red:connect_url("redis://127.0.0.1:" .. E.port))
      red:del("h", "set")
      red:hset("h", "a", "1")
      red:sadd("set", "m")
      local hello = red:hello(3)
      local got = {
        R(type(hello)), R(red:hgetall("h")), R(red:smembers("set")), R(red:get("missing")),
        R(red:eval("redis.setresp(3); return true", 0)),
        R(red:eval("redis.setresp(3); return false", 0)),
        R(red:eval("redis.setresp(3); return {double = 3.5}", 0)),
        R(red:eval("redis.setresp(3); return {big_number = '123456789012345678901234567890'}", 0)),
        R(red:client("info"):match("^id=%d+")),
      }
      red:close()
      return got
    ]])
    assert.are.same({ "table" }, r[1])
    assert.are.same({ { "a", "1" } }, r[2])
    assert.are.same({ { "m" } }, r[3])
    assert.are.same({ null }, r[4])
    assert.are.same({ true }, r[5])
    assert.are.same({ false }, r[6])
    assert.are.same({ 3.5 }, r[7])
    assert.are.same({ "123456789012345678901234567890" }, r[8])
    assert.truthy(r[9][1]:find("^id=%d+$"))
  end)

  it("pipelines commands, an error reply in place", function()
    local r = run([[
      local red = assert(redis.new())
      assert(red:connect_url("redis://127.0.0.1:" .. E.port))
      red:del("p")
      red:init_pipeline()
      local queued = { red:set("p", "v"), red:get("p"), red:hincrby("p", "x", 1), red:get("missing") }
      local res = red:commit_pipeline()
      red:init_pipeline()
      red:get("p")
      red:cancel_pipeline()
      return { queued = queued, res = res, after = R(red:get("p")), again = R(red:commit_pipeline()) }
    ]])
    assert.are.same({ true, true, true, true }, r.queued)
    assert.are.same({ "OK", "v" }, { r.res[1], r.res[2] })
    assert.are.equal(false, r.res[3][1])
    assert.truthy(r.res[3][2]:find("^WRONGTYPE"))
    assert.are.equal(null, r.res[4])
    assert.are.same("v", r.after[1])
    assert.are.same({ "<nil>", "invalid" }, { r.again[1], r.again[3] })
  end)

  it("runs scripts by SHA and loads them again after SCRIPT FLUSH", function()
    local r = run([[
      local red = assert(redis.new())
      assert(red:connect_url("redis://127.0.0.1:" .. E.port))
      local src = "return {KEYS[1], ARGV[1], ARGV[2]}"
      local sha = redis.script_sha(src)
      red:script("flush")
      local before = R(red:evalsha(sha, 0))
      local first = R(red:eval_cached(sha, src, { "k" }, { "a", 2 }))
      local exists = red:script("exists", sha)
      local second = R(red:eval_cached(nil, src, { "k2" }, { "b", "c" }))
      red:script("flush")
      local third = R(red:eval_cached(sha, src, { "k3" }, {}))
      return { sha = sha, before = before, first = first, exists = exists, second = second,
        third = third, failing = R(red:eval_cached(nil, "return redis.error_reply('E1 no')")) }
    ]])
    local sha1 = helpers.run("printf %s 'return {KEYS[1], ARGV[1], ARGV[2]}' | sha1sum")
    assert.are.equal(sha1:match("^%x+"), r.sha)
    assert.are.equal(false, r.before[1])
    assert.truthy(r.before[2]:find("^NOSCRIPT"))
    assert.are.same({ "k", "a", "2" }, r.first[1])
    assert.are.same({ 1 }, r.exists)
    assert.are.same({ "k2", "b", "c" }, r.second[1])
    assert.are.same({ "k3" }, r.third[1])
    assert.are.same({ false, "E1 no" }, r.failing)
  end)


  it("refuses a wrong password with a message that does not hold it", function()
    local r = run([[
      local red = assert(redis.new())
      local wrong = "wrong-" .. E.fake .. "-pw"
      local c = assert(redis.parse_url("redis://:pw-in-url@127.0.0.1:" .. E.port, wrong))
      local ok, err, kind = red:connect_url(c)
      local red2 = assert(redis.new())
      assert(red2:connect("127.0.0.1", E.port))
      local noauth = R(red2:get("k"))
      local auth = R(red2:auth(wrong))
      local err3 = select(2, red2:get("k"))
      return { wrong = wrong, r = R(ok, err, kind), s = tostring(c) .. " " .. tostring(red),
        noauth = noauth, auth = auth, closed = err3 }
    ]])
    assert.are.same({ "<nil>", "auth" }, { r.r[1], r.r[3] })
    assert.truthy(r.r[2]:find("AUTH refused", 1, true))
    for _, s in ipairs({ r.r[2], r.s, r.auth[2], r.noauth[2] }) do
      assert.is_nil(s:find(r.wrong, 1, true), s)
      assert.is_nil(s:find("pw-in-url", 1, true), s)
      assert.is_nil(s:find(os.getenv("REDIS_PASSWORD"), 1, true), s)
    end
    assert.truthy(r.s:find("redis://:***@127.0.0.1:", 1, true))
    assert.are.equal(false, r.noauth[1])
    assert.truthy(r.noauth[2]:find("^NOAUTH"))
    assert.are.equal(false, r.auth[1])
    assert.truthy(r.auth[2]:find("^WRONGPASS"))
  end)

  it("selects the URL's database, each database its own pool", function()
    local r = run([[
      local function open(db)
        local red = assert(redis.new())
        local ok, err, kind = red:connect_url("redis://127.0.0.1:" .. E.port .. "/" .. db)
        return red, ok, err, kind
      end
      local a = open(3)
      a:set("where", "db3")
      local reused3 = a:get_reused_times()
      a:set_keepalive(10000, 4)
      local b = open(0)
      local in0 = b:get("where")
      b:set_keepalive(10000, 4)
      local c = open(3)
      local in3, reused = c:get("where"), c:get_reused_times()
      c:set_keepalive(10000, 4)
      local d = open(0)
      local reused0 = d:get_reused_times()
      d:close()
      return { in0 = in0, in3 = in3, reused3 = reused3, reused = reused, reused0 = reused0,
        bad = R(select(2, open(999))) }
    ]])
    assert.are.equal(null, r.in0)
    assert.are.equal("db3", r.in3)
    assert.are.same({ 0, 1, 1 }, { r.reused3, r.reused, r.reused0 })
    assert.are.same({ "<nil>", "invalid" }, { r.bad[1], r.bad[3] })
    assert.truthy(r.bad[2]:find("SELECT 999 refused", 1, true))
  end)

  it("publishes and subscribes; a read timeout leaves the subscription open", function()
    local r = run([[
      local url = "redis://127.0.0.1:" .. E.port
      local sub, pub = assert(redis.new()), assert(redis.new())
      assert(sub:connect_url(url))
      assert(pub:connect_url(url))
      local got = {}
      got.sub = sub:subscribe("ch1")
      got.psub = sub:psubscribe("p.*")
      got.keep = R(sub:set_keepalive())
      assert(sub:connect_url(url))
      got.sub2 = sub:subscribe("ch1", "ch2")
      got.n = pub:publish("ch1", "hello")
      got.msg = sub:read_reply()
      sub:set_timeouts(1000, 1000, 50)
      got.idle = R(sub:read_reply())
      pub:publish("ch2", "again")
      got.msg2 = sub:read_reply()
      got.unsub = sub:unsubscribe()
      got.after = R(sub:read_reply())
      got.ping = sub:ping()
      return got
    ]])
    assert.are.same({ "subscribe", "ch1", 1 }, r.sub)
    assert.are.same({ "psubscribe", "p.*", 2 }, r.psub)
    assert.are.same({ "<nil>", "invalid" }, { r.keep[1], r.keep[3] })
    assert.are.same({ { "subscribe", "ch1", 1 }, { "subscribe", "ch2", 2 } }, r.sub2)
    assert.are.equal(1, r.n)
    assert.are.same({ "message", "ch1", "hello" }, r.msg)
    assert.are.same({ "<nil>", "timeout" }, { r.idle[1], r.idle[3] })
    assert.are.same({ "message", "ch2", "again" }, r.msg2)
    assert.are.equal(2, #r.unsub, cjson.encode(r.unsub))
    assert.are.same({ 1, 0 }, { r.unsub[1][3], r.unsub[2][3] })
    assert.are.same({ "<nil>", "invalid" }, { r.after[1], r.after[3] })
    assert.are.equal("PONG", r.ping)
  end)

  it("times out a read and closes the connection", function()
    local r = run([[
      local red = assert(redis.new())
      assert(red:connect_url("redis://127.0.0.1:" .. E.port))
      red:set_timeouts(1000, 1000, 100)
      return { R(red:blpop("never", 2)), R(red:ping()) }
    ]])
    assert.are.same({ "<nil>", "timeout" }, { r[1][1], r[1][3] })
    assert.truthy(r[1][2]:find("read: timeout", 1, true))
    assert.are.same({ "<nil>", "invalid" }, { r[2][1], r[2][3] })
  end)

  it("refuses malformed replies", function()
    local r = run([[
      local out = {}
      for _, case in ipairs({ "ok", "badlen", "nocrlf", "bareline", "deep", "huge", "negative",
                              "unknown", "overflow", "zeros", "hangup", "stall" }) do
        local red = assert(redis.new())
        red:set_timeouts(1000, 1000, 300)
        assert(red:connect("127.0.0.1", E.fake))
        out[case] = R(red:get(case))
        out[case][4] = R(red:ping())[3]      -- closed after a failure
        red:close()
      end
      return out
    ]])
    assert.are.same({ "OK" }, { r.ok[1] })
    for case, msg in pairs({ badlen = "bad number", nocrlf = "bad line end", bareline = "bad line end",
        deep = "deeper than max_depth", huge = "longer than max_bulk", negative = "bad number",
        unknown = "unknown reply type", overflow = "bad number", zeros = "bad number" }) do
      assert.are.same({ "<nil>", "protocol", "invalid" }, { r[case][1], r[case][3], r[case][4] }, case)
      assert.truthy(r[case][2]:find(msg, 1, true), case .. ": " .. r[case][2])
    end
    assert.are.same({ "<nil>", "timeout", "invalid" }, { r.stall[1], r.stall[3], r.stall[4] })
    assert.are.same({ "<nil>", "connect", "invalid" }, { r.hangup[1], r.hangup[3], r.hangup[4] })
  end)

  it("speaks TLS, the certificate and its name verified, and pools it", function()
    local r = run([[
      local url = "rediss://127.0.0.1:" .. E.tls
      local red = assert(redis.new())
      local ok = R(red:connect_url(url, { server_name = "localhost" }))
      local ping = red:ping()
      red:set_keepalive(10000, 4)
      assert(red:connect_url(url, { server_name = "localhost" }))
      local reused = red:get_reused_times()
      local ping2 = red:ping()
      red:close()
      local other = R(red:connect_url(url, { server_name = "other.example" }))
      local ipname = R(red:connect_url(url))
      local plain = R(red:connect_url("rediss://127.0.0.1:" .. E.port, { server_name = "localhost" }))
      local skip = R(red:connect("127.0.0.1", E.tls, { ssl = true, ssl_verify = false }))
      local insecure = R(red:connect_url(url, { server_name = "other.example", insecure = true }))
      local ping3 = red:ping()
      red:close()
      return { ok = ok, ping = ping, reused = reused, ping2 = ping2, other = other,
        ipname = ipname, plain = plain, skip = skip, insecure = insecure, ping3 = ping3 }
    ]])
    assert.are.same(true, r.ok and r.ok[1], require("cjson").encode(r))
    assert.are.same({ "PONG", 1, "PONG" }, { r.ping, r.reused, r.ping2 })
    assert.are.same({ "<nil>", "tls" }, { r.other[1], r.other[3] })
    assert.are.same({ "<nil>", "tls" }, { r.ipname[1], r.ipname[3] })
    assert.are.same("<nil>", r.plain[1])
    assert.are.same({ "<nil>", "invalid" }, { r.skip[1], r.skip[3] })
    assert.are.same({ true, "PONG" }, { r.insecure[1], r.ping3 })
  end)

  it("connects over a unix socket", function()
    local r = run([[
      local red = assert(redis.new())
      local ok = R(red:connect("unix:" .. E.socket, { password = os.getenv("CTVNC_REDIS_PASSWORD") }))
      local s = tostring(red)
      local ping = red:ping()
      red:close()
      return { ok = ok, ping = ping, s = s }
    ]])
    assert.are.same({ true, "PONG" }, { r.ok[1], r.ping })
    assert.are.equal("ctvnc.redis: unix:" .. os.getenv("REDIS_SOCKET"), r.s)
  end)

  it("leaves the password out of nginx's logs", function()
    local log = helpers.read_file(lab.dir .. "/error.log") or ""
    assert.is_true(#log > 0)
    assert.is_nil(log:find(os.getenv("REDIS_PASSWORD"), 1, true))
    assert.is_nil(log:find("pw-in-url", 1, true))
  end)
end)
