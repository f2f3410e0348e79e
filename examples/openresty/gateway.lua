--- An OpenResty console gateway built on ctvnc (see nginx.conf beside it).
--   GET /console/<vm_id>/url  -> {"url": ..., "mode": ...}
--   GET /console/<vm_id>      -> a noVNC page whose websocket is /console/<vm_id>/ws
--   GET /console/<vm_id>/ws   -> the websocket, carried to the target ctvnc chose
-- Every request first passes the operator's authorize(vm_id, ngx) hook.
local ctvnc = require "ctvnc"
local resty = require "ctvnc.resty"
local cjson = require "cjson.safe"

local ngx = ngx
local type, tostring, ipairs = type, tostring, ipairs

local _M = {}

local conf, client

-- ctvnc error kinds as HTTP statuses.
local STATUS = {
  invalid = 400, not_found = 404, timeout = 504,
  auth = 502, http = 502, graphql = 502, decode = 502,
  connect = 502, tls = 502, too_large = 502,
}

local REASON = {
  invalid = "bad VM id or option", not_found = "no such VM", timeout = "CloudTower timed out",
  auth = "CloudTower refused the gateway's credentials", http = "CloudTower answered with an error",
  graphql = "CloudTower reported an error", decode = "CloudTower's answer was unusable",
  connect = "CloudTower is unreachable", tls = "TLS with CloudTower failed",
  too_large = "CloudTower's answer was too large",
}

--- The shipped authorize hook: a file of "<api key> <vm id>[,<vm id>...]"
-- lines ("*" allows every VM; "#" starts a comment). The key comes in the
-- X-API-Key header, or in ?key= for browsers (a page cannot set headers
-- on its websocket).
function _M.key_file(path)
  local keys = {}
  local f = assert(io.open(path, "r"), "cannot read the key file " .. path)
  for line in f:lines() do
    local key, vms = line:match("^%s*([^#%s]+)%s+(%S+)")
    if key then
      local allowed = {}
      for vm in vms:gmatch("[^,]+") do allowed[vm] = true end
      keys[key] = allowed
    end
  end
  f:close()
  return function(vm_id, ngx_)
    local key = ngx_.var.http_x_api_key or ngx_.var.arg_key
    local allowed = key and keys[key]
    return allowed ~= nil and (allowed["*"] or allowed[vm_id]) == true
  end
end

--- gateway.configure{ endpoint, token (or username, password), mode, scheme,
-- port, authorize, probe_timeout (0.5 s), probe_ttl (30 s), credential_ttl }
-- credential_ttl caches console credentials for at most 10 s (default 0:
-- never), since they may be single use.
function _M.configure(c)
  conf = c
  conf.credential_ttl = conf.credential_ttl or 0
  assert(type(conf.credential_ttl) == "number" and conf.credential_ttl >= 0
    and conf.credential_ttl <= 10, "credential_ttl must be 0-10 seconds")
  client = assert(ctvnc.new({
    endpoint = c.endpoint, token = c.token, username = c.username, password = c.password,
    transport = resty.transport({ location = "/_ctvnc" }),
  }))
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(cjson.encode(body))
  ngx.eof()
  -- ngx.exit refuses while a subrequest is pending: ctvnc.resty stops
  -- waiting for a hostile endless answer, nginx finishes it later.
  pcall(ngx.exit, status)
end

local function fail(vm_id, msg, kind)
  ngx.log(ngx.WARN, "ctvnc: ", msg, " (", kind, ")")   -- messages hold no secrets
  return reply(STATUS[kind] or 502, { error = REASON[kind] or "failed", kind = kind,
                                      vm_id = vm_id })
end

--- Denied unless the operator's hook says yes; no hook, no access.
local function allowed(vm_id)
  local hook = conf and conf.authorize
  if type(hook) ~= "function" then return false end
  local ok, yes = pcall(hook, vm_id, ngx)
  if not ok then ngx.log(ngx.ERR, "ctvnc: authorize hook failed: ", tostring(yes)) end
  return ok and yes == true
end

--- Probe verdicts cached in the ctvnc_probe shared dict, for all workers.
local function shared_probe(host, port, timeout)
  local dict = ngx.shared.ctvnc_probe
  local key = host .. " " .. port
  local v = dict:get(key)
  if v ~= nil then return v end
  local ok = resty.probe(host, port, timeout)
  dict:set(key, ok, conf.probe_ttl or 30)
  return ok
end

