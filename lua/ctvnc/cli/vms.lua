--- ctvnc vms: find VMs by name, name part, cluster.
local usage_error = require("ctvnc.cli.flags").usage_error

local ipairs, pairs, type = ipairs, pairs, type

return {
  name = "vms",
  args = "[NAME] [--contains TEXT] [--cluster NAME] [--first N]",
  summary = "find VMs (id, name, status, cluster, host)",
  flags = {
    { name = "contains", value = "TEXT", help = "VMs whose name contains TEXT" },
    { name = "cluster", value = "NAME", help = "VMs of the cluster NAME" },
    { name = "first", value = "N", number = { integer = true, min = 1 },
      help = "at most N VMs" },
  },
  columns = { "id", "name", "local_id", "status", "cluster", "host" },
  text = function(vm)
    return { vm.id or "", vm.name or "", vm.status or "", vm.cluster or "", vm.host or "" }
  end,
  check = function(flags, words)
    if #words > 1 then return usage_error("vms takes at most one NAME") end
    if #words == 0 and not flags.contains and not flags.cluster and not flags.first then
      return usage_error("vms needs a NAME, --contains, --cluster or --first")
    end
  end,
  run = function(ctx)
    local flags, name = ctx.flags, ctx.words[1]
    local query, opts = name, nil
    if flags.contains or flags.cluster or flags.first then
      query = {}
      if name then query.name = name end
      if flags.contains then query.name_contains = flags.contains end
      if flags.cluster then query.cluster = { name = flags.cluster } end
      opts = { first = flags.first }
    end
    local vms, msg, kind = ctx.client:find_vms(query, opts)
    if not vms then return nil, msg, kind end
    for _, vm in ipairs(vms) do
      local row = {}
      for k, v in pairs(vm) do row[k] = v end
      if ctx.format ~= "json" then
        row.cluster = type(vm.cluster) == "table" and vm.cluster.name or nil
        row.host = type(vm.host) == "table" and vm.host.name or nil
      end
      ctx.out.row(row)
    end
    return true
  end,
}
