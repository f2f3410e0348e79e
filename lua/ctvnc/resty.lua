--- ctvnc.resty: a transport for nginx workers (OpenResty / ngx_lua).
-- Requests go through ngx.location.capture to an internal location that
-- proxy_passes to CloudTower, so nginx's upstream module does keep-alive,
-- TLS verification and timeouts, and no call ever blocks the worker. The
-- reachability probe is a cosocket connect.
--
--   local client = ctvnc.new{ endpoint = "https://tower", token = ...,
--     transport = require("ctvnc.resty").transport{ location = "/_ctvnc" } }
--
-- The internal location (see lua/ctvnc/gateway/nginx.tpl) must set the
-- request headers from ngx.ctx.ctvnc_headers:
--
--   location /_ctvnc/ {
--     internal;
--     set_by_lua_block $ctvnc_authorization { return ngx.ctx.ctvnc_headers.Authorization or "" }
--     set_by_lua_block $ctvnc_language { return ngx.ctx.ctvnc_headers["content-language"] or "" }
--     proxy_pass_request_headers off;
--     proxy_set_header Authorization $ctvnc_authorization;
--     ...
--     header_filter_by_lua_block { require("ctvnc.resty").header_filter() }
--     body_filter_by_lua_block { require("ctvnc.resty").body_filter() }
--     proxy_pass https://cloudtower/;
--   }
local ngx = ngx
local capture, spawn, wait, kill = ngx.location.capture, ngx.thread.spawn, ngx.thread.wait,
  ngx.thread.kill
local sleep = ngx.sleep

local function now()
  ngx.update_time()
  return ngx.now()
end
local HTTP_POST, HTTP_GET = ngx.HTTP_POST, ngx.HTTP_GET
local type, ipairs, error, tostring, tonumber, match = type, ipairs, error, tostring, tonumber,
  string.match

local _M = {}

local METHODS = { POST = HTTP_POST, GET = HTTP_GET }

--- Light thread racing a capture: "too_large" as soon as the body filter
-- has seen too much, "timeout" once the whole request took too long.
local function watch(ctx, timeout)
  local deadline = now() + timeout
  while not ctx.ctvnc_too_large do
    local left = deadline - now()
    if left <= 0 then return "timeout" end
    sleep(math.min(left, 0.05))
  end
  return "too_large"
end

--- One request through the internal location, whose proxy_pass holds the
-- tower's address and path prefix: status, body | nil, message, kind.
local function request(location, max_body, timeout, tls, req)
  -- a whole-request deadline (see _M.deadline) bounds every try and wait
  local deadline = ngx.ctx.ctvnc_deadline
  if deadline then
    local left = deadline - now()
    if left <= 0 then
      return nil, "the console request's time (TOWER_TIMEOUT) is used up", "timeout"
    end
    if left < timeout then timeout = left end
  end
  local path = req.path
  local method = METHODS[req.method]
  if not method then
    return nil, "method " .. tostring(req.method) .. " is not supported", "invalid"
  end
  local ctx = { ctvnc_headers = req.headers or {}, ctvnc_max_body = max_body }
  local fetch = spawn(function()
    return capture(location .. path, { method = method, body = req.body, ctx = ctx })
  end)
  local guard = spawn(watch, ctx, timeout)
  local _, res = wait(fetch, guard)
  -- When the guard won, the subrequest is left to nginx: it ends with the
  -- main request.
  if type(res) ~= "string" then kill(guard) end
  if ctx.ctvnc_too_large then
    return nil, "the answer exceeds " .. max_body .. " bytes", "too_large"
  end
  if res == "timeout" then
    return nil, "CloudTower's answer took longer than " .. timeout .. " s", "timeout"
  end
  -- The location's header filter copies $upstream_header_time into the
  -- shared ctx: "-" or nothing means CloudTower never answered and the
  -- status is nginx's own.
  local answered = ctx.ctvnc_upstream
  if answered == nil or answered == "" or answered == "-" then
    if res.status == 504 then
      return nil, "CloudTower did not answer in time (nginx proxy timeout)", "timeout"
    end
    -- no connection was ever ready for the request, yet the address
    -- takes connections: the TLS handshake (or the certificate) failed
    if tls and match(ctx.ctvnc_connect or "-", "([^%s,]+)%s*$") == "-"
      and _M.takes_connections(ctx.ctvnc_addr) then
      return nil, "TLS with CloudTower failed (HTTP " .. res.status
        .. " from nginx; its error log says why)", "tls"
    end
    return nil, "nginx could not get an answer from CloudTower (HTTP " .. res.status
      .. " from nginx; its error log says why)", "connect"
  end
  if res.truncated then return nil, "the answer was cut short", "connect" end
  return res.status, res.body or ""
