-- CloudTower simulator: the API locations (GraphQL /api, login, get-vms),
-- the catch-all 404, the log phase and the reachable cluster. Each API
-- location may sit behind flavour names (/pretoken/api ...): see util.FLAVOURS.

local cjson = require "cjson.safe"
local util = require "sim.util"
local faults = require "sim.faults"
local graphql = require "sim.graphql"
local vms = require "sim.vms"

local ngx = ngx
local match, lower = string.match, string.lower
local concat = table.concat
local type, pairs, ipairs = type, pairs, ipairs

local dict, encode, send, send_json, bad, incr = util.dict, util.encode, util.send,
  util.send_json, util.bad, util.incr
local read_body, count_request, latency, authorized = util.read_body, util.count_request,
  util.latency, util.authorized
local decode_object, random_bytes, to_hex = util.decode_object, util.random_bytes, util.to_hex

local null = cjson.null

local _M = {}

-- users: admin (LOCAL) and an LDAP user, who logs in with source AUTHN and
-- the LDAP strategy's id, or with the deprecated source LDAP
local USERS = {
  admin = { password = "sim-pass", source = "LOCAL" },
  ["ldap-user"] = { password = "ldap-pass", source = "LDAP" },
}
local LDAP_STRATEGY = "cl2k0mz7q0d0k0958authn0001"
local STRATEGIES = {
  { id = "cl2k0mz7q0d0k0958authn0002", type = "OIDC" },
  { id = LDAP_STRATEGY, type = "LDAP" },
}

---------------------------------------------------------------------------
-- the schema (the part the simulator answers), per flavour
---------------------------------------------------------------------------

local function schema(fl)
  local vnc_fields = { vm_uuid = { type = "String!" }, host_ip = { type = "String!" },
    cluster_ip = { type = "String!" }, raw_token = { type = "String!" } }
  if not fl.pretoken then vnc_fields.token = { type = "String!" } end
  return {
    query = "Query",
    types = {
      Query = { kind = "OBJECT", fields = {
        vnc = { type = "Vnc", args = { input = { type = "VncInput!" } } },
        authnStrategies = { type = "[AuthnStrategy!]!", args = {} },
      } },
      Vnc = { kind = "OBJECT", fields = vnc_fields },
      AuthnStrategy = { kind = "OBJECT", fields = { id = { type = "ID!" },
        type = { type = "AuthnStrategyType!" } } },
      AuthnStrategyType = { kind = "ENUM", values = { LDAP = true, OIDC = true, SAML = true } },
      VncInput = { kind = "INPUT", fields = { vm = { type = "VmWhereUniqueInput!" } } },
      VmWhereUniqueInput = { kind = "INPUT", fields = { id = { type = "ID" },
        local_id = { type = "String" } } },
      String = { kind = "SCALAR" }, ID = { kind = "SCALAR" }, Boolean = { kind = "SCALAR" },
      Int = { kind = "SCALAR" }, Float = { kind = "SCALAR" },
    },
  }
end

local SCHEMAS = { [true] = schema({ pretoken = true }), [false] = schema({}) }

---------------------------------------------------------------------------
-- answers
---------------------------------------------------------------------------

local function error_object(e, code, path)
  return { message = e.message, locations = e.locations, path = path, code = code,
    extensions = { code = code } }
end

-- a request error (parse, validation, variables): HTTP 400, no data, as
-- Apollo Server answers them
local function request_errors(errors, code)
  local out = {}
  for i, e in ipairs(errors) do out[i] = error_object(e, code) end
  return 400, encode({ errors = out })
end

local function refused_token()
  return 200, encode({ data = null, errors = { error_object(
    { message = "load token failed" }, "LOAD_TOKEN_FAILED") } })
end

