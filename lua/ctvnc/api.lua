--- ctvnc.api: the CloudTower protocol, and nothing else: no I/O, no state.
-- Request bodies for vnc, login and get-vms; readers for their answers; the
-- classification of a transport's answer by status number; the message
-- cleaner and redactor. Every reader returns value | nil, message, kind.
local core = require "ctvnc.core"
local json = require("cjson.safe").new()

local type, tostring, ipairs, pairs, next = type, tostring, ipairs, pairs, next
local byte, find, sub, format = string.byte, string.find, string.sub, string.format
local concat = table.concat

json.decode_max_depth(64)

local _M = {}

local INFO_FIELDS = { "vm_uuid", "host_ip", "cluster_ip", "raw_token", "token" }

--- GraphQL error codes with which the tower says the token is refused
-- (CLOUDTOWER.md): these are `auth`, whatever the HTTP status.
local AUTH_CODES = {
  LOAD_TOKEN_FAILED = true, PERMISSION_DENIED = true, LOGIN_FAILED = true,
  USER_NOT_FOUND = true, USER_PASSWORD_INCORRECT = true, NOT_MATCH_USER = true,
}

--- Replaces every occurrence of each secret (of any length) by "<redacted>".
local function redact(s, secrets)
  if not secrets then return s end
  for _, secret in ipairs(secrets) do
    if secret ~= "" then
      local i = find(s, secret, 1, true)
      while i do
        s = sub(s, 1, i - 1) .. "<redacted>" .. sub(s, i + #secret)
        i = find(s, secret, i + 10, true)
      end
    end
  end
  return s
end
_M.redact = redact

--- Text from a server or a caller, made safe for a one-line message:
-- secrets redacted first (so a cut can never leave part of one), valid
-- UTF-8 kept (a zh-CN tower's errors), control bytes and invalid sequences
-- turned into "?", and cut at a character boundary after at most `max`
-- bytes (default 120).
local function clean(s, max, secrets)
  s = redact(tostring(s), secrets)
  max = max or 120
  if not find(s, "[%c\127-\255]") then      -- printable ASCII: kept as it is
    return #s <= max and s or sub(s, 1, max) .. "..."
  end
  local out, n, i, len = {}, 0, 1, #s
  while i <= len do
    local c = byte(s, i)
    local size = c < 0x80 and 1 or c >= 0xC2 and c <= 0xDF and 2
      or c >= 0xE0 and c <= 0xEF and 3 or c >= 0xF0 and c <= 0xF4 and 4 or 0
    local ok = size > 0 and i + size - 1 <= len
    for k = i + 1, i + size - 1 do
      local b = ok and byte(s, k)
      if not b or b < 0x80 or b > 0xBF then ok = false end
    end
    if ok and size == 3 then      -- no overlong forms, no surrogates
      local b = byte(s, i + 1)
      ok = not (c == 0xE0 and b < 0xA0) and not (c == 0xED and b > 0x9F)
    elseif ok and size == 4 then  -- no overlong forms, nothing past U+10FFFF
      local b = byte(s, i + 1)
      ok = not (c == 0xF0 and b < 0x90) and not (c == 0xF4 and b > 0x8F)
    end
    local piece = (not ok or c < 32 or c == 127) and "?" or sub(s, i, i + size - 1)
    if n + #piece > max then
      out[#out + 1] = "..."
      break
    end
    out[#out + 1] = piece
    n = n + #piece
    i = i + (ok and size or 1)
  end
  return concat(out)
end
_M.clean = clean

--- The code of a GraphQL error: on the error object, or under extensions.
local function error_code(e)
  if type(e) ~= "table" then return nil end
  if type(e.code) == "string" then return e.code end
  local ext = e.extensions
  if type(ext) == "table" and type(ext.code) == "string" then return ext.code end
end

--- What a transport's answer means: body | nil, message, kind, retryable.
-- `call` is the engine's call (what, login, graphql), `where` the URL. A
-- refused login is `auth` for every 4xx; other calls are `auth` for 401
-- and 403, and a GraphQL call for an auth code in its errors at any status
-- (CLOUDTOWER.md). A GraphQL call's 400 with errors goes to its reader.
-- Retryable: connect, timeout and 5xx.
function _M.classify(call, where, status, body, kind, secrets)
  local what = call.what
  if not status then
    return nil, format("%s: %s (%s)", what, clean(body, 200, secrets), where), kind,
      kind == "connect" or kind == "timeout"
  end
  if status >= 200 and status < 300 then return body end
  local detail = ""
  local doc = json.decode(body)
  if type(doc) == "table" then
    local errors = call.graphql and doc.errors
    if type(errors) == "table" and errors[1] ~= nil then
      if AUTH_CODES[error_code(errors[1])] or status == 400 then return body end
    end
    if type(doc.message) == "string" then detail = ": " .. clean(doc.message, 120, secrets) end
  end
  local login = call.login
  local auth = status == 401 or status == 403 or (login and status >= 400 and status < 500)
  return nil, format("%s%s: HTTP %d from %s%s", what, auth and login and " rejected" or "",
    status, where, detail), auth and "auth" or "http", status >= 500
end

--- GraphQL error codes with which the tower says the VM does not exist.
local NOT_FOUND_CODES = { VM_NOT_FOUND = true, RESOURCE_NOT_FOUND = true, NOT_FOUND = true }

--- The kind of a GraphQL error, once for every surface (client, batch,
-- command line, gateway): its code first (auth, not_found), then, for an
-- error without a code, its message ("... does not exist", "not found").
local function error_kind(code, message)
  if AUTH_CODES[code] then return "auth" end
  if NOT_FOUND_CODES[code] then return "not_found" end
  if code == nil then
    local m = message:lower()
    if find(m, "does not exist", 1, true) or find(m, "not found", 1, true) then
      return "not_found"
    end
  end
  return "graphql"
end
_M.error_kind = error_kind

--- message, kind for a GraphQL error entry.
local function graphql_error(what, e, secrets)
  if type(e) ~= "table" then return what .. ": GraphQL error: no message", "graphql" end
  local code = error_code(e)
  local m = type(e.message) == "string" and e.message or "no message"
  local text = format("%s: GraphQL error: %s%s", what, clean(m, 200, secrets),
    code and " (" .. clean(code, 40) .. ")" or "")
  return text, error_kind(code, m)
end
_M.graphql_error = graphql_error

--- Calls: what the fetch engine runs. { path=, body=, what= (names the
-- call in messages), read=(what, body, secrets, call) -> value | nil, msg, kind,
-- login=true for the login itself (no token), graphql=true for /api }.

local NO_TOKEN_FIELD = 'Cannot query field "token" on type "Vnc"'

local host_kind = core.host_kind

--- One vnc object (or null) as info | nil, why, kind; `why` follows the
-- VM's name in a message (made only then).
local function read_info(vnc, without_token)
  if vnc == json.null then return nil, ": no such VM", "not_found" end
  if vnc == nil then return nil, ": the answer has no data.vnc", "decode" end
  if type(vnc) ~= "table" then return nil, ": data.vnc is not an object", "decode" end
  local u, h, c, r, t = vnc.vm_uuid, vnc.host_ip, vnc.cluster_ip, vnc.raw_token, vnc.token
  if without_token then t = nil end
  if type(u) ~= "string" or u == "" or type(h) ~= "string" or h == ""
    or type(c) ~= "string" or c == "" or type(r) ~= "string" or r == ""
    or (not without_token and (type(t) ~= "string" or t == "")) then
    for _, k in ipairs(INFO_FIELDS) do   -- which one, for the message
      local v = vnc[k]
      if not (without_token and k == "token") and (type(v) ~= "string" or v == "") then
        return nil, format(": field %s is %s", k,
          v == nil and "missing" or v == "" and "empty" or "not a string"), "decode"
      end
    end
  end
  local bad = not host_kind(c) and "cluster_ip" or not host_kind(h) and "host_ip"
  if bad then return nil, ": field " .. bad .. " is not a valid host", "decode" end
  return { vm_uuid = u, host_ip = h, cluster_ip = c, raw_token = r, token = t }
end

--- The name of a VM in messages.
local function vm_name(id) return "vnc " .. clean(id, 64) end

--- Reads a vnc answer for the fields `aliases` (default: the one field
-- "vnc", the vendor document's request): outcomes | nil, message, kind,
-- again. outcomes[k] belongs to aliases[k], the field of the VM ids[k]
-- (named in messages; `what` when not given): { info = info } or
-- { message =, kind = } (a null field is not_found, an error whose path
-- names the field is that field's). Failures of the whole answer: an error
-- without such a path (kind "schema" when the tower has no token field, so
-- the caller asks without it; kind "form" when a tower refuses one aliased
-- field with a validation error, so the caller asks in the vendor
-- document's form), an auth code on any error, a wrong shape, and data that
-- does not hold exactly the fields asked for: an answer to another request,
-- which comes back with again = "fresh" (ask again on a new connection).
-- `index` maps each alias to its position (made from aliases when absent).
local function read_vnc(what, body, secrets, aliases, without_token, ids, index)
  aliases = aliases or { "vnc" }
  local doc = json.decode(body)
  if type(doc) ~= "table" then return nil, what .. ": the answer is not a JSON object", "decode" end
  if not index then
    index = {}
    for k, a in ipairs(aliases) do index[a] = k end
  end
  local per
  local errors = doc.errors
  if errors ~= nil and errors ~= json.null then
    if type(errors) ~= "table" or errors[1] == nil then
      return nil, what .. ": errors is not a list", "decode"
    end
    per = {}
    for _, e in ipairs(errors) do
      local path = type(e) == "table" and e.path
      local k = type(path) == "table" and index[path[1]]
      local msg, kind = graphql_error(k and ids and vm_name(ids[k]) or what, e, secrets)
      if kind == "auth" then return nil, msg, kind end
      if k then
        per[k] = per[k] or { message = msg, kind = kind }
      else
        if not without_token and type(e) == "table" and type(e.message) == "string"
          and find(e.message, NO_TOKEN_FIELD, 1, true) then
          return nil, what .. ": " .. NO_TOKEN_FIELD, "schema"
        end
        if #aliases == 1 and aliases[1] ~= "vnc"
          and error_code(e) == "GRAPHQL_VALIDATION_FAILED" then
          return nil, msg, "form"
        end
        return nil, msg, kind
      end
    end
  end
  local data = doc.data
  if type(data) ~= "table" or data[1] ~= nil then
    return nil, what .. ": the answer has no data object", "decode"
  end
  local n = 0
  for key in pairs(data) do
    n = n + 1
    if not index[key] then n = -1 break end
  end
  if n ~= #aliases and not (#aliases == 1 and n == 0 and aliases[1] == "vnc") then
    return nil, what .. ": the answer is not for this request", "decode", "fresh"
  end
  local out = {}
  for k, a in ipairs(aliases) do
    local o = per and per[k]
    if not o then
      local info, why, kind = read_info(data[a], without_token)
      o = info and { info = info }
        or { message = (ids and vm_name(ids[k]) or what) .. why, kind = kind }
    end
    out[k] = o
  end
  return out
end
_M.read_vnc = read_vnc

--- The reader of a vnc call (`call.read(what, body, secrets, call)`).
local function read_call(what, body, secrets, call)
  local ids = call.vm_ids
  return read_vnc(what, body, secrets, call.aliases, call.without_token, #ids > 1 and ids or nil,
    call.index)
end

local FIELDS = "vm_uuid host_ip cluster_ip raw_token token"
local FIELDS_2022 = "vm_uuid host_ip cluster_ip raw_token"

--- The query text, aliases and variable names of a vnc request for `n`
-- VMs, remembered by (n, nonce, without_token): a client asks the same few
-- shapes over and over (a memo, bounded).
local shapes, nshapes = {}, 0
local function shape(n, nonce, without_token)
  local key = n .. " " .. (nonce or "") .. (without_token and " -" or "")
  local s = shapes[key]
  if s then return s end
  local fields = without_token and FIELDS_2022 or FIELDS
  if n == 1 and not nonce then      -- the vendor document's request
    s = { query = "query vnc($input: VncInput!) { vnc(input: $input) { " .. fields .. " } }",
          aliases = { "vnc" }, vars = { "input" } }
  else
    local decl, sel, aliases, vars = {}, {}, {}, {}
    for k = 1, n do
      local v = "v" .. (k - 1)
      local a = nonce and "a" .. nonce .. "_" .. (k - 1) or "a" .. (k - 1)
      decl[k] = "$" .. v .. ": VncInput!"
      sel[k] = a .. ": vnc(input: $" .. v .. ") { " .. fields .. " }"
      aliases[k], vars[k] = a, v
    end
    s = { query = "query vnc(" .. concat(decl, ", ") .. ") { " .. concat(sel, " ") .. " }",
          aliases = aliases, vars = vars }
  end
  s.index = {}
  for k, a in ipairs(s.aliases) do s.index[a] = k end
  if nshapes >= 256 then shapes, nshapes = {}, 0 end
  shapes[key], nshapes = s, nshapes + 1
  return s
end

--- The vnc query for the VMs `vm_ids`. With a `nonce`, each field goes
-- under its own alias and variable, the aliases carrying the nonce
-- (`a<nonce>_0: vnc(input: $v0)`), so an answer is only taken for a
-- request that asked with that nonce. Without, one VM is asked with the
-- vendor document's request (`vnc(input: $input)`, variables
-- {input: {vm: {id}}}) and several under the aliases a0, a1, ... (over
-- HTTP/2, where a stream binds its answer). `without_token` for towers
-- from before the token field (2022), whose answers have no token.
function _M.vnc_call(vm_ids, nonce, without_token)
  local s = shape(#vm_ids, nonce, without_token)
  local vars, names = {}, s.vars
  for k, id in ipairs(vm_ids) do vars[names[k]] = { vm = { id = id } } end
  local aliases, index = s.aliases, s.index
  local what = vm_name(vm_ids[1]) .. (#vm_ids > 1 and format(" (+%d more)", #vm_ids - 1) or "")
  return {
    path = "/api", what = what, graphql = true, vm_ids = vm_ids, aliased = aliases[1] ~= "vnc",
    read = read_call, aliases = aliases, index = index, without_token = without_token,
    body = json.encode({ operationName = "vnc", variables = vars, query = s.query }),
  }
end

--- Reads an authnStrategies answer: the id of the LDAP strategy, or false.
local function read_strategies(what, body)
  local doc = json.decode(body)
  local list = type(doc) == "table" and type(doc.data) == "table" and doc.data.authnStrategies
  if type(list) ~= "table" then
    return nil, what .. ": the answer has no authnStrategies", "decode"
  end
  for _, st in ipairs(list) do
    if type(st) == "table" and st.type == "LDAP" and type(st.id) == "string" then return st.id end
  end
  return false
end
_M.read_strategies = read_strategies

--- The tower's login strategies (no token needed), as the SDKs ask them
-- before an LDAP login.
function _M.strategies_call()
  return { path = "/api", what = "login strategies", read = read_strategies, login = true,
           body = json.encode({ query = "{authnStrategies{id type}}" }) }
end

--- Reads a login answer: token | nil, message, kind.
local function read_login(what, body)
  local doc = json.decode(body)
  local token = type(doc) == "table" and type(doc.data) == "table" and doc.data.token
  if type(token) ~= "string" or token == "" then
    return nil, what .. ": the answer has no data.token", "decode"
  end
  return token
end
_M.read_login = read_login

--- A login; auth_config_id with source "AUTHN".
function _M.login_call(username, password, source, auth_config_id)
  return { path = "/v2/api/login", what = "login", read = read_login, login = true,
           body = json.encode({ username = username, password = password, source = source,
                                auth_config_id = auth_config_id }) }
end

local function id_name(t)
  if type(t) ~= "table" then return nil end
  return { id = type(t.id) == "string" and t.id or nil,
           name = type(t.name) == "string" and t.name or nil }
end

--- Reads a get-vms answer: array of {id=, name=, local_id=, status=,
-- cluster={id=, name=}, host={id=, name=}}.
local function read_vms(what, body)
  local doc = json.decode(body)
  if type(doc) ~= "table" or (doc[1] == nil and next(doc) ~= nil) then
    return nil, what .. ": the answer is not a JSON array", "decode"
  end
  local vms = {}
  for i, vm in ipairs(doc) do
    if type(vm) ~= "table" or type(vm.id) ~= "string" then
      return nil, format("%s: item %d has no id", what, i), "decode"
    end
    local out = { cluster = id_name(vm.cluster), host = id_name(vm.host) }
    for _, k in ipairs({ "id", "name", "local_id", "status" }) do
      if type(vm[k]) == "string" then out[k] = vm[k] end
    end
    vms[i] = out
  end
  return vms
end
_M.read_vms = read_vms

--- Does a get-vms filter name in_recycle_bin anywhere (AND/OR/NOT too)?
local function names_recycle_bin(where, depth)
  if type(where) ~= "table" or depth > 32 then return false end
  for k, v in pairs(where) do
    if k == "in_recycle_bin" or names_recycle_bin(v, depth + 1) then return true end
  end
  return false
end

--- get-vms: `where` is a name (exact) or a filter table sent as given,
-- with VMs in the recycle bin left out unless the filter names
-- in_recycle_bin; opts.first, opts.skip, opts.order_by.
function _M.vms_call(where, opts)
  opts = opts or {}
  local label = type(where) == "string" and where or "filter"
  if type(where) == "string" then where = { name = where } end
  if not names_recycle_bin(where, 0) then
    local w = { in_recycle_bin = false }
    for k, v in pairs(where) do w[k] = v end
    where = w
  end
  return { path = "/v2/api/get-vms", what = "find_vms " .. clean(label, 64), read = read_vms,
           body = json.encode({ where = where, first = opts.first, skip = opts.skip,
                                orderBy = opts.order_by }) }
end

return _M
