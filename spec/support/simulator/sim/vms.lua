-- CloudTower simulator: the VM list of POST /v2/api/get-vms, with the
-- Prisma-style `where` filter, `orderBy` and paging of the real tower
-- (no ngx: it runs in plain Lua too).
--
-- The list: web-1 .. web-20 (vm-<n>, local-<n>, RUNNING, STOPPED when n is
-- a multiple of 10) in cluster-a (odd n, the cluster at 127.0.0.2) and
-- cluster-b (even n, 127.0.0.3); two VMs named "twin" (vm-101 in cluster-a,
-- vm-102 in cluster-b) and a third "twin" in the recycle bin (vm-104);
-- "trash" (vm-103) in the recycle bin. An exact name web-<n> with n > 20
-- finds vm-<n> too (any n >= 1, as the simulator always did).

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local find, match, sub = string.find, string.match, string.sub

local _M = {}

local CLUSTERS = {
  a = { id = "cl2k0mz7q0d0k0958ca000001", name = "cluster-a" },
  b = { id = "cl2k0mz7q0d0k0958cb000002", name = "cluster-b" },
}
local HOSTS = {
  a = { id = "cl2k0mz7q0d0k0958ha000001", name = "host-a1", management_ip = "127.0.0.1" },
  b = { id = "cl2k0mz7q0d0k0958hb000002", name = "host-b1", management_ip = "127.0.0.1" },
}

local function vm(id, name, local_id, status, side, recycled)
  return { id = id, name = name, local_id = local_id, status = status,
    in_recycle_bin = recycled or false, cluster = CLUSTERS[side], host = HOSTS[side] }
end

local function web(n)
  return vm("vm-" .. n, "web-" .. n, "local-" .. n, n % 10 == 0 and "STOPPED" or "RUNNING",
    n % 2 == 1 and "a" or "b")
end