-- the selection of a field as an array of {key=, name=}, repeats merged
local function selection(f)
  local sel, seen = {}, {}
  for _, s in ipairs(f.selections or {}) do
    if not seen[s.key] then
      seen[s.key] = true
      sel[#sel + 1] = { key = s.key, name = s.name }
    end
  end
  return sel
end

-- the VM id a `vnc` field asks for (nil: none)
local function vm_id(f, vars)
  local input = f.args.input and graphql.literal(f.args.input, vars, null)
  local vm = type(input) == "table" and input.vm
  if type(vm) ~= "table" then return nil end
  if type(vm.id) == "string" then return vm.id end
  if type(vm.local_id) == "string" then return faults.from_local_id(vm.local_id) or vm.local_id end
  return nil
end

-- the complete answer to the root fields, every VM answered per VM
local function execute(fields, vars, fl)
  local parts, errors = {}, {}
  for _, f in ipairs(fields) do
    local key = encode(f.key)
    if f.name == "__typename" then
      parts[#parts + 1] = key .. ':"Query"'
    elseif f.name == "authnStrategies" then
      local items = {}
      for _, st in ipairs(fl.noauthn and {} or STRATEGIES) do
        local kv = {}
        for _, s in ipairs(selection(f)) do
          local v = s.name == "__typename" and "AuthnStrategy" or st[s.name]
          kv[#kv + 1] = encode(s.key) .. ":" .. encode(v)
        end
        items[#items + 1] = "{" .. concat(kv, ",") .. "}"
      end
      parts[#parts + 1] = key .. ":[" .. concat(items, ",") .. "]"
    else
      local id = vm_id(f, vars)
      local out = id and faults.vm(id, selection(f))
        or { error = { message = "VM does not exist", code = "VM_NOT_FOUND" }, unknown = true }
      if out.error and out.unknown and fl.nullvm then
        parts[#parts + 1] = key .. ":null"
      elseif out.error then
        parts[#parts + 1] = key .. ":null"
        errors[#errors + 1] = error_object({ message = out.error.message }, out.error.code,
          { f.key })
      elseif not out.omit then
        parts[#parts + 1] = key .. ":" .. out.value
        if out.dup then parts[#parts + 1] = key .. ":" .. out.dup end
      end
    end
  end
  local body = '{"data":{' .. concat(parts, ",") .. "}"
  if #errors > 0 then body = body .. ',"errors":' .. encode(errors) end
  return body .. "}"
end

-- Counts a vnc query text the first time it comes after the last reset:
-- stats.documents[<number of vnc fields>] is how many distinct texts the
-- tower had to parse and validate (a GraphQL server caches them by text).
local function counts_document(text, cache, fields)
  local epoch = dict("sim"):get("epoch") or 0
  if cache.epoch == epoch then return end
  cache.epoch = epoch
  local n = 0
  for _, f in ipairs(fields) do
    if f.name == "vnc" then n = n + 1 end
  end
  if n > 0 and dict("sim_stats"):add("doc:" .. ngx.md5(text), true) then
    incr(dict("sim_stats"), "docs:" .. n)
  end
end

-- Parsed and validated queries, by text, operation name and schema: a
-- batch sends one query text many times (only the variables change), and
-- the simulator's own cost per request should be the tower's, not a parser's.
local query_cache, cached = {}, 0

local function read_query(text, opname, fl, sch)
  if opname == null or type(opname) ~= "string" then opname = nil end
  local key = (fl.pretoken and "p" or "-") .. (opname or "") .. "\0" .. text
  local c = query_cache[key]
  if not c then
    local doc, perr = graphql.parse(text)
    local op, fields, vcode, verrs
    if doc then
      op, fields, vcode = graphql.validate(doc, sch, opname, text)
      if not op then verrs, fields = fields, nil end
    end
    c = { doc, perr, op, fields, verrs, vcode }
    if cached >= 256 then query_cache, cached = {}, 0 end
    query_cache[key], cached = c, cached + 1
  end
  if c[4] then counts_document(text, c, c[4]) end
  return c[1], c[2], c[3], c[4], c[5], c[6]
end

-- Is this the vendor document's request: operation vnc, the one variable
-- $input: VncInput!, the one unaliased field vnc(input: $input), variables
-- {input} and nothing else? (The `documented` flavour takes only that.)
local function documented_form(op, fields, variables)
  local f = fields[1]
  local v = op.vars.input
  local arg = f and f.args.input
  if op.name ~= "vnc" or #fields ~= 1 or f.name ~= "vnc" or f.alias or #op.var_order ~= 1
    or not v or v.type.kind ~= "NON_NULL" or v.type.of.name ~= "VncInput"
    or #f.arg_order ~= 1 or not arg or arg.kind ~= "variable" or arg.name ~= "input" then
    return false
  end
  for k in pairs(type(variables) == "table" and variables or {}) do
    if k ~= "input" then return false end
  end
  return true
end

local JSON_TYPES = { ["application/json"] = true, ["application/*"] = true, ["*/*"] = true,
  ["application/graphql-response+json"] = true }

local function accepts_json(accept)
  for part in accept:gmatch("[^,]+") do
    local t = lower(match(part, "^%s*([^;%s]+)") or "")
    if JSON_TYPES[t] then return true end
  end
  return false
end

local function needs_vnc(fields)
  for _, f in ipairs(fields) do
    if f.name == "vnc" then return true end
  end
  return false
end

local function counts_vm(id)
  incr(dict("sim_stats"), "vm:" .. id)
end

--- answer(req) -> status, body, content type | nil, fault handler, ctx.
-- req: {method, headers (names in lower case), body, flavours}.
local function answer(req)
  local fl = req.flavours
  local h = req.headers
  local obj = decode_object(req.body)
  local sch = SCHEMAS[fl.pretoken == true]

  -- read the query as far as it goes: the VMs asked for are counted, and a
  -- query for authnStrategies alone needs no token
  local doc, perr, op, fields, verrs, vcode, vars, cerrs
  if obj and type(obj.query) == "string" then
    doc, perr, op, fields, verrs, vcode = read_query(obj.query, obj.operationName, fl, sch)
    if op then
      vars, cerrs = graphql.coerce_variables(sch, op, obj.variables ~= null and obj.variables or nil,
        null)
    end
  end
  local needs_token = true
  if fields and vars then
    needs_token = false
    for _, f in ipairs(fields) do
      if f.name == "vnc" then
        needs_token = true
        local id = vm_id(f, vars)
        if id and #id <= 256 then counts_vm(id) end
      elseif f.name ~= "authnStrategies" and f.name ~= "__typename" then
        needs_token = true
      end
    end
  else
    -- the old lenient count: variables.input.vm.id
    local v = obj and obj.variables
    v = type(v) == "table" and v.input
    v = type(v) == "table" and v.vm
    v = type(v) == "table" and v.id
    if type(v) == "string" and v ~= "" and #v <= 256 then counts_vm(v) end
  end

  latency()

  if needs_token and not authorized(h["authorization"] or false) then
    if fl.gqlauth then return refused_token() end
    return 401, encode({ message = "unauthorized" })
  end
  if req.method ~= "POST" then return 400, encode({ message = "method must be POST" }) end

  local ctype = h["content-type"]
  if not ctype then return 400, encode({ message = "missing Content-Type" }) end
  local lc = lower(ctype)
  if lc ~= "application/json" and not match(lc, "^application/json;%s*charset=utf%-8$") then
    return 400, encode({ message = "Content-Type must be application/json" })
  end
  -- optional, as on real towers; when given they must fit
  local accept = h["accept"]
  if accept and not accepts_json(accept) then
    return 400, encode({ message = "accept must include application/json" })
  end
  local lang = h["content-language"]
  if lang and lang ~= "en-US" and lang ~= "zh-CN" and lang ~= "*" then
    return 400, encode({ message = "content-language must be en-US, zh-CN or *" })
  end

  if not req.body or req.body == "" then return 400, encode({ message = "empty body" }) end
  if not obj then return 400, encode({ message = "body is not a JSON object" }) end
  for k in pairs(obj) do
    if k ~= "operationName" and k ~= "query" and k ~= "variables" and k ~= "extensions" then
      return 400, encode({ message = "unexpected field " .. k })
    end
  end
  if type(obj.query) ~= "string" or obj.query == "" then
    return request_errors({ { message = "GraphQL operations must contain a non-empty `query`." } },
      "BAD_REQUEST")
  end
  if obj.operationName ~= nil and obj.operationName ~= null and type(obj.operationName) ~= "string" then
    return request_errors({ { message = "`operationName` in a POST body must be a string if provided." } },
      "BAD_REQUEST")
  end
  if obj.variables ~= nil and obj.variables ~= null
     and (type(obj.variables) ~= "table" or obj.variables[1] ~= nil) then
    return request_errors({ { message = "`variables` in a POST body should be provided as an object." } },
      "BAD_REQUEST")
  end
  if not doc then return request_errors({ perr }, "GRAPHQL_PARSE_FAILED") end
  if not op then return request_errors(verrs, vcode) end
  if fl.documented and needs_vnc(fields) and not documented_form(op, fields, obj.variables) then
    return request_errors({ { message = "This tower answers only the documented vnc query "
      .. "(operation vnc, vnc(input: $input), variables {input})." } },
      "GRAPHQL_VALIDATION_FAILED")
  end
  if fl.noalias and #fields > 1 then
    return request_errors({ { message = "Query has " .. #fields .. " root fields; this tower "
      .. "answers one field per query." } }, "GRAPHQL_VALIDATION_FAILED")
  end
  if not vars then return request_errors(cerrs, "BAD_USER_INPUT") end

  -- a whole-request fault: the first VM that has one
  for _, f in ipairs(fields) do
    local id = f.name == "vnc" and vm_id(f, vars)
    local handler = id and faults.whole(id)
    if handler then
      local ctx = { id = id, key = f.key }
      function ctx.normal() return execute(fields, vars, fl) end
      -- the answer to another request on the same connection (fault-late)
      function ctx.answer(other)
        other.flavours = fl
        incr(dict("sim_stats"), "path:" .. (match(other.uri, "^[^?]*") or other.uri))
        incr(dict("sim_stats"), "requests")
        local st, body = answer(other)
        if not st then return 400, encode({ message = "after fault-late: plain VMs only" }) end
        return st, body
      end
      return nil, handler, ctx
    end
  end
  return 200, execute(fields, vars, fl), "application/json"
end

local function this_request(flavours)
  local headers = {}
  for k, v in pairs(ngx.req.get_headers()) do
    headers[lower(k)] = type(v) == "table" and concat(v, ", ") or v
  end
  return { method = ngx.req.get_method(), headers = headers, body = read_body(),
    flavours = flavours }
end

-- the flavours of this request, or nil when it was answered (404 for an
-- unknown flavour, 403 for a missing allow-list header)
local function flavours(suffix)
  local fl = util.flavours(suffix)
  if not fl then
    send_json(404, { message = "not found" })
    return nil
  end
  if fl.allowlist and lower(ngx.var.http_x_bypass_whitelist or "") ~= "true" then
    send_json(403, { message = "forbidden: this tower only answers allow-listed clients",
      code = "FORBIDDEN" })
    return nil
  end
  return fl
end

---------------------------------------------------------------------------
-- locations
---------------------------------------------------------------------------

function _M.api()
  count_request()
  util.enter_in_flight()
  local fl = flavours("/api")
  if not fl then return end
  local status, body, ctype = answer(this_request(fl))
  if status then return send(status, body, ctype or "application/json") end
  local handler, ctx = body, ctype
  return handler(ctx)
end

local function login_error(status, code, message)
  return send_json(status, { message = message, status = status, path = ngx.var.uri, code = code })
end

-- REST answers carry a request id, as the tower's do (UUID-shaped: never
-- 32 hex digits in a row, which the specs take for a raw token)
local function request_id()
  local h = to_hex(random_bytes(16))
  ngx.header["x-tower-request-id"] = h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16)
    .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21, 32)
end

function _M.login()
  count_request()
  local fl = flavours("/v2/api/login")
  if not fl then return end
  request_id()
  latency()
  if ngx.req.get_method() ~= "POST" then
    return login_error(400, "BAD_REQUEST", "method must be POST")
  end
  local obj = decode_object(read_body())
  if not obj then return login_error(400, "BAD_REQUEST", "body is not a JSON object") end
  local source = obj.source
  if source == nil or source == null then source = "LOCAL" end
  incr(dict("sim_stats"), "login:" .. (type(source) == "string" and source or "?"))
  local user = type(obj.username) == "string" and USERS[obj.username]
  local ok = user and obj.password == user.password
  if ok and user.source == "LOCAL" then
    ok = source == "LOCAL"
  elseif ok then
    -- LDAP: through the tower's LDAP strategy (AUTHN + its id), or the
    -- deprecated source LDAP
    ok = source == "LDAP" or (source == "AUTHN" and not fl.noauthn
      and obj.auth_config_id == LDAP_STRATEGY)
  end
  if ok then
    local token = "login-" .. to_hex(random_bytes(12))
    local sim = dict("sim")
    sim:set("login:" .. token, sim:get("token_gen") or 0)
    return send(200, encode({ task_id = null, data = { token = token } }), "application/json")
  end
  return login_error(400, "USER_PASSWORD_INCORRECT", "username or password incorrect")
end

function _M.get_vms()
  count_request()
  local fl = flavours("/v2/api/get-vms")
  if not fl then return end
  request_id()
  latency()
  if not authorized() then return send_json(401, { message = "unauthorized" }) end
  if ngx.req.get_method() ~= "POST" then return bad("method must be POST") end
  local body = read_body()
  local obj = (body == nil or body == "") and {} or decode_object(body)
  if not obj or obj[1] ~= nil then return bad("body must be a JSON object") end
  local list, msg = vms.find(obj, null)
  if not list then return bad(msg) end
  if #list == 0 then return send(200, "[]", "application/json") end
  return send(200, encode(list), "application/json")
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

_M.answer = answer
return _M
