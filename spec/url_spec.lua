-- Specs for the URL primitives of ctvnc (API.md, "Module" and "URL primitives").
--
-- Every expected URL below is written by hand from the contract. Addresses are
-- the vendor example ones (192.168.5.x), the contract's own endpoint forms,
-- loopback or names under example.com; nothing here connects anywhere.
--
-- Runs under Lua 5.4 and LuaJIT 2.1 (Lua 5.1 semantics).

local ctvnc = require "ctvnc"

-- The vendor document's worked example.
local RAW_TOKEN = "1a2bc3d4567e89f0a1b2c3d4e5f6a7b8"
local TOKEN = "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo="
local VM_UUID = "00000000-0000-0000-0000-000000000000"

local function example_info()
  return {
    raw_token = RAW_TOKEN,
    token = TOKEN,
    vm_uuid = VM_UUID,
    cluster_ip = "192.168.5.2",
    host_ip = "192.168.5.4",
  }
end

-- Path and query of the worked example, as the contract spells them.
local DIRECT_QUERY = "/websockify/?uuid=00000000-0000-0000-0000-000000000000"
  .. "&token=1a2bc3d4567e89f0a1b2c3d4e5f6a7b8&host=192.168.5.4"
local PROXY_QUERY = "/websockify/?token=MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D"
  .. "&uuid=00000000-0000-0000-0000-000000000000&host=192.168.5.4"

-- A field set to NONE is removed from the example info.
local NONE = {}

local function info_with(changes)
  local info = example_info()
  for k, v in pairs(changes or {}) do
    if v == NONE then
      info[k] = nil
    else
      info[k] = v
    end
  end
  return info
end

local function contains(haystack, needle)
  return haystack:find(needle, 1, true) ~= nil
end

