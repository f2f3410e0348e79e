--- ctvnc.auditchain: a tamper-evident audit log. Each line is a JSON
-- object that ends with the hash of the line before it and its own:
--
--   {"event":"open",...,"prev":"<64 hex>","hash":"<64 hex>"}
--
-- `hash` is SHA-256 (HMAC-SHA256 with a key) of the line's bytes up to and
-- including the `prev` field, closed with "}": so editing a line breaks
-- its hash, and removing, reordering or inserting one breaks the next
-- line's `prev`. Without a key anyone who can write the file can append a
-- line that chains; with AUDIT_KEY they cannot. See docs/sessions.md#audit.
--
--   local chain = require "ctvnc.auditchain"
--   local line, hash = chain.seal(prev, '{"event":"open"}' [, key])
--   local ok, line_no, why = chain.verify(io.lines(path) [, { key = k }])
local core = require "ctvnc.core"

local type, tostring, byte, format = type, tostring, string.byte, string.format
local sha256, hmac = core.sha256, core.hmac_sha256

local _M = {}

--- The `prev` of the first line ever written.
_M.GENESIS = ("0"):rep(64)

local HEX64 = ("%x"):rep(64)

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function digest(body, key)
  return hex(key and hmac(key, body) or sha256(body))
end

--- prev (64 hex digits), line (one JSON object, no newline) [, key] ->
-- sealed line (no newline), its hash | nil, message, "invalid".
function _M.seal(prev, line, key)
  if type(prev) ~= "string" or not prev:match("^" .. HEX64 .. "$") then
    return nil, "auditchain.seal: prev must be 64 hex digits", "invalid"
  end
  if type(line) ~= "string" or not line:match("^{.*}$") or line:find("[\r\n]") then
    return nil, "auditchain.seal: a line is one JSON object on one line", "invalid"
  end
  local head = line:sub(1, -2)
  local body = head .. (head == "{" and "" or ",") .. '"prev":"' .. prev:lower() .. '"'
  local hash = digest(body .. "}", key)
  return body .. ',"hash":"' .. hash .. '"}', hash
end

--- lines (an iterator of lines without their newline, as io.lines gives)
-- [, opts] -> true, count, last hash | nil, first bad line number, why.
-- opts.key: AUDIT_KEY; opts.prev: the hash the first line must chain from
-- (the last hash of the file before, or GENESIS); without it the first
-- line's prev is taken as it is.
function _M.verify(lines, opts)
  opts = opts or {}
  local want, n = opts.prev, 0
  for line in lines do
    n = n + 1
    local body, hash = line:match('^({.*"prev":"' .. HEX64 .. '"),"hash":"(' .. HEX64 .. ')"}$')
    if not body then return nil, n, "no prev and hash fields at its end" end
    local prev = body:sub(-65, -2)
    if want and prev ~= want then
      return nil, n, "its prev is not the hash of the line before (a line removed, "
        .. "inserted or reordered)"
    end
    if digest(body .. "}", opts.key) ~= hash then
      return nil, n, opts.key and "its hash does not match (edited, or not written with this key)"
        or "its hash does not match (edited)"
    end
    want = hash
  end
  return true, n, want or opts.prev
end

--- The hash the next line of the file at path chains from: the last
-- line's, GENESIS for an empty or missing file | nil, message, "io" (its
-- last line carries no hash).
function _M.tail_hash(path)
  local f = io.open(path, "rb")
  if not f then return _M.GENESIS end
  local size = f:seek("end")
  f:seek("set", size > 4096 and size - 4096 or 0)
  local tail = f:read("*a") or ""
  f:close()
  if tail == "" then return _M.GENESIS end
  local hash = tail:match('"hash":"(' .. HEX64 .. ')"}\n?$')
  if not hash then return nil, "the last line of " .. tostring(path) .. " has no hash", "io" end
  return hash
end

return _M
