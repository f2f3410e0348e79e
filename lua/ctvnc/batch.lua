--- ctvnc.batch: client:batch(vm_ids [, opts]) -> results, summary.
-- De-duplication, progress and result assembly; the fetching (one login,
-- retries, re-login) is the client's one engine, the modes and URLs are
-- ctvnc.console's. This file is a method of the client class.
local core = require "ctvnc.core"
local argcheck = require("ctvnc.args").check

local type, ipairs, pairs = type, ipairs, pairs

--- Kinds of a whole group's failure that its answer gave (not the network).
local ANSWERED = { graphql = true, http = true, decode = true, too_large = true,
                   not_found = true }

--- client:batch(vm_ids, opts) -> results, summary
return function(self, vm_ids, opts)
  argcheck(type(vm_ids) == "table", 1, "batch", "table expected, got " .. type(vm_ids))
  argcheck(opts == nil or type(opts) == "table", 2, "batch", "table expected, got " .. type(opts))
  opts = opts or {}
  local total = #vm_ids
  local results = {}
  local done, failed = 0, 0
  local progress = opts.on_progress
  local function settle(positions, result)   -- result itself for the first
    for n, i in ipairs(positions) do
      local r = result
      if n > 1 then
        r = {}
        for k, v in pairs(result) do r[k] = v end
      end
      r.vm_id = vm_ids[i]
      results[i] = r
    end
  end
  local function report(n)
    done = done + n
    if progress then progress(done, total, failed) end
  end
  local function fail_all(positions, msg, kind)
    settle(positions, { ok = false, message = msg, kind = kind })
    failed = failed + #positions
    report(#positions)
  end

  -- Refusals that concern the whole batch.
  local ok, msg, kind = core.check_options("batch", opts)
  local concurrency = opts.concurrency or self.concurrency
  if ok and (type(concurrency) ~= "number" or concurrency < 1 or concurrency % 1 ~= 0) then
    ok, msg, kind = nil, "batch: opts.concurrency must be an integer >= 1", "invalid"
  end

  -- The positions of each distinct id.
  local ids, positions = {}, {}
  for i, id in ipairs(vm_ids) do
    if not ok then
      fail_all({ i }, msg, kind)
    elseif type(id) ~= "string" or id == "" then
      fail_all({ i }, "batch: VM id #" .. i .. " is not a non-empty string", "invalid")
    elseif positions[id] then
      local p = positions[id]
      p[#p + 1] = i
    else
      positions[id] = { i }
      ids[#ids + 1] = id
    end
  end

  local per = opts.per_request or self.per_request
  if ok and (type(per) ~= "number" or per < 1 or per % 1 ~= 0) then
    for _, id in ipairs(ids) do fail_all(positions[id], "batch: opts.per_request must be an "
      .. "integer >= 1", "invalid") end
    ids = {}
  end
  if self.one_per_request or self.documented then per = 1 end

  -- Fetch `list` in groups of `per` VMs a request. When a group fails as
  -- a whole for what its answer said, its VMs are asked again alone, so
  -- one VM's fault never becomes its neighbours'; a 4xx there means the
  -- tower refuses multi-field queries (validation, a cost limit): one VM a
  -- request from then on, for the client's lifetime. While something about
  -- the tower is still to learn (Client:_learning), the first group goes
  -- alone: a tower without the token field, or taking only the vendor
  -- document's request, then costs one extra request, not one per group.
  -- That group is the odd-sized one, so all others are `per` VMs: the
  -- fewer query texts the tower sees, the better it caches them.
  local infos, fetched = {}, {}
  local fetch
  local function fetch_groups(list, first, last)
    local groups, calls = {}, {}
    for i = first, last, per do
      local g = {}
      for j = i, math.min(i + per - 1, last) do g[#g + 1] = list[j] end
      groups[#groups + 1] = g
      calls[#calls + 1] = self:_vnc_call(g, 2 * concurrency)
    end
    local alone = {}
    self:_fetch(calls, concurrency, function(i, outs, m, k, status)
      local g = groups[i]
      if not outs and #g > 1 and ANSWERED[k] then
        if status and status >= 400 and status < 500 then self.one_per_request = true end
        for _, id in ipairs(g) do alone[#alone + 1] = id end
        return
      end
      for j, id in ipairs(g) do
        local o = outs and outs[j]
        if o and o.info then
          infos[id] = o.info
          report(#positions[id])
        else
          fail_all(positions[id], o and o.message or m, o and o.kind or k)
        end
      end
    end)
    if #alone > 0 then
      local was = per
      per = 1
      fetch(alone)
      if not (self.one_per_request or self.documented) then per = was end
    end
  end
  function fetch(list)
    local first = 1
    if #list > 1 and self:_learning() then
      first = (#list - 1) % per + 2
      fetch_groups(list, 1, first - 1)
      if self.no_token_field == nil then self.no_token_field = false end
      if self.multiplexed == nil then self.multiplexed = false end
      if self.one_per_request or self.documented then per = 1 end
      local r = results[positions[list[1]][1]]
      if r and r.kind == "auth" then
        -- the tower refused the token (after a new login, if it was one):
        -- it would refuse it for every other VM too; none of them is asked
        for i = first, #list do
          fail_all(positions[list[i]], "not asked: the tower refused the token", "auth")
        end
        return
      end
    end
    if first <= #list then fetch_groups(list, first, #list) end
  end
  fetch(ids)
  for _, id in ipairs(ids) do
    if infos[id] then fetched[#fetched + 1] = id end
  end

  -- Modes (each distinct cluster probed once) and URLs.
  local modes = {}
  if opts.mode == "auto" or opts.mode == nil then
    local list = {}
    for i, id in ipairs(fetched) do list[i] = infos[id] end
    for i, m in ipairs(self:_modes(list, opts)) do modes[fetched[i]] = m end
  end
  for _, id in ipairs(fetched) do
    local info = infos[id]
    local mode = modes[id] or opts.mode
    local u, m, k = self:_url(info, opts, mode)
    if u then
      settle(positions[id], { ok = true, url = u, mode = mode, info = info })
    else
      settle(positions[id], { ok = false, message = m, kind = k })
    end
  end

  local summary = { total = total, ok = 0, failed = 0, per_request = per }
  for i = 1, total do
    if results[i].ok then summary.ok = summary.ok + 1 else summary.failed = summary.failed + 1 end
  end
  return results, summary
end
