--- ctvnc.shot: client:screenshot and client:screenshots. The credentials,
-- modes and URLs are client:batch's (one login, each cluster probed once);
-- the pictures are the runtime's `shoot` (libcurl connect-only websockets,
-- the RFB client and the PNG encoder in C), many at once. Methods of the
-- client class.
local core = require "ctvnc.core"
local api = require "ctvnc.api"
local argcheck = require("ctvnc.args").check

local type, ipairs, floor = type, ipairs, math.floor
local redact = api.redact

local _M = {}

--- Options of a screenshot beyond those of console URLs: nil, or a message.
local function shot_options(fname, opts)
  local w = opts.width
  if w ~= nil and (type(w) ~= "number" or w < 1 or w > 65535 or floor(w) ~= w) then
    return fname .. ": opts.width must be an integer 1-65535"
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0 or t > 31536000) then
    return fname .. ": opts.timeout must be a number of seconds > 0"
  end
  if opts.password ~= nil and type(opts.password) ~= "string" then
    return fname .. ": opts.password must be a string"
  end
  local c = opts.concurrency
  if c ~= nil and (type(c) ~= "number" or c < 1 or floor(c) ~= c) then
    return fname .. ": opts.concurrency must be an integer >= 1"
  end
end

--- client:screenshots(vm_ids [, opts]) -> results, summary
function _M.screenshots(self, vm_ids, opts)
  argcheck(type(vm_ids) == "table", 1, "screenshots", "table expected, got " .. type(vm_ids))
  argcheck(opts == nil or type(opts) == "table", 2, "screenshots",
    "table expected, got " .. type(opts))
  opts = opts or {}
  local total = #vm_ids
  local results, failed, done = {}, 0, 0
  local progress = opts.on_progress
  local function settle(i, r)
    results[i] = r
    if not r.ok then failed = failed + 1 end
    done = done + 1
    if progress then progress(done, total, failed) end
  end
  local ok, msg, kind = core.check_options("screenshots", opts)
  if ok then
    msg = shot_options("screenshots", opts)
    kind = msg and "invalid"
  end
  local urls = {}
  if not msg then
    urls = self:batch(vm_ids, { mode = opts.mode, scheme = opts.scheme, port = opts.port,
      concurrency = opts.concurrency, per_request = opts.per_request, probe = opts.probe,
      probe_timeout = opts.probe_timeout, probe_ttl = opts.probe_ttl })
  end
  -- one picture for each distinct VM whose URL is known
  local jobs, positions, infos = {}, {}, {}
  for i = 1, total do
    local u, id = urls[i], vm_ids[i]
    if msg then
      settle(i, { vm_id = id, ok = false, message = msg, kind = kind })
    elseif not u.ok then
      settle(i, { vm_id = id, ok = false, message = u.message, kind = u.kind })
    elseif positions[id] then
      local p = positions[id]
      p[#p + 1] = i
    else
      positions[id] = { i }
      jobs[#jobs + 1] = { url = u.url, password = opts.password, width = opts.width,
                          timeout = opts.timeout, vm_id = id, mode = u.mode }
      infos[#jobs] = u.info
    end
  end
  if #jobs > 0 then
    local base = self:_secrets()
    if opts.password then base[#base + 1] = opts.password end
    local t = self.transport
    if not t.shoot then
      for _, job in ipairs(jobs) do
        for _, i in ipairs(positions[job.vm_id]) do
          settle(i, { vm_id = job.vm_id, ok = false, kind = "invalid",
            message = "screenshots: this runtime has no console websockets" })
        end
      end
    else
      t.shoot(jobs, opts.concurrency or self.concurrency, function(k, r)
        local job, info = jobs[k], infos[k]
        for _, i in ipairs(positions[job.vm_id]) do
          if r.ok then
            settle(i, { vm_id = job.vm_id, ok = true, png = r.png, width = r.width,
              height = r.height, mode = job.mode, name = r.name })
          else
            local secrets = { info.raw_token, info.token }
            for _, s in ipairs(base) do secrets[#secrets + 1] = s end
            settle(i, { vm_id = job.vm_id, ok = false, kind = r.kind,
              message = redact("screenshot " .. job.vm_id .. " (" .. job.mode .. "): "
                .. r.message, secrets) })
          end
        end
      end)
    end
  end
  local summary = { total = total, ok = total - failed, failed = failed }
  return results, summary
end

--- client:screenshot(vm_id [, opts]) -> png, info | nil, message, kind
function _M.screenshot(self, vm_id, opts)
  argcheck(type(vm_id) == "string", 1, "screenshot", "string expected, got " .. type(vm_id))
  argcheck(opts == nil or type(opts) == "table", 2, "screenshot",
    "table expected, got " .. type(opts))
  if vm_id == "" then return nil, "screenshot: the VM id is empty", "invalid" end
  opts = opts or {}
  local ok, msg, kind = core.check_options("screenshot", opts)
  if not ok then return nil, msg, kind end
  msg = shot_options("screenshot", opts)
  if msg then return nil, msg, "invalid" end
  local r = _M.screenshots(self, { vm_id }, opts)[1]
  if not r.ok then return nil, r.message, r.kind end
  return r.png, { width = r.width, height = r.height, name = r.name, mode = r.mode }
end

return _M
