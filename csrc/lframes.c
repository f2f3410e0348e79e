/*
 * lframes.c: the Lua binding of frames.c (websocket frames, RFB, the
 * view-only filter), opened into ctvnc.core by ctv_open_frames.
 *
 *   core.viewonly_filter([opts]) -> filter | nil, msg, "invalid"
 *     opts.max_payload (65536), opts.max_cut_text (1048576),
 *     opts.max_string (65536): largest browser frame payload, client cut
 *     text, and server reason or desktop name; opts.mode "view" (default:
 *     input dropped, fail closed) or "watch" (nothing dropped: the
 *     messages are only counted, for idle timeouts of full sessions);
 *     opts.exclusive (false): true lets a watching filter pass ClientInit's
 *     shared flag as sent; otherwise a 0 there (exclusive: the server drops
 *     every other client) becomes 1. A view-only filter is always shared.
 *   filter:from_browser(bytes) -> bytes_for_target, inputs
 *                               | nil, msg, "protocol"
 *     inputs: key, pointer and clipboard messages seen in these bytes. A
 *     watching filter returns bytes itself (or, once, a copy with the
 *     ClientInit flag made shared); if it cannot follow the stream after
 *     ClientInit it goes "blind" (never an error) and counts any bytes as
 *     1; before ClientInit, unless exclusive, that is an error (the flag
 *     could not be made shared: fail closed).
 *   filter:from_target(bytes)  -> true | nil, msg, "protocol"
 *     Call it before sending the bytes on to the browser, so the filter
 *     knows the server's step before the browser answers it.
 *   filter:stats()             -> table of counters and the phase;
 *     closed_by: "browser" or "target", whichever sent a close frame first
 *     (the relay calls from_browser and from_target in the order the bytes
 *     came, so the other side's close is only ever the answer)
 *   filter:close()             -> frees the buffers; also __gc, __close
 *   core.ws_frame(opcode, payload [, key [, fin]]) -> frame | nil, msg, kind
 *   core.ws_parse(bytes, role [, max_payload]) -> frame, size | false [, size]
 *                                                | nil, msg, "protocol"
 *   core.ws_mask(bytes, key [, offset]) -> bytes
 *   core.rfb_client_msg(bytes [, max_cut]) -> type, length, class | false
 *                                              | nil, msg, "protocol"
 *
 * Messages never quote the bytes they refuse.
 */
#include <string.h>

#include "frames.h"
#include "lctvnc.h"

#define VIEWONLY "ctvnc.ViewOnly"
/* Output buffers larger than this are freed after each call. */
#define KEEP 65536

static int l_viewonly_filter(lua_State *L);
static int l_ws_frame(lua_State *L);
static int l_ws_parse(lua_State *L);
static int l_ws_mask(lua_State *L);
static int l_rfb_client_msg(lua_State *L);
static int vo_from_browser(lua_State *L);
static int vo_from_target(lua_State *L);
static int vo_stats(lua_State *L);
static int vo_close(lua_State *L);
static int vo_tostring(lua_State *L);

static const luaL_Reg funcs[] = {
  {"viewonly_filter", l_viewonly_filter},
  {"ws_frame", l_ws_frame},
  {"ws_parse", l_ws_parse},
  {"ws_mask", l_ws_mask},
  {"rfb_client_msg", l_rfb_client_msg},
  {NULL, NULL}
};

