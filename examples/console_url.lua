-- Console URLs for one VM: both links, and the one auto mode picks.
-- usage: CTVNC_ENDPOINT=https://tower CTVNC_TOKEN=... lua5.4 examples/console_url.lua VM_ID
local ctvnc = require "ctvnc"

local vm_id = assert(arg[1], "usage: console_url.lua VM_ID")
local client = assert(ctvnc.new({
  endpoint = os.getenv("CTVNC_ENDPOINT"),
  token = os.getenv("CTVNC_TOKEN"),
  ca_file = os.getenv("CTVNC_CA_FILE"),
}))

local urls, err, kind = client:urls(vm_id)
if not urls then
  io.stderr:write(err, " (", kind, ")\n")
  os.exit(1)
end
print("direct: " .. urls.direct)
print("proxy:  " .. urls.proxy)

local url, mode = client:console_url(vm_id, { probe_timeout = 0.2 })
print("auto:   " .. tostring(url) .. " (" .. tostring(mode) .. ")")
client:close()
