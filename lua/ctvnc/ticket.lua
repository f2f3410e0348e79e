--- ctvnc.ticket: short-lived signed console tickets for the OpenResty
-- gateway (ngx_lua only: it uses ngx's time and a lua_shared_dict).
--
-- A ticket is `<payload>.<mac>`, both base64url: the payload is the JSON
-- object {v = vm id, u = user, e = expiry (epoch seconds), n = nonce,
-- s = the store's epoch (ctvnc.gateway.store: a store restarted empty
-- has another, and refuses the tickets minted before), r = 1 when the
-- console is view-only (absent: full), f = the end of its family, g = the
-- grant's reference, x = the grant's expiry} and
-- the mac is HMAC-SHA256(secret, payload) (ctvnc.core's). It is valid until its expiry (at
-- most 60 s after minting, never past x, a renewal never past f) and usable once wherever
-- its store reaches: `consume` records the nonce in the store until the ticket expires (one
-- node with the shdict store; every node sharing one Redis store and one
-- CTVNC_TICKET_SECRET; a store that cannot record it refuses the ticket: fail closed).
-- A ticket's renewals are its family: they carry f, g and x unchanged, so
-- renewing never extends access. Tickets minted on one node are refused by
-- a node with another secret (a random per-start secret, the default).
local ngx = ngx
local cjson = require "cjson.safe"
local core = require "ctvnc.core"
local b64 = require "ctvnc.b64url"

local type, tostring, ipairs, floor, byte = type, tostring, ipairs, math.floor, string.byte
local b64url, unb64url, random_bytes = b64.encode, b64.decode, core.random_bytes

local _M = {}

local MAX_TTL = 60

--- Equal strings, in time that does not depend on where they differ.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    if byte(a, i) ~= byte(b, i) then diff = diff + 1 end
  end
  return diff == 0
end

local function now()
  ngx.update_time()
  return ngx.now()
end

--- n random bytes from the kernel (getrandom, no file opened), for the
-- gateway's nonces, ids, keys: bytes | nil, message, "system".
_M.random_bytes = random_bytes

--- 16 random bytes, base64url: nonce | nil, message, "system".
local function nonce()
  local b, err, kind = random_bytes(16)
  if not b then return nil, err, kind end
  return b64url(b)
end

--- A secret of 32 random bytes (read once, at start): secret | nil,
-- message, "system".
function _M.random_secret()
  return random_bytes(32)
end

--- ticket.new{ secret = string (>= 32 bytes), ttl = 60, store = a store of
-- the gateway's seam (ctvnc.gateway.store.*: add, get, epoch) }: used nonces live
-- in the store, so a ticket is used once wherever the store reaches.
function _M.new(opts)
  assert(type(opts) == "table", "ticket.new: table expected")
  assert(type(opts.secret) == "string" and #opts.secret >= 32,
    "the ticket secret must be at least 32 bytes")
  local ttl = opts.ttl or MAX_TTL
  assert(type(ttl) == "number" and ttl >= 1 and ttl <= MAX_TTL, "ticket ttl must be 1-60 s")
  assert(type(opts.store) == "table", "ticket.new: a store is needed")
  local self = { secret = opts.secret, store = opts.store, ttl = ttl }

  local function mac(payload) return b64url(core.hmac_sha256(self.secret, payload)) end

  --- A ticket for vm_id and user (view-only when view_only is true) of
  -- the family { ends = epoch seconds, ref = the grant's reference (not a
  -- secret) | nil, expires = the grant's expiry | nil, record = true when
  -- recorded under RECORD grant, first = true for the family's first
  -- ticket }: ticket, expires_in | nil, message,
  -- "system" (no random bytes) | "expired" (the family or the grant has
  -- ended) | "store" (the store's epoch is unknown). The grant's expiry
  -- bounds every ticket, the family's end every renewal (the first ticket
  -- has its whole ttl to be used).
  function self.mint(vm_id, user, view_only, family)
    local t = floor(now())
    local exp = t + self.ttl
    for _, limit in ipairs({ not family.first and family.ends or exp, family.expires or exp }) do
      if limit < exp then exp = floor(limit) end
    end
    if exp <= t then return nil, "the ticket's family or grant has ended", "expired" end
    local n, err, kind = nonce()
    if not n then return nil, err, kind end
    local epoch
    epoch, err = self.store:epoch()
    if not epoch then return nil, "no ticket: " .. tostring(err), "store" end
    local payload = b64url(cjson.encode({ v = vm_id, u = tostring(user or ""), e = exp,
      n = n, s = epoch, r = view_only == true and 1 or nil, c = family.record == true and 1 or nil,
      f = family.ends, g = family.ref, x = family.expires }))
    return payload .. "." .. mac(payload), exp - t
  end

  --- A fingerprint of a grant's secret (an API key) for a ticket's `g`:
  -- keyed by the ticket secret, so it tells nothing of the key.
  function self.fingerprint(s)
    return mac("grant\0" .. s):sub(1, 22)
  end

  --- The ticket's fields when it is well signed, unexpired and for vm_id
  -- (the store is not asked): doc | nil, reason (never the ticket).
  local function verify(ticket, vm_id)
    if type(ticket) ~= "string" or #ticket > 1024 then return nil, "no ticket" end
    local payload, sig = ticket:match("^([%w%-_]+)%.([%w%-_]+)$")
    if not payload or not same(mac(payload), sig) then return nil, "bad signature" end
    local doc = cjson.decode(unb64url(payload) or "")
    if type(doc) ~= "table" or type(doc.v) ~= "string" or type(doc.e) ~= "number"
      or type(doc.n) ~= "string" or type(doc.s) ~= "string"
      or (doc.r ~= nil and doc.r ~= 1) or type(doc.f) ~= "number"
      or (doc.g ~= nil and type(doc.g) ~= "string")
      or (doc.x ~= nil and type(doc.x) ~= "number") or (doc.c ~= nil and doc.c ~= 1) then
      return nil, "malformed"
    end
    local t = now()
    if doc.e <= t or doc.e > t + MAX_TTL + 1 then return nil, "expired" end
    if doc.v ~= vm_id then return nil, "for another VM" end
    return doc
  end

  local function store_failed(err)
    return nil, "cannot check the ticket: " .. tostring(err), "store"
  end

  --- The ticket's fields when it is well signed, unexpired, for vm_id,
  -- minted in the store's epoch and not used yet: doc | nil, reason
  -- [, "store" when the store cannot tell: refuse].
  function self.check(ticket, vm_id)
    local doc, why = verify(ticket, vm_id)
    if not doc then return nil, why end
    local epoch, err = self.store:epoch()
    if not epoch then return store_failed(err) end
    if doc.s ~= epoch then return nil, "minted before the store's last restart" end
    local used
    used, err = self.store:get("n:" .. doc.n)
    if used then return nil, "already used" end
    if err then return store_failed(err) end
    return doc
  end

  --- Marks the ticket used (one atomic step of the store, which also
  -- checks the epoch): doc | nil, reason [, "store"].
  function self.consume(ticket, vm_id)
    local doc, why = verify(ticket, vm_id)
    if not doc then return nil, why end
    local left = doc.e - now() + 1
    local ok, err, kind = self.store:add("n:" .. doc.n, "1", left, doc.s)
    if ok == false then return nil, "already used" end
    if kind == "epoch" then return nil, err end
    if not ok then return store_failed(err) end
    return doc
  end

  return self
end

_M.MAX_TTL = MAX_TTL
return _M
