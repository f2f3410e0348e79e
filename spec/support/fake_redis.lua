-- A misbehaving Redis for spec/redis_spec.lua: lua5.4 fake_redis.lua PORT
-- listens on 127.0.0.1:PORT, one connection at a time, and answers each
-- command with the canned bytes named by its last argument (GET <case>);
-- "stall" sends half a reply and waits, "hangup" half a reply and closes.
-- Runs until killed (the spec's lab stops it by pid).
local socket = require "socket"

local deep = ("*1\r\n"):rep(100) .. ":1\r\n"
local CASES = {
  ok = "+OK\r\n",
  badlen = "$abc\r\nxyz\r\n",
  nocrlf = "$3\r\nabcXY",
  bareline = "+OK\nmore\r\n",
  deep = deep,
  huge = "$99999999999\r\n",
  negative = "*-2\r\n",
  unknown = "?what\r\n",
  overflow = ":99999999999999999999\r\n",
  zeros = "$03\r\nabc\r\n",
  stall = "$10\r\nabc",
  hangup = "$10\r\nabc",
}

local server = assert(socket.bind("127.0.0.1", tonumber(arg[1])))

--- Reads one RESP array command; returns its arguments or nil.
local function read_command(c)
  local head = c:receive("*l")
  local n = head and tonumber(head:match("^%*(%d+)$"))
  if not n then return nil end
  local args = {}
  for i = 1, n do
    local len = tonumber((c:receive("*l") or ""):match("^%$(%d+)$"))
    if not len then return nil end
    local data = c:receive(len + 2)
    if not data then return nil end
    args[i] = data:sub(1, len)
  end
  return args
end

while true do
  local c = server:accept()
  if c then
    c:settimeout(10)
    while true do
      local args = read_command(c)
      if not args then break end
      local case = args[#args]
      c:send(CASES[case] or "-ERR unknown case\r\n")
      if case == "stall" then socket.sleep(2) end
      if case == "hangup" then break end
    end
    c:close()
  end
end
