--- ctvnc.jwt: JSON Web Token (RFC 7519) verification for the console
-- gateway: HS256 with ctvnc.core's HMAC-SHA256, RS256 (RFC 7518 section 3)
-- with OpenSSL's libcrypto through LuaJIT's FFI (nginx already links it; plain LuaJIT
-- loads libcrypto.so.3 or .1.1). LuaJIT only: under PUC Lua, `new` returns
-- nil, message, "invalid".
--
--   local jwt = require "ctvnc.jwt"
--   local v = assert(jwt.new { secret = s, audience = "consoles", issuer = "idp", leeway = 30 })
--   local claims, reason, kind = v:verify(token)     -- kind is "auth"
--
-- Strict by design: the header's `alg` must equal the configured one (so
-- `none`, and an HS256 token signed with an RS256 public key, are refused);
-- base64url without padding, with zero unused bits, nothing else; a `crit`
-- header is refused; `exp` is required unless require_exp = false; JSON
-- without NaN, Infinity or hex numbers, and the claims ctvnc reads strictly
-- typed (`exp`, `nbf` finite integers; `vms` "*" or a non-empty list of
-- strings; `view_only` and `record` a boolean or a non-empty list of
-- strings), anything
-- else refused. The signature is checked before the claims are decoded.
-- Reasons never quote the token or the key.
local ok_ffi, ffi = pcall(require, "ffi")
local core = require "ctvnc.core"
local b64url_decode = require("ctvnc.b64url").decode

-- JSON as RFC 8259 has it: lua-cjson's own instance, without the NaN,
-- Infinity and hex numbers it takes by default.
local cjson = require("cjson.safe").new()
cjson.decode_invalid_numbers(false)

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall
local next, error, setmetatable = next, error, setmetatable
local sub, find, floor, HUGE = string.sub, string.find, math.floor, math.huge
local os_time = os.time

local _M = {}

local C               -- the libcrypto namespace, once loaded

local CDEFS = {
  "typedef struct evp_md_st EVP_MD;",
  "typedef struct evp_md_ctx_st EVP_MD_CTX;",
  "typedef struct evp_pkey_st EVP_PKEY;",
  "typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;",
  "typedef struct bio_st BIO;",
  "typedef struct engine_st ENGINE;",
  "const EVP_MD *EVP_sha256(void);",
  "int CRYPTO_memcmp(const void *a, const void *b, size_t len);",
  "BIO *BIO_new_mem_buf(const void *buf, int len);",
  "int BIO_free(BIO *a);",
  "EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);",
  "void EVP_PKEY_free(EVP_PKEY *pkey);",
  "int EVP_PKEY_get_base_id(const EVP_PKEY *pkey);",
  "int EVP_PKEY_base_id(const EVP_PKEY *pkey);",
  "int EVP_PKEY_get_bits(const EVP_PKEY *pkey);",
  "int EVP_PKEY_bits(const EVP_PKEY *pkey);",
  "EVP_MD_CTX *EVP_MD_CTX_new(void);",
  "void EVP_MD_CTX_free(EVP_MD_CTX *ctx);",
  "int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,"
    .. " ENGINE *e, EVP_PKEY *pkey);",
  "int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,"
    .. " const unsigned char *tbs, size_t tbslen);",
  "void ERR_clear_error(void);",
}

local EVP_PKEY_RSA = 6

local function has(lib, name)
  local ok = pcall(function() return lib[name] end)
  return ok
end

-- libcrypto: nginx's own (ffi.C) when it is there, else a shared library.
local function crypto()
  if C then return C end
  if not ok_ffi then return nil, "ctvnc.jwt needs LuaJIT's FFI" end
  for _, d in ipairs(CDEFS) do
    pcall(ffi.cdef, d)    -- another module may have declared it already
  end
  if has(ffi.C, "EVP_DigestVerify") then
    C = ffi.C
    return C
  end
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1" }) do
    local ok, lib = pcall(ffi.load, name)
    if ok and has(lib, "EVP_DigestVerify") then
      C = lib
      return C
    end
  end
  return nil, "ctvnc.jwt: libcrypto not found"
end

local function call_either(a, b, ...)
  if has(C, a) then return C[a](...) end
  return C[b](...)
end

local function json_object(s)
  local t = cjson.decode(s)
  if type(t) ~= "table" or t[1] ~= nil or next(t) == nil and s:match("^%s*%[") then
    return nil
  end
  return t
end

local function fail(reason)
  return nil, reason, "auth"
end

local function integer(v)
  return type(v) == "number" and v == v and v > -HUGE and v < HUGE and v == floor(v)
end

