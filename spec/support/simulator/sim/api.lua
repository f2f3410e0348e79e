-- CloudTower simulator: the API locations (GraphQL /api, login, get-vms),
-- the catch-all 404, the log phase and the reachable cluster.

local util = require "sim.util"
local faults = require "sim.faults"

local ngx = ngx
local find, match = string.find, string.match
local tonumber, type = tonumber, type

local dict, encode, send, send_json, bad, incr = util.dict, util.encode, util.send,
  util.send_json, util.bad, util.incr
local read_body, header, count_request, latency, authorized = util.read_body, util.header,
  util.count_request, util.latency, util.authorized
local decode_object, only_keys, random_bytes, to_hex = util.decode_object, util.only_keys,
  util.random_bytes, util.to_hex

local _M = {}

local LOGIN_USER, LOGIN_PASS, LOGIN_SOURCE = "admin", "sim-pass", "LOCAL"
local VNC_QUERY = "query vnc($input: VncInput!) { vnc(input: $input) { vm_uuid host_ip cluster_ip raw_token token } }"

local function lenient_vm_id(obj)
  local v = obj and obj.variables
  v = type(v) == "table" and v.input
  v = type(v) == "table" and v.vm
  v = type(v) == "table" and v.id
  if type(v) == "string" and v ~= "" and #v <= 256 then return v end
  return nil
end

function _M.api()
  count_request()
  util.enter_in_flight()

  local body = read_body()
  local obj = decode_object(body)
  local id = lenient_vm_id(obj)
  if id then incr(dict("sim_stats"), "vm:" .. id) end

  latency()

  if not authorized() then return send_json(401, { message = "unauthorized" }) end
  if ngx.req.get_method() ~= "POST" then return bad("method must be POST") end

  local ctype = ngx.var.http_content_type
  if not ctype then return bad("missing Content-Type") end
  local lc = ctype:lower()
  if lc ~= "application/json" and not match(lc, "^application/json;%s*charset=utf%-8$") then
    return bad("Content-Type must be application/json")
  end
  local accept = header("accept")
  if not accept or not find(accept, "application/json", 1, true) then
    return bad("accept must include application/json")
  end
  local lang = header("content-language")
  if lang ~= "en-US" and lang ~= "zh-CN" then
    return bad("content-language must be en-US or zh-CN")
  end

  if not body or body == "" then return bad("empty body") end
  if not obj then return bad("body is not a JSON object") end
  local extra = only_keys(obj, { operationName = true, query = true, variables = true })
  if extra then return bad("unexpected field " .. extra) end
  if obj.operationName ~= "vnc" then return bad("operationName must be vnc") end
  if obj.query ~= VNC_QUERY then return bad("query is not the vnc query") end
  local vars = obj.variables
  if type(vars) ~= "table" or only_keys(vars, { input = true }) then
    return bad("variables must be {input}")
  end
  if type(vars.input) ~= "table" or only_keys(vars.input, { vm = true }) then
    return bad("variables.input must be {vm}")
  end
  local vm = vars.input.vm
  if type(vm) ~= "table" or only_keys(vm, { id = true }) then
    return bad("variables.input.vm must be {id}")
  end
  if type(vm.id) ~= "string" or vm.id == "" then
    return bad("variables.input.vm.id must be a non-empty string")
  end
  return faults.dispatch(vm.id)
end

function _M.login()
  count_request()
  latency()
  if ngx.req.get_method() ~= "POST" then
    return send_json(400, { code = "BAD_REQUEST", message = "method must be POST" })
  end
  local obj = decode_object(read_body())
  if not obj then
    return send_json(400, { code = "BAD_REQUEST", message = "body is not a JSON object" })
  end
  if obj.username == LOGIN_USER and obj.password == LOGIN_PASS and obj.source == LOGIN_SOURCE then
    local token = "login-" .. to_hex(random_bytes(12))
    local sim = dict("sim")
    sim:set("login:" .. token, sim:get("token_gen") or 0)
    return send_json(200, { data = { token = token } })
  end
  return send_json(400, { code = "USER_PASSWORD_INCORRECT", message = "username or password incorrect" })
end

function _M.get_vms()
  count_request()
  latency()
  if not authorized() then return send_json(401, { message = "unauthorized" }) end
  if ngx.req.get_method() ~= "POST" then return bad("method must be POST") end
  local obj = decode_object(read_body())
  local where = obj and obj.where
  local name = type(where) == "table" and where.name
  if type(name) ~= "string" then return bad('body must be {"where":{"name":<string>}}') end
  local s = match(name, "^web%-(%d+)$")
  if s and tonumber(s) >= 1 then
    return send(200, encode({ {
      id = "vm-" .. s, name = name, local_id = "local-" .. s, status = "RUNNING",
    } }), "application/json")
  end
  return send(200, "[]", "application/json")
end

function _M.not_found()
  count_request()
  return send_json(404, { message = "not found" })
end

function _M.log()
  util.leave_in_flight()
end

-- the reachable cluster's websocket endpoint (a placeholder for now)
function _M.cluster()
  if ngx.var.uri == "/websockify/" and ngx.req.get_method() == "GET" then
    return send(200, "cluster websockify placeholder", "text/plain")
  end
  return send_json(404, { message = "not found" })
end


return _M
