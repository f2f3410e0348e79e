--- ctvnc.batch: console URLs for many VMs over the transport's
-- many-at-once call. One login for the whole batch, each distinct VM id
-- fetched once, retries per VM in rounds, results in input order.
local client = require "ctvnc.client"
local fallback = require "ctvnc.fallback"

local type, ipairs, pairs, error = type, ipairs, pairs, error
local random = math.random

local _M = {}

--- client:batch(vm_ids, opts) -> results, summary
function _M.run(self, vm_ids, opts)
  if type(vm_ids) ~= "table" then
    error("bad argument #1 to 'batch' (table expected, got " .. type(vm_ids) .. ")", 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'batch' (table expected, got " .. type(opts) .. ")", 3)
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
  local ok, msg, kind = fallback.check("batch", opts)
  local concurrency = opts.concurrency or self.concurrency
  if ok and (type(concurrency) ~= "number" or concurrency < 1 or concurrency % 1 ~= 0) then
    ok, msg, kind = nil, "batch: opts.concurrency must be an integer >= 1", "invalid"
  end

  -- Group the positions of each distinct id.
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

  local token
  if #ids > 0 then
    token, msg, kind = self:_token()
    if not token then
      for _, id in ipairs(ids) do fail_all(positions[id], msg, kind) end
      ids = {}
    end
  end

  -- Fetch in rounds: a round runs every pending id at once; retryable
  -- failures go to the next round after a backoff.
  local t = self.transport
  local url = self.base .. "/api"
  local infos = {}
  local pending, attempt, relogged = ids, 0, false
  while #pending > 0 do
    local headers = self:_headers(token)
    local reqs = {}
    for i, id in ipairs(pending) do
      reqs[i] = { method = "POST", url = url, headers = headers,
                  body = client.encode(client.vnc_payload(id)) }
    end
    local retry, auth = {}, {}
    t.request_many(reqs, concurrency, function(i, status, body, k)
      local id = pending[i]
      local what = "vnc " .. client.clean(id, 64)
      local b, m, kd, again = client.judge(what, url, status, body, k)
      local info
      if b then info, m, kd = client.read_vnc(what, b) end
      if info then
        infos[id] = info
        report(#positions[id])
      elseif again and attempt < self.retries then
        retry[#retry + 1] = id
      elseif kd == "auth" and not self.token and not relogged then
        auth[#auth + 1] = id
      else
        local _, sm, sk = self:_fail(m, kd)
        fail_all(positions[id], sm, sk)
      end
    end)
    if #auth > 0 then
      relogged = true
      self.login_token = nil
      token, msg, kind = self:login()
      if token then
        for _, id in ipairs(auth) do retry[#retry + 1] = id end
      else
        for _, id in ipairs(auth) do fail_all(positions[id], msg, kind) end
      end
    end
    if #retry > 0 and attempt < self.retries then
      t.sleep(self.retry_delay * 2 ^ attempt * (0.5 + random() / 2))
      attempt = attempt + 1
    end
    pending = retry
  end

  -- Modes (probing each distinct cluster once) and URLs.
  local fetched = {}
  for _, id in ipairs(ids) do
    if infos[id] then fetched[#fetched + 1] = id end
  end
  local modes = {}
  if opts.mode == "auto" or opts.mode == nil then
    local list = {}
    for i, id in ipairs(fetched) do list[i] = infos[id] end
    for i, m in ipairs(fallback.choose_many(self, list, opts)) do modes[fetched[i]] = m end
  end
  for _, id in ipairs(fetched) do
    local info = infos[id]
    local mode = modes[id] or opts.mode
    local u, m, k = self:_build(info, opts, mode)
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

return _M
