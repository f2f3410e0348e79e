--- ctvnc.batch: client:batch(vm_ids [, opts]) -> results, summary.
-- De-duplication, progress and result assembly; the fetching (one login,
-- retries, re-login) is the client's one engine, the modes and URLs are
-- ctvnc.console's. This file is a method of the client class.
local core = require "ctvnc.core"

local type, ipairs, pairs, error = type, ipairs, pairs, error

--- client:batch(vm_ids, opts) -> results, summary
return function(self, vm_ids, opts)
  if type(vm_ids) ~= "table" then
    error("bad argument #1 to 'batch' (table expected, got " .. type(vm_ids) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'batch' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local total = #vm_ids
  local results = {}
  local done, failed = 0, 0
  local progress = opts.on_progress
  local function settle(positions, result)
    for _, i in ipairs(positions) do
      local r = { vm_id = vm_ids[i] }
      for k, v in pairs(result) do r[k] = v end
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

  local infos, fetched = {}, {}
  local function fetch(list)
    local calls = {}
    for i, id in ipairs(list) do calls[i] = self:_vnc_call(id) end
    self:_fetch(calls, concurrency, function(i, info, m, k)
      local id = list[i]
      if info then
        infos[id] = info
        report(#positions[id])
      else
        fail_all(positions[id], m, k)
      end
    end)
  end
  if #ids > 1 and self.no_token_field == nil then
    -- learn the tower's schema from the first VM: a tower from before the
    -- token field then costs one extra request, not one per VM
    fetch({ ids[1] })
    if self.no_token_field == nil then self.no_token_field = false end
    local rest = {}
    for i = 2, #ids do rest[i - 1] = ids[i] end
    fetch(rest)
  elseif #ids > 0 then
    fetch(ids)
  end
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

  local summary = { total = total, ok = 0, failed = 0 }
  for i = 1, total do
    if results[i].ok then summary.ok = summary.ok + 1 else summary.failed = summary.failed + 1 end
  end
  return results, summary
end
