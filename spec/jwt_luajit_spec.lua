-- Specs for ctvnc.jwt (HS256 and RS256 through LuaJIT's FFI to libcrypto).
--
-- LuaJIT only: run this file in the luajit suite, never under PUC Lua (the
-- module needs the FFI). Every token is made here with the openssl command
-- line (base64, dgst -hmac, dgst -sign), never by the code under test; the
-- header and claims are JSON written by hand.

local jwt = require "ctvnc.jwt"

local NOW = 1700000000
local SECRET = "s3cr3t-for-the-console-gateway-0123456789" -- 41 bytes, shell-safe

local dir

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = p:read("*a")
  local ok = p:close()
  assert(ok, "command failed: " .. cmd)
  return out
end

local function write(name, data)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
  return dir .. "/" .. name
end

local function read(name)
  local f = assert(io.open(dir .. "/" .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local B64URL = " | openssl base64 -A | tr '+/' '-_' | tr -d '='"

local function b64u(s)
  return sh("openssl base64 -A -in " .. write("in", s) .. " | tr '+/' '-_' | tr -d '='")
end

local function hs256(input, secret)
  return sh("openssl dgst -sha256 -hmac " .. (secret or SECRET) .. " -binary "
    .. write("in", input) .. B64URL)
end

local function rs256(input, key)
  return sh("openssl dgst -sha256 -sign " .. dir .. "/" .. (key or "rsa.pem") .. " -binary "
    .. write("in", input) .. B64URL)
end

-- header and claims as JSON text; sign(input) gives the base64url signature
local function token(header, claims, sign)
  local input = b64u(header) .. "." .. b64u(claims)
  return input .. "." .. (sign and sign(input) or "")
end

local HS = '{"alg":"HS256","typ":"JWT"}'
local RS = '{"alg":"RS256","typ":"JWT"}'
local CLAIMS = '{"sub":"alice","vms":["vm-1","vm-2"],"view_only":true,"exp":1700000600}'

local function now() return NOW end

local function hs_verifier(opts)
  local o = { secret = SECRET, now = now }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(jwt.new(o))
end

local function rs_verifier(opts)
  local o = { public_key = read("rsa.pub"), now = now }
  for k, v in pairs(opts or {}) do o[k] = v end
  return assert(jwt.new(o))
end

local function refused(v, tok, pattern)
  local claims, reason, kind = v:verify(tok)
  assert.is_nil(claims)
  assert.equal("auth", kind)
  assert.matches(pattern, reason)
  if #tok > 8 then assert.is_nil(reason:find(tok, 1, true)) end -- never quotes the token
end

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  sh("openssl genrsa -out " .. dir .. "/rsa.pem 2048")
  sh("openssl rsa -in " .. dir .. "/rsa.pem -pubout -out " .. dir .. "/rsa.pub")
  sh("openssl genrsa -out " .. dir .. "/other.pem 2048")
  sh("openssl genrsa -out " .. dir .. "/small.pem 1024")
  sh("openssl rsa -in " .. dir .. "/small.pem -pubout -out " .. dir .. "/small.pub")
  sh("openssl ecparam -name prime256v1 -genkey -noout -out " .. dir .. "/ec.pem")
  sh("openssl ec -in " .. dir .. "/ec.pem -pubout -out " .. dir .. "/ec.pub")
end)

teardown(function()
  if dir then sh("rm -rf " .. dir) end
end)

describe("ctvnc.jwt HS256", function()
  it("accepts a token signed with the secret and returns its claims", function()
    local claims = assert(hs_verifier():verify(token(HS, CLAIMS, hs256)))
    assert.equal("alice", claims.sub)
    assert.same({ "vm-1", "vm-2" }, claims.vms)
    assert.is_true(claims.view_only)
  end)

  it("refuses a token signed with another secret", function()
    local other = function(input) return hs256(input, string.rep("x", 40)) end
    refused(hs_verifier(), token(HS, CLAIMS, other), "signature")
  end)

  it("refuses claims changed after signing", function()
    local good = token(HS, CLAIMS, hs256)
    local forged = token(HS, CLAIMS:gsub("alice", "admin"), nil)
      .. good:match("[^.]+$")
    refused(hs_verifier(), forged, "signature")
  end)

  it("refuses a truncated or empty signature", function()
    local good = token(HS, CLAIMS, hs256)
    refused(hs_verifier(), good:sub(1, -4), "signature") -- 43 characters cut to 40
    refused(hs_verifier(), good:match("^[^.]+%.[^.]+%."), "signature")
  end)

  it("refuses alg none, in any case, even unsigned", function()
    refused(hs_verifier(), token('{"alg":"none"}', CLAIMS, nil), "none")
    refused(hs_verifier(), token('{"alg":"NoNe"}', CLAIMS, nil), "none")
    refused(hs_verifier(), token('{"alg":"none"}', CLAIMS, hs256), "none")
  end)

  it("refuses an RS256 token", function()
    refused(hs_verifier(), token(RS, CLAIMS, rs256), "algorithm")
  end)

  it("refuses a header with crit extensions", function()
    refused(hs_verifier(), token('{"alg":"HS256","crit":["exp"]}', CLAIMS, hs256), "crit")
  end)
end)

describe("ctvnc.jwt RS256", function()
  it("accepts a token signed with the private key", function()
    local claims = assert(rs_verifier():verify(token(RS, CLAIMS, rs256)))
    assert.equal("alice", claims.sub)
  end)

  it("refuses a token signed with another key", function()
    local other = function(input) return rs256(input, "other.pem") end
    refused(rs_verifier(), token(RS, CLAIMS, other), "signature")
  end)

  it("refuses an HS256 token made with the public key as the secret", function()
    -- the classic key confusion attack: HMAC keyed with the public PEM
    local pem = read("rsa.pub")
    local forge = function(input)
      local key = sh("od -An -tx1 -v " .. write("key", pem) .. " | tr -d ' \\n'")
      return sh("openssl dgst -sha256 -mac HMAC -macopt hexkey:" .. key .. " -binary "
        .. write("in", input) .. B64URL)
    end
    refused(rs_verifier(), token(HS, CLAIMS, forge), "algorithm")
  end)

  it("refuses alg none", function()
    refused(rs_verifier(), token('{"alg":"none"}', CLAIMS, nil), "none")
  end)

  it("refuses claims changed after signing", function()
    local good = token(RS, CLAIMS, rs256)
    local forged = token(RS, CLAIMS:gsub("true", "false"), nil) .. good:match("[^.]+$")
    refused(rs_verifier(), forged, "signature")
  end)
end)

describe("ctvnc.jwt claims", function()
  local function claims(json) return token(HS, json, hs256) end

  it("refuses an expired token, with leeway for clock skew", function()
    local tok = claims('{"sub":"a","exp":1699999990}') -- 10 s ago
    refused(hs_verifier(), tok, "expired")
    refused(hs_verifier { leeway = 10 }, tok, "expired") -- exp + leeway == now
    assert.truthy(hs_verifier({ leeway = 11 }):verify(tok))
    refused(hs_verifier(), claims('{"sub":"a","exp":1700000000}'), "expired")
    assert.truthy(hs_verifier():verify(claims('{"sub":"a","exp":1700000001}')))
  end)

  it("refuses a token not yet valid, with leeway", function()
    local tok = claims('{"sub":"a","exp":1800000000,"nbf":1700000030}')
    refused(hs_verifier(), tok, "not yet valid")
    refused(hs_verifier { leeway = 29 }, tok, "not yet valid")
    assert.truthy(hs_verifier({ leeway = 30 }):verify(tok))
    assert.truthy(hs_verifier():verify(claims('{"sub":"a","exp":1800000000,"nbf":1700000000}')))
  end)

  it("requires exp unless told not to", function()
    local tok = claims('{"sub":"a"}')
    refused(hs_verifier(), tok, "expiry")
    assert.truthy(hs_verifier({ require_exp = false }):verify(tok))
  end)

  it("refuses exp or nbf that are not numbers", function()
    refused(hs_verifier(), claims('{"exp":"1800000000"}'), "exp")
    refused(hs_verifier(), claims('{"exp":null}'), "exp")
    refused(hs_verifier(), claims('{"exp":1800000000,"nbf":"0"}'), "nbf")
  end)

  it("checks the audience, as a string or in a list", function()
    local v = hs_verifier { audience = "consoles" }
    assert.truthy(v:verify(claims('{"exp":1800000000,"aud":"consoles"}')))
    assert.truthy(v:verify(claims('{"exp":1800000000,"aud":["api","consoles"]}')))
    refused(v, claims('{"exp":1800000000,"aud":"api"}'), "audience")
    refused(v, claims('{"exp":1800000000,"aud":["api"]}'), "audience")
    refused(v, claims('{"exp":1800000000}'), "audience")
  end)

  it("checks the issuer", function()
    local v = hs_verifier { issuer = "https://idp.example" }
    assert.truthy(v:verify(claims('{"exp":1800000000,"iss":"https://idp.example"}')))
    refused(v, claims('{"exp":1800000000,"iss":"https://evil.example"}'), "issuer")
    refused(v, claims('{"exp":1800000000}'), "issuer")
  end)

  -- Issue 19: every claim ctvnc reads has one type; a wrong one is 401,
  -- not full access (view_only) nor a token that never expires (exp).
  it("refuses mistyped claims: view_only, vms, exp, nbf", function()
    local v = hs_verifier()
    local function with(k, raw)    -- good claims but k, given as raw JSON
      local parts, out = { sub = '"a"', vms = '["vm-1"]', exp = "1800000000" }, {}
      parts[k] = raw
      for _, name in ipairs({ "sub", "vms", "exp", "nbf", "view_only" }) do
        if parts[name] then out[#out + 1] = '"' .. name .. '":' .. parts[name] end
      end
      return claims("{" .. table.concat(out, ",") .. "}")
    end
    local refused_cases = {
      { "view_only", '"true"' }, { "view_only", "1" }, { "view_only", "0" },
      { "view_only", '"vm-1"' }, { "view_only", "{}" }, { "view_only", '{"vm-1":true}' },
      { "view_only", "[]" }, { "view_only", "[1]" }, { "view_only", '["vm-1",true]' },
      { "view_only", "null" }, { "view_only", '"false"' },
      { "vms", '"vm-1"' }, { "vms", "1" }, { "vms", "true" }, { "vms", "{}" },
      { "vms", '{"vm-1":true}' }, { "vms", "[]" }, { "vms", '["vm-1",null]' },
      { "vms", '[["vm-1"]]' }, { "vms", "null" },
      { "exp", '"1800000000"' }, { "exp", '"0x6B49D200"' }, { "exp", "1800000000.5" },
      { "exp", "1e400" }, { "exp", "-1e400" }, { "exp", "true" }, { "exp", "null" },
      { "exp", "[1800000000]" },
      { "nbf", '"0"' }, { "nbf", "1699999999.25" }, { "nbf", "-1e400" }, { "nbf", "null" },
    }
    for i, c in ipairs(refused_cases) do
      local claims_, reason, kind = v:verify(with(c[1], c[2]))
      assert.is_nil(claims_, "case " .. i .. ": " .. c[1] .. "=" .. c[2])
      assert.equal("auth", kind)
      assert.equal("malformed token claims (" .. c[1] .. ")", reason, "case " .. i)
    end
    -- numbers JSON does not have: the claims are not JSON
    for i, raw in ipairs({ "NaN", "Infinity", "-Infinity", "0x6B49D200", "nan", "inf" }) do
      local claims_, reason = v:verify(with("exp", raw))
      assert.is_nil(claims_, "number " .. i .. ": " .. raw)
      assert.equal("malformed token claims", reason, raw)
      assert.is_nil((v:verify(with("nbf", raw))), "nbf " .. raw)
    end
    local accepted = {
      { "view_only", "true" }, { "view_only", "false" }, { "view_only", '["vm-1","vm-2"]' },
      { "vms", '"*"' }, { "vms", '["vm-1"]' }, { "exp", "1.8e9" }, { "nbf", "1699999999" },
      { "nbf", "-5" },
    }
    for i, c in ipairs(accepted) do
      assert.truthy(v:verify(with(c[1], c[2])), "accepted case " .. i .. ": " .. c[1] .. "=" .. c[2])
    end
  end)

  it("refuses claims that are not a JSON object", function()
    refused(hs_verifier(), claims('["exp",1800000000]'), "claims")
    refused(hs_verifier(), claims('"alice"'), "claims")
    refused(hs_verifier(), claims('{"exp":1800000000'), "claims")
  end)
end)

describe("ctvnc.jwt malformed tokens", function()
  local good

  before_each(function()
    good = good or token(HS, CLAIMS, hs256)
  end)

  it("refuses a missing token and too many or too few parts", function()
    refused(hs_verifier(), "", "malformed")
    refused(hs_verifier(), "abc", "malformed")
    refused(hs_verifier(), "a.b", "malformed")
    refused(hs_verifier(), good .. ".x", "malformed")
    refused(hs_verifier(), "." .. good:match("%.(.*)$"), "malformed")
    local _, reason, kind = hs_verifier():verify(nil)
    assert.equal("no token", reason)
    assert.equal("auth", kind)
  end)

  it("refuses base64 that is not strict base64url", function()
    local h, p, s = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    refused(hs_verifier(), h .. "=." .. p .. "." .. s, "base64url") -- padding
    refused(hs_verifier(), h .. "." .. p .. "." .. s:gsub("[-_]", "+"):gsub("^.", "+"), "base64url")
    refused(hs_verifier(), h .. "." .. p .. "/." .. s, "base64url")
    assert.equal(43, #s)
    refused(hs_verifier(), h .. "." .. p .. "." .. s .. "AA", "base64url") -- 4k+1 characters
    -- 'eyJ' decodes to '{"'; 'eyK' has the same bytes and non-zero unused bits
    refused(hs_verifier(), "eyK." .. p .. "." .. s, "base64url")
  end)

  it("refuses a header that is not a JSON object with a string alg", function()
    refused(hs_verifier(), token('[1]', CLAIMS, hs256), "header")
    refused(hs_verifier(), token('HS256', CLAIMS, hs256), "header")
    refused(hs_verifier(), token('{"alg":256}', CLAIMS, hs256), "alg")
    refused(hs_verifier(), token('{"typ":"JWT"}', CLAIMS, hs256), "alg")
  end)

  it("refuses a token over max_token bytes", function()
    refused(hs_verifier { max_token = 64 }, good, "too long")
  end)

  it("raises on a token that is not a string", function()
    assert.has_error(function() hs_verifier():verify(42) end)
  end)
end)

describe("ctvnc.jwt.new", function()
  local function bad(opts, pattern)
    local v, msg, kind = jwt.new(opts)
    assert.is_nil(v)
    assert.equal("invalid", kind)
    assert.matches(pattern, msg)
    assert.is_nil(msg:find(SECRET, 1, true))
  end

  it("refuses short secrets, both or no keys, and mismatched algorithms", function()
    bad({ secret = "short" }, "32 bytes")
    bad({}, "exactly one")
    bad({ secret = SECRET, public_key = read("rsa.pub") }, "exactly one")
    bad({ secret = SECRET, alg = "RS256" }, "HS256")
    bad({ public_key = read("rsa.pub"), alg = "HS256" }, "RS256")
    bad({ secret = SECRET, alg = "none" }, "HS256")
    bad({ secret = SECRET, leeway = -1 }, "leeway")
    bad({ secret = SECRET, audince = "x" }, "unknown option")
  end)

  it("refuses public keys that are not RSA of 2048 bits or more", function()
    bad({ public_key = "not a pem" }, "PEM")
    bad({ public_key = read("rsa.pem"):gsub("PRIVATE", "PUBLIC") }, "PEM")
    bad({ public_key = read("small.pub") }, "2048")
    bad({ public_key = read("ec.pub") }, "RSA")
  end)

  it("raises on misuse", function()
    assert.has_error(function() jwt.new("secret") end)
  end)
end)

describe("ctvnc.jwt.token_from", function()
  it("takes a Bearer token, else the named cookie", function()
    assert.equal("a.b.c", jwt.token_from("Bearer a.b.c"))
    assert.equal("a.b.c", jwt.token_from("bearer   a.b.c  "))
    assert.is_nil(jwt.token_from("Basic YWxhZGRpbjpvcGVu"))
    assert.is_nil(jwt.token_from("Bearer a b"))
    assert.equal("x.y.z", jwt.token_from(nil, "a=1; ctvnc_jwt=x.y.z; b=2", "ctvnc_jwt"))
    assert.equal("x.y.z", jwt.token_from("Basic Zm9v", "ctvnc_jwt=x.y.z", "ctvnc_jwt"))
    assert.is_nil(jwt.token_from(nil, "other=x.y.z", "ctvnc_jwt"))
    assert.is_nil(jwt.token_from(nil, nil, "ctvnc_jwt"))
  end)
end)

describe("ctvnc.jwt.grant", function()
  it("grants listed VMs or all, view-only when the claims say so", function()
    local claims = assert(hs_verifier():verify(token(HS, CLAIMS, hs256)))
    assert.same({ "alice", true, false }, { jwt.grant(claims, "vm-1") })
    assert.same({ "alice", true, false }, { jwt.grant(claims, "vm-2") })
    local _, reason, kind = jwt.grant(claims, "vm-3")
    assert.equal("auth", kind)
    assert.matches("does not grant", reason)
    assert.same({ "bob", false, false }, { jwt.grant({ sub = "bob", vms = "*" }, "vm-9") })
    assert.same({ "bob", false, false }, { jwt.grant({ sub = "bob", vms = "*", view_only = false }, "vm-9") })
    assert.same({ "bob", true, false }, { jwt.grant({ sub = "bob", vms = "*", view_only = { "vm-9" } }, "vm-9") })
    assert.same({ "bob", false, false }, { jwt.grant({ sub = "bob", vms = "*", view_only = { "vm-9" } }, "vm-8") })
  end)

  -- Issue 19: a view_only of "true", 1 or "vm-1" was full access. Claims
  -- that are not of their type are refused, never read as "no".
  it("refuses claims of the wrong type instead of granting full access", function()
    local cases = {
      { view_only = "true" }, { view_only = "yes" }, { view_only = 1 }, { view_only = 0 },
      { view_only = "vm-8" }, { view_only = {} }, { view_only = { ["vm-8"] = true } },
      { view_only = { 1 } }, { view_only = { "vm-8", 2 } }, { view_only = { "vm-8", nil, "x" } },
      { vms = {} }, { vms = { ["vm-8"] = true } }, { vms = true }, { vms = 1 },
      { vms = { "vm-8", false } }, { exp = 1800000000.5 }, { exp = "1800000000" },
      { exp = 0 / 0 }, { exp = math.huge }, { nbf = -math.huge }, { nbf = "0x10" },
    }
    for i, c in ipairs(cases) do
      local claims = { sub = "bob", vms = { "vm-8" } }
      for k, v in pairs(c) do claims[k] = v end
      local user, reason, kind = jwt.grant(claims, "vm-8")
      assert.is_nil(user, "case " .. i)
      assert.equal("auth", kind, "case " .. i)
      assert.matches("malformed token claims %(" .. (next(c)) .. "%)", reason)
    end
  end)

  it("refuses claims without a subject or with no vms", function()
    assert.is_nil((jwt.grant({ vms = "*" }, "vm-1")))
    assert.is_nil((jwt.grant({ sub = "", vms = "*" }, "vm-1")))
    assert.is_nil((jwt.grant({ sub = "a" }, "vm-1")))
    assert.is_nil((jwt.grant({ sub = "a", vms = "vm-1" }, "vm-1"))) -- a string other than "*"
    assert.is_nil((jwt.grant({ sub = "a", vms = { "*" } }, "vm-1")))
    assert.has_error(function() jwt.grant({}, nil) end)
  end)
end)