static const luaL_Reg methods[] = {
  {"from_browser", vo_from_browser},
  {"from_target", vo_from_target},
  {"stats", vo_stats},
  {"close", vo_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", vo_close},
  {"__close", vo_close},
  {"__tostring", vo_tostring},
  {NULL, NULL}
};

/* ---- the view-only filter --------------------------------------------- */

typedef struct filter {
  ctv_vo vo;
  int open;
  int blind;            /* a watching filter that lost the stream */
} filter;

static filter *checkfilter(lua_State *L) {
  return (filter *)luaL_checkudata(L, 1, VIEWONLY);
}

static int l_viewonly_filter(lua_State *L) {
  static const char *const known[] = {"max_payload", "max_cut_text",
                                      "max_string", "mode", "exclusive",
                                      NULL};
  int o = 0, watch = 0, exclusive = 0;
  double max_payload, max_cut, max_string;
  filter *f;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    o = 1;
    if (!ctv_known_fields(L, o, known))
      return ctv_fail(L, "invalid", "viewonly_filter: unknown option");
  }
  max_payload = ctv_opt_size(L, o, "max_payload", 65536, 1, 1073741824.0);
  max_cut = ctv_opt_size(L, o, "max_cut_text", 1048576, 0, 2147483648.0);
  max_string = ctv_opt_size(L, o, "max_string", 65536, 0, 16777216.0);
  if (max_payload < 0)
    return ctv_fail(L, "invalid",
                "viewonly_filter: max_payload must be an integer 1-2^30");
  if (max_cut < 0)
    return ctv_fail(L, "invalid",
                "viewonly_filter: max_cut_text must be an integer 0-2^31");
  if (max_string < 0)
    return ctv_fail(L, "invalid",
                "viewonly_filter: max_string must be an integer 0-2^24");
  if (o) {
    lua_getfield(L, o, "mode");
    if (!lua_isnil(L, -1)) {
      const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (strcmp(m, "watch") == 0) watch = 1;
      else if (strcmp(m, "view") != 0)
        return ctv_fail(L, "invalid",
                    "viewonly_filter: mode must be \"view\" or \"watch\"");
    }
    lua_pop(L, 1);
    lua_getfield(L, o, "exclusive");
    exclusive = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (exclusive && !watch)
      return ctv_fail(L, "invalid",
                  "viewonly_filter: a view-only session is always shared");
  }
  f = (filter *)lua_newuserdatauv(L, sizeof *f, 0);
  memset(f, 0, sizeof *f);
  luaL_setmetatable(L, VIEWONLY);
  ctv_vo_init(&f->vo, (uint64_t)max_payload, (uint32_t)max_cut,
              (uint32_t)max_string, ctv_random, NULL);
  f->vo.watch = watch;
  f->vo.exclusive = exclusive;
  f->open = 1;
  return 1;
}

static int vo_fail(lua_State *L, filter *f, const char *side) {
  if (!f->open) return ctv_fail(L, "protocol", "view-only filter: closed");
  return ctv_fail(L, "protocol", "view-only: %s from the %s",
                  ctv_vo_message(&f->vo), side);
}

