-- Specs for ctvnc.logsafe: the gateway's own log lines stay one line
-- whatever a VM id holds (issue 19.8).

local logsafe = require "ctvnc.logsafe"

describe("ctvnc.logsafe.line", function()
  it("writes control bytes and the backslash as \\xHH, and nothing else", function()
    local cases = {
      { "vm-1", "vm-1" },
      { "vm\r\n2026/01/01 [emerg] forged", "vm\\x0D\\x0A2026/01/01 [emerg] forged" },
      { "a\nb", "a\\x0Ab" }, { "a\rb", "a\\x0Db" }, { "\0", "\\x00" }, { "\127", "\\x7F" },
      { "\t\27[31m", "\\x09\\x1B[31m" }, { "\\x0a", "\\x5Cx0a" },
      { "é 日本 \"q\" 'q' %s", "é 日本 \"q\" 'q' %s" }, { "", "" },
    }
    for _, c in ipairs(cases) do assert.equal(c[2], logsafe.line(c[1])) end
  end)

  it("leaves no byte below 0x20 nor 0x7F in any of the 256 bytes' line", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local line = logsafe.line(table.concat(all))
    assert.is_nil(line:find("[%z\1-\31\127]"))
    assert.equal(256 + 33 * 3 + 3, #line)   -- 33 control bytes and "\" grow by 3
  end)
end)
