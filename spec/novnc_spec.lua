-- Specs for ctvnc.novnc_url and the client's `headers` option rules: pure
-- string work, expected values written out by hand. The vendor's example
-- addresses appear only as strings here.
local ctvnc = require "ctvnc"

local WS = "wss://192.168.5.1/websockify/?token=MTIz%2B%2F%3D&uuid=u-1&host=192.168.5.4"

describe("ctvnc.novnc_url", function()
  -- { label, page, ws_url, opts, expected }
  local cases = {
    { "encodes the websocket path and query into path", "https://gw/novnc/vnc.html", WS, nil,
      "https://gw/novnc/vnc.html?host=192.168.5.1&port=443&path=websockify%2F%3Ftoken%3DMTIz"
      .. "%252B%252F%253D%26uuid%3Du-1%26host%3D192.168.5.4&encrypt=1&autoconnect=1" },
    { "takes ws and an explicit port", "/vnc.html", "ws://127.0.0.1:6080/websockify", nil,
      "/vnc.html?host=127.0.0.1&port=6080&path=websockify&encrypt=0&autoconnect=1" },
    { "defaults ws to port 80", "/vnc.html", "ws://console.test/x", nil,
      "/vnc.html?host=console.test&port=80&path=x&encrypt=0&autoconnect=1" },
    { "keeps IPv6 brackets in host", "/vnc.html", "wss://[fd00::1]:8443/websockify/?a=b", nil,
      "/vnc.html?host=%5Bfd00%3A%3A1%5D&port=8443&path=websockify%2F%3Fa%3Db&encrypt=1"
      .. "&autoconnect=1" },
    { "appends to a page that has a query", "/vnc.html?lang=en", "ws://h/p", nil,
      "/vnc.html?lang=en&host=h&port=80&path=p&encrypt=0&autoconnect=1" },
    { "adds view_only, resize and password", "/vnc.html", "ws://h/p",
      { view_only = true, resize = "scale", password = "p&w d" },
      "/vnc.html?host=h&port=80&path=p&encrypt=0&autoconnect=1&view_only=true&resize=scale"
      .. "&password=p%26w%20d" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert.are.equal(c[5], ctvnc.novnc_url(c[2], c[3], c[4]))
    end)
  end

  -- { label, page, ws_url, opts }
  local refusals = {
    { "an http URL", "/vnc.html", "http://h/p" },
    { "no path", "/vnc.html", "wss://h" },
    { "user info", "/vnc.html", "wss://u@h/p" },
    { "a bad host", "/vnc.html", "wss://bad_host/p" },
    { "port 0", "/vnc.html", "wss://h:0/p" },
    { "port 70000", "/vnc.html", "wss://h:70000/p" },
    { "a page with a space", "/vnc .html", "wss://h/p" },
    { "a bad resize", "/vnc.html", "wss://h/p", { resize = "big" } },
  }
  for _, c in ipairs(refusals) do
    it("refuses " .. c[1], function()
      local url, msg, kind = ctvnc.novnc_url(c[2], c[3], c[4])
      assert.is_nil(url)
      assert.are.equal("invalid", kind)
      assert.is_truthy(msg:find("^novnc_url: "))
    end)
  end

  it("raises on wrong argument types", function()
    assert.has_error(function() ctvnc.novnc_url(nil, WS) end)
    assert.has_error(function() ctvnc.novnc_url("/p", 1) end)
    assert.has_error(function() ctvnc.novnc_url("/p", WS, "x") end)
  end)
end)

describe("ctvnc.new headers", function()
  local function new(headers)
    return ctvnc.new({ endpoint = "127.0.0.1:1", token = "t", headers = headers })
  end

  it("accepts extra headers", function()
    local c = assert(new({ ["x-bypass-whitelist"] = "true", ["external-cloudtower-id"] = "a" }))
    c:close()
  end)

  -- { label, headers, text the message must hold }
  local refusals = {
    { "Authorization", { Authorization = "x" }, "Authorization cannot be replaced" },
    { "authorization in any case", { aUtHoRiZaTiOn = "x" }, "cannot be replaced" },
    { "Content-Type", { ["content-type"] = "text/plain" }, "cannot be replaced" },
    { "Content-Length", { ["Content-Length"] = "5" }, "cannot be replaced" },
    { "a CR in a value", { ["x-a"] = "a\rb" }, "CR, LF or NUL" },
    { "an LF in a value", { ["x-a"] = "a\nInjected: 1" }, "CR, LF or NUL" },
    { "a NUL in a value", { ["x-a"] = "a\0b" }, "CR, LF or NUL" },
    { "a colon in a name", { ["x-a:b"] = "v" }, "header names" },
    { "an LF in a name", { ["x-a\nb"] = "v" }, "header names" },
    { "an empty name", { [""] = "v" }, "header names" },
    { "a number as value", { ["x-a"] = 1 }, "strings to strings" },
  }
  for _, c in ipairs(refusals) do
    it("refuses " .. c[1], function()
      local client, msg, kind = new(c[2])
      assert.is_nil(client)
      assert.are.equal("invalid", kind)
      assert.is_truthy(msg:find(c[3], 1, true), msg)
    end)
  end

  it("never quotes a refused header's value", function()
    local _, msg = new({ ["x-key"] = "s3cr3t\n" })
    assert.is_nil(msg:find("s3cr3t", 1, true))
  end)
end)
