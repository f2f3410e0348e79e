-- luacheck: std max+ngx_lua
--- ctvnc.gateway.tower: what the gateway asks CloudTower, through ctvnc:
-- the client, console credentials (cached only when credential_ttl > 0),
-- probe verdicts shared by every worker, and the plan of a console: the
-- record the access phase hands the relay.
local ctvnc = require "ctvnc"
local resty = require "ctvnc.resty"
local cjson = require "cjson.safe"
local state = require "ctvnc.gateway.state"
local config = require "ctvnc.gateway.config"
local metrics = require "ctvnc.gateway.metrics"

local ngx = ngx
local tonumber = tonumber

local _M = {}

--- The CloudTower client of these settings (the secrets are taken out of
-- the table they came in).
function _M.client(conf, given)
  local client = assert(ctvnc.new({
    endpoint = conf.endpoint, token = conf.token, username = conf.username,
    password = conf.password, timeout = conf.tower_timeout, retry_delay = conf.retry_delay,
    transport = resty.transport({ location = conf.location, timeout = conf.tower_timeout,
                                  tls = conf.tower_scheme ~= "http" }),
  }))
  conf.token, conf.password, given.token, given.password = nil, nil, nil, nil
  return client
end

--- Probe verdicts cached in the ctvnc_probe shared dict, for all workers.
local function shared_probe(host, port, timeout)
  local dict = ngx.shared.ctvnc_probe
  local key = host .. " " .. port
  local v = dict:get(key)
  if v ~= nil then return v end
  local ok = resty.probe(host, port, timeout)
  dict:set(key, ok, state.conf.probe_ttl)
  return ok
end

--- The console options of every URL the gateway hands out, single or
-- batch: the cluster's (scheme, port) and the console proxy's, whose
-- scheme follows the tower's unless proxy_scheme says otherwise.
function _M.url_options(conf)
  return {
    cluster = { scheme = conf.scheme, port = conf.port, mode = conf.mode, probe = shared_probe,
                probe_timeout = conf.probe_timeout, probe_ttl = conf.probe_ttl },
    proxy = { scheme = config.proxy_scheme(conf), mode = "proxy" },
  }
end

--- VNC credentials, from the short-lived cache when credential_ttl > 0.
local function credentials(vm_id)
  local ttl = state.conf.credential_ttl
  local dict = ngx.shared.ctvnc_creds
  if ttl > 0 then
    local cached = dict:get(vm_id)
    if cached then return cjson.decode(cached) end
  end
  ngx.update_time()
  local t0 = ngx.now()
  local info, msg, kind = state.client:vnc(vm_id)
  ngx.update_time()
  metrics.observe("ctvnc_tower_request_seconds", ngx.now() - t0)
  if info and ttl > 0 then dict:set(vm_id, cjson.encode(info), ttl) end
  return info, msg, kind
end

--- The console proxy's URL for credentials in hand: url, "proxy" | nil,
-- message, kind.
function _M.proxy_url(info)
  return state.client:console_url_for(info, state.url_options.proxy)
end

--- The URL of a console for credentials in hand: url, mode | nil, msg, kind.
function _M.url_for(info)
  local opts = state.url_options
  if opts.cluster.mode == "proxy" then return _M.proxy_url(info) end
  local url, mode, kind = state.client:console_url_for(info, opts.cluster)
  if mode == "proxy" then return _M.proxy_url(info) end
  return url, mode, kind
end

--- The URL ctvnc chooses for vm_id: url, mode, info | nil, message, kind.
function _M.choose(vm_id)
  if vm_id == "" then return nil, "the VM id is empty", "invalid" end
  resty.deadline(state.conf.tower_timeout)
  local info, msg, kind = credentials(vm_id)
  if not info then return nil, msg, kind end
  local url, mode
  url, mode, kind = _M.url_for(info)
  if not url then return nil, mode, kind end
  return url, mode, info
end

--- The plan of one console session: { vm_id, user, view_only, mode, hop
-- ("cluster" | "tower"), host, port, path (with the console token), tls,
-- server_name (checked in the target's certificate), verify }, from the
-- URL ctvnc built just now (split here, once; the relay never reads a
-- URL) | nil, message, kind.
function _M.plan(vm_id, user, view_only)
  local url, mode, info = _M.choose(vm_id)
  if not url then return nil, mode, info end
  local scheme, hostport, path = url:match("^(wss?)://([^/?#]+)(.*)$")
  local host, port = hostport:match("^%[(.-)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]+):?(%d*)$") end
  local tls = scheme == "wss"
  local conf = state.conf
  local plan = { vm_id = vm_id, user = user or "", view_only = view_only == true, mode = mode,
    host = host, port = tonumber(port) or (tls and 443 or 80), host_header = hostport,
    path = path:sub(1, 1) == "/" and path or "/" .. path, tls = tls }
  if mode == "direct" then
    plan.hop, plan.server_name, plan.verify = "cluster", info.cluster_ip,
      conf.cluster_tls ~= "insecure"
  else
    plan.hop, plan.server_name, plan.verify = "tower", conf.tower_name or host,
      conf.tower_tls ~= "insecure"
  end
  return plan
end

return _M
