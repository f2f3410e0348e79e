--- ctvnc: noVNC console URLs for SmartX CloudTower virtual machines.
-- The URL primitives live in C (ctvnc.core); this module is the public face.
local core = require "ctvnc.core"
local client = require "ctvnc.client"

local ctvnc = {
  _VERSION = "ctvnc 0.1.0",
  encode_uri_component = core.encode_uri_component,
  direct_url = core.direct_url,
  proxy_url = core.proxy_url,
  new = client.new,
}

return ctvnc
