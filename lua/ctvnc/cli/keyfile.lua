--- ctvnc.cli.keyfile: the --key-file flag of `recording` and `audit` (one
-- declaration for both), and the key it names or the environment holds.
local usage_error = require("ctvnc.cli.flags").usage_error

local io_open, tostring = io.open, tostring

local _M = {}

_M.FLAG = { name = "key-file", value = "FILE", help = "the HMAC key to check signatures "
  .. "with (RECORD_KEY, AUDIT_KEY): the file's bytes less one final newline (or "
  .. "CTVNC_RECORD_KEY, CTVNC_AUDIT_KEY)" }

_M.MIN = 32   -- bytes, as the gateway requires of RECORD_KEY and AUDIT_KEY

--- flags, env, var (the environment variable) -> key | nil (none given)
-- | nil, usage error. The key is never printed.
function _M.read(flags, env, var)
  local key, from = env(var), var
  if flags["key-file"] then
    from = "--key-file " .. flags["key-file"]
    local f, err = io_open(flags["key-file"], "rb")
    if not f then return nil, usage_error(from .. ": cannot read it (" .. tostring(err) .. ")") end
    key = (f:read("*a") or ""):gsub("\r?\n$", "")
    f:close()
  end
  if key == nil then return nil end
  if #key < _M.MIN then
    return nil, usage_error(("%s: the key must be at least %d bytes"):format(from, _M.MIN))
  end
  return key
end

return _M
