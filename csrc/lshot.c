/*
 * lshot.c: the ctvnc.Shooter class, a userdata that owns one ctv_shots
 * (shot.c: libcurl multi and share handles). One idempotent close serves
 * __gc, __close and :close(); a close from a callback waits for the run.
 *
 *   core.shooter{timeout=, connect_timeout=, insecure=, ca_file=}
 *   shooter:run(jobs, concurrency, on_done)
 *     jobs[i] = {url=, password=, width=, max_pixels=, banner_only=,
 *                timeout=} (timeout in seconds; default the shooter's)
 *     on_done(i, r) as each job ends, r = {ok=true, png=, width=, height=,
 *       fb_width=, fb_height=, name=, version=, stage=, times=} or
 *       {ok=false, message=, kind=, status=, stage=, times=}; stage names
 *       the last step reached ("tcp" .. "frame", or "none") and times[step]
 *       its time in seconds from the job's start.
 *
 * The callback runs under lua_pcall, its table built there too: no Lua
 * error ever longjmps through libcurl; an error stops the run and is
 * raised once every handle is back.
 *
 * And the RFB client alone (rfb.c), for callers that move the bytes
 * themselves (the gateway, over nginx's cosockets):
 *
 *   core.rfb_client{password=, max_pixels=} -> client
 *   client:feed(rfb_bytes) -> bytes_to_send, "more" | "done"
 *                           | nil, message, "rfb" | "system"
 *     rfb_bytes: the server's RFB stream (websocket payloads); the bytes
 *     to send go back as the payload of one binary message (may be "").
 *   client:png([width]) -> png, width, height | nil, message, "invalid"
 *     once "done": the frame, scaled down to width when smaller.
 *   client:info() -> {width=, height=, name=, version=} of the desktop
 *   client:close() (also __gc, __close): frees the framebuffer and zlib.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "lctvnc.h"
#include "png.h"
#include "rfb.h"
#include "shot.h"

static int l_shooter(lua_State *L);
static int l_run(lua_State *L);
static int l_close(lua_State *L);
static int l_gc(lua_State *L);
static int l_tostring(lua_State *L);
static int l_rfb_client(lua_State *L);
static int rc_feed(lua_State *L);
static int rc_png(lua_State *L);
static int rc_info(lua_State *L);
static int rc_close(lua_State *L);
static int rc_tostring(lua_State *L);

static const luaL_Reg funcs[] = {
  {"shooter", l_shooter},
  {"rfb_client", l_rfb_client},
  {NULL, NULL}
};

static const luaL_Reg methods[] = {
  {"run", l_run},
  {"close", l_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", l_gc},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {NULL, NULL}
};

static const luaL_Reg rc_methods[] = {
  {"feed", rc_feed},
  {"png", rc_png},
  {"info", rc_info},
  {"close", rc_close},
  {NULL, NULL}
};

static const luaL_Reg rc_meta[] = {
  {"__gc", rc_close},
  {"__close", rc_close},
  {"__tostring", rc_tostring},
  {NULL, NULL}
};

#define SHOOTER "ctvnc.Shooter"
#define RFBCLIENT "ctvnc.RfbClient"

static const char *const STAGES[CTV_SHOT_STAGES] = {
  "none", "tcp", "tls", "websocket", "rfb", "frame"
};

typedef struct shooter {
  ctv_shots *s;
  int busy, closing;
} shooter;

static double num_opt(lua_State *L, int t, const char *key, double def,
                      double lo, double hi) {
  double v;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) v = def;
  else if (lua_type(L, -1) == LUA_TNUMBER) v = (double)lua_tonumber(L, -1);
  else v = -1;
  lua_pop(L, 1);
  if (!(v >= lo)) luaL_error(L, "shooter: %s must be a number >= %f", key, lo);
  return v > hi ? hi : v;
}

static int l_shooter(lua_State *L) {
  ctv_shot_opts o;
  shooter *sh;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  memset(&o, 0, sizeof o);
  o.timeout_ms = (long)(num_opt(L, 1, "timeout", 10, 0.001, 31536000) * 1000);
  o.connect_timeout_ms = (long)(num_opt(L, 1, "connect_timeout", 5, 0.001, 31536000) * 1000);
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "ca_file");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "shooter: ca_file must be a string");
  o.ca_file = lua_tostring(L, -1);
  sh = (shooter *)lua_newuserdatauv(L, sizeof *sh, 0);
  memset(sh, 0, sizeof *sh);
  luaL_setmetatable(L, SHOOTER);
  if (ctv_http_global_init() != 0 || (sh->s = ctv_shots_new(&o)) == NULL)
    return luaL_error(L, "shooter: libcurl could not be initialised");
  return 1;
}

static void release(shooter *sh) {
  ctv_shots_free(sh->s);
  sh->s = NULL;
}

static int l_close(lua_State *L) {
  shooter *sh = (shooter *)luaL_checkudata(L, 1, SHOOTER);
  if (sh->busy) sh->closing = 1;
  else release(sh);
  return 0;
}

/* A collected shooter is never mid-run (a run keeps it on the stack). */
static int l_gc(lua_State *L) {
  release((shooter *)luaL_checkudata(L, 1, SHOOTER));
  return 0;
}

