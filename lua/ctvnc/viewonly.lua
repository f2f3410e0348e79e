--- ctvnc.viewonly: the view-only policy of a console session. The byte
-- work (websocket frames, the RFB handshake, client message splitting) is
-- ctvnc.core's view-only filter (csrc/frames.c); this module picks what is
-- dropped and how a refused session ends.
--
-- In a view-only session the gateway relays target bytes untouched (after
-- showing them to `filter:from_target`, so it follows the handshake) and
-- sends the target only what `filter:from_browser` returns: the browser's
-- handshake, every view message (SetPixelFormat, SetEncodings,
-- FramebufferUpdateRequest, EnableContinuousUpdates, ClientFence) re-framed
-- in masked client frames, and its pings, pongs and close. KeyEvent,
-- PointerEvent, ClientCutText, QEMU extended key events, xvp power
-- operations and SetDesktopSize never reach the target. Anything the filter
-- cannot follow ends the session (fail closed).
local core = require "ctvnc.core"

local type, pairs, error = type, pairs, error
local floor, char, format = math.floor, string.char, string.format

local _M = {}

--- Limits used when the caller gives none (bytes).
_M.defaults = {
  max_payload = 65536,      -- largest websocket frame payload from the browser
  max_cut_text = 1048576,   -- largest clipboard text (dropped all the same)
  max_string = 65536,       -- largest server reason or desktop name
}

--- Close codes (RFC 6455 section 7.4.1) the relay sends the browser.
_M.CLOSE_NORMAL = 1000
_M.CLOSE_GOING_AWAY = 1001      -- time cap, idle timeout, kill
_M.CLOSE_PROTOCOL = 1002
_M.CLOSE_POLICY = 1008          -- view-only violation, limits

local function make(fname, mode, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("ctvnc.viewonly." .. fname .. ": opts must be a table", 3)
  end
  local o = {}
  for k, v in pairs(_M.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  o.mode = mode
  return core.viewonly_filter(o)
end

--- A view-only filter for one session: filter | nil, message, "invalid".
-- opts may set max_payload, max_cut_text, max_string (see defaults).
-- filter:from_browser(bytes) -> bytes for the target, input messages seen
-- (all dropped) | nil, message, "protocol".
function _M.new(opts)
  return make("new", "view", opts)
end

--- A watching filter for a full session: it drops nothing;
-- filter:from_browser(bytes) returns bytes itself (but a ClientInit of 0
-- made shared, unless opts.exclusive) and the number of
-- key, pointer and clipboard messages in them (noVNC sends update requests
-- all the time, so "bytes arrived" is no sign of a person at the console:
-- this count is, for IDLE_TIMEOUT). A stream it cannot follow after
-- ClientInit makes it "blind": then any bytes count as one input; before
-- ClientInit that is an error unless opts.exclusive (fail closed).
function _M.watch(opts)
  return make("watch", "watch", opts)
end

--- One relay step from the browser, policy included: the bytes for the
-- target and the input messages seen, or nil, message, "protocol" and the
-- close frame to send the browser before closing both sides.
function _M.from_browser(filter, bytes)
  local out, msg, kind = filter:from_browser(bytes)
  if out then return out, msg end
  -- a watching filter fails only before a ClientInit it must make shared
  local why = filter:stats().mode == "watch" and "the console's handshake could not be followed"
    or "view-only: session closed"
  return nil, msg, kind, _M.close_frame(_M.CLOSE_POLICY, why)
end

--- A server close frame for the browser: status code and a reason cut to
-- the 123 bytes a control frame leaves, on a UTF-8 character boundary.
function _M.close_frame(code, reason)
  if type(code) ~= "number" or code < 1000 or code > 4999 or code % 1 ~= 0 then
    error("ctvnc.viewonly.close_frame: code must be an integer 1000-4999", 2)
  end
  reason = reason or ""
  if type(reason) ~= "string" then
    error("ctvnc.viewonly.close_frame: reason must be a string", 2)
  end
  if #reason > 123 then
    local cut = 123
    -- back off continuation bytes (0x80-0xBF) so no character is split
    while cut > 0 and reason:byte(cut + 1) and reason:byte(cut + 1) >= 0x80
      and reason:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    reason = reason:sub(1, cut)
  end
  return core.ws_frame("close", char(floor(code / 256), code % 256) .. reason)
end

--- Counters of a filter as one line for logs: no bytes of the session.
function _M.summary(filter)
  local s = filter:stats()
  return format("phase=%s passed=%d dropped=%d key=%d pointer=%d cut=%d control=%d",
    s.phase, s.passed, s.dropped, s.dropped_key, s.dropped_pointer, s.dropped_cut,
    s.dropped_control)
end

return _M
