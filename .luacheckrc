std = "max"
max_line_length = 100
files["spec/"] = { std = "+busted", max_line_length = false }
files["spec/support/simulator/"] = { std = "max+ngx_lua" }
files["lua/ctvnc/resty.lua"] = { std = "max+ngx_lua" }
files["lua/ctvnc/gateway/"] = { std = "max+ngx_lua" }
files["lua/ctvnc/ticket.lua"] = { std = "max+ngx_lua" }
files["lua/ctvnc/redis.lua"] = { std = "max+ngx_lua" }
files["examples/openresty/"] = { std = "max+ngx_lua" }