static int vo_from_browser(lua_State *L) {
  filter *f = checkfilter(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  uint64_t before = f->vo.inputs;
  int was_normal = f->vo.hs.client_normal;
  if (!f->open) return vo_fail(L, f, "browser");
  if (f->blind) {
    lua_settop(L, 2);
    lua_pushinteger(L, n > 0);
    return 2;
  }
  if (ctv_vo_from_browser(&f->vo, (const unsigned char *)s, n) != CTV_VO_OK) {
    /* a full session goes on, unwatched, once its ClientInit is shared */
    if (!f->vo.watch || (!was_normal && !f->vo.exclusive))
      return vo_fail(L, f, "browser");
    f->blind = 1;
    lua_settop(L, 2);
    lua_pushinteger(L, n > 0);
    return 2;
  }
  if (f->vo.watch && !f->vo.out.len) lua_settop(L, 2);
  else if (f->vo.out.len)
    lua_pushlstring(L, (const char *)f->vo.out.p, f->vo.out.len);
  else lua_pushliteral(L, "");
  lua_pushinteger(L, (lua_Integer)(f->vo.inputs - before));
  ctv_vo_trim(&f->vo, KEEP);
  return 2;
}

static int vo_from_target(lua_State *L) {
  filter *f = checkfilter(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (!f->open) return vo_fail(L, f, "target");
  if (!f->blind
      && ctv_vo_from_target(&f->vo, (const unsigned char *)s, n) != CTV_VO_OK) {
    if (!f->vo.watch) return vo_fail(L, f, "target");
    f->blind = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void setcount(lua_State *L, const char *key, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, key);
}

static int vo_stats(lua_State *L) {
  filter *f = checkfilter(L);
  const ctv_vo *vo = &f->vo;
  const char *phase;
  uint64_t dropped = 0;
  int i;
  if (!f->open) phase = "closed";
  else if (f->blind) phase = "blind";
  else if (vo->error) phase = "error";
  else if (vo->hs.state == CTV_HS_DEAD) phase = "failed";
  else if (vo->hs.client_normal) phase = "normal";
  else phase = "handshake";
  for (i = 0; i < CTV_DROP_KINDS; i++) dropped += vo->dropped[i];
  lua_newtable(L);
  lua_pushstring(L, phase);
  lua_setfield(L, -2, "phase");
  lua_pushboolean(L, vo->target_done);
  lua_setfield(L, -2, "target_done");
  if (vo->closer) {
    lua_pushstring(L, vo->closer == CTV_VO_BROWSER ? "browser" : "target");
    lua_setfield(L, -2, "closed_by");
  }
  lua_pushboolean(L, vo->shared_forced);
  lua_setfield(L, -2, "shared_forced");
  lua_pushstring(L, vo->watch ? "watch" : "view");
  lua_setfield(L, -2, "mode");
  if (vo->hs.version > 0) {
    lua_pushfstring(L, "3.%d", vo->hs.version);
    lua_setfield(L, -2, "version");
  }
  if (vo->hs.security) {
    lua_pushstring(L, vo->hs.security == 1 ? "none" : "vnc");
    lua_setfield(L, -2, "security");
  }
  setcount(L, "passed", vo->passed);
  setcount(L, "inputs", vo->inputs);
  setcount(L, "dropped", dropped);
  setcount(L, "dropped_key", vo->dropped[CTV_DROP_KEY]);
  setcount(L, "dropped_pointer", vo->dropped[CTV_DROP_POINTER]);
  setcount(L, "dropped_cut", vo->dropped[CTV_DROP_CUT]);
  setcount(L, "dropped_control", vo->dropped[CTV_DROP_CONTROL]);
  setcount(L, "frames_in", vo->frames_in);
  setcount(L, "frames_out", vo->frames_out);
  return 1;
}

static int vo_close(lua_State *L) {
  filter *f = checkfilter(L);
  if (f->open) {
    ctv_vo_free(&f->vo);
    f->open = 0;
  }
  return 0;
}

static int vo_tostring(lua_State *L) {
  lua_pushfstring(L, "%s: %p", VIEWONLY, lua_touserdata(L, 1));
  return 1;
}

/* ---- frame and message tools ------------------------------------------ */

static const char *const opnames[] = {"continuation", "text", "binary",
                                      "close", "ping", "pong", NULL};
static const int opcodes[] = {CTV_WS_CONT, CTV_WS_TEXT, CTV_WS_BINARY,
                              CTV_WS_CLOSE, CTV_WS_PING, CTV_WS_PONG};

static const char *opname(int op) {
  int i;
  for (i = 0; opnames[i]; i++)
    if (opcodes[i] == op) return opnames[i];
  return "?";
}

/* A 4-byte key argument: NULL for none (nil or false), else the key;
 * true draws a random one into buf. */
static const unsigned char *checkkey(lua_State *L, int i, unsigned char *buf) {
  size_t n;
  const char *s;
  if (lua_isnoneornil(L, i)) return NULL;
  if (lua_type(L, i) == LUA_TBOOLEAN) {
    if (!lua_toboolean(L, i)) return NULL;
    if (ctv_random(NULL, buf, 4)) luaL_error(L, "no random bytes for a key");
    return buf;
  }
  s = luaL_checklstring(L, i, &n);
  if (n != 4) luaL_argerror(L, i, "a masking key is 4 bytes");
  memcpy(buf, s, 4);
  return buf;
}

/* core.ws_frame(opcode, payload [, key [, fin]]): one frame; key nil or
 * false for a server frame, a 4-byte string or true (random) for a
 * client frame; fin defaults to true. */
static int l_ws_frame(lua_State *L) {
  int op = opcodes[luaL_checkoption(L, 1, NULL, opnames)];
  size_t n, h;
  const char *s = luaL_checklstring(L, 2, &n);
  unsigned char kb[4], hdr[CTV_WS_MAXHEADER];
  const unsigned char *key = checkkey(L, 3, kb);
  int fin = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  unsigned char *buf;
  if ((op & 8) && (n > 125 || !fin))
    return ctv_fail(L, "invalid",
                "ws_frame: a control frame is whole and at most 125 bytes");
  if (op == CTV_WS_CLOSE && n == 1)
    return ctv_fail(L, "invalid", "ws_frame: a close payload is 0 or 2+ bytes");
  h = ctv_ws_write_header(hdr, fin, op, n, key);
  buf = (unsigned char *)lua_newuserdatauv(L, h + n, 0);
  memcpy(buf, hdr, h);
  if (key) ctv_ws_mask(buf + h, (const unsigned char *)s, n, key, 0);
  else if (n) memcpy(buf + h, s, n);
  lua_pushlstring(L, (const char *)buf, h + n);
  return 1;
}

/* core.ws_parse(bytes, role [, max_payload]): the first frame of bytes,
 * sent by role "client" (masked) or "server": {fin=, opcode=, masked=,
 * payload=} and its size; false when bytes end before the frame does (and
 * then, once its header is in, the frame's whole size). */
static int l_ws_parse(lua_State *L) {
  static const char *const roles[] = {"client", "server", NULL};
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  int role = luaL_checkoption(L, 2, NULL, roles);
  lua_Number max = luaL_optnumber(L, 3, 9007199254740992.0);
  ctv_ws_frame fr;
  enum ctv_ws_result r;
  unsigned char *buf;
  size_t len;
  if (!(max >= 0)) luaL_argerror(L, 3, "max_payload must be >= 0");
  r = ctv_ws_parse(p, n, role == 0 ? CTV_WS_FROM_CLIENT : CTV_WS_FROM_SERVER,
                   max >= 9007199254740992.0 ? UINT64_C(0x7fffffffffffffff)
                                             : (uint64_t)max, &fr);
  if (r == CTV_WS_MORE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r == CTV_WS_OK && fr.payload_len > (uint64_t)(n - fr.header_len)) {
    lua_pushboolean(L, 0);   /* the header is in: the frame's whole size */
    lua_pushnumber(L, (lua_Number)(fr.header_len + fr.payload_len));
    return 2;
  }
  if (r != CTV_WS_OK)
    return ctv_fail(L, "protocol", "ws_parse: %s", ctv_ws_result_name(r));
  len = (size_t)fr.payload_len;
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, fr.fin);
  lua_setfield(L, -2, "fin");
  lua_pushstring(L, opname(fr.opcode));
  lua_setfield(L, -2, "opcode");
  lua_pushboolean(L, fr.masked);
  lua_setfield(L, -2, "masked");
  if (fr.masked) { /* unmasked through a scratch userdata, then dropped */
    buf = (unsigned char *)lua_newuserdatauv(L, len ? len : 1, 0);
    ctv_ws_mask(buf, p + fr.header_len, len, fr.key, 0);
    lua_pushlstring(L, (const char *)buf, len);
    lua_remove(L, -2);
  } else {
    lua_pushlstring(L, (const char *)p + fr.header_len, len);
  }
  lua_setfield(L, -2, "payload");
  lua_pushinteger(L, (lua_Integer)(fr.header_len + len));
  return 2;
}

/* core.ws_mask(bytes, key [, offset]): masks or unmasks. */
static int l_ws_mask(lua_State *L) {
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  unsigned char kb[4];
  const unsigned char *key;
  lua_Number off = luaL_optnumber(L, 3, 0);
  unsigned char *buf;
  luaL_checktype(L, 2, LUA_TSTRING);
  key = checkkey(L, 2, kb);
  if (!(off >= 0 && off < 9007199254740992.0))
    luaL_argerror(L, 3, "offset must be >= 0");
  buf = (unsigned char *)lua_newuserdatauv(L, n ? n : 1, 0);
  ctv_ws_mask(buf, p, n, key, (uint64_t)off);
  lua_pushlstring(L, (const char *)buf, n);
  return 1;
}

/* core.rfb_client_msg(bytes [, max_cut]): the first client message of
 * bytes (normal phase): its type, length and class ("view", "input",
 * "control"); false when bytes end before it does. */
static int l_rfb_client_msg(lua_State *L) {
  static const char *const classes[] = {"view", "input", "control"};
  size_t n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &n);
  lua_Number max = luaL_optnumber(L, 2, 1048576);
  ctv_rfb_msg m;
  enum ctv_rfb_result r;
  if (!(max >= 0 && max <= 4294967295.0))
    luaL_argerror(L, 2, "max_cut must be 0-2^32-1");
  r = ctv_rfb_client_split(p, n, (uint32_t)max, &m);
  if (r == CTV_RFB_MORE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r != CTV_RFB_OK)
    return ctv_fail(L, "protocol", "rfb_client_msg: %s", ctv_rfb_result_name(r));
  lua_pushinteger(L, m.type);
  lua_pushinteger(L, (lua_Integer)m.len);
  lua_pushstring(L, classes[m.klass]);
  return 3;
}

/* ---- opening ---------------------------------------------------------- */

void ctv_open_frames(lua_State *L) {
  ctv_class(L, VIEWONLY, meta, methods);
  luaL_setfuncs(L, funcs, 0);
}
