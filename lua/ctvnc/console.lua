--- ctvnc.console: direct or proxy, and the URL for credentials in hand.
-- Direct when the cluster answers a TCP connect on the websocket port (or,
-- with probe = "rfb", when an RFB banner comes back through the direct
-- websocket), judged from the machine running ctvnc; verdicts are cached
-- per cluster address and port. These are methods of the client (ctvnc.client mixes
-- them in), so they keep their state on it.
local core = require "ctvnc.core"
local argcheck = require("ctvnc.args").check

local type, ipairs = type, ipairs
local check_options, direct_url, proxy_url = core.check_options, core.direct_url,
  core.proxy_url

local _M = {}

--- The port a browser would open on the cluster.
local function ws_port(opts)
  return opts.port or (opts.scheme == "ws" and 80 or 443)
end

--- Modes for many infos at once: each distinct cluster address and port
-- not in the cache is probed once, all in parallel. Returns an array of
-- "direct" / "proxy" in the order of `infos`.
function _M:_modes(infos, opts)
  local t = self.transport
  local now = t.now()
  local cache = self.probe_cache
  local port = ws_port(opts)
  local timeout = opts.probe_timeout or 0.5
  local ttl = opts.probe_ttl or 30
  local targets, keys, seen = {}, {}, {}
  local kind = opts.probe == "rfb" and " rfb" or ""   -- a verdict per kind of probe
  for _, info in ipairs(infos) do
    local key = info.cluster_ip .. " " .. port .. kind  -- never bracketed (api.read_vnc)
    local hit = cache[key]
    if not seen[key] and not (hit and hit.expires > now) then
      seen[key] = true
      targets[#targets + 1] = { info.cluster_ip, port, info = info }
      keys[#keys + 1] = key
    end
  end
  if #targets > 0 then
    local oks
    if opts.probe == "rfb" then
      oks = self:_rfb_probe(targets, opts, timeout)
    elseif opts.probe then
      oks = {}
      for i, target in ipairs(targets) do
        oks[i] = opts.probe(target[1], target[2], timeout) == true
      end
    else
      oks = t.probe(targets, timeout)
    end
    local expires = t.now() + ttl
    for i, key in ipairs(keys) do cache[key] = { ok = oks[i], expires = expires } end
  end
  local modes = {}
  for i, info in ipairs(infos) do
    modes[i] = cache[info.cluster_ip .. " " .. port .. kind].ok and "direct" or "proxy"
  end
  return modes
end

--- probe = "rfb": true for each target whose direct websocket (the URL of
-- the info that stands for it) answers with an RFB banner within
-- `timeout`; false for all when the runtime has no console websockets.
function _M:_rfb_probe(targets, opts, timeout)
  local oks, jobs = {}, {}
  for i, target in ipairs(targets) do
    oks[i] = false
    jobs[i] = { url = direct_url(target.info, opts) or "", banner_only = true,
                timeout = timeout > 0 and timeout or 0.001 }
  end
  local shoot = self.transport.shoot
  if shoot then
    shoot(jobs, #jobs, function(i, r) oks[i] = r.ok end)
  end
  return oks
end

--- The URL of one mode. `scheme` applies to both; `port` is the cluster's
-- websocket port and so only reaches the direct URL.
function _M:_url(info, opts, mode)
  if mode == "direct" then return direct_url(info, opts) end
  return proxy_url(self.ep, info, { scheme = opts.scheme, raw_token = self.no_token_field })
end

--- client:console_url_for(info [, opts]) -> url, mode | nil, message, kind
function _M:console_url_for(info, opts)
  argcheck(type(info) == "table", 1, "console_url_for", "table expected, got " .. type(info))
  opts = opts or {}
  local ok, msg, kind = check_options("console_url_for", opts)
  if not ok then return nil, msg, kind end
  local mode = opts.mode or "auto"
  if mode == "auto" then
    -- the direct URL first: it checks the info before any probe
    local url
    url, msg, kind = direct_url(info, opts)
    if not url then return nil, msg, kind end
    mode = self:_modes({ info }, opts)[1]
    if mode == "direct" then return url, mode end
  end
  local url
  url, msg, kind = self:_url(info, opts, mode)
  if not url then return nil, msg, kind end
  return url, mode
end

return _M
