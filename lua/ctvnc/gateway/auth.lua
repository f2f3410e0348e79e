-- luacheck: std max+ngx_lua
--- ctvnc.gateway.auth: who may open which console, and who is an admin.
-- An authorize hook is hook(vm_id, ngx) -> true, user, view_only[, record]
-- | false, refusal, where a refusal is one record { status = 401 | 403, message =
-- why, kind = "unauthorized" | "denied", given = true when the request
-- carried the hook's kind of credential } (Kong's `false, { status =,
-- message = }`). Hooks written for earlier versions may still return
-- false, reason, status[, given]: authorize reads both.
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"

local ngx = ngx
local type, tostring, pairs, ipairs, pcall = type, tostring, pairs, ipairs, pcall

local _M = {}

--- A refusal record.
local function refusal(status, message, given)
  return { status = status, message = message, given = given == true,
           kind = status == 401 and "unauthorized" or "denied" }
end
_M.refusal = refusal

--- The lines of a key file (`what` names it in the error when it cannot
-- be read).
local function file_lines(path, what)
  local f = assert(io.open(path, "r"), "cannot read the " .. what .. " " .. path)
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  return lines
end

--- The shipped authorize hook: a file of "<api key> <vm id>[,<vm id>...]"
-- lines ("*" allows every VM; "#" starts a comment); "<vm id>:view" (or
-- "*:view") grants a view-only console, "<vm id>:record" one that is
-- recorded when RECORD is grant (the two combine: "vm-1:view:record").
-- The key comes in the X-API-Key header, never in a URL (browsers use tickets). The user named in
-- tickets, limits and logs is "key#<line number>", never the key.
function _M.key_file(path)
  local keys = {}
  for n, line in ipairs(file_lines(path, "key file")) do
    local key, vms = line:match("^%s*([^#%s]+)%s+(%S+)")
    if key then
      local allowed = { [" user"] = "key#" .. n }
      for vm in vms:gmatch("[^,]+") do
        local grant = { view = false, record = false }
        local id, flag = vm:match("^(.+):(%a+)$")
        while id and grant[flag] == false do
          grant[flag], vm = true, id
          id, flag = vm:match("^(.+):(%a+)$")
        end
        allowed[vm] = grant
      end
      keys[key] = allowed
    end
  end
  return function(vm_id, ngx_)
    local key = ngx_.req.get_headers()["x-api-key"]
    if type(key) ~= "string" then return false, refusal(403, "no key") end
    local allowed = keys[key]
    if not allowed then return false, refusal(403, "unknown key", true) end
    local grant = allowed[vm_id] or allowed["*"]
    if grant then return true, allowed[" user"], grant.view, grant.record end
    return false, refusal(403, "the key does not grant this VM", true)
  end
end

--- An admin_authorize hook: a file of admin keys, one a line ("#"
-- starts a comment), given in the X-API-Key header. The admin named in
-- the audit trail is "admin#<line number>".
function _M.admin_keys(path)
  local keys = {}
  for n, line in ipairs(file_lines(path, "admin key file")) do
    local key = line:match("^%s*([^#%s]+)")
    if key then keys[key] = "admin#" .. n end
  end
  return function(ngx_)
    local key = ngx_.req.get_headers()["x-api-key"]
    local who = type(key) == "string" and keys[key]
    if who then return true, who end
    return false
  end
end

--- The shipped JWT authorize hook: gateway.jwt{ secret = ... (HS256) |
-- public_key = PEM (RS256), alg, audience, issuer, leeway, cookie }. The
-- token comes in "Authorization: Bearer" or the cookie named `cookie`;
-- `sub` is the user, `vms` ("*" or a list) grants VMs, `view_only`
-- (true, or a list of VM ids) makes them view-only and `record` (likewise)
-- recorded when RECORD is grant (ctvnc.jwt.grant).
-- No or a bad token: 401 with the reason; a good one without this VM: 403.
function _M.jwt(opts)
  local jwt = require "ctvnc.jwt"
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  local cookie = o.cookie
  o.cookie = nil
  if o.secret == "" then o.secret = nil end
  local v = assert(jwt.new(o))
  opts.secret = nil
  return function(vm_id, ngx_)
    local token = jwt.token_from(ngx_.var.http_authorization, ngx_.var.http_cookie, cookie)
    if not token then return false, refusal(401, "no token") end
    local claims, why = v:verify(token)
    if not claims then return false, refusal(401, why, true) end
    local user, view_only, record = jwt.grant(claims, vm_id)
    if not user then return false, refusal(403, view_only, true) end
    return true, user, view_only, record
  end
end

--- A hook's answer as true, user, view_only, record | false, refusal record.
local function read_answer(yes, a, b, c)
  if yes == true then return true, a, b == true, c == true end
  if type(a) == "table" then
    return false, refusal(a.status == 401 and 401 or 403, tostring(a.message or "denied"),
      a.given)
  end
  return false, refusal(b == 401 and 401 or 403, type(a) == "string" and a or "denied", c)
end

--- Several authorize hooks: the first that allows wins; else the refusal
-- of the first hook that was given its kind of credential (a key, a
-- token), else the first refusal. So a bad token is answered as such even
-- when no key came with it.
function _M.either(...)
  local hooks = { ... }
  return function(vm_id, ngx_)
    local first
    for _, h in ipairs(hooks) do
      local ok, a, b, c = read_answer(h(vm_id, ngx_))
      if ok then return true, a, b, c end
      if not first or (a.given and not first.given) then first = a end
    end
    return false, first
  end
end

--- The operator's hook for vm_id: true, user, view_only, record | false,
-- refusal.
-- No hook, no access; a hook that fails refuses.
function _M.authorize(vm_id)
  local hook = state.conf and state.conf.authorize
  if type(hook) ~= "function" then return false, refusal(403, "no authorize hook") end
  local ok, yes, a, b, c = pcall(hook, vm_id, ngx)
  if not ok then
    log(ngx.ERR, "ctvnc: authorize hook failed: ", tostring(yes))
    return false, refusal(403, "authorize hook failed")
  end
  return read_answer(yes, a, b, c)
end

--- The admin_authorize hook: true, admin | false, why ("off" when the
-- gateway has no such hook).
function _M.admin()
  local hook = state.conf and state.conf.admin_authorize
  if type(hook) ~= "function" then return false, "off" end
  local ok, yes, who = pcall(hook, ngx)
  if not ok then
    log(ngx.ERR, "ctvnc: admin_authorize hook failed: ", tostring(yes))
    return false
  end
  return yes == true, tostring(who or "admin")
end

--- Is the websocket's Origin the gateway's own or an allowed one? No
-- Origin (not a browser) is fine: the key or ticket decides.
function _M.origin_ok()
  local origin = ngx.var.http_origin
  if origin == nil then return true end
  origin = origin:lower()
  local own = (ngx.var.scheme .. "://" .. (ngx.var.http_host or "")):lower()
  return origin == own or state.origins[origin] == true
end

return _M