-- Checks a refusal: nil, a one-line string message, "invalid", and no secret
-- of `info` (nor any string in `secrets`) in the message.
local function assert_invalid(info, secrets, url, msg, kind)
  assert.is_nil(url)
  assert.are.equal("string", type(msg))
  assert.are.equal("invalid", kind)
  assert.is_false(contains(msg, "\n"), "message is not one line: " .. msg)
  local all = { info.raw_token, info.token }
  for _, s in ipairs(secrets or {}) do
    all[#all + 1] = s
  end
  for _, secret in ipairs(all) do
    if type(secret) == "string" and #secret >= 6 then
      assert.is_false(contains(msg, secret), "message leaks a secret: " .. msg)
    end
  end
end

local function assert_raises(needle, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error naming " .. needle)
  assert.is_truthy(contains(tostring(err), needle),
    "error does not name " .. needle .. ": " .. tostring(err))
end

local L63 = string.rep("a", 63)
local NAME253 = L63 .. "." .. L63 .. "." .. L63 .. "." .. string.rep("d", 61)
local NAME254 = L63 .. "." .. L63 .. "." .. L63 .. "." .. string.rep("d", 62)

describe("ctvnc", function()
  it("has version ctvnc 0.1.0", function()
    assert.are.equal("ctvnc 0.1.0", ctvnc._VERSION)
  end)

  it("exports the URL primitives as functions", function()
    assert.are.equal("function", type(ctvnc.encode_uri_component))
    assert.are.equal("function", type(ctvnc.direct_url))
    assert.are.equal("function", type(ctvnc.proxy_url))
  end)
end)

describe("the vendor worked example", function()
  it("gives the direct URL byte for byte", function()
    local info = {
      raw_token = "1a2bc3d4567e89f0a1b2c3d4e5f6a7b8",
      token = "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
      vm_uuid = "00000000-0000-0000-0000-000000000000",
      cluster_ip = "192.168.5.2", host_ip = "192.168.5.4",
    }
    assert.are.equal("wss://192.168.5.2/websockify/?uuid=00000000-0000-0000-0000-000000000000"
      .. "&token=1a2bc3d4567e89f0a1b2c3d4e5f6a7b8&host=192.168.5.4", ctvnc.direct_url(info))
  end)

  it("gives the proxy URL byte for byte", function()
    local info = {
      raw_token = "1a2bc3d4567e89f0a1b2c3d4e5f6a7b8",
      token = "MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
      vm_uuid = "00000000-0000-0000-0000-000000000000",
      cluster_ip = "192.168.5.2", host_ip = "192.168.5.4",
    }
    assert.are.equal("wss://192.168.5.1/websockify/?token=MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D"
      .. "&uuid=00000000-0000-0000-0000-000000000000&host=192.168.5.4", ctvnc.proxy_url("192.168.5.1", info))
  end)
end)

describe("ctvnc.direct_url", function()
  -- { name, info changes, opts, expected URL }
  local vectors = {
    { "defaults to wss", {}, nil, "wss://192.168.5.2" .. DIRECT_QUERY },
    { "accepts an empty options table", {}, {}, "wss://192.168.5.2" .. DIRECT_QUERY },
    { "uses wss when asked", {}, { scheme = "wss" }, "wss://192.168.5.2" .. DIRECT_QUERY },
    { "uses ws when asked", {}, { scheme = "ws" }, "ws://192.168.5.2" .. DIRECT_QUERY },
    { "adds port 1", {}, { port = 1 }, "wss://192.168.5.2:1" .. DIRECT_QUERY },
    { "adds port 443", {}, { port = 443 }, "wss://192.168.5.2:443" .. DIRECT_QUERY },
    { "adds port 65535", {}, { port = 65535 }, "wss://192.168.5.2:65535" .. DIRECT_QUERY },
    { "adds a port to ws", {}, { scheme = "ws", port = 8080 }, "ws://192.168.5.2:8080" .. DIRECT_QUERY },
    { "accepts a loopback IPv4 cluster", { cluster_ip = "127.0.0.1" }, nil, "wss://127.0.0.1" .. DIRECT_QUERY },
    { "accepts 0.0.0.0", { cluster_ip = "0.0.0.0" }, nil, "wss://0.0.0.0" .. DIRECT_QUERY },
    { "accepts 255.255.255.255", { cluster_ip = "255.255.255.255" }, nil,
      "wss://255.255.255.255" .. DIRECT_QUERY },
    { "brackets an IPv6 cluster address", { cluster_ip = "fd00::1" }, nil, "wss://[fd00::1]" .. DIRECT_QUERY },
    { "keeps an already bracketed IPv6 cluster address", { cluster_ip = "[fd00::1]" }, nil,
      "wss://[fd00::1]" .. DIRECT_QUERY },
    { "brackets the IPv6 loopback", { cluster_ip = "::1" }, nil, "wss://[::1]" .. DIRECT_QUERY },
    { "brackets the IPv6 unspecified address", { cluster_ip = "::" }, nil, "wss://[::]" .. DIRECT_QUERY },
    { "brackets an IPv4-mapped IPv6 address", { cluster_ip = "::ffff:127.0.0.1" }, nil,
      "wss://[::ffff:127.0.0.1]" .. DIRECT_QUERY },
    { "brackets a full eight-group IPv6 address", { cluster_ip = "1:2:3:4:5:6:7:8" }, nil,
      "wss://[1:2:3:4:5:6:7:8]" .. DIRECT_QUERY },
    { "brackets an IPv6 address ending in a double colon", { cluster_ip = "1::" }, nil,
      "wss://[1::]" .. DIRECT_QUERY },
    { "brackets an IPv6 address with seven groups after a double colon", { cluster_ip = "::1:2:3:4:5:6:7" }, nil,
      "wss://[::1:2:3:4:5:6:7]" .. DIRECT_QUERY },
    { "brackets an IPv6 address with six groups and an IPv4 tail", { cluster_ip = "1:2:3:4:5:6:1.2.3.4" }, nil,
      "wss://[1:2:3:4:5:6:1.2.3.4]" .. DIRECT_QUERY },
    { "puts the port after the IPv6 brackets", { cluster_ip = "::1" }, { port = 8443 },
      "wss://[::1]:8443" .. DIRECT_QUERY },
    { "puts the port after an already bracketed IPv6", { cluster_ip = "[fd00::1]" }, { scheme = "ws", port = 80 },
      "ws://[fd00::1]:80" .. DIRECT_QUERY },
    { "accepts a single-label host name", { cluster_ip = "localhost" }, nil, "wss://localhost" .. DIRECT_QUERY },
    { "accepts a dotted host name", { cluster_ip = "tower.example.com" }, nil,
      "wss://tower.example.com" .. DIRECT_QUERY },
    { "accepts hyphens and digits inside labels", { cluster_ip = "node-1.2nd.example.com" }, nil,
      "wss://node-1.2nd.example.com" .. DIRECT_QUERY },
    { "accepts an all-digit label that is not the last", { cluster_ip = "123.example.com" }, nil,
      "wss://123.example.com" .. DIRECT_QUERY },
    { "accepts a 63-character label", { cluster_ip = L63 .. ".example.com" }, nil,
      "wss://" .. L63 .. ".example.com" .. DIRECT_QUERY },
    { "accepts a 253-character name", { cluster_ip = NAME253 }, nil, "wss://" .. NAME253 .. DIRECT_QUERY },
    { "encodes an IPv6 host without brackets", { host_ip = "::1" }, nil,
      "wss://192.168.5.2/websockify/?uuid=00000000-0000-0000-0000-000000000000"
      .. "&token=1a2bc3d4567e89f0a1b2c3d4e5f6a7b8&host=%3A%3A1" },
    { "accepts a host name as host", { host_ip = "localhost" }, nil,
      "wss://192.168.5.2/websockify/?uuid=00000000-0000-0000-0000-000000000000"
      .. "&token=1a2bc3d4567e89f0a1b2c3d4e5f6a7b8&host=localhost" },
    { "percent-encodes the raw token", { raw_token = "a+b/c=d&e f" }, nil,
      "wss://192.168.5.2/websockify/?uuid=00000000-0000-0000-0000-000000000000"
      .. "&token=a%2Bb%2Fc%3Dd%26e%20f&host=192.168.5.4" },
    { "percent-encodes the VM uuid", { vm_uuid = "vm 1?x#y" }, nil,
      "wss://192.168.5.2/websockify/?uuid=vm%201%3Fx%23y"
      .. "&token=1a2bc3d4567e89f0a1b2c3d4e5f6a7b8&host=192.168.5.4" },
    { "percent-encodes UTF-8 in the raw token", { raw_token = "\195\169\0" }, nil,
      "wss://192.168.5.2/websockify/?uuid=00000000-0000-0000-0000-000000000000"
      .. "&token=%C3%A9%00&host=192.168.5.4" },
    { "does not need the base64 token", { token = NONE }, nil, "wss://192.168.5.2" .. DIRECT_QUERY },
  }

  for _, case in ipairs(vectors) do
    local name, changes, opts, expected = case[1], case[2], case[3], case[4]
    it(name, function()
      local url, msg, kind = ctvnc.direct_url(info_with(changes), opts)
      assert.are.equal(expected, url, tostring(msg) .. " " .. tostring(kind))
      assert.is_nil(msg)
      assert.is_nil(kind)
    end)
  end

  -- { name, info changes, opts, field the message must name (or nil) }
  local refusals = {
    { "refuses an empty cluster address", { cluster_ip = "" }, nil, "cluster_ip" },
    { "refuses a missing cluster address", { cluster_ip = NONE }, nil, "cluster_ip" },
    { "refuses a numeric cluster address", { cluster_ip = 19216852 }, nil, "cluster_ip" },
    { "refuses a table as cluster address", { cluster_ip = {} }, nil, "cluster_ip" },
    { "refuses a boolean cluster address", { cluster_ip = true }, nil, "cluster_ip" },
    { "refuses a leading space in the cluster address", { cluster_ip = " 192.168.5.2" }, nil, "cluster_ip" },
    { "refuses a trailing space in the cluster address", { cluster_ip = "192.168.5.2 " }, nil, "cluster_ip" },
    { "refuses an inner space in the cluster address", { cluster_ip = "tower example.com" }, nil, "cluster_ip" },
    { "refuses a slash in the cluster address", { cluster_ip = "192.168.5.2/x" }, nil, "cluster_ip" },
    { "refuses an at sign in the cluster address", { cluster_ip = "user@192.168.5.2" }, nil, "cluster_ip" },
    { "refuses a question mark in the cluster address", { cluster_ip = "192.168.5.2?x" }, nil, "cluster_ip" },
    { "refuses a hash in the cluster address", { cluster_ip = "192.168.5.2#f" }, nil, "cluster_ip" },
    { "refuses a port in an IPv4 cluster address", { cluster_ip = "192.168.5.2:443" }, nil, "cluster_ip" },
    { "refuses a port in a named cluster address", { cluster_ip = "localhost:443" }, nil, "cluster_ip" },
    { "refuses a URL as cluster address", { cluster_ip = "https://192.168.5.2" }, nil, "cluster_ip" },
    { "refuses an empty label", { cluster_ip = "a..b" }, nil, "cluster_ip" },
    { "refuses a leading dot", { cluster_ip = ".example.com" }, nil, "cluster_ip" },
    { "refuses a trailing dot", { cluster_ip = "localhost." }, nil, "cluster_ip" },
    { "refuses a label starting with a hyphen", { cluster_ip = "-a.example.com" }, nil, "cluster_ip" },
    { "refuses a label ending with a hyphen", { cluster_ip = "a-.example.com" }, nil, "cluster_ip" },
    { "refuses an underscore", { cluster_ip = "bad_host" }, nil, "cluster_ip" },
    { "refuses a 64-character label", { cluster_ip = L63 .. "a.example.com" }, nil, "cluster_ip" },
    { "refuses a 254-character name", { cluster_ip = NAME254 }, nil, "cluster_ip" },
    { "refuses three-part dotted digits", { cluster_ip = "1.2.3" }, nil, "cluster_ip" },
    { "refuses a name ending in a hex number browsers read as IPv4", { cluster_ip = "1.2.3.0x4" }, nil,
      "cluster_ip" },
    { "refuses a name ending in an upper-case hex number", { cluster_ip = "a.0X10" }, nil, "cluster_ip" },
    { "refuses five-part dotted digits", { cluster_ip = "1.2.3.4.5" }, nil, "cluster_ip" },
    { "refuses an IPv4 part above 255", { cluster_ip = "256.1.1.1" }, nil, "cluster_ip" },
    { "refuses an IPv4 part with a leading zero", { cluster_ip = "192.168.05.2" }, nil, "cluster_ip" },
    { "refuses an IPv6 zone id", { cluster_ip = "fe80::1%eth0" }, nil, "cluster_ip" },
    { "refuses an IPv6 address with two double colons", { cluster_ip = "1::2::3" }, nil, "cluster_ip" },
    { "refuses an IPv6 address with nine groups", { cluster_ip = "1:2:3:4:5:6:7:8:9" }, nil, "cluster_ip" },
    { "refuses eight groups with a double colon", { cluster_ip = "1:2:3:4::5:6:7:8" }, nil, "cluster_ip" },
    { "refuses a triple colon", { cluster_ip = "1:::2" }, nil, "cluster_ip" },
    { "refuses a trailing single colon", { cluster_ip = "1:2:3:4:5:6:7:8:" }, nil, "cluster_ip" },
    { "refuses an IPv6 prefix length", { cluster_ip = "fd00::1/64" }, nil, "cluster_ip" },
    { "refuses a bracketed IPv6 address with a port", { cluster_ip = "[::1]:443" }, nil, "cluster_ip" },
    { "refuses an IPv6 group of five digits", { cluster_ip = "12345::1" }, nil, "cluster_ip" },
    { "refuses a non-hex IPv6 group", { cluster_ip = "g::1" }, nil, "cluster_ip" },
    { "refuses a bad embedded IPv4", { cluster_ip = "::ffff:1.2.3.256" }, nil, "cluster_ip" },
    { "refuses a leading zero in an embedded IPv4", { cluster_ip = "::ffff:1.2.3.04" }, nil, "cluster_ip" },
    { "refuses an unclosed bracket", { cluster_ip = "[fd00::1" }, nil, "cluster_ip" },
    { "refuses a stray closing bracket", { cluster_ip = "fd00::1]" }, nil, "cluster_ip" },
    { "refuses a non-address in brackets", { cluster_ip = "[not-ip]" }, nil, "cluster_ip" },
    { "refuses a missing VM uuid", { vm_uuid = NONE }, nil, "vm_uuid" },
    { "refuses an empty VM uuid", { vm_uuid = "" }, nil, "vm_uuid" },
    { "refuses a numeric VM uuid", { vm_uuid = 42 }, nil, "vm_uuid" },
    { "refuses a table as VM uuid", { vm_uuid = {} }, nil, "vm_uuid" },
    { "refuses a missing raw token", { raw_token = NONE }, nil, "raw_token" },
    { "refuses an empty raw token", { raw_token = "" }, nil, "raw_token" },
    { "refuses a numeric raw token", { raw_token = 12345678 }, nil, "raw_token" },
    { "refuses a table as raw token", { raw_token = {} }, nil, "raw_token" },
    { "refuses the base64 token in place of the raw token", { raw_token = NONE, token = TOKEN }, nil, "raw_token" },
    { "refuses a missing host", { host_ip = NONE }, nil, "host_ip" },
    { "refuses an empty host", { host_ip = "" }, nil, "host_ip" },
    { "refuses a numeric host", { host_ip = 1921685 }, nil, "host_ip" },
    { "refuses a table as host", { host_ip = {} }, nil, "host_ip" },
    { "refuses an invalid host name as host", { host_ip = "bad_host" }, nil, "host_ip" },
    { "refuses a space in the host", { host_ip = "192.168.5.4 x" }, nil, "host_ip" },
    { "refuses three-part dotted digits as host", { host_ip = "1.2.3" }, nil, "host_ip" },
    { "refuses an IPv6 zone id as host", { host_ip = "fe80::1%eth0" }, nil, "host_ip" },
    { "refuses scheme http", {}, { scheme = "http" }, nil },
    { "refuses scheme https", {}, { scheme = "https" }, nil },
    { "refuses upper-case scheme WSS", {}, { scheme = "WSS" }, nil },
    { "refuses an empty scheme", {}, { scheme = "" }, nil },
    { "refuses a numeric scheme", {}, { scheme = 1 }, nil },
    { "refuses port 0", {}, { port = 0 }, nil },
    { "refuses port 65536", {}, { port = 65536 }, nil },
    { "refuses port -1", {}, { port = -1 }, nil },
    { "refuses a fractional port", {}, { port = 1.5 }, nil },
    { "refuses a string port", {}, { port = "443" }, nil },
    { "refuses a boolean port", {}, { port = true }, nil },
  }

  for _, case in ipairs(refusals) do
    local name, changes, opts, field = case[1], case[2], case[3], case[4]
    it(name, function()
      local info = info_with(changes)
      local url, msg, kind = ctvnc.direct_url(info, opts)
      assert_invalid(info, nil, url, msg, kind)
      if field then
        assert.is_true(contains(msg, field), "message does not name " .. field .. ": " .. msg)
      end
    end)
  end

  -- host_ip goes into the query as an address, never in brackets.
  it("refuses a bracketed host_ip", function()
    local info = info_with({ host_ip = "[fd00::1]" })
    local url, msg, kind = ctvnc.direct_url(info)
    assert_invalid(info, nil, url, msg, kind)
  end)

  it("keeps both tokens out of every refusal message", function()
    local info = info_with({ cluster_ip = "bad host", token = "Zm9vYmFyc2VjcmV0", raw_token = "deadbeefcafe0123" })
    local url, msg, kind = ctvnc.direct_url(info)
    assert_invalid(info, { "deadbeefcafe0123", "Zm9vYmFyc2VjcmV0" }, url, msg, kind)
  end)

  it("does not change the info table", function()
    local info = example_info()
    ctvnc.direct_url(info, { scheme = "ws", port = 80 })
    assert.are.same(example_info(), info)
  end)

  local misuse = {
    { "raises when info is missing", "#1", function() return ctvnc.direct_url() end },
    { "raises when info is nil", "#1", function() return ctvnc.direct_url(nil, {}) end },
    { "raises when info is a string", "#1", function() return ctvnc.direct_url("192.168.5.2") end },
    { "raises when info is a number", "#1", function() return ctvnc.direct_url(42) end },
    { "raises when info is a boolean", "#1", function() return ctvnc.direct_url(true) end },
    { "raises when opts is a string", "#2", function() return ctvnc.direct_url(example_info(), "wss") end },
    { "raises when opts is a number", "#2", function() return ctvnc.direct_url(example_info(), 443) end },
    { "raises when opts is a boolean", "#2", function() return ctvnc.direct_url(example_info(), true) end },
  }

  for _, case in ipairs(misuse) do
    local name, needle, fn = case[1], case[2], case[3]
    it(name .. " naming argument " .. needle, function()
      assert_raises(needle, fn)
    end)
  end
end)

describe("ctvnc.proxy_url", function()
  -- { name, endpoint, opts, expected URL }
  local vectors = {
    { "accepts a bare IPv4 endpoint", "192.168.5.1", nil, "wss://192.168.5.1" .. PROXY_QUERY },
    { "accepts a host name with a port", "tower.example.com:8443", nil,
      "wss://tower.example.com:8443" .. PROXY_QUERY },
    { "maps https to wss", "https://tower.example.com", nil, "wss://tower.example.com" .. PROXY_QUERY },
    { "maps http to ws and keeps the port", "http://10.0.0.1:8080", nil, "ws://10.0.0.1:8080" .. PROXY_QUERY },
    { "keeps a path prefix without its trailing slash", "https://gw.example.com/cloudtower/", nil,
      "wss://gw.example.com/cloudtower" .. PROXY_QUERY },
    { "accepts a bracketed IPv6 endpoint", "[fd00::1]", nil, "wss://[fd00::1]" .. PROXY_QUERY },
    { "accepts a bracketed IPv6 endpoint with scheme and port", "https://[fd00::1]:8443", nil,
      "wss://[fd00::1]:8443" .. PROXY_QUERY },
    { "accepts a bracketed IPv6 endpoint with a port", "[::1]:8443", nil, "wss://[::1]:8443" .. PROXY_QUERY },
    { "brackets a bare IPv6 endpoint", "fd00::1", nil, "wss://[fd00::1]" .. PROXY_QUERY },
    { "brackets the bare IPv6 loopback", "::1", nil, "wss://[::1]" .. PROXY_QUERY },
    { "maps http to ws for IPv6", "http://[::1]", nil, "ws://[::1]" .. PROXY_QUERY },
    { "accepts a loopback endpoint", "127.0.0.1", nil, "wss://127.0.0.1" .. PROXY_QUERY },
    { "accepts a single-label endpoint", "localhost", nil, "wss://localhost" .. PROXY_QUERY },
    { "accepts port 1", "localhost:1", nil, "wss://localhost:1" .. PROXY_QUERY },
    { "accepts port 65535", "localhost:65535", nil, "wss://localhost:65535" .. PROXY_QUERY },
    { "reads an upper-case scheme", "HTTPS://192.168.5.1", nil, "wss://192.168.5.1" .. PROXY_QUERY },
    { "reads a mixed-case scheme", "Http://127.0.0.1", nil, "ws://127.0.0.1" .. PROXY_QUERY },
    { "reads an upper-case scheme before IPv6", "HTTP://[::1]:80", nil, "ws://[::1]:80" .. PROXY_QUERY },
    { "strips a lone trailing slash", "https://t.example.com/", nil, "wss://t.example.com" .. PROXY_QUERY },
    { "strips several trailing slashes", "https://t.example.com//", nil, "wss://t.example.com" .. PROXY_QUERY },
    { "strips trailing slashes after a two-part prefix", "https://gw.example.com/a/b//", nil,
      "wss://gw.example.com/a/b" .. PROXY_QUERY },
    { "keeps a prefix without a trailing slash", "http://127.0.0.1/cloudtower", nil,
      "ws://127.0.0.1/cloudtower" .. PROXY_QUERY },
    { "keeps port and prefix", "https://127.0.0.1:8443/cloudtower/", nil,
      "wss://127.0.0.1:8443/cloudtower" .. PROXY_QUERY },
    { "keeps a prefix after an IPv6 host", "https://[::1]:8443/ct/", nil, "wss://[::1]:8443/ct" .. PROXY_QUERY },
    { "lets opts.scheme override https", "https://192.168.5.1", { scheme = "ws" }, "ws://192.168.5.1" .. PROXY_QUERY },
    { "lets opts.scheme override http", "http://127.0.0.1:8080", { scheme = "wss" },
      "wss://127.0.0.1:8080" .. PROXY_QUERY },
    { "lets opts.scheme apply to a bare endpoint", "192.168.5.1", { scheme = "ws" },
      "ws://192.168.5.1" .. PROXY_QUERY },
    { "lets opts.port add a port", "192.168.5.1", { port = 8443 }, "wss://192.168.5.1:8443" .. PROXY_QUERY },
    { "lets opts.port override the endpoint port", "tower.example.com:8443", { port = 443 },
      "wss://tower.example.com:443" .. PROXY_QUERY },
    { "lets opts.port override an IPv6 endpoint port", "https://[fd00::1]:8443", { port = 1 },
      "wss://[fd00::1]:1" .. PROXY_QUERY },
    { "puts opts.port before the prefix", "https://gw.example.com/cloudtower/", { port = 65535 },
      "wss://gw.example.com:65535/cloudtower" .. PROXY_QUERY },
    { "applies opts.scheme and opts.port together", "https://127.0.0.1:8443", { scheme = "ws", port = 80 },
      "ws://127.0.0.1:80" .. PROXY_QUERY },
    { "accepts an empty options table", "192.168.5.1", {}, "wss://192.168.5.1" .. PROXY_QUERY },
  }

  for _, case in ipairs(vectors) do
    local name, endpoint, opts, expected = case[1], case[2], case[3], case[4]
    it(name, function()
      local url, msg, kind = ctvnc.proxy_url(endpoint, example_info(), opts)
      assert.are.equal(expected, url, tostring(msg) .. " " .. tostring(kind))
      assert.is_nil(msg)
      assert.is_nil(kind)
    end)
  end

  -- { name, info changes, expected URL } with endpoint 192.168.5.1
  local info_vectors = {
    { "percent-encodes the token", { token = "a+b/c==" },
      "wss://192.168.5.1/websockify/?token=a%2Bb%2Fc%3D%3D"
      .. "&uuid=00000000-0000-0000-0000-000000000000&host=192.168.5.4" },
    { "percent-encodes the VM uuid", { vm_uuid = "vm 1&x=y" },
      "wss://192.168.5.1/websockify/?token=MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D"
      .. "&uuid=vm%201%26x%3Dy&host=192.168.5.4" },
    { "encodes an IPv6 host without brackets", { host_ip = "::1" },
      "wss://192.168.5.1/websockify/?token=MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D"
      .. "&uuid=00000000-0000-0000-0000-000000000000&host=%3A%3A1" },
    { "encodes an IPv4-mapped IPv6 host", { host_ip = "::ffff:127.0.0.1" },
      "wss://192.168.5.1/websockify/?token=MTIzNDU2Nzg5YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo%3D"
      .. "&uuid=00000000-0000-0000-0000-000000000000&host=%3A%3Affff%3A127.0.0.1" },
    { "does not need cluster_ip or raw_token", { cluster_ip = NONE, raw_token = NONE },
      "wss://192.168.5.1" .. PROXY_QUERY },
  }

  for _, case in ipairs(info_vectors) do
    local name, changes, expected = case[1], case[2], case[3]
    it(name, function()
      local url, msg, kind = ctvnc.proxy_url("192.168.5.1", info_with(changes))
      assert.are.equal(expected, url, tostring(msg) .. " " .. tostring(kind))
      assert.is_nil(msg)
      assert.is_nil(kind)
    end)
  end

  -- { name, endpoint, opts, secrets the message must not contain }
  local refusals = {
    { "refuses user and password", "https://user:pw@tower.example.com" },
    { "keeps the password out of the message", "https://admin:s3cretpw@t.example.com", nil, { "s3cretpw" } },
    { "refuses user info without a scheme", "user@tower.example.com" },
    { "refuses user and password without a scheme", "admin:hunter22@127.0.0.1", nil, { "hunter22" } },
    { "refuses a query", "https://t.example.com/?a=1" },
    { "refuses a query on a bare host", "t.example.com?x" },
    { "refuses an empty query", "https://t.example.com?" },
    { "refuses a query after a path", "https://t.example.com/a?b" },
    { "refuses a fragment", "https://t.example.com/#f" },
    { "refuses a fragment on a bare host", "t.example.com#f" },
    { "refuses an empty fragment", "https://t.example.com#" },
    { "refuses scheme ftp", "ftp://t.example.com" },
    { "refuses scheme ws", "ws://t.example.com" },
    { "refuses scheme wss", "wss://t.example.com" },
    { "refuses scheme file", "file:///x" },
    { "refuses port 0", "t.example.com:0" },
    { "refuses port 65536", "t.example.com:65536" },
    { "refuses an empty port", "t.example.com:" },
    { "refuses a non-numeric port", "t.example.com:abc" },
    { "refuses a negative port", "t.example.com:-1" },
    { "refuses port 0 after a scheme", "https://t.example.com:0/" },
    { "refuses a too large port after an IPv6 address", "[fd00::1]:99999" },
    { "refuses two ports", "t.example.com:1:2" },
    { "refuses an empty endpoint", "" },
    { "refuses a scheme without a host", "https://" },
    { "refuses a leading space", " 192.168.5.1" },
    { "refuses a trailing space", "192.168.5.1 " },
    { "refuses a space in the host", "t example.com" },
    { "refuses a space in the path", "https://t.example.com/a b" },
    { "refuses an underscore in the host", "bad_host" },
    { "refuses an empty label", "a..b" },
    { "refuses three-part dotted digits", "1.2.3" },
    { "refuses an IPv4 part above 255", "256.1.1.1" },
    { "refuses an unclosed bracket", "[fd00::1" },
    { "refuses a non-address in brackets", "[not-ip]" },
    { "refuses junk after the brackets", "https://[::1]x" },
    { "refuses an encoded zone id", "[fe80::1%25eth0]" },
    { "refuses a bare zone id", "fe80::1%eth0" },
    { "refuses opts.scheme http", "192.168.5.1", { scheme = "http" } },
    { "refuses opts.scheme https", "192.168.5.1", { scheme = "https" } },
    { "refuses opts.scheme WSS", "192.168.5.1", { scheme = "WSS" } },
    { "refuses a numeric opts.scheme", "192.168.5.1", { scheme = 1 } },
    { "refuses opts.port 0", "192.168.5.1", { port = 0 } },
    { "refuses opts.port 65536", "192.168.5.1", { port = 65536 } },
    { "refuses opts.port -1", "192.168.5.1", { port = -1 } },
    { "refuses a fractional opts.port", "192.168.5.1", { port = 1.5 } },
    { "refuses a string opts.port", "192.168.5.1", { port = "443" } },
  }

  for _, case in ipairs(refusals) do
    local name, endpoint, opts, secrets = case[1], case[2], case[3], case[4]
    it(name, function()
      local info = example_info()
      local url, msg, kind = ctvnc.proxy_url(endpoint, info, opts)
      assert_invalid(info, secrets, url, msg, kind)
    end)
  end

  -- { name, info changes, field the message must name }
  local info_refusals = {
    { "refuses a missing token", { token = NONE }, "token" },
    { "refuses an empty token", { token = "" }, "token" },
    { "refuses a numeric token", { token = 12345678 }, "token" },
    { "refuses a table as token", { token = {} }, "token" },
    { "refuses the raw token in place of the token", { token = NONE, raw_token = RAW_TOKEN }, "token" },
    { "refuses a missing VM uuid", { vm_uuid = NONE }, "vm_uuid" },
    { "refuses an empty VM uuid", { vm_uuid = "" }, "vm_uuid" },
    { "refuses a numeric VM uuid", { vm_uuid = 42 }, "vm_uuid" },
    { "refuses a missing host", { host_ip = NONE }, "host_ip" },
    { "refuses an empty host", { host_ip = "" }, "host_ip" },
    { "refuses a table as host", { host_ip = {} }, "host_ip" },
    { "refuses an invalid host", { host_ip = "bad_host" }, "host_ip" },
    { "refuses a host with a slash", { host_ip = "192.168.5.4/x" }, "host_ip" },
  }

  for _, case in ipairs(info_refusals) do
    local name, changes, field = case[1], case[2], case[3]
    it(name, function()
      local info = info_with(changes)
      local url, msg, kind = ctvnc.proxy_url("192.168.5.1", info)
      assert_invalid(info, nil, url, msg, kind)
      assert.is_true(contains(msg, field), "message does not name " .. field .. ": " .. msg)
    end)
  end

  it("keeps both tokens out of every refusal message", function()
    local info = info_with({ token = "Zm9vYmFyc2VjcmV0", raw_token = "deadbeefcafe0123" })
    for _, endpoint in ipairs({ "ftp://t.example.com", "https://u:p@t.example.com", "t.example.com:0", "" }) do
      local url, msg, kind = ctvnc.proxy_url(endpoint, info)
      assert_invalid(info, { "deadbeefcafe0123", "Zm9vYmFyc2VjcmV0" }, url, msg, kind)
    end
    local url, msg, kind = ctvnc.proxy_url("192.168.5.1", info_with({ token = "Zm9vYmFyc2VjcmV0", host_ip = "" }))
    assert_invalid(info, { "Zm9vYmFyc2VjcmV0" }, url, msg, kind)
  end)

  it("does not change the info table", function()
    local info = example_info()
    ctvnc.proxy_url("https://gw.example.com/cloudtower/", info, { scheme = "ws", port = 80 })
    assert.are.same(example_info(), info)
  end)

  local misuse = {
    { "raises when the endpoint is missing", "#1", function() return ctvnc.proxy_url() end },
    { "raises when the endpoint is nil", "#1", function() return ctvnc.proxy_url(nil, example_info()) end },
    { "raises when the endpoint is a table", "#1", function() return ctvnc.proxy_url({}, example_info()) end },
    { "raises when the endpoint is a boolean", "#1", function() return ctvnc.proxy_url(true, example_info()) end },
    { "raises when info is missing", "#2", function() return ctvnc.proxy_url("192.168.5.1") end },
    { "raises when info is a string", "#2", function() return ctvnc.proxy_url("192.168.5.1", "x") end },
    { "raises when info is a number", "#2", function() return ctvnc.proxy_url("192.168.5.1", 42) end },
    { "raises when opts is a string", "#3",
      function() return ctvnc.proxy_url("192.168.5.1", example_info(), "wss") end },
    { "raises when opts is a number", "#3",
      function() return ctvnc.proxy_url("192.168.5.1", example_info(), 443) end },
    { "raises when opts is a boolean", "#3",
      function() return ctvnc.proxy_url("192.168.5.1", example_info(), false) end },
  }

  for _, case in ipairs(misuse) do
    local name, needle, fn = case[1], case[2], case[3]
    it(name .. " naming argument " .. needle, function()
      assert_raises(needle, fn)
    end)
  end
end)