static int l_tostring(lua_State *L) {
  shooter *sh = (shooter *)luaL_checkudata(L, 1, SHOOTER);
  if (sh->s) lua_pushfstring(L, SHOOTER ": %p", (void *)sh);
  else lua_pushliteral(L, SHOOTER ": closed");
  return 1;
}

/* ---- run ---------------------------------------------------------------- */

typedef struct ctx {
  lua_State *L;
  int fn, deliver;            /* stack indexes: on_done, deliver */
  size_t i;
  const ctv_shot_res *r;
} ctx;

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* Protected, deliver(ctx, on_done): builds the result table and calls
 * on_done(i, r). */
static int deliver(lua_State *L) {
  const ctx *c = (const ctx *)lua_touserdata(L, 1);
  const ctv_shot_res *r = c->r;
  int s;
  lua_pushvalue(L, 2);
  lua_pushinteger(L, (lua_Integer)c->i + 1);
  lua_createtable(L, 0, 12);
  lua_pushboolean(L, r->kind == NULL);
  lua_setfield(L, -2, "ok");
  if (r->kind) {
    lua_pushstring(L, r->msg);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, r->kind);
    lua_setfield(L, -2, "kind");
  } else if (r->png) {
    lua_pushlstring(L, (const char *)r->png, r->pnglen);
    lua_setfield(L, -2, "png");
    set_int(L, "width", (long)r->width);
    set_int(L, "height", (long)r->height);
  }
  if (r->status) set_int(L, "status", (long)r->status);
  if (r->version) set_int(L, "version", (long)r->version);
  if (r->fb_width) {
    set_int(L, "fb_width", (long)r->fb_width);
    set_int(L, "fb_height", (long)r->fb_height);
    lua_pushstring(L, r->name ? r->name : "");
    lua_setfield(L, -2, "name");
  }
  lua_pushstring(L, STAGES[r->stage]);
  lua_setfield(L, -2, "stage");
  lua_createtable(L, 0, CTV_SHOT_STAGES);
  for (s = 1; s <= r->stage; s++) {
    if (r->times[s] == 0) continue;   /* not timed: tls on ws://, tcp before a failed TLS */
    set_num(L, STAGES[s], r->times[s]);
  }
  lua_setfield(L, -2, "times");
  lua_call(L, 2, 0);
  return 0;
}

