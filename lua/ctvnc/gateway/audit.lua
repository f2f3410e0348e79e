-- luacheck: std max+ngx_lua
--- ctvnc.gateway.audit: the audit trail, one JSON line per session event
-- (open, close, refused, killed) and recording event (recording_removed,
-- recording_listed, recording_download, recording_verify), to a file, nginx's error log or nowhere.
local ngx = ngx
local cjson = require "cjson.safe"
local log = require "ctvnc.gateway.log"

local type, ipairs, pcall, floor = type, ipairs, pcall, math.floor
local io_open, os_date = io.open, os.date

local _M = {}

--- Seconds since the epoch as ISO 8601 UTC with milliseconds.
function _M.iso(t)
  local ms = floor((t % 1) * 1000 + 0.5)
  if ms >= 1000 then ms = 999 end
  return os_date("!%Y-%m-%dT%H:%M:%S", floor(t)) .. ("." .. ("%03d"):format(ms)) .. "Z"
end

local audit_file, audit_path, node

--- Where audit lines go: a file path, "error_log" (nginx's error log at
-- notice), or "off"; node_name names this node in every line.
-- A file is opened here, at configure time (nginx's master, before
-- workers drop privileges), in append mode: each line is one write.
function _M.to(path, node_name)
  audit_path, node = path, node_name
  if audit_file then pcall(audit_file.close, audit_file) end
  audit_file = nil
  if path ~= "off" and path ~= "error_log" and path then
    audit_file = io_open(path, "a")
    if audit_file then audit_file:setvbuf("no") end
  end
end

local AUDIT_FIELDS = { "event", "session", "user", "vm_id", "mode", "view_only", "client",
  "start", "end", "duration", "bytes_in", "bytes_out", "reason", "recording", "recording_sha256",
  "recording_complete", "admin", "node" }

--- One audit line: event (open, close, refused, killed, screenshot) and the fields of
-- the session. Only the listed fields are written: no caller can put a
-- secret in by accident.
function _M.write(event, f)
  if audit_path == "off" then return end
  local doc = {}
  f = f or {}
  for _, k in ipairs(AUDIT_FIELDS) do doc[k] = f[k] end
  doc.event, doc.node = event, node
  if type(doc.start) == "number" then doc.start = _M.iso(doc.start) end
  if type(doc["end"]) == "number" then doc["end"] = _M.iso(doc["end"]) end
  local line = cjson.encode(doc)
  if audit_path == "error_log" or not audit_path then
    log(ngx.NOTICE, "ctvnc audit: ", line)
    return
  end
  if not audit_file then
    audit_file = io_open(audit_path, "a")
    if not audit_file then
      log(ngx.ERR, "ctvnc: cannot open the audit log ", audit_path)
      return
    end
    audit_file:setvbuf("no")
  end
  audit_file:write(line, "\n")
end

return _M
