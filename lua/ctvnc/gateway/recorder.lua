-- luacheck: std max+ngx_lua
--- ctvnc.gateway.recorder: the console recording of one session
-- (docs/recording-format.md, policy in docs/gateway.md "Recordings").
--
--   r, why = recorder.open(rec, plan)  nil: not recorded; nil, why: RECORD_REQUIRED refuses
--   recorder.chunk(r, bytes, up)       the target's websocket bytes, as relayed to the browser
--   bytes = recorder.from_browser(r, bytes)  the browser's, SetEncodings cut down (keyframes)
--   fields = recorder.close(r)         the closing audit line's recording fields
--
-- Only target-to-browser bytes are kept: the relay hands over what it sent
-- the browser, the websocket framing is taken off here. The header's
-- desktop size and pixel format come from the target's ServerInit, so the
-- first bytes wait (at most PRE_MAX) until it has passed. The bytes go to a
-- queue that a light thread writes with nginx's thread pool (recfile);
-- past QUEUE_MAX queued bytes, or on a write error, the recording stops,
-- its trailer says incomplete, and the session goes on untouched.
-- Keyframes (RECORD_KEYFRAME): ctvnc.gateway.keyframe.
local core = require "ctvnc.core"
local cjson = require "cjson.safe"
local semaphore = require "ngx.semaphore"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local audit = require "ctvnc.gateway.audit"
local keyframe = require "ctvnc.gateway.keyframe"
local wsclient = require "ctvnc.gateway.wsclient"

local ngx = ngx
local run_worker_thread = ngx.run_worker_thread   -- luacheck: ignore 143
local tostring, tonumber, floor, concat = tostring, tonumber, math.floor, table.concat
local byte, rep, io_open = string.byte, string.rep, io.open

local _M = {}

_M.POOL = "ctvnc_record"           -- nginx's thread_pool of the writes
_M.QUEUE_MAX = 4 * 1048576         -- bytes waiting for the disk before the recording stops
local PRE_MAX = 256 * 1024         -- handshake bytes kept until ServerInit has passed
local PROBE = 4096                 -- bytes written at open: is there room at all?

--- The recordings directory.
function _M.dir()
  return state.conf.record_dir or (ngx.config.prefix() .. "recordings")
end

local function now_ms() return floor(ngx.now() * 1000) end

--- Is a session of this grant recorded?
function _M.wanted(record_grant)
  local mode = state.conf.record
  return mode == "on" or (mode == "grant" and record_grant == true)
end

--- Can a file of `PROBE` bytes be written at path? true | nil, message.
local function probe(path)
  local f, err = io_open(path, "wb")
  if not f then return nil, tostring(err) end
  local ok, e = f:write(rep("\0", PROBE))
  if ok then ok, e = f:flush() end
  f:close()
  if ok then
    f = io_open(path, "wb")          -- back to empty
    if f then f:close() end
  end
  if not ok then return nil, tostring(e) end
  return true
end

--- May a session of this grant open, as far as recording goes? true |
-- nil, why (RECORD_REQUIRED and the directory cannot take a recording).
function _M.can_open(record_grant)
  if not _M.wanted(record_grant) or state.conf.record_required ~= "on" then return true end
  local ok, err = probe(_M.dir() .. "/.probe")
  if not ok then return nil, err end
  return true
end

local function stop(r, why)
  if r.stopped then return end
  r.stopped = why
  log(ngx.ERR, "ctvnc: the recording of session ", r.id, " stopped: ", why)
end