end

--- header_filter_by_lua of the internal location.
function _M.header_filter()
  local ctx, var = ngx.ctx, ngx.var
  ctx.ctvnc_upstream = var.upstream_header_time
  ctx.ctvnc_addr = var.upstream_addr
  ctx.ctvnc_connect = var.upstream_connect_time
end

--- Bounds everything the transport does for the current nginx request
-- (tries, backoff sleeps) to `seconds` from now.
function _M.deadline(seconds)
  ngx.ctx.ctvnc_deadline = now() + seconds
end

--- body_filter_by_lua of the internal location: counts the body and
-- drops it once it passes max_body. nginx does not let a filter abort an
-- upstream, so request() stops waiting instead (see `watch`).
function _M.body_filter()
  local ctx = ngx.ctx
  local n = (ctx.ctvnc_bytes or 0) + #(ngx.arg[1] or "")
  ctx.ctvnc_bytes = n
  if n > (ctx.ctvnc_max_body or 1048576) then
    ctx.ctvnc_too_large = true
    ngx.arg[1] = ""           -- keep nothing more; the request gives up below
    return
  end
end

--- Runs fn(i) for i = 1..n on at most `concurrency` light threads.
local function each(n, concurrency, fn)
  local next_i = 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      fn(next_i)
    end
  end
  local threads = {}
  for t = 1, math.min(concurrency, n) do threads[t] = spawn(worker) end
  for _, th in ipairs(threads) do
    local ok, err = wait(th)
    if not ok then error(err, 0) end
  end
end

--- One cosocket connect: true | false, reason.
local function probe_one(host, port, seconds)
  local sock = ngx.socket.tcp()
  sock:settimeout(math.max(1, math.floor(seconds * 1000)))
  local ok, err = sock:connect(host, port)
  sock:close()
  if ok then return true, "connected" end
  if err == "timeout" then return false, "timeout" end
  if err and err:find("refused", 1, true) then return false, "refused" end
  return false, "unreachable"
end

--- Whether the last address of an $upstream_addr list ("a:p, b:p")
-- accepts a TCP connection now (1 s at most): a failed upstream that takes
-- connections failed in TLS, not in connecting.
function _M.takes_connections(addrs)
  local addr = match(addrs or "", "([^%s,]+)%s*$")
  if not addr then return false end
  local host, port = match(addr, "^%[(.+)%]:(%d+)$")
  if not host then host, port = match(addr, "^([^:]+):(%d+)$") end
  if not host then return false end
  return (probe_one(host, tonumber(port), 1))
end

--- transport{ location = "/_ctvnc", timeout = 10, max_body = 1048576, tls = true }
-- -> a transport table for ctvnc.new. `timeout` bounds a whole request
-- (nginx's proxy timeouts bound connect and each read); `max_body` the
-- answer; `tls = false` when the location speaks plain HTTP (a failed
-- connection is then never reported as `tls`). Use it in rewrite, access
-- or content phases (it makes subrequests).
function _M.transport(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'transport' (table expected)", 2) end
  local location = opts.location or "/_ctvnc"
  local max_body = opts.max_body or 1048576
  local timeout = opts.timeout or 10
  local tls = opts.tls ~= false
  local t = {}
  function t.request_many(reqs, concurrency, on_done)
    each(#reqs, concurrency, function(i)
      on_done(i, request(location, max_body, timeout, tls, reqs[i]))
    end)
  end
  function t.probe(targets, seconds)
    local oks, whys = {}, {}
    each(#targets, #targets, function(i)
      oks[i], whys[i] = probe_one(targets[i][1], targets[i][2], seconds)
    end)
    return oks, whys
  end
  function t.sleep(s)
    local deadline = ngx.ctx.ctvnc_deadline
    if deadline then s = math.max(0, math.min(s, deadline - now())) end
    sleep(s)                 -- sleep(0) still yields, as before
  end
  t.now = now
  return t
end

_M.probe = probe_one
return _M