static int on_done(void *ud, size_t i, const ctv_shot_res *r) {
  ctx *c = (ctx *)ud;
  c->i = i;
  c->r = r;
  lua_pushvalue(c->L, c->deliver);
  lua_pushlightuserdata(c->L, c);
  lua_pushvalue(c->L, c->fn);
  return lua_pcall(c->L, 2, 0, 0) != 0;   /* the error stays on top */
}

static const char *str_field(lua_State *L, int t, const char *key, int anchor,
                             int *k, size_t *len, int i, int required) {
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1) && !required) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "job %d: %s must be a string", i, key);
  lua_pushvalue(L, -1);
  lua_rawseti(L, anchor, ++*k);
  return lua_tolstring(L, -1, len);
}

/* shooter:run(jobs, concurrency, on_done) */
static int l_run(lua_State *L) {
  shooter *sh = (shooter *)luaL_checkudata(L, 1, SHOOTER);
  int concurrency = (int)luaL_checkinteger(L, 3), anchor, k = 0, rc;
  size_t n, i, len;
  ctv_shot_job *jobs;
  ctx c;
  if (!sh->s) return luaL_argerror(L, 1, "shooter is closed");
  if (sh->busy) return luaL_argerror(L, 1, "shooter is busy (called from its own callback)");
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  n = lua_rawlen(L, 2);
  jobs = (ctv_shot_job *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *jobs, 0);
  memset(jobs, 0, (n ? n : 1) * sizeof *jobs);
  lua_createtable(L, (int)(n * 2), 0);
  anchor = lua_gettop(L);
  for (i = 0; i < n; i++) {
    int t;
    double v;
    lua_rawgeti(L, 2, (int)i + 1);
    if (!lua_istable(L, -1)) return luaL_error(L, "job %d must be a table", (int)i + 1);
    t = lua_gettop(L);
    jobs[i].url = str_field(L, t, "url", anchor, &k, &len, (int)i + 1, 1);
    jobs[i].password = str_field(L, t, "password", anchor, &k, &jobs[i].passlen,
                                 (int)i + 1, 0);
    lua_getfield(L, t, "width");
    v = lua_isnil(L, -1) ? 0 : lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v >= 0 && v <= 65535)) return luaL_error(L, "job %d: width must be 0-65535", (int)i + 1);
    jobs[i].width = (unsigned)v;
    lua_getfield(L, t, "max_pixels");
    v = lua_isnil(L, -1) ? 0 : lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v >= 0 && v <= 4294836225.0))
      return luaL_error(L, "job %d: max_pixels must be 0-65535^2", (int)i + 1);
    jobs[i].max_pixels = (uint64_t)v;
    lua_getfield(L, t, "timeout");
    v = lua_isnil(L, -1) ? 0 : lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v >= 0 && v <= 31536000)) return luaL_error(L, "job %d: timeout must be 0-31536000", (int)i + 1);
    jobs[i].timeout_ms = v > 0 && v < 0.001 ? 1 : (long)(v * 1000);
    lua_getfield(L, t, "banner_only");
    jobs[i].banner_only = lua_toboolean(L, -1);
    lua_settop(L, anchor);
  }
  lua_pushcfunction(L, deliver);
  c.L = L;
  c.fn = 4;
  c.deliver = lua_gettop(L);
  sh->busy = 1;
  rc = ctv_shots_run(sh->s, jobs, n, concurrency, ctv_random, NULL, on_done, &c);
  sh->busy = 0;
  if (sh->closing) release(sh);
  if (rc < 0) return luaL_error(L, "shooter: out of memory");
  if (rc > 0) return lua_error(L);
  return 0;
}

/* ---- the RFB client alone -------------------------------------------- */

typedef struct rfbclient {
  ctv_rfbc c;
  int open;
} rfbclient;

static rfbclient *check_client(lua_State *L) {
  rfbclient *rc = (rfbclient *)luaL_checkudata(L, 1, RFBCLIENT);
  if (!rc->open) luaL_argerror(L, 1, "the RFB client is closed");
  return rc;
}

