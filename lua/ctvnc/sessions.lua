-- luacheck: std max+ngx_lua
--- ctvnc.sessions: the console gateway's book of open sessions, shared by
-- every nginx worker through lua_shared_dicts (ngx_lua only), its audit
-- trail and its Prometheus metrics.
--
-- ctvnc_sessions (the book):
--   s:<id>          JSON of an open session (id, user, vm_id, mode,
--                   view_only, client, start, bytes_in, bytes_out)
--   v:<vm>:<n>      slot n (1..max_per_vm) of a VM, holding a session id
--   u:<user>:<n>    slot n (1..max_per_user) of a user
--   k:<id>          the kill flag of a session, set by the admin routes
-- Every key of a session lives TTL seconds and its relay refreshes them
-- while it runs: a session ends by close, error or worker exit, and also
-- when a worker crashes, its keys expire and the counts heal by
-- themselves. Slots are taken with dict:add, which is atomic, so two
-- workers never both get the last one.
--
-- ctvnc_metrics: counters by their sample name (name{labels}).
local ngx = ngx
local cjson = require "cjson.safe"
local random_bytes = require("ctvnc.core").random_bytes

local type, tostring, tonumber, pairs, ipairs, pcall = type, tostring, tonumber, pairs, ipairs,
  pcall
local concat, sort, floor = table.concat, table.sort, math.floor
local io_open, os_date = io.open, os.date

local _M = {}

_M.TTL = 10            -- seconds a session's keys live without a refresh
_M.OPEN_TTL = 60       -- the same while the target's handshake runs (its timeouts
                       -- add up past TTL: the slots must not lapse meanwhile)
_M.DICT = "ctvnc_sessions"
_M.METRICS = "ctvnc_metrics"

local function book() return ngx.shared[_M.DICT] end

