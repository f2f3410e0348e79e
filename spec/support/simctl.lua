--- Control requests to the CloudTower simulator (spec/support/simulator):
-- `simctl(base, "stats")` GETs its counters (decoded); any other path
-- (reset, config, revoke, desktop, ...) is a POST of `body` as JSON and
-- returns the answer's text. The one client of the specs (spec/helpers.lua)
-- and the benchmarks (bench/common.lua); base is the simulator's loopback
-- HTTP address.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

return function(base, path, body)
  local data = body and cjson.encode(body) or ""
  local out = {}
  local ok, code = http.request({
    url = base .. "/_sim/" .. path,
    method = path == "stats" and "GET" or "POST",
    headers = { ["Content-Type"] = "application/json", ["Content-Length"] = #data },
    source = ltn12.source.string(data),
    sink = ltn12.sink.table(out),
    create = function()
      local s = socket.tcp()
      s:settimeout(5)
      return s
    end,
  })
  local text = table.concat(out)
  assert(ok and code == 200, ("simulator control /_sim/%s failed: %s %s"):format(path, tostring(code),
    text:sub(1, 200)))
  return path == "stats" and cjson.decode(text) or text
end
