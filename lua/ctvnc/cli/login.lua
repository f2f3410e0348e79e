--- ctvnc login: a login token, for CTVNC_TOKEN.
local usage_error = require("ctvnc.cli.flags").usage_error

return {
  name = "login",
  args = "",
  summary = "print a login token (for CTVNC_TOKEN)",
  flags = {},
  columns = { "token" },
  raw = true,   -- the token alone, whatever the format
  check = function(_, words)
    if #words > 0 then return usage_error("login takes no arguments") end
  end,
  run = function(ctx)
    local token, msg, kind = ctx.client:login()
    if not token then return nil, msg, kind end
    ctx.stdout:write(token, "\n")
    return true
  end,
}
