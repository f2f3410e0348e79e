-- Specs for the module's one source of random bytes: core.random_bytes
-- (getrandom(2)), and the gateway's tickets and session ids drawn from it.
-- Issue 22: /dev/urandom was opened for every ticket and session, so at
-- the file limit the browser got a 500.

local core = require "ctvnc.core"
local ticket = require "ctvnc.ticket"
local book = require "ctvnc.gateway.book"

describe("core.random_bytes", function()
  it("gives n bytes, 0 to 1024, different every call", function()
    for _, n in ipairs({ 0, 1, 16, 32, 1024 }) do
      assert.equal(n, #assert(core.random_bytes(n)))
    end
    assert.are_not.equal(core.random_bytes(16), core.random_bytes(16))
    local seen, count = {}, 0
    for _ = 1, 64 do
      for b in core.random_bytes(1024):gmatch(".") do
        if not seen[b] then seen[b], count = true, count + 1 end
      end
    end
    assert.equal(256, count)      -- 64 KiB: every byte value appears
  end)

  it("raises on a count out of range or not an integer", function()
    for _, n in ipairs({ -1, 1025, 2 ^ 40 }) do
      assert.has_error(function() core.random_bytes(n) end)
    end
    assert.has_error(function() core.random_bytes("16x") end)
    assert.has_error(function() core.random_bytes(1.5) end)
    assert.has_error(function() core.random_bytes() end)
  end)

  it("needs no file: tickets' nonces and secrets and session ids at the file limit #novalgrind",
    function()
    local held, full = {}, false
    for i = 1, 200000 do
      local f = io.open("/dev/null", "rb")
      if not f then
        full = true
        break
      end
      held[i] = f
    end
    local secret = ticket.random_secret()
    local bytes = ticket.random_bytes(16)
    local id = book.new_id()
    local probe = io.open("/dev/null", "rb")
    for _, f in ipairs(held) do f:close() end
    if probe then probe:close() end
    assert.is_true(full, "the file limit was not reached")
    assert.is_nil(probe)          -- no file could be opened
    assert.equal(32, #secret)
    assert.equal(16, #bytes)
    assert.matches("^%x+$", id)
    assert.equal(16, #id)
  end)
end)
