--- ctvnc check: how far a console gets, direct and through the tower's
-- proxy: tcp, tls, websocket (101), rfb (banner), frame (a whole update),
-- the time of each step and the reason where it stops.
local api = require "ctvnc.api"
local usage_error = require("ctvnc.cli.flags").usage_error
local console = require "ctvnc.cli.console"

local ipairs, format, concat = ipairs, string.format, table.concat

local STEPS = { "tcp", "tls", "websocket", "rfb", "frame" }

local _M = {
  name = "check",
  args = "VM_ID...",
  summary = "how far each VM's console gets, direct and via the proxy (step, times, reason)",
  console = true,
  columns = { "vm_id", "path", "ok", "stage", "tcp", "tls", "websocket", "rfb", "frame",
              "kind", "message" },
}

_M.flags = console.flags({}, console.CHOICE)

function _M.check(_, words)
  if #words == 0 then return usage_error("check needs at least one VM id") end
end

function _M.text(r)
  local times = {}
  for _, s in ipairs(STEPS) do
    if r[s] then times[#times + 1] = format("%s %.1fms", s, r[s]) end
  end
  local line = { r.vm_id, r.path or "error", r.stage or "", concat(times, " ") }
  if not r.ok then line[#line + 1] = (r.kind or "") .. ": " .. (r.message or "") end
  return line
end

function _M.run(ctx)
  local c, all_ok = ctx.client, true
  if not c.transport.shoot then return nil, "check: this runtime has no console websockets",
    "invalid" end
  local password = ctx.env("CTVNC_VNC_PASSWORD")
  for _, id in ipairs(ctx.words) do
    local urls, msg, kind = c:urls(id, ctx.console)
    if not urls then
      all_ok = false
      ctx.out.row({ vm_id = id, ok = false, kind = kind, message = msg })
    else
      local secrets = { urls.info.raw_token, urls.info.token, password }
      local paths = { "direct", "proxy" }
      local jobs = { { url = urls.direct, password = password },
                     { url = urls.proxy, password = password } }
      local rows = {}
      c.transport.shoot(jobs, 2, function(i, r)
        local row = { vm_id = id, path = paths[i], ok = r.ok, stage = r.stage, kind = r.kind,
          message = r.message and api.redact(r.message, secrets) }
        for _, s in ipairs(STEPS) do
          if r.times[s] then row[s] = r.times[s] * 1000 end
        end
        rows[i] = row
      end)
      for i = 1, 2 do
        if not rows[i].ok then all_ok = false end
        ctx.out.row(rows[i])
      end
    end
  end
  return all_ok
end

return _M
