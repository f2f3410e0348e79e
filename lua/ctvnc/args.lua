--- ctvnc.args: the argument check of the library's public functions, one
-- message for all: "bad argument #<n> to '<function>' (<what>)", blamed on
-- the caller of the function that checks, as Lua's own functions do.
local error, format = error, string.format

local _M = {}

--- Raises the error unless `cond`; call it from the checked function itself.
function _M.check(cond, n, fname, msg)
  if not cond then error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3) end
end

return _M
