-- luacheck: std max+ngx_lua
--- ctvnc.gateway.metrics: the counters of /metrics, shared by every worker
-- of this node in the ctvnc_metrics lua_shared_dict (name{labels} -> n),
-- their Prometheus text, and who may read them.
local ngx = ngx

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local concat, sort, floor = table.concat, table.sort, math.floor

local _M = {}

_M.DICT = "ctvnc_metrics"

local HELP = {
  ctvnc_requests_total = { "counter", "Requests by route and result kind." },
  ctvnc_tower_request_seconds = { "histogram", "Latency of CloudTower console requests." },
  ctvnc_sessions_open = { "gauge", "Open console sessions by mode and access." },
  ctvnc_sessions_capacity = { "gauge", "Console sessions this node holds at most (max_sessions)." },
  ctvnc_sessions_ended_total = { "counter", "Console sessions ended, by reason." },
  ctvnc_relay_bytes_total = { "counter", "Bytes relayed, by direction." },
  ctvnc_sessions_refused_total = { "counter", "Console sessions refused, by limit." },
  ctvnc_store_errors_total = { "counter", "Calls to the session store that failed." },
  ctvnc_store_up = { "gauge", "1 while the session store answers, 0 after a failed call." },
  ctvnc_store_seconds = { "histogram", "Latency of calls to the session store." },
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

-- The sample names made so far, by name and label values (a worker makes
-- each once: an open counts several, and every request one).
local made = {}

--- The sample name of name{labels}, made once.
local function sample_of(name, labels)
  local key = name
  if labels then
    local keys = {}
    for k in pairs(labels) do keys[#keys + 1] = k end
    sort(keys)
    for _, k in ipairs(keys) do key = key .. "\0" .. k .. "\0" .. tostring(labels[k]) end
  end
  local s = made[key]
  if not s then
    s = sample(name, labels)
    made[key] = s
  end
  return s
end

--- Adds n (1) to a counter.
function _M.count(name, labels, n)
  local d = ngx.shared[_M.DICT]
  if not d then return end
  d:incr(sample_of(name, labels), n or 1, 0)
end

--- Sets a gauge.
function _M.set(name, labels, v)
  local d = ngx.shared[_M.DICT]
  if d then d:set(sample_of(name, labels), v) end
end

--- Records one observation of a histogram (seconds), in BUCKETS or the
-- buckets given.
function _M.observe(name, value, buckets)
  local d = ngx.shared[_M.DICT]
  if not d then return end
  for _, le in ipairs(buckets or _M.BUCKETS) do
    if value <= le then d:incr(sample_of(name .. "_bucket", { le = tostring(le) }), 1, 0) end
  end
  d:incr(sample_of(name .. "_bucket", { le = "+Inf" }), 1, 0)
  d:incr(name .. "_sum", value, 0)
  d:incr(name .. "_count", 1, 0)
end

--- The Prometheus text exposition (version 0.0.4) of every metric, with
-- the node's open sessions by kind ("<mode> <access>" -> n) and its
-- capacity (max_sessions).
function _M.prometheus(open_by_kind, capacity)
  local d = ngx.shared[_M.DICT]
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
  -- open sessions as the workers count them, zero included for each kind
  for _, mode in ipairs({ "direct", "proxy" }) do
    for _, access in ipairs({ "full", "view" }) do
      add("ctvnc_sessions_open", ("%s %d"):format(
        sample("ctvnc_sessions_open", { mode = mode, access = access }),
        open_by_kind[mode .. " " .. access] or 0))
    end
  end
  add("ctvnc_sessions_capacity", ("ctvnc_sessions_capacity %d"):format(capacity))
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

-- Who may read /metrics

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

--- A set of addresses and IPv4 CIDRs ("10.0.0.0/8 192.0.2.7, ::2"), with
-- loopback always in it, unless only_listed.
function _M.address_set(list, only_listed)
  local set = { exact = { ["::1"] = true }, nets = { { ipv4("127.0.0.0"), 8 } } }
  if only_listed then set = { exact = {}, nets = {} } end
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

return _M
