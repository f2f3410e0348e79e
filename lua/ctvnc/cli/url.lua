--- ctvnc url: one console URL per VM, by id or by --name.
local core = require "ctvnc.core"
local console = require "ctvnc.cli.console"
local usage_error = require("ctvnc.cli.flags").usage_error

local ipairs, concat = ipairs, table.concat

return {
  name = "url",
  args = "[--name NAME]... [VM_ID...]",
  summary = "one console URL per VM (id, mode, URL)",
  flags = console.flags({
    { name = "name", value = "NAME", many = true, help = "a VM by its name (repeatable; a "
      .. "name several clusters use is refused)" },
  }),
  console = true,
  columns = console.RECORD, text = console.text,
  check = function(flags, words)
    if #words == 0 and not flags.name then
      return usage_error("url needs at least one VM id or --name")
    end
  end,
  run = function(ctx)
    local c, w = ctx.client, ctx.out
    local ok = true
    local function emit(r)
      if r.ok then console.add_novnc({ r }, ctx.flags.novnc) end
      if not r.ok then ok = false end
      w.row(r)
    end
    -- every --name resolved before any row goes out: an ambiguous one is a
    -- usage error with no partial output
    local ids, unresolved = {}, {}
    for _, id in ipairs(ctx.words) do ids[#ids + 1] = id end
    for _, name in ipairs(ctx.flags.name or {}) do
      local vms, msg, kind = c:find_vms(name)
      if not vms then
        unresolved[#unresolved + 1] = { vm_id = name, ok = false, message = msg, kind = kind }
      elseif #vms == 0 then
        unresolved[#unresolved + 1] = { vm_id = name, ok = false,
          message = "no VM is named " .. name, kind = "not_found" }
      elseif #vms > 1 then     -- names are not unique across clusters
        local where = {}
        for i, vm in ipairs(vms) do
          where[i] = vm.id .. " in " .. (vm.cluster and vm.cluster.name or "an unnamed cluster")
        end
        return nil, ("--name %s: %d VMs have this name (%s): give the VM id"):format(name, #vms,
          concat(where, ", ")), "invalid"
      else
        ids[#ids + 1] = vms[1].id
      end
    end
    for _, r in ipairs(unresolved) do emit(r) end
    for _, id in ipairs(ids) do
      if core.interrupted() then
        emit({ vm_id = id, ok = false, message = "interrupted", kind = "interrupted" })
      else
        local url, how, kind = c:console_url(id, ctx.console)
        if url then emit({ vm_id = id, ok = true, url = url, mode = how })
        else emit({ vm_id = id, ok = false, message = how, kind = kind }) end
      end
    end
    return ok
  end,
}
