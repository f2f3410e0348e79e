/*
 * lctvnc.c: the hub of the Lua binding. luaopen_ctvnc_core is the one
 * exported symbol; it opens the topic files, each of which starts with its
 * prototypes and its luaL_Reg table:
 *
 *   lurl.c      encode_uri_component, direct_url, proxy_url, endpoint,
 *               host_kind, check_options
 *   lsession.c  session (the ctvnc.Session class over http.c)
 *   lsys.c      probe, sleep, now, random_bytes
 *   lframes.c   viewonly_filter, ws_frame, ws_parse, ws_mask, rfb_client_msg
 *   lsignal.c   catch_signals, interrupted, release_signals
 *   lshot.c     shooter (the ctvnc.Shooter class over shot.c: RFB
 *               screenshots and banner probes over websockets)
 *   lresp.c     resp_reader (Redis replies, the ctvnc.RespReader class)
 *   lrecording.c sha256, hmac_sha256, recording_writer, recording_reader
 *
 * Misuse (a wrong Lua type) raises; a bad value returns nil, message, kind.
 * Messages never quote tokens, passwords or the endpoint (it may carry a
 * password in user info).
 */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "lctvnc.h"

#if defined(__GNUC__)
#define CTVNC_API __attribute__((visibility("default")))
#else
#define CTVNC_API
#endif

double ctv_opt_size(lua_State *L, int o, const char *key, double def,
                    double lo, double hi) {
  double v;
  if (o == 0) return def;
  lua_getfield(L, o, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
  lua_pop(L, 1);
  if (!(v >= lo && v <= hi && v == (double)(uint64_t)v)) return -1;
  return v;
}

int ctv_known_fields(lua_State *L, int o, const char *const known[]) {
  int i;
  lua_pushnil(L);
  while (lua_next(L, o)) {
    lua_pop(L, 1);
    for (i = 0; known[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING
          && strcmp(lua_tostring(L, -1), known[i]) == 0) break;
    if (!known[i]) {
      lua_pop(L, 1);
      return 0;
    }
  }
  return 1;
}

CTVNC_API int luaopen_ctvnc_core(lua_State *L);

int ctv_fail(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, kind);
  return 3;
}

void ctv_class(lua_State *L, const char *name, const luaL_Reg *meta,
               const luaL_Reg *methods) {
  if (luaL_newmetatable(L, name)) {
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

CTVNC_API int luaopen_ctvnc_core(lua_State *L) {
  static void (*const topics[])(lua_State *) = {
    ctv_open_url, ctv_open_session, ctv_open_sys, ctv_open_frames,
    ctv_open_signal, ctv_open_shot, ctv_open_resp, ctv_open_recording
  };
  size_t i;
  lua_newtable(L);
  for (i = 0; i < sizeof topics / sizeof topics[0]; i++) topics[i](L);
  return 1;
}
