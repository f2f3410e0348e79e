-- luacheck: std max+ngx_lua
--- ctvnc.gateway.recadmin: the admin routes of console recordings, behind
-- admin_authorize (ctvnc.gateway.admin calls route once it has allowed the
-- request). Every list, download and check is an audit line naming the
-- admin.
--
--   GET /admin/recordings[?vm_id=&user=&from=&to=&offset=&limit=]
--        -> {"recordings": [{id, session, vm_id, user, node, start, duration, bytes,
--            sha256, complete}], "total", "offset", "limit"}   newest first
--   GET /admin/recordings/<id>/data    -> the file (application/octet-stream)
--   GET /admin/recordings/<id>/verify  -> {"intact": bool, "first_bad_chunk": n | null}
local cjson = require "cjson.safe"
local recording = require "ctvnc.recording"
local state = require "ctvnc.gateway.state"
local respond = require "ctvnc.gateway.respond"
local audit = require "ctvnc.gateway.audit"
local recorder = require "ctvnc.gateway.recorder"

local ngx = ngx
local tonumber, tostring, floor, min, max = tonumber, tostring, math.floor, math.min, math.max
local io_open = io.open
local reply, array, not_allowed, method_is = respond.reply, respond.array, respond.not_allowed,
  respond.method_is

local _M = {}

_M.PAGE = 100    -- recordings per page at most (limit)

local function listing(e)
  return { id = e.id, session = e.session, vm_id = e.vm_id, user = e.user, node = e.node,
    start = audit.iso(e.start or 0), duration = e.duration, bytes = e.bytes, sha256 = e.sha256,
    complete = e.complete == true }
end

--- GET /admin/recordings: filtered by vm_id, user and a time range (from,
-- to: Unix seconds, on the start), newest first, offset and limit.
local function list(who)
  local args = ngx.req.get_uri_args(16)
  local from, to = tonumber(args.from), tonumber(args.to)
  local offset = max(0, floor(tonumber(args.offset) or 0))
  local limit = min(_M.PAGE, max(1, floor(tonumber(args.limit) or _M.PAGE)))
  local all, hits = recorder.list(), {}
  for i = #all, 1, -1 do
    local e = all[i]
    if (args.vm_id == nil or e.vm_id == args.vm_id) and (args.user == nil or e.user == args.user)
      and (not from or (e.start or 0) >= from) and (not to or (e.start or 0) <= to) then
      hits[#hits + 1] = e
    end
  end
  local page = {}
  for i = offset + 1, min(#hits, offset + limit) do page[#page + 1] = listing(hits[i]) end
  audit.write("recording_listed", { admin = who, vm_id = args.vm_id, user = args.user })
  return reply(200, { recordings = array(page), total = #hits, offset = offset, limit = limit })
end

--- The listed recording id | nil.
local function find(id)
  for _, e in ipairs(recorder.list()) do
    if e.id == id then return e end
  end
end

--- GET /admin/recordings/<id>/data: the file, a block at a time.
local function data(e, who)
  local f = io_open(recorder.dir() .. "/" .. e.id .. ".ctvrec", "rb")
  if not f then
    return reply(404, { error = "the recording's file is gone", kind = "not_found" })
  end
  audit.write("recording_download", { admin = who, recording = e.id, session = e.session,
    vm_id = e.vm_id, user = e.user })
  ngx.status = 200
  respond.common_headers(false)
  ngx.header["Content-Type"] = "application/octet-stream"
  ngx.header["Content-Disposition"] = ('attachment; filename="%s.ctvrec"'):format(e.id)
  ngx.header["Content-Length"] = f:seek("end")
  f:seek("set", 0)
  while true do
    local block = f:read(65536)
    if not block then break end
    ngx.print(block)
    if not ngx.flush(true) then break end
  end
  f:close()
  return respond.finish(200)
end

--- GET /admin/recordings/<id>/verify: the chain and trailer checked.
local function verify(e, who)
  local report, err = recording.check(recorder.dir() .. "/" .. e.id .. ".ctvrec",
    state.conf.record_key)
  if not report then return reply(404, { error = tostring(err), kind = "not_found" }) end
  audit.write("recording_verify", { admin = who, recording = e.id, session = e.session,
    vm_id = e.vm_id, user = e.user, reason = report.verdict })
  return reply(200, { id = e.id, intact = report.intact == true,
    first_bad_chunk = report.first_bad or cjson.null, complete = report.trailer ~= nil
      and report.trailer.complete == true, verdict = report.verdict })
end

--- Is path one of these routes?
function _M.owns(path)
  return path == "/admin/recordings" or path:find("^/admin/recordings/") ~= nil
end

--- Answers an allowed admin request whose path this module owns.
function _M.route(path, who)
  if not method_is("GET") then return not_allowed("GET") end
  if path == "/admin/recordings" then return list(who) end
  local id, what = path:match("^/admin/recordings/(%x+)/(%a+)$")
  local e = id and (what == "data" or what == "verify") and find(id)
  if not e then return reply(404, { error = "no such recording", kind = "not_found" }) end
  if what == "data" then return data(e, who) end
  return verify(e, who)
end

return _M
