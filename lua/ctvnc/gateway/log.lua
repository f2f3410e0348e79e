-- luacheck: std max+ngx_lua
--- ctvnc.gateway.log: the gateway's own error.log lines. A line written by
-- ngx.log in a request carries nginx's request line, which may hold a
-- query string (a ticket); these go through a zero-delay timer instead,
-- whose log has no request attached, and name what they need explicitly.
local logsafe = require("ctvnc.logsafe").line

local ngx = ngx
local concat, select = table.concat, select

local function log_now(premature, level, msg)
  if not premature then ngx.log(level, msg) end
end

--- log(level, ...): the pieces concatenated, as one line (control bytes,
-- from a VM id say, written \xHH by ctvnc.logsafe: nothing splits it).
return function(level, ...)
  local msg = logsafe(concat({ ... }, "", 1, select("#", ...)))
  local ok = ngx.timer.at(0, log_now, level, msg)
  if not ok then ngx.log(level, msg) end  -- no timer left: still no query in msg
end
