--- ctvnc: noVNC console URLs for SmartX CloudTower virtual machines.
-- The URL primitives live in C (ctvnc.core); this module is the public face.
local core = require "ctvnc.core"
local client = require "ctvnc.client"
local argcheck = require("ctvnc.args").check

local type, tostring, format, match = type, tostring, string.format, string.match
local e = core.encode_uri_component

--- ctvnc.novnc_url(page, ws_url [, opts]) -> url | nil, message, "invalid":
-- the link to a noVNC vnc.html page (`page`) that opens ws_url. Every
-- value is encoded, so the websocket path and query arrive intact.
local function novnc_url(page, ws_url, opts)
  argcheck(type(page) == "string", 1, "novnc_url", "string expected, got " .. type(page))
  argcheck(type(ws_url) == "string", 2, "novnc_url", "string expected, got " .. type(ws_url))
  argcheck(opts == nil or type(opts) == "table", 3, "novnc_url",
    "table expected, got " .. type(opts))
  opts = opts or {}
  if page == "" or match(page, "[%s#]") then
    return nil, "novnc_url: the page must be a URL without spaces or fragment", "invalid"
  end
  local scheme, host, port, path = match(ws_url, "^(wss?)://(%[[%x:.]+%])(:?%d*)/(.*)$")
  if not scheme then
    scheme, host, port, path = match(ws_url, "^(wss?)://([^/:@?#%[%]]+)(:?%d*)/(.*)$")
  end
  if not scheme or not core.host_kind((host:gsub("^%[(.*)%]$", "%1"))) then
    return nil, "novnc_url: ws_url must be ws:// or wss:// with a host and a path", "invalid"
  end
  port = port ~= "" and tonumber(port:sub(2)) or (scheme == "wss" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "novnc_url: ws_url has a bad port", "invalid" end
  local url = format("%s%shost=%s&port=%d&path=%s&encrypt=%d&autoconnect=1", page,
    page:find("?", 1, true) and "&" or "?", e(host), port, e(path), scheme == "wss" and 1 or 0)
  if opts.view_only ~= nil then url = url .. "&view_only=" .. tostring(opts.view_only == true) end
  if opts.resize ~= nil then
    if opts.resize ~= "scale" and opts.resize ~= "remote" and opts.resize ~= "off" then
      return nil, 'novnc_url: opts.resize must be "scale", "remote" or "off"', "invalid"
    end
    url = url .. "&resize=" .. opts.resize
  end
  if opts.password ~= nil then
    if type(opts.password) ~= "string" then
      return nil, "novnc_url: opts.password must be a string", "invalid"
    end
    url = url .. "&password=" .. e(opts.password)
  end
  return url
end

local ctvnc = {
  _VERSION = "ctvnc 0.1.0",
  encode_uri_component = core.encode_uri_component,
  direct_url = core.direct_url,
  proxy_url = core.proxy_url,
  novnc_url = novnc_url,
  new = client.new,
}

return ctvnc