-- A JSON array of strings, not empty (lua-cjson decodes [] and {} alike).
local function strings(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if type(t[i]) ~= "string" then return false end
  end
  return n > 0
end

-- The claims the gateway acts on, strictly typed, so that a wrong type is
-- refused instead of read as "no" (a view_only of "true" or 1 was full
-- access): exp and nbf finite integers; vms "*" or a list of strings;
-- view_only and record a boolean or a list of strings. The first mistyped claim's
-- name, else nil.
local function mistyped(claims)
  if claims.exp ~= nil and not integer(claims.exp) then return "exp" end
  if claims.nbf ~= nil and not integer(claims.nbf) then return "nbf" end
  local vms, vo = claims.vms, claims.view_only
  if vms ~= nil and vms ~= "*" and not strings(vms) then return "vms" end
  if vo ~= nil and type(vo) ~= "boolean" and not strings(vo) then return "view_only" end
  local rc = claims.record
  if rc ~= nil and type(rc) ~= "boolean" and not strings(rc) then return "record" end
  return nil
end

local function hs256(self, input, sig)
  if #sig ~= 32 then return false end
  return C.CRYPTO_memcmp(core.hmac_sha256(self.secret, input), sig, 32) == 0
end

local function rs256(self, input, sig)
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return false end
  local ok = C.EVP_DigestVerifyInit(ctx, nil, C.EVP_sha256(), nil, self.pkey) == 1
    and C.EVP_DigestVerify(ctx, sig, #sig, input, #input) == 1
  C.EVP_MD_CTX_free(ctx)
  C.ERR_clear_error()
  return ok
end

local function load_public_key(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil end
  local pkey = C.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
  C.BIO_free(bio)
  C.ERR_clear_error()
  if pkey == nil then return nil end
  return ffi.gc(pkey, C.EVP_PKEY_free)
end

local function invalid(msg)
  return nil, "ctvnc.jwt.new: " .. msg, "invalid"
end

local OPTIONS = { secret = true, public_key = true, alg = true, audience = true,
  issuer = true, leeway = true, require_exp = true, max_token = true, now = true }

--- A verifier: verifier | nil, message, "invalid".
-- opts.secret (HS256, at least 32 bytes) or opts.public_key (RS256, a PEM
-- "PUBLIC KEY" of an RSA key of at least 2048 bits); opts.alg ("HS256" or
-- "RS256", implied by the key when absent); opts.audience (string: the
-- token's `aud`, a string or a list, must hold it); opts.issuer (`iss`
-- must equal it); opts.leeway (seconds of clock skew, default 0);
-- opts.require_exp (default true); opts.max_token (bytes, default 8192);
-- opts.now (function returning the time in seconds, default os.time).
function _M.new(opts)
  if type(opts) ~= "table" then error("ctvnc.jwt.new: opts must be a table", 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then return invalid("unknown option " .. tostring(k)) end
  end
  local _, err = crypto()
  if err then return nil, err, "invalid" end
  local self = {
    leeway = opts.leeway or 0,
    audience = opts.audience,
    issuer = opts.issuer,
    require_exp = opts.require_exp ~= false,
    max_token = opts.max_token or 8192,
    now = opts.now or os_time,
  }
  if type(self.leeway) ~= "number" or self.leeway < 0 or self.leeway ~= self.leeway then
    return invalid("leeway must be a number >= 0")
  end
  if type(self.max_token) ~= "number" or self.max_token < 16 then
    return invalid("max_token must be a number >= 16")
  end
  if self.audience ~= nil and (type(self.audience) ~= "string" or self.audience == "") then
    return invalid("audience must be a non-empty string")
  end
  if self.issuer ~= nil and (type(self.issuer) ~= "string" or self.issuer == "") then
    return invalid("issuer must be a non-empty string")
  end
  if type(self.now) ~= "function" then return invalid("now must be a function") end
  if (opts.secret == nil) == (opts.public_key == nil) then
    return invalid("give exactly one of secret (HS256) and public_key (RS256)")
  end
  local alg = opts.alg or (opts.secret and "HS256" or "RS256")
  if opts.secret ~= nil then
    if alg ~= "HS256" then return invalid("a secret goes with alg HS256") end
    if type(opts.secret) ~= "string" or #opts.secret < 32 then
      return invalid("secret must be a string of at least 32 bytes")
    end
    self.secret, self.check = opts.secret, hs256
  else
    if alg ~= "RS256" then return invalid("a public key goes with alg RS256") end
    if type(opts.public_key) ~= "string" then return invalid("public_key must be a PEM string") end
    local pkey = load_public_key(opts.public_key)
    if not pkey then return invalid("public_key is not a PEM public key") end
    if call_either("EVP_PKEY_get_base_id", "EVP_PKEY_base_id", pkey) ~= EVP_PKEY_RSA then
      return invalid("public_key is not an RSA key")
    end
    if call_either("EVP_PKEY_get_bits", "EVP_PKEY_bits", pkey) < 2048 then
      return invalid("public_key must have at least 2048 bits")
    end
    self.pkey, self.check = pkey, rs256
  end
  self.alg = alg
  return setmetatable(self, { __index = _M })
end

--- Does a claim name want: the claim itself, or a list holding it? (aud;
-- view_only and record, which may also be true.)
local function names(claim, want)
  if claim == want then return true end
  if type(claim) == "table" then
    for _, v in ipairs(claim) do
      if v == want then return true end
    end
  end
  return false
end

--- Verifies a compact JWS token: claims | nil, reason, "auth".
function _M.verify(self, token)
  if token == nil then return fail("no token") end
  if type(token) ~= "string" then error("ctvnc.jwt: token must be a string", 2) end
  if #token > self.max_token then return fail("token too long") end
  local d1 = find(token, ".", 1, true)
  local d2 = d1 and find(token, ".", d1 + 1, true)
  if not d2 or find(token, ".", d2 + 1, true) then return fail("malformed token") end
  local h64, p64, s64 = sub(token, 1, d1 - 1), sub(token, d1 + 1, d2 - 1), sub(token, d2 + 1)
  if h64 == "" or p64 == "" then return fail("malformed token") end
  local hjson, pjson, sig = b64url_decode(h64), b64url_decode(p64), b64url_decode(s64)
  if not hjson or not pjson or not sig then return fail("malformed token (base64url)") end
  local header = json_object(hjson)
  if not header then return fail("malformed token header") end
  if type(header.alg) ~= "string" then return fail("malformed token header (alg)") end
  if header.alg:lower() == "none" then
    return fail("unsigned token (alg none) refused")
  end
  if header.alg ~= self.alg then return fail("token algorithm is not " .. self.alg) end
  if header.crit ~= nil then return fail("token header has crit extensions") end
  if sig == "" or not self:check(sub(token, 1, d2 - 1), sig) then
    return fail("bad token signature")
  end
  local claims = json_object(pjson)
  if not claims then return fail("malformed token claims") end
  local bad = mistyped(claims)
  if bad then return fail("malformed token claims (" .. bad .. ")") end
  local now, leeway = self.now(), self.leeway
  local exp, nbf = claims.exp, claims.nbf
  if exp == nil and self.require_exp then return fail("token has no expiry (exp)") end
  if exp and now >= exp + leeway then return fail("token expired") end
  if nbf and now + leeway < nbf then return fail("token not yet valid (nbf)") end
  if self.issuer and claims.iss ~= self.issuer then return fail("token issuer refused") end
  if self.audience and not names(claims.aud, self.audience) then
    return fail("token audience refused")
  end
  return claims
end

--- What verified claims grant on one VM: user, view_only, record | nil,
-- reason, "auth". `sub` (a non-empty string) is the user; `vms` is "*" or
-- a list of VM ids; `view_only` is true (every VM view-only), or a list of
-- the VM ids that are view-only; absent or false means full access;
-- `record` likewise asks for the VM's sessions to be recorded (RECORD
-- grant). Any other type of these is refused, as verify does.
function _M.grant(claims, vm_id)
  if type(claims) ~= "table" then error("ctvnc.jwt.grant: claims must be a table", 2) end
  if type(vm_id) ~= "string" or vm_id == "" then
    error("ctvnc.jwt.grant: vm_id must be a non-empty string", 2)
  end
  local bad = mistyped(claims)
  if bad then return fail("malformed token claims (" .. bad .. ")") end
  local user = claims.sub
  if type(user) ~= "string" or user == "" then return fail("token has no subject (sub)") end
  local vms = claims.vms
  local allowed = vms == "*"
  if not allowed and type(vms) == "table" then
    for _, v in ipairs(vms) do
      if v == vm_id then
        allowed = true
        break
      end
    end
  end
  if not allowed then return fail("token does not grant this VM") end
  local vo, rc = claims.view_only, claims.record
  return user, vo == true or names(vo, vm_id), rc == true or names(rc, vm_id)
end

--- The token of a request: from an `Authorization: Bearer` header value,
-- else from the cookie named cookie_name in a Cookie header value; nil if
-- neither has one.
function _M.token_from(authorization, cookie, cookie_name)
  if type(authorization) == "string" then
    local scheme, tok = authorization:match("^%s*(%a+)%s+([%w%-_%.]+)%s*$")
    if scheme and scheme:lower() == "bearer" then return tok end
  end
  if type(cookie) == "string" and type(cookie_name) == "string" and cookie_name ~= "" then
    for pair in cookie:gmatch("[^;]+") do
      local k, v = pair:match("^%s*([^=%s]+)%s*=%s*(.-)%s*$")
      if k == cookie_name and v ~= "" then return v end
    end
  end
  return nil
end

return _M
