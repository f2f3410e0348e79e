-- luacheck: std max+ngx_lua
--- ctvnc.gateway.page: the console page, noVNC's vnc.html with the head of
-- console.html (this module's template: the websocket of this VM, noVNC's
-- settings in the fragment, a status line) laid over its <head>.
local cjson = require "cjson.safe"
local state = require "ctvnc.gateway.state"
local log = require "ctvnc.gateway.log"
local respond = require "ctvnc.gateway.respond"

local ngx = ngx
local html_escape = respond.html_escape

local _M = {}

local HEAD = respond.template("console.html")

--- noVNC's vnc.html of novnc_dir, read once at configure time (nil when
-- it is missing: the page then answers 502 and logs why).
function _M.load(dir)
  local f = io.open(dir .. "/vnc.html", "r")
  if not f then return nil end
  local html = f:read("*a")
  f:close()
  return html
end

--- The page of vm_id (view: a view-only grant), or nil without noVNC.
local function html(vm_id, view)
  local conf = state.conf
  if not state.novnc_html then return nil end
  local js = cjson.encode(vm_id):gsub("</", "<\\/")
  local head = HEAD:gsub("@(%u+)@", function(name)
    if name == "VM" then return js end
    if name == "VIEW" then return view and "true" or "false" end
    if name == "NOVNC" then return html_escape(conf.novnc_url) end
    if name == "PREFIX" then return html_escape(conf.prefix) end
  end)
  return (state.novnc_html:gsub("<head>", function() return head end, 1))
end

--- Answers the page of vm_id (HEAD: its headers only); view_only: the
-- status line says "view only".
function _M.serve(vm_id, view_only)
  local is_head = ngx.req.get_method() == "HEAD"
  local text = not is_head and html(vm_id, view_only)
  if not is_head and not text then
    log(ngx.ERR, "ctvnc: noVNC's vnc.html is missing (novnc_dir)")
    return respond.error_page(502, "novnc", vm_id)
  end
  ngx.status = 200
  respond.common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  if text then ngx.print(text) end
  return respond.finish(200)
end

return _M
