-- Console URLs for many VMs at once, as CSV-ish lines, with a summary.
-- usage: CTVNC_ENDPOINT=https://tower CTVNC_TOKEN=... lua5.4 examples/batch.lua VM_ID...
local ctvnc = require "ctvnc"

local client = assert(ctvnc.new({
  endpoint = os.getenv("CTVNC_ENDPOINT"),
  token = os.getenv("CTVNC_TOKEN"),
  ca_file = os.getenv("CTVNC_CA_FILE"),
  concurrency = 8,
}))

local results, summary = client:batch(arg, {
  mode = "proxy",
  on_progress = function(done, total) io.stderr:write(("\r%d/%d"):format(done, total)) end,
})
io.stderr:write("\n")
for _, r in ipairs(results) do
  if r.ok then
    print(r.vm_id, r.mode, r.url)
  else
    print(r.vm_id, "failed", r.kind, r.message)
  end
end
print(("%d of %d ok, %d failed"):format(summary.ok, summary.total, summary.failed))
client:close()
