-- CloudTower simulator: the control endpoints under /_sim/ (no auth, not
-- counted): stats, reset, config, revoke.

local util = require "sim.util"

local ngx = ngx
local sub = string.sub
local type, ipairs = type, ipairs

local dict, encode, send, send_json, bad = util.dict, util.encode, util.send, util.send_json,
  util.bad
local read_body, decode_object = util.read_body, util.decode_object

local _M = {}

function _M.need(method)
  if ngx.req.get_method() ~= method then
    send_json(405, { message = "method must be " .. method })
    return false
  end
  return true
end

function _M.stats()
  if not _M.need("GET") then return end
  local stats, sim = dict("sim_stats"), dict("sim")
  -- the simulator's own cost: CPU time of its one worker since the last
  -- reset, per counted request (TLS and HTTP/2 included)
  local cpu = os.clock() - (sim:get("cpu_at_reset") or 0)
  local total = stats:get("requests") or 0
  local requests, vms, protocols, logins, documents = {}, {}, {}, {}, {}
  for _, p in ipairs(util.COUNTED_PATHS) do requests[p] = 0 end
  for _, key in ipairs(stats:get_keys(0)) do
    local v = stats:get(key)
    if v then
      if sub(key, 1, 5) == "path:" then requests[sub(key, 6)] = v
      elseif sub(key, 1, 3) == "vm:" then vms[sub(key, 4)] = v
      elseif sub(key, 1, 6) == "proto:" then protocols[sub(key, 7)] = v
      elseif sub(key, 1, 6) == "login:" then logins[sub(key, 7)] = v
      elseif sub(key, 1, 5) == "docs:" then documents[sub(key, 6)] = v end
    end
  end
  return send(200, encode({
    requests = requests,
    vm = vms,
    protocols = protocols,
    logins = logins,
    documents = documents,
    connections = stats:get("connections") or 0,
    in_flight = sim:get("in_flight") or 0,
    in_flight_max = sim:get("in_flight_max") or 0,
    latency_ms = sim:get("latency_ms") or 0,
    cpu_ms = cpu * 1000,
    cpu_us_per_request = total > 0 and math.floor(cpu * 1e6 / total + 0.5) or 0,
  }), "application/json")
end

function _M.reset()
  if not _M.need("POST") then return end
  local sim = dict("sim")
  dict("sim_stats"):flush_all()
  dict("sim_stats"):flush_expired()
  for _, key in ipairs(sim:get_keys(0)) do
    if sub(key, 1, 6) == "flaky:" then sim:delete(key) end
  end
  sim:incr("epoch", 1, 0)
  for _, key in ipairs(sim:get_keys(0)) do
    if sub(key, 1, 10) == "in_flight:" and (sim:get(key) or 0) <= 0 then sim:delete(key) end
  end
  sim:set("in_flight_max", 0)
  sim:set("latency_ms", 0)
  sim:set("cpu_at_reset", os.clock())
  return send_json(200, { ok = true })
end

function _M.config()
  if not _M.need("POST") then return end
  local obj = decode_object(read_body())
  local ms = obj and obj.latency_ms
  if type(ms) ~= "number" or ms < 0 or ms > 600000 then
    return bad('body must be {"latency_ms":<number 0..600000>}')
  end
  dict("sim"):set("latency_ms", ms)
  return send_json(200, { ok = true, latency_ms = ms })
end

function _M.revoke()
  if not _M.need("POST") then return end
  local sim = dict("sim")
  sim:incr("token_gen", 1, 0)
  -- drop the stale entries too (the generation check already refuses them)
  for _, key in ipairs(sim:get_keys(0)) do
    if sub(key, 1, 6) == "login:" then sim:delete(key) end
  end
  return send_json(200, { ok = true })
end


return _M