--- A fresh session id: 16 hex digits from the kernel.
function _M.new_id()
  return (random_bytes(8):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- Seconds since the epoch as ISO 8601 UTC with milliseconds.
function _M.iso(t)
  local ms = floor((t % 1) * 1000 + 0.5)
  if ms >= 1000 then ms = 999 end
  return os_date("!%Y-%m-%dT%H:%M:%S", floor(t)) .. ("." .. ("%03d"):format(ms)) .. "Z"
end

local function encode(rec)
  return cjson.encode({ id = rec.id, user = rec.user, vm_id = rec.vm_id, mode = rec.mode,
    view_only = rec.view_only, client = rec.client, start = rec.start,
    bytes_in = rec.bytes_in or 0, bytes_out = rec.bytes_out or 0 })
end

--- Every open session, oldest first (a list of records).
function _M.list()
  local d = book()
  local out = {}
  for _, k in ipairs(d:get_keys(0)) do
    if k:sub(1, 2) == "s:" then
      local rec = cjson.decode(d:get(k) or "")
      if type(rec) == "table" then out[#out + 1] = rec end
    end
  end
  sort(out, function(a, b) return (a.start or 0) < (b.start or 0) end)
  return out
end

--- The open sessions whose `field` is `value`, oldest first.
local function where(field, value)
  local out = {}
  for _, rec in ipairs(_M.list()) do
    if rec[field] == value then out[#out + 1] = rec end
  end
  return out
end

--- The open sessions of a VM, oldest first.
function _M.of_vm(vm_id) return where("vm_id", vm_id) end

--- The open sessions of a user, oldest first.
function _M.of_user(user) return where("user", user) end

local function take(d, prefix, max, id, held)
  if not max or max <= 0 then return true end
  for i = 1, max do
    local k = prefix .. i
    if d:add(k, id, _M.OPEN_TTL) then
      held[#held + 1] = k
      return true
    end
  end
  return false
end

local function drop(d, keys, id)
  for _, k in ipairs(keys) do
    if d:get(k) == id then d:delete(k) end
  end
end

--- Would a session of user on vm_id fit now? true | nil, "vm" | "user",
-- the oldest session in the way (a record or nil). Takes nothing.
function _M.fits(vm_id, user, limits)
  local d = book()
  local function full(prefix, max)
    if not max or max <= 0 then return false end
    for i = 1, max do
      if d:get(prefix .. i) == nil then return false end
    end
    return true
  end
  if full("v:" .. vm_id .. ":", limits.max_per_vm) then
    return nil, "vm", _M.of_vm(vm_id)[1]
  end
  if user ~= nil and user ~= "" and full("u:" .. tostring(user) .. ":", limits.max_per_user) then
    return nil, "user", _M.of_user(user)[1]
  end
  return true
end

--- Opens a session: takes a slot of its VM and of its user (when limits
-- say so) and records it. rec | nil, "vm" | "user", the oldest session in
-- the way.
function _M.open(rec, limits)
  local d = book()
  rec.id = rec.id or _M.new_id()
  rec.bytes_in, rec.bytes_out = rec.bytes_in or 0, rec.bytes_out or 0
  local held = {}
  if not take(d, "v:" .. rec.vm_id .. ":", limits.max_per_vm, rec.id, held) then
    return nil, "vm", _M.of_vm(rec.vm_id)[1]
  end
  -- a hook that names no user has no per-user limit
  local per_user = (rec.user ~= nil and rec.user ~= "") and limits.max_per_user or 0
  if not take(d, "u:" .. tostring(rec.user) .. ":", per_user, rec.id, held) then
    drop(d, held, rec.id)
    return nil, "user", _M.of_user(rec.user)[1]
  end
  rec.slots = held
  local ok, err = d:set("s:" .. rec.id, encode(rec), _M.OPEN_TTL)
  if not ok then
    drop(d, held, rec.id)
    return nil, "store", err
  end
  return rec
end

--- Keeps a running session's keys alive and publishes its byte counts.
function _M.refresh(rec)
  local d = book()
  for _, k in ipairs(rec.slots or {}) do
    local holder = d:get(k)
    if holder == rec.id or holder == nil then d:set(k, rec.id, _M.TTL) end
  end
  d:set("s:" .. rec.id, encode(rec), _M.TTL)
end

--- Forgets a session: its slots, its record and its kill flag.
function _M.close(rec)
  local d = book()
  drop(d, rec.slots or {}, rec.id)
  d:delete("s:" .. rec.id)
  d:delete("k:" .. rec.id)
end

--- Asks the relay of session id to end it (within its next tick).
-- true | nil when there is no such session.
function _M.kill(id, who)
  local d = book()
  if type(id) ~= "string" or d:get("s:" .. id) == nil then return nil end
  d:set("k:" .. id, tostring(who or "admin"), 60)
  return true
end

--- Asks every session of vm_id to end (but those asked already): the ids.
function _M.kill_vm(vm_id, who)
  local ids = {}
  for _, rec in ipairs(_M.of_vm(vm_id)) do
    if not _M.killer(rec.id) and _M.kill(rec.id, who) then ids[#ids + 1] = rec.id end
  end
  return ids
end

--- Who asked session id to end (nil: nobody).
function _M.killer(id)
  return book():get("k:" .. id)
end

function _M.killed(id)
  return book():get("k:" .. id) ~= nil
end

-- Metrics ------------------------------------------------------------------

local HELP = {
  ctvnc_requests_total = { "counter", "Requests by route and result kind." },
  ctvnc_tower_request_seconds = { "histogram", "Latency of CloudTower console requests." },
  ctvnc_sessions_open = { "gauge", "Open console sessions by mode and access." },
  ctvnc_sessions_ended_total = { "counter", "Console sessions ended, by reason." },
  ctvnc_relay_bytes_total = { "counter", "Bytes relayed, by direction." },
  ctvnc_sessions_refused_total = { "counter", "Console sessions refused, by limit." },
}
_M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

local function label_value(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function sample(name, labels)
  if not labels then return name end
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = ('%s="%s"'):format(k, label_value(labels[k])) end
  return name .. "{" .. concat(parts, ",") .. "}"
end

--- Adds n (1) to a counter.
function _M.count(name, labels, n)
  local d = ngx.shared[_M.METRICS]
  if not d then return end
  d:incr(sample(name, labels), n or 1, 0)
end

--- Records one observation of a histogram (seconds).
function _M.observe(name, value)
  local d = ngx.shared[_M.METRICS]
  if not d then return end
  for _, le in ipairs(_M.BUCKETS) do
    if value <= le then d:incr(sample(name .. "_bucket", { le = tostring(le) }), 1, 0) end
  end
  d:incr(sample(name .. "_bucket", { le = "+Inf" }), 1, 0)
  d:incr(name .. "_sum", value, 0)
  d:incr(name .. "_count", 1, 0)
end

--- The Prometheus text exposition (version 0.0.4) of every metric.
function _M.prometheus()
  local d = ngx.shared[_M.METRICS]
  local by_name = {}
  local function add(name, line)
    local list = by_name[name]
    if not list then
      list = {}
      by_name[name] = list
    end
    list[#list + 1] = line
  end
  if d then
    for _, k in ipairs(d:get_keys(0)) do
      local v = d:get(k)
      if type(v) == "number" then
        local base = k:match("^([%w_]+)")
        base = base:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        if not HELP[base] then base = k:match("^([%w_]+)") end
        add(base, ("%s %s"):format(k, v == floor(v) and ("%d"):format(v) or ("%.6f"):format(v)))
      end
    end
  end
  -- open sessions from the book, zero included for each kind
  local open = {}
  for _, mode in ipairs({ "direct", "proxy" }) do
    for _, access in ipairs({ "full", "view" }) do open[mode .. " " .. access] = 0 end
  end
  for _, rec in ipairs(_M.list()) do
    local key = tostring(rec.mode) .. " " .. (rec.view_only and "view" or "full")
    open[key] = (open[key] or 0) + 1
  end
  for key, n in pairs(open) do
    local mode, access = key:match("^(%S+) (%S+)$")
    add("ctvnc_sessions_open", ("%s %d"):format(
      sample("ctvnc_sessions_open", { mode = mode, access = access }), n))
  end
  local names = {}
  for name in pairs(by_name) do names[#names + 1] = name end
  sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local h = HELP[name]
    if h then
      out[#out + 1] = ("# HELP %s %s"):format(name, h[2])
      out[#out + 1] = ("# TYPE %s %s"):format(name, h[1])
    end
    local lines = by_name[name]
    local function key(l)
      local le = l:match('le="([^"]+)"')
      if not le then return l, 0 end
      return l:gsub('le="[^"]+"', ""), le == "+Inf" and 1e300 or tonumber(le)
    end
    sort(lines, function(a, b)
      local ka, na = key(a)
      local kb, nb = key(b)
      if ka ~= kb then return ka < kb end
      return na < nb
    end)
    for _, l in ipairs(lines) do out[#out + 1] = l end
  end
  return concat(out, "\n") .. "\n"
end

-- Who may read /metrics -----------------------------------------------------------

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

--- A set of addresses and IPv4 CIDRs ("10.0.0.0/8 192.0.2.7, ::2"), with
-- loopback always in it.
function _M.address_set(list)
  local set = { exact = { ["::1"] = true }, nets = { { ipv4("127.0.0.0"), 8 } } }
  local items = {}
  if type(list) == "string" then
    for a in list:gmatch("[^%s,]+") do items[#items + 1] = a end
  elseif type(list) == "table" then
    items = list
  end
  for _, a in ipairs(items) do
    local ip, bits = a:match("^([%d%.]+)/(%d+)$")
    if ip and ipv4(ip) and tonumber(bits) <= 32 then
      set.nets[#set.nets + 1] = { ipv4(ip), tonumber(bits) }
    else
      set.exact[a:lower()] = true
    end
  end
  return set
end

--- Is addr in set (from address_set)?
function _M.address_allowed(set, addr)
  if type(addr) ~= "string" then return false end
  addr = addr:lower()
  if set.exact[addr] then return true end
  local v4 = ipv4(addr:match("^::ffff:([%d%.]+)$") or addr)
  if not v4 then return false end
  for _, net in ipairs(set.nets) do
    local size = 2 ^ (32 - net[2])
    if floor(v4 / size) == floor(net[1] / size) then return true end
  end
  return false
end

-- Audit ----------------------------------------------------------------------

local audit_file, audit_path

--- Where audit lines go: a file path, "error_log" (nginx's error log at
-- notice), or "off".
-- A file is opened here, at configure time (nginx's master, before
-- workers drop privileges), in append mode: each line is one write.
function _M.audit_to(path)
  audit_path = path
  if audit_file then pcall(audit_file.close, audit_file) end
  audit_file = nil
  if path ~= "off" and path ~= "error_log" and path then
    audit_file = io_open(path, "a")
    if audit_file then audit_file:setvbuf("no") end
  end
end

local AUDIT_FIELDS = { "event", "session", "user", "vm_id", "mode", "view_only", "client",
  "start", "end", "duration", "bytes_in", "bytes_out", "reason" }

--- One audit line: event (open, close, refused, killed) and the fields of
-- the session. Only the listed fields are written: no caller can put a
-- secret in by accident.
function _M.audit(event, f, log)
  if audit_path == "off" then return end
  local doc = {}
  f = f or {}
  for _, k in ipairs(AUDIT_FIELDS) do doc[k] = f[k] end
  doc.event = event
  if type(doc.start) == "number" then doc.start = _M.iso(doc.start) end
  if type(doc["end"]) == "number" then doc["end"] = _M.iso(doc["end"]) end
  local line = cjson.encode(doc)
  if audit_path == "error_log" or not audit_path then
    if log then log(ngx.NOTICE, "ctvnc audit: ", line) end
    return
  end
  if not audit_file then
    audit_file = io_open(audit_path, "a")
    if not audit_file then
      if log then log(ngx.ERR, "ctvnc: cannot open the audit log ", audit_path) end
      return
    end
    audit_file:setvbuf("no")
  end
  audit_file:write(line, "\n")
end

return _M