--- VNC credentials, from the short-lived cache when credential_ttl > 0.
local function credentials(vm_id)
  local ttl = conf.credential_ttl
  local dict = ngx.shared.ctvnc_creds
  if ttl > 0 then
    local cached = dict:get(vm_id)
    if cached then return cjson.decode(cached) end
  end
  local info, msg, kind = client:vnc(vm_id)
  if info and ttl > 0 then dict:set(vm_id, cjson.encode(info), ttl) end
  return info, msg, kind
end

--- The URL ctvnc chooses for vm_id: url, mode | nil, message, kind.
local function choose(vm_id)
  if vm_id == "" then return nil, "the VM id is empty", "invalid" end
  local info, msg, kind = credentials(vm_id)
  if not info then return nil, msg, kind end
  local opts = { scheme = conf.scheme, port = conf.port }
  local mode = conf.mode or "auto"
  if mode == "auto" then
    local port = conf.port or (conf.scheme == "ws" and 80 or 443)
    mode = shared_probe(info.cluster_ip, port, conf.probe_timeout or 0.5) and "direct" or "proxy"
  end
  local url
  if mode == "direct" then
    url, msg, kind = ctvnc.direct_url(info, opts)
  else
    url, msg, kind = ctvnc.proxy_url(conf.endpoint, info, { scheme = conf.scheme })
  end
  if not url then return nil, msg, kind end
  return url, mode
end

--- The URL for the VM of this request's path, or an error reply (nil).
local function resolve(vm_id)
  vm_id = ngx.unescape_uri(vm_id)
  if not allowed(vm_id) then return reply(403, { error = "denied", vm_id = vm_id }) end
  local url, mode, kind = choose(vm_id)
  if not url then return fail(vm_id, mode, kind) end
  return url, mode
end

function _M.url(vm_id)
  local url, mode = resolve(vm_id)
  if url then return reply(200, { url = url, mode = mode }) end
end

--- POST /console/batch with a JSON array of VM ids (at most 100): the
-- results of client:batch, each VM authorized on its own.
function _M.batch()
  ngx.req.read_body()
  local ids = cjson.decode(ngx.req.get_body_data() or "")
  if type(ids) ~= "table" or #ids == 0 or #ids > 100 then
    return reply(400, { error = "the body must be a JSON array of 1 to 100 VM ids" })
  end
  local results, allowed_ids, where = {}, {}, {}
  for i, id in ipairs(ids) do
    if type(id) == "string" and allowed(id) then
      allowed_ids[#allowed_ids + 1] = id
      where[#allowed_ids] = i
    else
      results[i] = { vm_id = id, ok = false, kind = "denied", message = "denied" }
    end
  end
  local opts = { mode = conf.mode, scheme = conf.scheme, port = conf.port, probe = shared_probe }
  for j, r in ipairs((client:batch(allowed_ids, opts))) do
    results[where[j]] = { vm_id = r.vm_id, ok = r.ok, url = r.url, mode = r.mode, kind = r.kind,
                          message = r.ok and nil or REASON[r.kind] }
  end
  return reply(200, results)
end

--- access_by_lua of the websocket location: sets $ctvnc_target.
function _M.ws(vm_id)
  local url = resolve(vm_id)
  -- nginx proxies websockets over http(s): wss -> https, ws -> http
  if url then ngx.var.ctvnc_target = (url:gsub("^ws", "http", 1)) end
end

local PAGE = [[
<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Console</title>
<style>
html, body { margin: 0; height: 100%; background: #202020; }
#screen { height: 100%; }
</style>
</head>
<body>
<div id="screen"></div>
<script type="module">
import RFB from "/novnc/core/rfb.js";
const vm = VM_ID_JSON;
const ws = (location.protocol === "https:" ? "wss://" : "ws://") + location.host
  + "/console/" + encodeURIComponent(vm) + "/ws" + location.search;
const rfb = new RFB(document.getElementById("screen"), ws);
rfb.scaleViewport = true;
rfb.addEventListener("connect", () => { document.title = "connected"; });
rfb.addEventListener("disconnect", (e) => {
  document.title = e.detail.clean ? "disconnected" : "failed";
});
</script>
</body>
</html>
]]

function _M.page(vm_id)
  vm_id = ngx.unescape_uri(vm_id)
  if not allowed(vm_id) then return reply(403, { error = "denied", vm_id = vm_id }) end
  -- a JSON string is a JS string; "</" is escaped so it cannot close the script
  local js = cjson.encode(vm_id):gsub("</", "<\\/")
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print((PAGE:gsub("VM_ID_JSON", function() return js end)))
end

_M.STATUS = STATUS
return _M