local LIST = {}
for n = 1, 20 do LIST[#LIST + 1] = web(n) end
LIST[#LIST + 1] = vm("vm-101", "twin", "local-101", "RUNNING", "a")
LIST[#LIST + 1] = vm("vm-102", "twin", "local-102", "RUNNING", "b")
LIST[#LIST + 1] = vm("vm-103", "trash", "local-103", "STOPPED", "a", true)
LIST[#LIST + 1] = vm("vm-104", "twin", "local-104", "STOPPED", "a", true)
_M.LIST = LIST

local STRING_FIELDS = { id = true, name = true, local_id = true, status = true }
local STATUS = { RUNNING = true, STOPPED = true, SUSPENDED = true, DELETED = true, UNKNOWN = true }
local RELATION = { cluster = { id = true, name = true },
  host = { id = true, name = true, management_ip = true } }

local function fail(msg) error({ where = true, message = msg }, 0) end

local function is_array(t)
  return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end

local matches

-- one string field against one operator
local function string_op(field, op, have, want)
  if op == "" or op == "_not" then
    if type(want) ~= "string" then fail("where." .. field .. op .. " must be a string") end
    if field == "status" and not STATUS[want] then
      fail("where.status: " .. want .. " is not a VmStatus")
    end
    return (have == want) == (op == "")
  end
  if op == "_in" or op == "_not_in" then
    if not is_array(want) then fail("where." .. field .. op .. " must be an array") end
    local hit = false
    for _, w in ipairs(want) do
      if type(w) ~= "string" then fail("where." .. field .. op .. " must hold strings") end
      if w == have then hit = true end
    end
    return hit == (op == "_in")
  end
  if type(want) ~= "string" then fail("where." .. field .. op .. " must be a string") end
  local neg = sub(op, 1, 5) == "_not_"
  local base = neg and sub(op, 5) or op
  local hit
  if base == "_contains" then hit = find(have, want, 1, true) ~= nil
  elseif base == "_starts_with" then hit = sub(have, 1, #want) == want
  elseif base == "_ends_with" then hit = want == "" or sub(have, -#want) == want
  else fail("where: unknown operator " .. field .. op) end
  return hit ~= neg
end

-- does `obj` (a VM, or its cluster or host) match `where` over `fields`
function matches(obj, where, fields, what)
  if type(where) ~= "table" or (is_array(where) and next(where) ~= nil) then
    fail(what .. " must be an object")
  end
  for k, v in pairs(where) do
    if k == "AND" then
      local list = is_array(v) and v or { v }
      for _, w in ipairs(list) do
        if not matches(obj, w, fields, what .. ".AND") then return false end
      end
    elseif k == "OR" then
      if not is_array(v) then fail(what .. ".OR must be an array") end
      local any = false
      for _, w in ipairs(v) do
        if matches(obj, w, fields, what .. ".OR") then any = true end
      end
      if not any then return false end
    elseif k == "NOT" then
      local list = is_array(v) and v or { v }
      for _, w in ipairs(list) do
        if matches(obj, w, fields, what .. ".NOT") then return false end
      end
    elseif fields == STRING_FIELDS and k == "in_recycle_bin" then
      if type(v) ~= "boolean" then fail(what .. ".in_recycle_bin must be a boolean") end
      if obj.in_recycle_bin ~= v then return false end
    elseif fields == STRING_FIELDS and k == "in_recycle_bin_not" then
      if type(v) ~= "boolean" then fail(what .. ".in_recycle_bin_not must be a boolean") end
      if obj.in_recycle_bin == v then return false end
    elseif fields == STRING_FIELDS and RELATION[k] then
      if not matches(obj[k], v, RELATION[k], what .. "." .. k) then return false end
    else
      local field, op = match(tostring(k), "^([%l_]-)(_not_in)$")
      if not field then
        for _, o in ipairs({ "_not_contains", "_not_starts_with", "_not_ends_with", "_contains",
                             "_starts_with", "_ends_with", "_not", "_in" }) do
          if sub(k, -#o) == o and fields[sub(k, 1, -#o - 1)] then
            field, op = sub(k, 1, -#o - 1), o
            break
          end
        end
      end
      if not field and fields[k] then field, op = k, "" end
      if not field or not fields[field] then fail(what .. ": unknown field " .. tostring(k)) end
      if not string_op(field, op, obj[field], v) then return false end
    end
  end
  return true
end

local ORDER_FIELDS = { id = true, name = true, local_id = true, status = true }

local function nonneg_int(v, name)
  if v == nil then return nil end
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then fail(name .. " must be an integer >= 0") end
  return v
end

--- find(body) -> array of VMs | nil, message. body: {where?, first?, skip?,
-- last?, after?, before?, orderBy?}; `null` is JSON null.
function _M.find(body, null)
  local ok, res = pcall(function()
    for k in pairs(body) do
      if not ({ where = true, first = true, skip = true, last = true, after = true,
                before = true, orderBy = true })[k] then
        fail("unexpected field " .. tostring(k))
      end
    end
    local where = body.where
    if where == null then where = nil end
    local list = {}
    for _, v in ipairs(LIST) do list[#list + 1] = v end
    local n = type(where) == "table" and type(where.name) == "string"
      and tonumber(match(where.name, "^web%-(%d+)$"))
    if n and n > 20 and n < 2 ^ 48 then list[#list + 1] = web(n) end
    local out = {}
    for _, v in ipairs(list) do
      if where == nil or matches(v, where, STRING_FIELDS, "where") then out[#out + 1] = v end
    end
    local order = body.orderBy
    if order ~= nil and order ~= null then
      local field, dir = match(type(order) == "string" and order or "", "^([%l_]+)_(%u+)$")
      if not field or not ORDER_FIELDS[field] or (dir ~= "ASC" and dir ~= "DESC") then
        fail("orderBy must be <id|name|local_id|status>_<ASC|DESC>")
      end
      local pos = {}
      for i, v in ipairs(out) do pos[v] = i end
      table.sort(out, function(x, y)
        if x[field] ~= y[field] then
          if dir == "ASC" then return x[field] < y[field] end
          return x[field] > y[field]
        end
        return pos[x] < pos[y]
      end)
    end
    -- cursors: ids
    for _, c in ipairs({ "after", "before" }) do
      local id = body[c]
      if id ~= nil and id ~= null then
        if type(id) ~= "string" then fail(c .. " must be a VM id") end
        local at
        for i, v in ipairs(out) do if v.id == id then at = i end end
        local cut = {}
        if at then
          for i, v in ipairs(out) do
            if (c == "after" and i > at) or (c == "before" and i < at) then cut[#cut + 1] = v end
          end
        end
        out = cut
      end
    end
    local skip = nonneg_int(body.skip ~= null and body.skip or nil, "skip") or 0
    local first = nonneg_int(body.first ~= null and body.first or nil, "first")
    local last = nonneg_int(body.last ~= null and body.last or nil, "last")
    local paged = {}
    for i = skip + 1, #out do
      if first and #paged >= first then break end
      paged[#paged + 1] = out[i]
    end
    if last and #paged > last then
      local tail = {}
      for i = #paged - last + 1, #paged do tail[#tail + 1] = paged[i] end
      paged = tail
    end
    return paged
  end)
  if ok then return res end
  if type(res) == "table" and res.where then return nil, res.message end
  error(res, 0)
end

return _M
