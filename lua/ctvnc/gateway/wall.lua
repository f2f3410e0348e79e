-- luacheck: std max+ngx_lua
--- ctvnc.gateway.wall: GET /wall[?vms=a,b,...], the console wall.
--
-- An HTML page (wall_page.html) of the VMs given in ?vms= (else WALL_VMS) that
-- the authorize hook allows the caller, each a tile linking to its console
-- page. The page's script fetches each /console/<vm>/screenshot.png
-- thumbnail every WALL_REFRESH seconds and marks the screens that changed
-- since the last refresh and those unchanged for WALL_STILL seconds (10
-- minutes), keeping a small hash of each thumbnail in its own state. The
-- page asks CloudTower nothing; the screenshots do, each authorized and
-- counted on its own.
local core = require "ctvnc.core"
local cjson = require "cjson.safe"
local state = require "ctvnc.gateway.state"
local config = require "ctvnc.gateway.config"
local respond = require "ctvnc.gateway.respond"
local auth = require "ctvnc.gateway.auth"
local cookie = require "ctvnc.gateway.cookie"

local ngx = ngx
local type, ipairs, concat = type, ipairs, table.concat
local html_escape, error_page = respond.html_escape, respond.error_page

local _M = {}

_M.MAX = 500          -- VMs on one wall
_M.WIDTH = 320        -- thumbnail width, pixels
_M.PARALLEL = 6       -- thumbnails fetched at once

local PAGE = respond.template("wall_page.html")

--- The VM ids asked for: ?vms= (one or repeated, comma or space
-- separated), else the wall_vms setting. Duplicates dropped, order kept.
local function wanted(arg)
  local given = arg
  if type(arg) == "table" then given = concat(arg, ",") end
  local items = config.items(type(given) == "string" and given or state.conf.wall_vms)
  local out, seen = {}, {}
  for _, id in ipairs(items) do
    if not seen[id] then
      seen[id] = true
      out[#out + 1] = id
    end
  end
  return out
end

local function tile(vm_id)
  local e = html_escape(vm_id)
  return ('<a class="tile" href="%s" data-vm="%s"><img alt="screen of %s">'
    .. '<span class="label"><span class="vm">%s</span><span class="state">…</span>'
    .. '</span></a>'):format(html_escape(cookie.page_path(vm_id)), e, e, e)
end

--- GET|HEAD /wall: the page, or an error page (400: no VMs or too many;
-- the first refusal when the hook allows none).
function _M.wall()
  if not respond.method_is("GET", "HEAD") then return respond.not_allowed("GET, HEAD", true) end
  local args = ngx.req.get_uri_args(8)
  if args.key ~= nil then return error_page(400, "invalid") end
  local ids = wanted(args.vms)
  if #ids == 0 then
    return error_page(400, "invalid", nil, "No VMs to show: give them as ?vms=vm-1,vm-2.")
  end
  if #ids > _M.MAX then
    return error_page(400, "invalid", nil, ("At most %d VMs on one wall."):format(_M.MAX))
  end
  local shown, tiles, first = {}, {}, nil
  for _, id in ipairs(ids) do
    local ok, refusal = auth.authorize(id)
    if ok then
      shown[#shown + 1] = id
      tiles[#tiles + 1] = tile(id)
    else
      first = first or refusal
    end
  end
  if #shown == 0 then return respond.deny(nil, first, true) end
  local nonce, why = core.random_bytes(16)
  if not nonce then
    return respond.fail(nil, "no random bytes for the page's nonce: " .. why, "system")
  end
  nonce = ngx.encode_base64(nonce)
  local conf = state.conf
  local settings = cjson.encode({ prefix = conf.prefix, width = _M.WIDTH,
    refresh = conf.wall_refresh, still = conf.wall_still, parallel = _M.PARALLEL })
  local values = {
    NONCE = nonce, COUNT = #shown, STILL = conf.wall_still, WIDTH = _M.WIDTH,
    TILES = concat(tiles, "\n"),
    CONFIG = (settings:gsub("<", "\\u003c")),
  }
  ngx.status = 200
  respond.common_headers(true)
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Content-Security-Policy"] = ("default-src 'none'; script-src 'nonce-%s'; "
    .. "style-src 'nonce-%s'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
    .. "form-action 'none'; frame-ancestors %s"):format(nonce, nonce, conf.frame_ancestors)
  if ngx.req.get_method() ~= "HEAD" then
    ngx.print((PAGE:gsub("@(%u+)@", function(name) return values[name] end)))
  end
  return respond.finish(200)
end

return _M
