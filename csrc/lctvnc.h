/*
 * lctvnc.h: what the binding's topic files share. Nothing here is
 * exported: luaopen_ctvnc_core (lctvnc.c) is the module's only symbol.
 */
#ifndef CTVNC_LCTVNC_H
#define CTVNC_LCTVNC_H

#include "compat.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#define CTV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CTV_PRINTF(f, a)
#endif

/* Each topic adds its functions to the table on top of the stack and
 * registers its metatables. */
void ctv_open_url(lua_State *L);       /* lurl.c: encoding, URLs, endpoint */
void ctv_open_session(lua_State *L);   /* lsession.c: the Session class */
void ctv_open_sys(lua_State *L);       /* lsys.c: probe, sleep, now,
                                          random_bytes */
void ctv_open_frames(lua_State *L);    /* lframes.c: websocket frames, RFB,
                                          the view-only filter */
void ctv_open_signal(lua_State *L);    /* lsignal.c: SIGINT/SIGTERM for the
                                          ctvnc command */
void ctv_open_shot(lua_State *L);      /* lshot.c: screenshots (the Shooter
                                          class over shot.c) */
void ctv_open_resp(lua_State *L);      /* lresp.c: Redis reply reader */
void ctv_open_recording(lua_State *L); /* lrecording.c: SHA-256, HMAC,
                                          console recordings */

/* Registers the metatable `name` (once): its metamethods `meta`, and
 * `methods` as its __index. Leaves the stack as it was. */
void ctv_class(lua_State *L, const char *name, const luaL_Reg *meta,
               const luaL_Reg *methods);

/* opts[key] (o: the options table's index, 0 for none) as an integer in
 * [lo, hi]; def when absent; -1 when it is not such an integer. */
double ctv_opt_size(lua_State *L, int o, const char *key, double def,
                    double lo, double hi);

/* 1 when every key of the table at index o is one of known[] (NULL
 * ended), else 0. */
int ctv_known_fields(lua_State *L, int o, const char *const known[]);

/* Fills buf[0..n) from getrandom(2), looping on EINTR and short reads:
 * 0, or -1 with errno set. The module's one source of random bytes
 * (lsys.c), a ctv_random_fn for masking keys (the view-only filter's, the
 * screenshots' websocket frames). */
int ctv_random(void *ud, unsigned char *buf, size_t n);

/* Pushes nil, the formatted message and `kind`; returns 3. The format is
 * lua_pushfstring's (%s %d %f %p %c %%), a subset of printf's. */
int ctv_fail(lua_State *L, const char *kind, const char *fmt, ...)
  CTV_PRINTF(3, 4);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
