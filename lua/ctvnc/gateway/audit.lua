-- luacheck: std max+ngx_lua
--- ctvnc.gateway.audit: the audit trail, one JSON line per session event
-- (open, close, refused, killed) and recording event (recording_removed,
-- recording_listed, recording_download, recording_verify), to a file,
-- nginx's error log or nowhere.
-- In a file each line is sealed into one hash chain (ctvnc.auditchain,
-- HMAC-SHA256 with audit_key): the chain's head (the last line's hash) is
-- in the lua_shared_dict ctvnc_audit, and a worker reads it, seals its
-- line, writes it and moves the head under one lock of that dict, so the
-- lines of every worker make one chain in the order they are in the file.
local ngx = ngx
local cjson = require "cjson.safe"
local log = require "ctvnc.gateway.log"
local auditfile = require "ctvnc.gateway.auditfile"
local auditchain = require "ctvnc.auditchain"

local type, ipairs, pcall, floor = type, ipairs, pcall, math.floor
local os_date = os.date

local _M = {}

--- Seconds since the epoch as ISO 8601 UTC with milliseconds.
function _M.iso(t)
  local ms = floor((t % 1) * 1000 + 0.5)
  if ms >= 1000 then ms = 999 end
  return os_date("!%Y-%m-%dT%H:%M:%S", floor(t)) .. ("." .. ("%03d"):format(ms)) .. "Z"
end

local audit_file, audit_path, audit_key, node

local LOCK_TTL = 1   -- seconds a crashed writer's lock outlives it

--- Where audit lines go: a file path, "error_log" (nginx's error log at
-- notice), or "off"; key: the chain's HMAC key (nil: SHA-256); node_name
-- names this node in every line. A file is opened here, at configure time
-- (nginx's master, before workers drop privileges): ctvnc.gateway.auditfile;
-- the chain goes on from the head the dict holds (a reload), else from the
-- file's last line. nil | message.
function _M.to(path, key, node_name)
  audit_path, audit_key, node = path, key, node_name
  if audit_file then audit_file:close() end
  audit_file = nil
  if path == "off" or path == "error_log" or not path then return end
  local dict = ngx.shared.ctvnc_audit
  if not dict then return "the audit log needs a lua_shared_dict ctvnc_audit" end
  local head, why = auditchain.tail_hash(path)
  if not head then
    ngx.log(ngx.WARN, "ctvnc: ", why, ": its chain starts again at the next line")
    head = auditchain.GENESIS
  end
  dict:add("head", head)
  local err
  audit_file, err = auditfile.open(path)
  if not audit_file then
    ngx.log(ngx.ERR, "ctvnc: cannot open the audit log ", path, ": ", err)
  end
end

--- Takes the chain's lock: true | nil after a second of trying (its
-- holder is stuck; the line is written on the head as it is).
local function lock(dict)
  ngx.update_time()
  local deadline = ngx.now() + LOCK_TTL
  repeat
    if dict:add("lock", true, LOCK_TTL) then return true end
    -- a phase that cannot yield spins instead
    if not pcall(ngx.sleep, 0.001) then ngx.update_time() end
  until ngx.now() > deadline
end

--- Seals line onto the chain and appends it: true | nil, message.
local function append(line)
  local dict = ngx.shared.ctvnc_audit
  local locked = lock(dict)
  local sealed, hash = auditchain.seal(dict:get("head") or auditchain.GENESIS, line, audit_key)
  local ok, err = audit_file:write(sealed)
  if ok then dict:set("head", hash) end
  if locked then dict:delete("lock") else err = err or "the chain's lock was stuck" end
  if err then return nil, err end
  return true
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
    local err
    audit_file, err = auditfile.open(audit_path)
    if not audit_file then
      log(ngx.ERR, "ctvnc: cannot open the audit log ", audit_path, ": ", err)
      return
    end
  end
  local ok, err = append(line)
  if not ok then log(ngx.ERR, "ctvnc: cannot write the audit log ", audit_path, ": ", err) end
end

return _M