local function enqueue(r, bytes)
  r.queue[#r.queue + 1] = bytes
  r.queued = r.queued + #bytes
  if #r.queue == 1 then r.sema:post(1) end
end

local CHUNK_EXTRA = 17 + 32      -- a chunk's head and hash

--- Queues a chunk, within the bound: past it the recording stops before
-- the writer takes the chunk, so the trailer counts what the file holds.
local function add_chunk(r, t, data, key)
  if r.stopped then return end
  if r.queued + #data + CHUNK_EXTRA > _M.QUEUE_MAX then
    return stop(r, "the disk is too slow (more than " .. _M.QUEUE_MAX .. " bytes queued)")
  end
  local bytes, err = r.w:chunk(t, data, key)
  if not bytes then return stop(r, "the writer refused a chunk: " .. tostring(err)) end
  enqueue(r, bytes)
end

--- The light thread that writes the queue, a batch at a time.
local function drain(r)
  while true do
    if #r.queue == 0 then
      if r.closing then return end
      r.sema:wait(1)
    elseif r.broken then
      r.queue, r.queued = {}, 0
    else
      local batch = concat(r.queue)
      r.queue = {}
      local ok, done, err = run_worker_thread(_M.POOL, "ctvnc.gateway.recfile", "append",
        r.path, batch)
      r.queued = r.queued - #batch
      if ok and done then
        r.written = r.written + #batch
      else
        r.broken = true
        stop(r, "write failed: " .. tostring(err or done))
      end
    end
  end
end

local function u16(s, i) return byte(s, i) * 256 + byte(s, i + 1) end
local function u32(s, i) return u16(s, i) * 65536 + u16(s, i + 2) end

--- Follows the target's side of the RFB handshake to its ServerInit.
-- Each step: the next step, the bytes it used and the bytes the next one
-- needs; nil when it cannot be followed (the header then has no size).
local STEPS = {
  version = function(r, s)
    r.rfb = s:sub(1, 12)
    if (tonumber(s:sub(9, 11)) or 0) <= 3 then return "sec33", 12, 4 end
    return "types", 12, 1
  end,
  sec33 = function(_, s)
    local t = u32(s, 1)
    if t == 1 then return "init", 4, 24 end
    if t == 2 then return "challenge", 4, 16 end
  end,
  types = function(r, s)
    local n = byte(s, 1)
    if n == 0 then return nil end
    if #s < 1 + n then return "types", 0, 1 + n end
    r.minor8 = r.rfb >= "RFB 003.008"
    return "chosen", 1 + n, 1      -- decided once the target says more
  end,
  chosen = function(r)
    local sec = r.rec.filter and r.rec.filter:stats().security
    if sec == "vnc" then return "challenge", 0, 16 end
    if sec == "none" and r.minor8 then return "result", 0, 4 end
    if sec == "none" then return "init", 0, 24 end
  end,
  challenge = function() return "result", 16, 4 end,
  result = function(_, s) if u32(s, 1) == 0 then return "init", 4, 24 end end,
  init = function(r, s)
    local n = u32(s, 21)
    if #s < 24 + n then return "init", 0, 24 + n end
    r.width, r.height, r.pixel_format = u16(s, 1), u16(s, 3), s:sub(5, 20)
    return "done", 24 + n, 0
  end,
}

local function begin(r)
  local rec = r.rec
  local w, err = core.recording_writer({ session = rec.id, vm_id = rec.vm_id, user = rec.user,
    node = r.node, start_ms = r.start_ms, width = r.width or 0, height = r.height or 0,
    pixel_format = r.pixel_format or rep("\0", 16),
    rfb = r.rfb and #r.rfb == 12 and r.rfb or "RFB 000.000\n", key = state.conf.record_key })
  if not w then return stop(r, "no writer: " .. tostring(err)) end
  r.w = w
  enqueue(r, w:header())
  for i, p in ipairs(r.pre) do
    -- the stream's start decodes with no earlier state: the first keyframe
    add_chunk(r, p[1], p[2], i == 1)
  end
  if r.step == "done" and r.pixel_format and state.conf.record_keyframe > 0 then
    r.k = keyframe.new(r.width, r.height, byte(r.pixel_format, 1))
    r.k:server(r.hsbuf)          -- the first normal-phase bytes: no update asked for yet
  end
  r.pre, r.hsbuf = nil, nil
end

local function follow(r, bytes)
  r.hsbuf = r.hsbuf .. bytes
  while r.step ~= "done" do
    if #r.hsbuf < r.need then return end
    local step, used, need = STEPS[r.step](r, r.hsbuf)
    if not step then break end
    r.hsbuf, r.step, r.need = r.hsbuf:sub(used + 1), step, need
  end
  return begin(r)
end

--- open(rec, plan): the recorder of this session | nil when it is not
-- recorded | nil, why when RECORD_REQUIRED refuses it.
function _M.open(rec, plan)
  if not _M.wanted(plan.record) then return nil end
  local r = { id = rec.id, rec = rec, path = _M.dir() .. "/" .. rec.id .. ".ctvrec",
    queue = {}, queued = 0, written = 0, wsbuf = "", hsbuf = "", pre = {}, pre_bytes = 0,
    step = "version", need = 12, node = ngx.var.hostname or "", sema = semaphore.new() }
  local ok, err = probe(r.path)
  if not ok then
    if state.conf.record_required == "on" then return nil, err end
    r.broken = true
    stop(r, "the recordings directory cannot be written: " .. err)
  end
  r.thread = ngx.thread.spawn(drain, r)
  if state.conf.record_keyframe > 0 then r.ticker = ngx.thread.spawn(_M.ask_keyframes, r) end
  return r
end

--- The light thread that asks the target for a full update every
-- RECORD_KEYFRAME seconds (retried while the relay is writing to it).
function _M.ask_keyframes(r)
  while true do
    ngx.sleep(state.conf.record_keyframe)
    if r.k and r.up and not r.k.off and not r.k.coff and not r.stopped then
      wsclient.send_between(r.up, core.ws_frame("binary", r.k:request(), true))
    end
  end
end

--- The browser's websocket bytes for the target: data frames re-framed
-- with SetEncodings cut down once the recorder follows the session
-- (ctvnc.gateway.keyframe); control frames as they came.
function _M.from_browser(r, data)
  if not r or not r.k or r.k.coff then return data end
  local buf = r.cws == "" and data or (r.cws or "") .. data
  local out, pos = {}, 1
  while pos <= #buf do
    local frame, size = core.ws_parse(pos == 1 and buf or buf:sub(pos), "client")
    if not frame then
      if frame == nil then                          -- not followed: passed on as it is
        r.k.coff = "the browser's websocket stream"
        out[#out + 1] = buf:sub(pos)
        pos = #buf + 1
      end
      break
    end
    local op = frame.opcode
    if op == "binary" or op == "continuation" or op == "text" then
      local bytes = r.k:client(frame.payload)
      if bytes ~= "" then out[#out + 1] = core.ws_frame("binary", bytes, true) end
    else
      out[#out + 1] = buf:sub(pos, pos + size - 1)
    end
    pos = pos + size
  end
  r.cws = buf:sub(pos)
  return concat(out)
end

--- Chunks of t's bytes, a full update held until it ends to start a
-- keyframe chunk (ctvnc.gateway.keyframe says where).
function _M.record(r, t, bytes)
  local from = 1
  local function emit(upto)
    local part = bytes:sub(from, upto)
    from = upto + 1
    if part == "" then return end
    if r.held then
      r.held[#r.held + 1] = part
      r.held_bytes = r.held_bytes + #part
    else
      add_chunk(r, t, part, false)
    end
  end
  for _, ev in ipairs(r.k and r.k:server(bytes) or {}) do
    emit(ev[1] - 1)
    if ev[2] == "start" then
      r.held, r.held_t, r.held_bytes = {}, t, 0
    elseif r.held then
      local held = concat(r.held)
      r.held = nil
      add_chunk(r, r.held_t, held, ev[3])
    end
  end
  emit(#bytes)
  if r.held and r.held_bytes > _M.QUEUE_MAX / 2 then      -- too big to hold: as it is
    local held = concat(r.held)
    r.held = nil
    add_chunk(r, r.held_t, held, false)
  end
end

--- The size of the server frame whose head s starts with; nil while s
-- is shorter than the head.
local function frame_size(s)
  if #s < 2 then return nil end
  local len, mask = byte(s, 2) % 128, byte(s, 2) >= 128 and 4 or 0
  if len < 126 then return 2 + mask + len end
  if len == 126 then return #s >= 4 and 4 + mask + u16(s, 3) or nil end
  if #s < 10 then return nil end
  return 10 + mask + u32(s, 3) * 4294967296 + u32(s, 7)
end

--- One piece of the target's websocket stream, as sent to the browser
-- (up: the target's socket, for the keyframe requests).
function _M.chunk(r, data, up)
  if not r or r.stopped then return end
  if r.wsneed then                      -- a large frame: its pieces joined once, when whole
    r.wsparts[#r.wsparts + 1] = data
    r.wshave = r.wshave + #data
    if r.wshave < r.wsneed then return end
    data, r.wsneed, r.wsparts = concat(r.wsparts), nil, nil
  end
  local buf = r.wsbuf == "" and data or r.wsbuf .. data
  local parts, pos = {}, 1
  while pos <= #buf do
    local frame, size = core.ws_parse(pos == 1 and buf or buf:sub(pos), "server")
    if frame == nil then return stop(r, "the target's websocket stream: " .. tostring(size)) end
    if not frame then break end
    local op = frame.opcode
    if op == "binary" or op == "continuation" or op == "text" then
      parts[#parts + 1] = frame.payload
    end
    pos = pos + size
  end
  r.wsbuf = buf:sub(pos)
  local need = frame_size(r.wsbuf)
  if need and need > #r.wsbuf then
    r.wsneed, r.wsparts, r.wshave, r.wsbuf = need, { r.wsbuf }, #r.wsbuf, ""
  end
  local bytes = concat(parts)
  if bytes == "" then return end
  local t = now_ms()
  r.up = up
  if r.w then return _M.record(r, t, bytes) end
  r.start_ms = r.start_ms or t
  r.pre[#r.pre + 1] = { t, bytes }
  r.pre_bytes = r.pre_bytes + #bytes
  if r.pre_bytes > PRE_MAX then return begin(r) end
  return follow(r, bytes)
end

--- Ends the recording (trailer, index line): the recording fields of the
-- closing audit line, nil when the session was not recorded or the target
-- sent nothing (its empty file is removed).
function _M.close(r)
  if not r then return nil end
  if r.ticker then ngx.thread.kill(r.ticker) end
  if not r.start_ms and not r.broken then
    r.closing = true
    r.sema:post(1)
    ngx.thread.wait(r.thread)
    os.remove(r.path)
    return nil
  end
  if not r.w and not r.broken then begin(r) end
  if r.held then
    add_chunk(r, r.held_t, concat(r.held), false)
    r.held = nil
  end
  local complete, hash = not r.stopped and r.w ~= nil, nil
  if r.w and not r.broken then
    local bytes
    bytes, hash = r.w:trailer(complete, now_ms())
    enqueue(r, bytes)
  end
  r.closing = true
  r.sema:post(1)
  ngx.thread.wait(r.thread)
  complete = complete and not r.stopped
  local rec = r.rec
  local start = r.start_ms or now_ms()
  local entry = { id = r.id, session = rec.id, vm_id = rec.vm_id, user = rec.user, node = r.node,
    start = start / 1000, duration = (now_ms() - start) / 1000, bytes = r.written, sha256 = hash,
    complete = complete }
  run_worker_thread(_M.POOL, "ctvnc.gateway.recfile", "append", _M.dir() .. "/index.jsonl",
    cjson.encode(entry) .. "\n")
  ngx.timer.at(0, function() _M.prune() end)
  return { recording = r.id, recording_sha256 = hash, recording_complete = complete }
end

--- The recordings the index lists (removed ones left out), oldest first.
function _M.list()
  local f = io_open(_M.dir() .. "/index.jsonl", "rb")
  if not f then return {} end
  local all, removed = {}, {}
  for line in f:lines() do
    local e = cjson.decode(line)
    if type(e) == "table" then
      if e.removed then removed[e.removed] = true elseif e.id then all[#all + 1] = e end
    end
  end
  f:close()
  local out = {}
  for _, e in ipairs(all) do
    if not removed[e.id] then out[#out + 1] = e end
  end
  table.sort(out, function(a, b) return (a.start or 0) < (b.start or 0) end)
  return out
end

--- Retention: the oldest recordings removed first while one is older than
-- RECORD_KEEP_DAYS or all take more than RECORD_MAX_MB; one audit line each.
function _M.prune()
  local conf = state.conf
  local days, mb = conf.record_keep_days, conf.record_max_mb
  if conf.record == "off" or (days <= 0 and mb <= 0) then return end
  local list, total = _M.list(), 0
  for _, e in ipairs(list) do total = total + (e.bytes or 0) end
  local t = ngx.now()
  for _, e in ipairs(list) do
    local old = days > 0 and t - (e.start or 0) - (e.duration or 0) > days * 86400
    local big = mb > 0 and total > mb * 1048576
    if not old and not big then break end
    local gone = os.remove(_M.dir() .. "/" .. e.id .. ".ctvrec")
    total = total - (e.bytes or 0)
    if gone then
      local f = io_open(_M.dir() .. "/index.jsonl", "ab")
      if f then
        f:write(cjson.encode({ removed = e.id }), "\n")
        f:close()
      end
      audit.write("recording_removed", { recording = e.id, session = e.session,
        vm_id = e.vm_id, user = e.user, reason = old and "RECORD_KEEP_DAYS" or "RECORD_MAX_MB" })
    end
  end
end

--- init_worker: retention once a minute, on worker 0 only.
function _M.init_worker()
  if ngx.worker.id() ~= 0 or state.conf.record == "off" then return end
  ngx.timer.every(60, function(premature)
    if not premature then _M.prune() end
  end)
end

return _M
