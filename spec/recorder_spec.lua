local helpers = require "helpers"
local cjson = require "cjson"
local socket = require "socket"
local core = require "ctvnc.core"
local jwt = require "ctvnc.jwt"
local keyframe = require "ctvnc.gateway.keyframe"
local common = require "gateway.common"

-- Console recordings (issue 24) against real servers on loopback: the
-- minimal RFB server (spec/gateway/rfb.js) behind websockify as vm-1's
-- cluster, the simulator as CloudTower. What the file holds against what
-- the browser read, byte for byte; no browser byte in it; the policy
-- (RECORD on | grant, key-file :record); RECORD_REQUIRED with a directory
-- the workers cannot write and a full disk (a small tmpfs); retention; the
-- closing audit line's recording fields; `ctvnc recording verify`.
local ROOT = helpers.ROOT
local read_file, write_file, random_hex = helpers.read_file, helpers.write_file, helpers.random_hex

describe("console recordings #novalgrind", function()
  local sim, lab, dir, ws_port, full_port
  local K_FULL, K_REC, K_ADMIN = "k-full-" .. random_hex(8), "k-rec-" .. random_hex(8),
    "k-admin-" .. random_hex(8)
  local SET_ENCODINGS = "\2\0\0\1\0\0\0\0"
  local FBUR = "\3\0\0\0\0\0\0\64\0\48"
  -- a distinctive key sequence (keysyms 0x5a17c0de...) and clipboard text
  local KEYS = "\4\1\0\0\90\23\192\222" .. "\4\0\0\0\90\23\192\222" .. "\4\1\0\0\0\0\113\119"
  local CLIP = "clip-" .. random_hex(12)
  local CUT = "\6\0\0\0\0\0\0" .. string.char(#CLIP) .. CLIP

  local function start_gateway(name, env)
    return lab:start_gateway(name, common.tower_env(sim), {
      KEYS = dir .. "/keys", MODE = "direct", SCHEME = "ws", CLUSTER_PORT = ws_port,
      ADMIN_KEYS = dir .. "/admin-keys", RECORD = "on",
    }, env)
  end

  local function audit(name) return lab:audit(name) end
  local wait_for = common.wait_for

  --- The closing audit line of the n-th session of gateway name.
  local function closed(name, n)
    return wait_for(function()
      local seen = 0
      for _, a in ipairs(audit(name)) do
        if a.event == "close" then
          seen = seen + 1
          if seen == n then return a end
        end
      end
    end, 10)
  end

  --- One session on vm-1: handshake, `updates` update requests answered,
  -- input sent between them; every RFB byte the browser read.
  local function session(port, key, updates, input)
    local status, _, c = common.ws(port, "vm-1", { ["X-API-Key"] = key })
    assert.are.equal(101, status)
    c:handshake()
    c:send(SET_ENCODINGS)
    for i = 1, updates do
      c:send((i == 1 and input or "") .. FBUR)
      assert.are.equal("\0\0\0\0", c:read(4))
    end
    c:close()
    return table.concat(c.got)
  end

  --- The records of a recording file: header, chunks (with data), trailer.
  local function records(path)
    local buf = assert(read_file(path))
    local r, pos, out = core.recording_reader(), 1, { chunks = {} }
    while true do
      local item, nxt = r:next(buf, pos, true)
      assert(item ~= nil, nxt)
      if not item then break end
      pos = nxt
      if item.kind == "chunk" then out.chunks[#out.chunks + 1] = item else out[item.kind] = item end
    end
    return out
  end

  local function rec_path(name, id)
    return lab.gateways[name].dir .. "/recordings/" .. id .. ".ctvrec"
  end

  local function ctvnc(args)
    return helpers.run(("cd %s && LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' %s bin/ctvnc %s 2>&1")
      :format(ROOT, ROOT, ROOT, "lua5.4", args))
  end

  setup(function()
    sim = helpers.sim()
    lab = common.lab()
    dir = lab.dir
    for _, s in ipairs({ K_FULL, K_REC, K_ADMIN, "sim-token" }) do lab:secret(s) end
    write_file(dir .. "/keys", ("%s vm-1\n%s vm-1:view:record,vm-3:record\n"):format(K_FULL, K_REC))
    write_file(dir .. "/admin-keys", K_ADMIN .. "\n")
    ws_port = lab:rfb_cluster("rfb", dir .. "/rfb.jsonl")
    -- a second server that answers a full request with pixels
    full_port = lab:rfb_cluster("rfbfull", dir .. "/full.jsonl", "full")
  end)

  teardown(function()
    if lab then lab:stop() end
  end)

  describe("RECORD=on", function()
    local p
    setup(function() p = start_gateway("on") end)

    it("keeps what the browser read, byte for byte, and no byte the browser sent", function()
      local got = session(p, K_FULL, 3, KEYS .. CUT)
      local a = closed("on", 1)
      assert.is_string(a.recording)
      assert.is_true(a.recording_complete)
      local path = rec_path("on", a.recording)
      local r = records(path)
      assert.are.same({ a.session, "vm-1", "key#1", 64, 48, "RFB 003.008\n" },
        { r.header.session, r.header.vm_id, r.header.user, r.header.width, r.header.height,
          r.header.rfb })
      local data = {}
      for i, c in ipairs(r.chunks) do
        assert.is_true(c.intact)
        assert.are.equal(i == 1, c.keyframe)
        data[i] = c.data
      end
      assert.are.equal(got, table.concat(data))
      assert.is_true(r.trailer.intact and r.trailer.complete)
      assert.are.equal(a.recording_sha256, r.trailer.hash)
      local file = read_file(path)
      assert.is_nil(file:find(CLIP, 1, true))
      assert.is_nil(file:find("\90\23\192\222", 1, true))
      assert.is_nil(file:find(SET_ENCODINGS, 1, true))
    end)

    it("is verified by `ctvnc recording verify`, which names a flipped byte's chunk", function()
      local a = closed("on", 1)
      local path = rec_path("on", a.recording)
      local _, ok = ctvnc("recording verify " .. path)
      assert.is_true(ok)
      local r = records(path)
      local c = r.chunks[2]
      local bytes = read_file(path)
      local at = c.offset + 17 + 1   -- the chunk's first data byte (offsets from 0)
      local bad = dir .. "/flipped.ctvrec"
      write_file(bad, bytes:sub(1, at - 1) .. string.char((bytes:byte(at) + 1) % 256) .. bytes:sub(at + 1))
      local out, fine = ctvnc("recording verify " .. bad)
      assert.is_false(fine)
      assert.truthy(out:find("chunk 2", 1, true), out)
    end)
    it("lists, serves and checks recordings to admins, each an audit line", function()
      session(p, K_FULL, 1, "")
      local a = closed("on", 2)
      local admin = { ["X-API-Key"] = K_ADMIN }
      local status, body = lab:http(p, "GET", "/admin/recordings?vm_id=vm-1&limit=1", admin)
      assert.are.equal(200, status)
      local doc = cjson.decode(body)
      assert.are.same({ 2, 1 }, { doc.total, #doc.recordings })
      local e = doc.recordings[1]
      assert.are.same({ a.recording, a.session, "vm-1", "key#1", a.recording_sha256, true },
        { e.id, e.session, e.vm_id, e.user, e.sha256, e.complete })
      status, body = lab:http(p, "GET", "/admin/recordings?user=nobody", admin)
      assert.are.same({ 200, 0 }, { status, cjson.decode(body).total })
      status, body = lab:http(p, "GET", "/admin/recordings?from=" .. (os.time() + 3600), admin)
      assert.are.same({ 200, 0 }, { status, cjson.decode(body).total })
      status, body = lab:http(p, "GET", "/admin/recordings/" .. a.recording .. "/data", admin)
      assert.are.equal(200, status)
      assert.are.equal(read_file(rec_path("on", a.recording)), body)
      status, body = lab:http(p, "GET", "/admin/recordings/" .. a.recording .. "/verify", admin)
      assert.are.equal(200, status)
      doc = cjson.decode(body)
      assert.is_true(doc.intact)
      assert.are.equal(cjson.null, doc.first_bad_chunk)
      -- a changed byte in the second chunk
      local path = rec_path("on", a.recording)
      local bytes = read_file(path)
      local at = records(path).chunks[2].offset + 17 + 1
      assert(helpers.run(("printf '\\%03o' | dd of=%s bs=1 seek=%d conv=notrunc status=none")
        :format((bytes:byte(at) + 1) % 256, path, at - 1)))
      status, body = lab:http(p, "GET", "/admin/recordings/" .. a.recording .. "/verify", admin)
      doc = cjson.decode(body)
      assert.are.same({ 200, false, 2 }, { status, doc.intact, doc.first_bad_chunk })
      local seen = {}
      for _, l in ipairs(audit("on")) do
        if l.event:find("^recording_") then seen[l.event] = l.admin end
      end
      assert.are.same({ recording_listed = "admin#1", recording_download = "admin#1",
        recording_verify = "admin#1" }, seen)
    end)

    it("refuses the recordings routes to a user key and to no key (403)", function()
      local id = closed("on", 1).recording
      for _, h in ipairs({ { ["X-API-Key"] = K_FULL }, {} }) do
        for _, path in ipairs({ "/admin/recordings", "/admin/recordings/" .. id .. "/data",
                                "/admin/recordings/" .. id .. "/verify" }) do
          local status, body = lab:http(p, "GET", path, h)
          assert.are.equal(403, status)
          assert.is_nil(body:find("CTVNCREC", 1, true))
        end
      end
    end)
  end)

  describe("keyframes", function()
    it("cut the browser's encodings to stateless ones and come every RECORD_KEYFRAME s",
       function()
      local p = start_gateway("kf", { RECORD_KEYFRAME = "1", CLUSTER_PORT = full_port })
      local status, _, c = common.ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(101, status)
      c:handshake()
      local encs = { 16, 7, 6, 0, 1, -223, -239, -260, -314 }
      local list = {}
      for i, e in ipairs(encs) do
        e = e % 4294967296
        list[i] = string.char(math.floor(e / 16777216), math.floor(e / 65536) % 256,
          math.floor(e / 256) % 256, e % 256)
      end
      c:send("\2\0\0" .. string.char(#encs) .. table.concat(list))
      c:send("\3\1\0\0\0\0\0\64\0\48")             -- incremental: an empty update
      assert.are.equal("\0\0\0\0", c:read(4))
      local FULL = 16 + 64 * 48 * 4
      for _ = 1, 3 do
        assert.are.equal("\0\0\0\1", assert(c:read(FULL, 3)):sub(1, 4))
      end
      c:close()
      local a = closed("kf", 1)
      local r = records(rec_path("kf", a.recording))
      local data, keys = {}, {}
      for i, ch in ipairs(r.chunks) do
        data[i] = ch.data
        if ch.keyframe then keys[#keys + 1] = ch end
      end
      assert.are.equal(table.concat(c.got), table.concat(data))
      assert.are.equal(4, #keys)                         -- the stream's start, then one a second
      for i = 2, 4 do
        assert.are.same({ FULL, "\0\0\0\1" }, { keys[i].len, keys[i].data:sub(1, 4) })
        if i > 2 then
          local gap = keys[i].t_ms - keys[i - 1].t_ms
          assert.is_true(gap >= 800 and gap <= 1800, "gap " .. gap)
        end
      end
      local seen
      for line in read_file(dir .. "/full.jsonl"):gmatch("[^\n]+") do
        local e = cjson.decode(line)
        if e.name == "SetEncodings" then seen = e.encodings end
      end
      assert.are.same({ 0, -223, -239 }, seen)
    end)

    it("are found in the target's messages however they are cut", function()
      local k = keyframe.new(4, 2, 32)
      local rect = function(w) return "\0\0\0\0" .. string.char(0, w, 0, 2) .. "\0\0\0\0" end
      local partial = "\0\0\0\1" .. rect(2) .. string.rep("p", 2 * 2 * 4)
      local full = "\0\0\0\1" .. rect(4) .. string.rep("f", 4 * 2 * 4)
      local stream = "\0\0\0\0" .. "\2" .. partial .. "\3\0\0\0\0\0\0\2hi" .. full .. "\2"
      k:request()
      for _, step in ipairs({ 1, 3, 7, #stream }) do
        k = keyframe.new(4, 2, 32)
        k:request()
        local events = {}
        for i = 1, #stream, step do
          for _, ev in ipairs(k:server(stream:sub(i, i + step - 1))) do
            events[#events + 1] = { ev[1] + i - 1, ev[2], ev[3] }
          end
        end
        local p0 = 6                                     -- after the empty update and the bell
        local f0 = p0 + #partial + 10
        assert.are.same({ { 1, "start" }, { 5, "end", false }, -- the empty update: not full
          { p0, "start" }, { p0 + #partial, "end", false }, { f0, "start" },
          { f0 + #full, "end", true } }, events)
      end
      assert.are.equal("\2\0\0\2\0\0\0\0\255\255\255\33",
        k:client("\2\0\0\3\0\0\0\16\0\0\0\0\255\255\255\33"))
    end)
  end)

  describe("RECORD=grant", function()
    local p
    setup(function() p = start_gateway("grant", { RECORD = "grant" }) end)

    it("records only grants that ask: a key-file :record, combined with :view", function()
      session(p, K_FULL, 1, "")
      local a = closed("grant", 1)
      assert.is_nil(a.recording)
      session(p, K_REC, 1, "")
      local b = closed("grant", 2)
      assert.is_string(b.recording)
      assert.is_true(b.view_only)
      assert.is_true(records(rec_path("grant", b.recording)).trailer.intact)
    end)

    it("reads a JWT claim record, true or a list of VM ids, strictly typed", function()
      local claims = { sub = "ann", vms = "*", record = { "vm-1" } }
      assert.are.same({ "ann", false, true }, { jwt.grant(claims, "vm-1") })
      assert.are.same({ "ann", false, false }, { jwt.grant(claims, "vm-2") })
      claims.record = true
      assert.are.same({ "ann", false, true }, { jwt.grant(claims, "vm-2") })
      for _, bad in ipairs({ "yes", 1, {} }) do
        claims.record = bad
        assert.are.same({ nil, "malformed token claims (record)", "auth" },
          { jwt.grant(claims, "vm-1") })
      end
    end)
  end)

  describe("a directory the workers cannot write", function()
    local locked
    setup(function()
      locked = dir .. "/locked"
      assert(helpers.run(("mkdir -p %s && chmod 700 %s"):format(locked, locked)))
    end)

    it("refuses the page and the websocket with RECORD_REQUIRED=on, saying why", function()
      local p = start_gateway("required", { RECORD_DIR = locked, RECORD_REQUIRED = "on" })
      local status, body = lab:http(p, "GET", "/console/vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(503, status)
      assert.truthy(body:find("must be recorded", 1, true), body)
      local s2, _, c = common.ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(503, s2)
      assert.are.equal("unrecordable", cjson.decode(c.body).kind)
      assert.truthy(wait_for(function()
        for _, a in ipairs(audit("required")) do
          if a.event == "refused" and a.reason == "unrecordable" then return true end
        end
      end))
    end)

    it("lets the session go on without it, the audit line saying incomplete", function()
      local p = start_gateway("optional", { RECORD_DIR = locked })
      session(p, K_FULL, 2, "")
      local a = closed("optional", 1)
      assert.is_string(a.recording)
      assert.is_false(a.recording_complete)
    end)
  end)

  describe("a full disk (a small tmpfs)", function()
    local mnt
    setup(function()
      mnt = dir .. "/small"
      -- the workers' user (WORKER_USER, ctvnc: made by the gateways started before)
      assert(helpers.run(("mkdir -p %s && mount -t tmpfs -o size=8k,mode=700 tmpfs %s && "
        .. "chown ctvnc %s"):format(mnt, mnt, mnt)))
    end)
    teardown(function()
      lab:stop_gateways("full", "fullreq")
      helpers.run("umount " .. mnt)
    end)

    it("gives an incomplete recording while the console goes on", function()
      -- one page of the two taken: the recording fills the other
      assert(helpers.run(("head -c 4096 /dev/zero > %s/filler && chown ctvnc %s/filler")
        :format(mnt, mnt)))
      local p = start_gateway("full", { RECORD_DIR = mnt })
      -- 1,500 updates: 6,000 bytes of payload alone, past the free page
      -- however the recorder gathers them into chunks
      session(p, K_FULL, 1500, "")
      local a = closed("full", 1)
      assert.is_false(a.recording_complete)
      local r = records(mnt .. "/" .. a.recording .. ".ctvrec")
      assert.is_nil(r.trailer)
      assert.is_true(#r.chunks > 0)
      for _, c in ipairs(r.chunks) do assert.is_true(c.intact) end
    end)

    it("refuses the session with RECORD_REQUIRED=on when nothing more fits", function()
      helpers.run(("head -c 8192 /dev/zero >> %s/filler"):format(mnt))
      local p = start_gateway("fullreq", { RECORD_DIR = mnt, RECORD_REQUIRED = "on" })
      local status, _, c = common.ws(p, "vm-1", { ["X-API-Key"] = K_FULL })
      assert.are.equal(503, status)
      assert.are.equal("unrecordable", cjson.decode(c.body).kind)
    end)
  end)

  describe("retention", function()
    it("removes the oldest first past RECORD_MAX_MB, one audit line each", function()
      local p = start_gateway("max", { RECORD_MAX_MB = "0.002" })   -- 2097 bytes
      local ids = {}
      for i = 1, 4 do
        session(p, K_FULL, 12, "")
        ids[i] = closed("max", i).recording
      end
      local removed = wait_for(function()
        local out = {}
        for _, a in ipairs(audit("max")) do
          if a.event == "recording_removed" then out[#out + 1] = a end
        end
        return #out >= 2 and out
      end)
      assert.truthy(removed)
      local total, kept = 0, 0
      for i, id in ipairs(ids) do
        local f = read_file(rec_path("max", id))
        if f then
          kept = kept + 1
          total = total + #f
        else
          assert.are.equal(id, removed[i].recording, "not the oldest first")
          assert.are.equal("RECORD_MAX_MB", removed[i].reason)
        end
      end
      assert.is_true(kept >= 1 and total <= 2097)
      assert.is_nil(read_file(rec_path("max", ids[1])))
    end)

    it("removes recordings older than RECORD_KEEP_DAYS", function()
      local p = start_gateway("days", { RECORD_KEEP_DAYS = "0.00001" })   -- 0.864 s
      session(p, K_FULL, 1, "")
      local first = closed("days", 1).recording
      socket.sleep(1.2)
      session(p, K_FULL, 1, "")
      local second = closed("days", 2).recording
      assert.truthy(wait_for(function() return not read_file(rec_path("days", first)) end))
      assert.truthy(read_file(rec_path("days", second)))
      local seen
      for _, a in ipairs(audit("days")) do
        if a.event == "recording_removed" and a.recording == first then seen = a end
      end
      assert.are.equal("RECORD_KEEP_DAYS", seen.reason)
    end)
  end)
end)
