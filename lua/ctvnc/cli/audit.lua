--- ctvnc audit: verify the hash chain of audit logs (ctvnc.auditchain).
local auditchain = require "ctvnc.auditchain"
local keyfile = require "ctvnc.cli.keyfile"
local output = require "ctvnc.cli.output"
local usage_error = require("ctvnc.cli.flags").usage_error

local io_open, tostring, format = io.open, tostring, string.format
local printable = output.printable

return {
  name = "audit",
  args = "verify FILE...",
  summary = "check audit logs' hash chain (oldest file first); name the first line "
    .. "that breaks it",
  flags = { keyfile.FLAG },
  offline = true,   -- files on this machine: no tower
  check = function(flags, words)
    if (flags.format or "text") ~= "text" then return usage_error("audit writes text only") end
    if #words < 2 or words[1] ~= "verify" then
      return usage_error("audit takes verify, then one or more FILEs")
    end
  end,
  run = function(ctx)
    local key, e = keyfile.read(ctx.flags, ctx.env, "CTVNC_AUDIT_KEY")
    if e then return nil, e end
    local prev
    for i = 2, #ctx.words do
      local path = ctx.words[i]
      local f, err = io_open(path, "rb")
      if not f then return nil, path .. ": cannot read " .. tostring(err), "io" end
      -- true, lines, last hash | nil, line number, why
      local ok, n, detail = auditchain.verify(f:lines(), { key = key, prev = prev })
      f:close()
      if not ok then
        ctx.stdout:write(format("%s: line %d breaks the chain: %s\n", printable(path), n, detail))
        return false
      end
      ctx.stdout:write(format("%s: intact, %d lines, last hash %s\n", printable(path), n,
        tostring(detail or "none")))
      prev = detail
    end
    return true
  end,
}
