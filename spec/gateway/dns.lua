--- A tiny DNS server for the gateway specs: answers A queries for the
-- names given, on loopback UDP, so nginx's resolver never asks the system.
--   lua5.4 spec/gateway/dns.lua PORT LOGFILE name=1.2.3.4 [name=addr ...]
-- Known names: A -> the address; other types -> no answer (NOERROR).
-- Unknown names: NXDOMAIN. Every query is appended to LOGFILE as
-- "<name> <type>".
local socket = require "socket"

local port, logfile = tonumber(arg[1]), arg[2]
local names = {}
for i = 3, #arg do
  local name, addr = arg[i]:match("^([^=]+)=([%d.]+)$")
  assert(name, "name=IPv4 expected: " .. arg[i])
  names[name:lower()] = addr
end

local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", port))
io.stdout:write("ready\n")   -- for Lab:wait_output: it answers from now on
io.stdout:flush()

local function u16(s, i) return s:byte(i) * 256 + s:byte(i + 1) end
local function p16(n) return string.char(math.floor(n / 256) % 256, n % 256) end

while true do
  local q, ip, from = udp:receivefrom()
  if q and #q >= 17 then
    local i, labels = 13, {}
    while i <= #q and q:byte(i) ~= 0 do
      local n = q:byte(i)
      labels[#labels + 1] = q:sub(i + 1, i + n)
      i = i + n + 1
    end
    local qend = i + 4                       -- zero byte, QTYPE, QCLASS
    if qend <= #q then
      local name = table.concat(labels, "."):lower()
      local qtype = u16(q, i + 1)
      local f = io.open(logfile, "a")
      if f then f:write(name, " ", qtype, "\n") f:close() end
      local addr = names[name]
      local answer, rcode, count = "", addr and 0 or 3, 0
      if addr and qtype == 1 then
        local a, b, c, d = addr:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
        answer = "\192\12" .. p16(1) .. p16(1) .. "\0\0\0\30" .. p16(4)
          .. string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
        count = 1
      end
      local flags = 0x8180 + rcode             -- response, RD, RA
      udp:sendto(q:sub(1, 2) .. p16(flags) .. p16(1) .. p16(count) .. p16(0) .. p16(0)
        .. q:sub(13, qend) .. answer, ip, from)
    end
  end
end
