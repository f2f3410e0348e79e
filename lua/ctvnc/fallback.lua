--- ctvnc.fallback: direct or proxy? Direct when the cluster answers a TCP
-- connect on the websocket port, judged from the machine running ctvnc;
-- verdicts are cached per cluster address and port.
local type, ipairs, format = type, ipairs, string.format

local _M = {}

local MODES = { direct = true, proxy = true, auto = true }

--- Checks the console options shared by console_url and batch, before any
-- request: true | nil, message, "invalid".
function _M.check(fname, opts)
  if opts.mode ~= nil and not MODES[opts.mode] then
    return nil, fname .. ': opts.mode must be "direct", "proxy" or "auto"', "invalid"
  end
  if opts.scheme ~= nil and opts.scheme ~= "ws" and opts.scheme ~= "wss" then
    return nil, fname .. ': opts.scheme must be "ws" or "wss"', "invalid"
  end
  local port = opts.port
  if port ~= nil and (type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0) then
    return nil, fname .. ": opts.port must be an integer 1-65535", "invalid"
  end
  for _, k in ipairs({ "probe_timeout", "probe_ttl" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= v) then
      return nil, format("%s: opts.%s must be a number >= 0", fname, k), "invalid"
    end
  end
  if opts.probe ~= nil and type(opts.probe) ~= "function" then
    return nil, fname .. ": opts.probe must be a function", "invalid"
  end
  return true
end

--- The port a browser would open on the cluster.
local function ws_port(opts)
  return opts.port or (opts.scheme == "ws" and 80 or 443)
end

--- Modes for many infos at once: each distinct cluster address and port
-- not in the cache is probed once, all in parallel. Returns an array of
-- "direct" / "proxy" in the order of `infos`.
function _M.choose_many(client, infos, opts)
  local t = client.transport
  local now = t.now()
  local cache = client.probe_cache
  if not cache then
    cache = {}
    client.probe_cache = cache
  end
  local port = ws_port(opts)
  local timeout = opts.probe_timeout or 0.5
  local ttl = opts.probe_ttl or 30
  local targets, keys, seen = {}, {}, {}
  for _, info in ipairs(infos) do
    local host = info.cluster_ip      -- checked by read_vnc: never bracketed
    local key = host .. " " .. port
    local hit = cache[key]
    if not seen[key] and not (hit and hit.expires > now) then
      seen[key] = true
      targets[#targets + 1] = { host, port }
      keys[#keys + 1] = key
    end
  end
  if #targets > 0 then
    local oks
    if opts.probe then
      oks = {}
      for i, target in ipairs(targets) do
        oks[i] = opts.probe(target[1], target[2], timeout) == true
      end
    else
      oks = t.probe(targets, timeout)
    end
    local expires = t.now() + ttl
    for i, key in ipairs(keys) do
      cache[key] = { ok = oks[i], expires = expires }
    end
  end
  local modes = {}
  for i, info in ipairs(infos) do
    modes[i] = cache[info.cluster_ip .. " " .. port].ok and "direct" or "proxy"
  end
  return modes
end

--- The mode for one info.
function _M.choose(client, info, opts)
  return _M.choose_many(client, { info }, opts)[1]
end

return _M
