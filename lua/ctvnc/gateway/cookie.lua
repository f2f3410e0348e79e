-- luacheck: std max+ngx_lua
--- ctvnc.gateway.cookie: the ticket cookie of a console's page (its path
-- only, HttpOnly, SameSite=Lax, Secure over https).
local ctvnc = require "ctvnc"
local state = require "ctvnc.gateway.state"

local ngx = ngx

local _M = {}

_M.NAME = "ctvnc_ticket"

--- The page of a console: <prefix><vm id, encoded>.
function _M.page_path(vm_id)
  return state.conf.prefix .. ctvnc.encode_uri_component(vm_id)
end

--- A Set-Cookie value carrying a ticket for max_age seconds.
function _M.ticket(value, max_age, vm_id)
  local secure = ngx.var.scheme == "https" and "; Secure" or ""
  return ("%s=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Lax%s"):format(_M.NAME, value,
    _M.page_path(vm_id), max_age, secure)
end

--- The ticket of the request's cookie, or nil.
function _M.given()
  local v = ngx.var["cookie_" .. _M.NAME]
  if v == nil or v == "" then return nil end
  return v
end

return _M
