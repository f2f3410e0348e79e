--- ctvnc.gateway.recfile: the file writes of console recordings, run in
-- nginx's thread pool `ctvnc_record` (ngx.run_worker_thread), so a slow
-- or full disk holds a pool thread, never a worker's event loop. Plain Lua
-- io: the pool's Lua states have no ngx API.
local io_open, tostring = io.open, tostring

local _M = {}

--- Appends bytes to the file at path: true | false, message.
function _M.append(path, bytes)
  local f, err = io_open(path, "ab")
  if not f then return false, tostring(err) end
  local ok, e = f:write(bytes)
  if ok then ok, e = f:flush() end
  f:close()
  if not ok then return false, tostring(e) end
  return true
end

return _M