/* core.rfb_client([opts]) */
static int l_rfb_client(lua_State *L) {
  size_t passlen = 0;
  const char *password = NULL;
  double max;
  rfbclient *rc;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "password");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "rfb_client: password must be a string");
    password = lua_tolstring(L, -1, &passlen);
  }
  lua_getfield(L, 1, "max_pixels");
  max = lua_isnil(L, -1) ? 0 : lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
  if (!(max >= 0 && max <= 4294836225.0))
    return luaL_error(L, "rfb_client: max_pixels must be 0-65535^2");
  rc = (rfbclient *)lua_newuserdatauv(L, sizeof *rc, 0);
  memset(rc, 0, sizeof *rc);
  ctv_rfbc_init(&rc->c, password, passlen, (uint64_t)max, 0);
  rc->open = 1;
  luaL_setmetatable(L, RFBCLIENT);
  return 1;
}

/* client:feed(bytes) */
static int rc_feed(lua_State *L) {
  rfbclient *rc = check_client(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  enum ctv_rfbc_result r = ctv_rfbc_feed(&rc->c, (const unsigned char *)p, n);
  if (r == CTV_RFBC_ENOMEM) return ctv_fail(L, "system", "rfb_client: out of memory");
  if (r != CTV_RFBC_MORE && r != CTV_RFBC_DONE) {
    rc->c.outlen = 0;
    return ctv_fail(L, "rfb", "%s", rc->c.why);
  }
  lua_pushlstring(L, (const char *)rc->c.out, rc->c.outlen);
  rc->c.outlen = 0;
  lua_pushstring(L, r == CTV_RFBC_DONE ? "done" : "more");
  return 2;
}

/* client:png([width]) */
static int rc_png(lua_State *L) {
  rfbclient *rc = check_client(L);
  lua_Integer width = luaL_optinteger(L, 2, 0);
  unsigned char *png;
  unsigned w, h;
  size_t len;
  if (width < 0 || width > 65535) return luaL_argerror(L, 2, "width must be 0-65535");
  if (rc->c.state != CTV_RFBC_S_DONE || !rc->c.fb)
    return ctv_fail(L, "invalid", "rfb_client: no whole frame yet");
  png = ctv_png_thumb(rc->c.fb, rc->c.width, rc->c.height, (unsigned)width, &len, &w, &h);
  if (!png) return ctv_fail(L, "system", "rfb_client: out of memory");
  lua_pushlstring(L, (const char *)png, len);
  free(png);
  lua_pushinteger(L, (lua_Integer)w);
  lua_pushinteger(L, (lua_Integer)h);
  return 3;
}

/* client:info() */
static int rc_info(lua_State *L) {
  rfbclient *rc = check_client(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)rc->c.width);
  lua_setfield(L, -2, "width");
  lua_pushinteger(L, (lua_Integer)rc->c.height);
  lua_setfield(L, -2, "height");
  lua_pushlstring(L, rc->c.name, rc->c.namelen);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)(rc->c.version > 0 ? rc->c.version : 0));
  lua_setfield(L, -2, "version");
  return 1;
}

static int rc_close(lua_State *L) {
  rfbclient *rc = (rfbclient *)luaL_checkudata(L, 1, RFBCLIENT);
  if (rc->open) ctv_rfbc_free(&rc->c);
  rc->open = 0;
  return 0;
}

static int rc_tostring(lua_State *L) {
  rfbclient *rc = (rfbclient *)luaL_checkudata(L, 1, RFBCLIENT);
  if (rc->open) lua_pushfstring(L, RFBCLIENT ": %p", (void *)rc);
  else lua_pushliteral(L, RFBCLIENT ": closed");
  return 1;
}

void ctv_open_shot(lua_State *L) {
  ctv_class(L, RFBCLIENT, rc_meta, rc_methods);
  ctv_class(L, SHOOTER, meta, methods);
  luaL_setfuncs(L, funcs, 0);
}
