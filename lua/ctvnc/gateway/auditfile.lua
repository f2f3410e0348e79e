-- luacheck: std max+ngx_lua
--- ctvnc.gateway.auditfile: the audit log's file, written with write(2)
-- (LuaJIT's FFI). Created mode 0640 (set explicitly: nginx's master runs
-- with umask 0) by the master when the configuration loads, so its owner
-- is the master's user; the workers write through the descriptor they
-- inherit, one write(2) a line in append mode (lines of two workers never
-- mix). Before each line a worker compares the path's file with its own
-- (device and inode): once the file was moved away (rotation, then USR1
-- as for nginx's own logs, or nothing at all), the line goes to a new file
-- at the path, created 0640 by the worker. A worker that cannot create it
-- keeps writing to the file it has and says so in error.log.
local ffi = require "ffi"
local log = require "ctvnc.gateway.log"

local ngx = ngx
local tostring, pcall = tostring, pcall

for _, decl in ipairs({ "int open(const char *path, int flags, ...);", "int close(int fd);",
  "long write(int fd, const void *buf, size_t n);", "int fchmod(int fd, unsigned int mode);",
  "int stat(const char *path, void *buf);", "int fstat(int fd, void *buf);",
  "char *strerror(int errnum);" }) do
  pcall(ffi.cdef, decl)   -- another module may have declared it already
end
local C = ffi.C

local O_WRONLY, O_CREAT, O_APPEND = 1, 64, 1024   -- Linux
local MODE = 416                                  -- 0640

local _M = {}

local File = {}
File.__index = File

-- "device:inode" of a stat buffer (both the first fields of struct stat
-- on Linux x86_64 and arm64), or nil.
local function identity(ok, buf)
  if ok ~= 0 then return nil end
  return tostring(buf[0]) .. ":" .. tostring(buf[1])
end

local function why()
  return ffi.string(C.strerror(ffi.errno()))
end

-- The descriptor lives in a box that closes it when collected (the Lua
-- VM of a reloaded configuration is closed: its file with it).
local function close_box(box)
  if box[0] >= 0 then C.close(box[0]) end
  box[0] = -1
end

--- The descriptor of path opened (created 0640) for appending, in a box,
-- and its identity | nil, message.
local function open_fd(path)
  local fd = C.open(path, O_WRONLY + O_APPEND + O_CREAT, ffi.cast("unsigned int", MODE))
  if fd < 0 then return nil, why() end
  C.fchmod(fd, MODE)   -- a file there before: 0640 all the same (when it is ours)
  local buf = ffi.new("uint64_t[32]")
  return ffi.gc(ffi.new("int[1]", fd), close_box), identity(C.fstat(fd, buf), buf)
end

--- The file at path, opened (created 0640) for appending: file | nil, message.
function _M.open(path)
  local box, id = open_fd(path)
  if not box then return nil, id end
  return setmetatable({ path = path, box = box, id = id, buf = ffi.new("uint64_t[32]") }, File)
end

--- Is the file at the path still the one this writer holds?
function File:current()
  return identity(C.stat(self.path, self.buf), self.buf) == self.id
end

--- Appends one line (with its newline): true | nil, message.
function File:write(line)
  if not self:current() then
    local box, id = open_fd(self.path)
    if box then
      close_box(self.box)
      self.box, self.id = box, id
    else
      log(ngx.ERR, "ctvnc: the audit log ", self.path, " was moved and cannot be created "
        .. "again: ", id, "; writing to the moved file")
    end
  end
  local data = line .. "\n"
  local n = C.write(self.box[0], data, #data)
  if n ~= #data then return nil, why() end
  return true
end

function File:close()
  close_box(self.box)
end

return _M
