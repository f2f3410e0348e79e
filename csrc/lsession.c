/*
 * lsession.c: the ctvnc.Session class, a userdata that owns one ctv_http
 * (http.c). One idempotent close serves __gc, __close and :close().
 *
 * A session is busy while it runs requests: its done callback calls Lua,
 * and Lua must not re-enter the run (that would abandon the outer run's
 * transfers) nor free the handle under it. request and request_many
 * raise "session is busy" then; close is deferred to the end of the run.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "lctvnc.h"

static int l_session(lua_State *L);
static int l_request(lua_State *L);
static int l_request_many(lua_State *L);
static int l_close(lua_State *L);
static int l_gc(lua_State *L);
static int l_tostring(lua_State *L);

static const luaL_Reg funcs[] = {
  {"session", l_session},
  {NULL, NULL}
};

static const luaL_Reg methods[] = {
  {"request", l_request},
  {"request_many", l_request_many},
  {"close", l_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", l_gc},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {NULL, NULL}
};

#define SESSION "ctvnc.Session"

typedef struct session {
  ctv_http *h;
  int busy;                  /* a run is under way */
  int closing;               /* close() was called during the run */
  char *base;                /* prefix of request paths; NULL: none */
} session;

static session *check_session(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION);
  if (!s->h) luaL_argerror(L, 1, "session is closed");
  if (s->busy) luaL_argerror(L, 1, "session is busy (called from its own "
                             "callback)");
  return s;
}

static void release(session *s) {
  ctv_http_free(s->h);
  s->h = NULL;
  free(s->base);
  s->base = NULL;
}

static lua_Number num_opt(lua_State *L, int t, const char *key, lua_Number def) {
  lua_Number v;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) v = def;
  else if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0)
    v = lua_tonumber(L, -1);
  else
    return luaL_error(L, "session: %s must be a positive number", key);
  lua_pop(L, 1);
  return v;
}

/* v within [lo, hi] (the casts to long and size_t stay defined) */
static lua_Number clamp(lua_Number v, lua_Number lo, lua_Number hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* seconds as libcurl milliseconds: at least 1 (0 would mean none), and
 * at most a year */
static long ms(lua_Number seconds) {
  return (long)clamp(seconds * 1000, 1, 31536000000.0);
}

static const char *str_opt(lua_State *L, int t, const char *key) {
  lua_getfield(L, t, key);
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "session: %s must be a string", key);
  return lua_tostring(L, -1);
}

/* core.session{timeout=, connect_timeout=, insecure=, ca_file=, max_body=,
 *              http2=, base=}: base prefixes the `path` of requests; http2
 *              (default true) allows HTTP/2 over TLS. */
static int l_session(lua_State *L) {
  ctv_opts o;
  session *s;
  const char *base;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  memset(&o, 0, sizeof o);
  o.timeout_ms = ms(num_opt(L, 1, "timeout", 10));
  o.connect_timeout_ms = ms(num_opt(L, 1, "connect_timeout", 5));
  o.max_body = (size_t)clamp(num_opt(L, 1, "max_body", 1048576), 1, 1e15);
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "http2");
  o.http2 = lua_isnil(L, -1) || lua_toboolean(L, -1);
  o.ca_file = str_opt(L, 1, "ca_file");
  base = str_opt(L, 1, "base");
  s = (session *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SESSION);
  if (base && (s->base = malloc(strlen(base) + 1)) != NULL)
    strcpy(s->base, base);
  if ((base && !s->base) || ctv_http_global_init() != 0
      || (s->h = ctv_http_new(&o)) == NULL)
    return luaL_error(L, "session: libcurl could not be initialised");
  return 1;
}

/* __gc, __close and :close(); during a run, at its end. */
static int l_close(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION);
  if (s->busy) s->closing = 1;
  else release(s);
  return 0;
}

/* __gc: a collected session is never mid-run (a run keeps it on the C
 * stack), so whatever `busy` says after a memory error, free it all. */
static int l_gc(lua_State *L) {
  release((session *)luaL_checkudata(L, 1, SESSION));
  return 0;
}

static int l_tostring(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION);
  if (s->h) lua_pushfstring(L, SESSION ": %p", (void *)s);
  else lua_pushliteral(L, SESSION ": closed");
  return 1;
}

/* The string at the top of the stack, kept alive in the anchor table until
 * the run is over (callbacks may drop the request tables). */
static const char *anchored(lua_State *L, int anchor, int *k, size_t *len) {
  const char *p = lua_tolstring(L, -1, len);
  lua_rawseti(L, anchor, ++*k);
  return p;
}

static const char *str_field(lua_State *L, int t, const char *key, int anchor,
                             int *k, size_t *len, int i) {
  lua_getfield(L, t, key);
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "request %d: %s must be a string", i, key);
  return anchored(L, anchor, k, len);
}

/* What the previous request of a run had, so that requests sharing a path
 * or a headers table (a batch: all of them) are read once: the stack slots
 * of the previous path and headers table (0: none yet), and the URL and
 * headers read for them. */
typedef struct prev {
  int path, headers;
  const char *url;
  const ctv_header *hd;
  size_t nheaders;
} prev;

/* req.url, or the session's base followed by req.path. */
static const char *url_field(lua_State *L, const session *s, int t,
                             int anchor, int *k, int i, prev *pv) {
  size_t len;
  lua_getfield(L, t, "url");
  if (lua_isnil(L, -1) && s->base) {
    lua_pop(L, 1);
    lua_getfield(L, t, "path");
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "request %d: path must be a string", i);
    if (pv->path && lua_rawequal(L, -1, pv->path)) {
      lua_pop(L, 1);
      return pv->url;
    }
    lua_replace(L, pv->path);
    lua_pushstring(L, s->base);
    lua_pushvalue(L, pv->path);
    lua_concat(L, 2);
    return pv->url = anchored(L, anchor, k, &len);
  } else if (lua_type(L, -1) != LUA_TSTRING) {
    luaL_error(L, "request %d: url must be a string", i);
  }
  lua_pushnil(L);               /* a url: the next path is read anew */
  lua_replace(L, pv->path);
  return anchored(L, anchor, k, &len);
}

static size_t count_headers(lua_State *L, int t) {
  size_t n = 0;
  lua_pushliteral(L, "headers");
  lua_rawget(L, t);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      n++;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return n;
}

/* Request table at t (the i-th) into r, its headers into hd (room for
 * cap); returns how many of hd it used (none when its headers table is the
 * previous request's). */
static size_t read_req(lua_State *L, const session *s, int t, int i, int anchor,
                       int *k, ctv_req *r, ctv_header *hd, size_t cap, prev *pv) {
  size_t len;
  r->method = str_field(L, t, "method", anchor, k, &len, i);
  r->url = url_field(L, s, t, anchor, k, i, pv);
  lua_getfield(L, t, "body");
  if (lua_isnil(L, -1)) {
    r->body = NULL;
    r->bodylen = 0;
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    r->body = str_field(L, t, "body", anchor, k, &r->bodylen, i);
  }
  lua_getfield(L, t, "fresh");
  r->fresh = lua_toboolean(L, -1);
  lua_getfield(L, t, "tag");
  r->tag = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0
           && lua_tonumber(L, -1) < 1e9 ? (long)lua_tonumber(L, -1) : -1;
  lua_pop(L, 2);
  r->headers = hd;
  r->nheaders = 0;
  lua_pushliteral(L, "headers");   /* raw, as count_headers read it: no */
  lua_rawget(L, t);                /* metamethod runs between the two */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "request %d: headers must be a table", i);
  if (pv->headers && lua_rawequal(L, -1, pv->headers)) {
    lua_pop(L, 1);
    r->headers = pv->hd;
    r->nheaders = pv->nheaders;
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    ctv_header *h;
    if (r->nheaders == cap)   /* a metamethod grew the table since it was counted */
      luaL_error(L, "request %d: headers changed while being read", i);
    h = &hd[r->nheaders++];
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "request %d: headers must map strings to strings", i);
    h->value = anchored(L, anchor, k, &h->valuelen);
    lua_pushvalue(L, -1);
    h->name = anchored(L, anchor, k, &h->namelen);
  }
  lua_replace(L, pv->headers);     /* the table, kept for the next one */
  pv->hd = hd;
  pv->nheaders = r->nheaders;
  return r->nheaders;
}

/* reqs[1..n] (tables at stack index t) as C requests, kept in userdata. */
static ctv_req *read_reqs(lua_State *L, const session *s, int t, size_t n) {
  ctv_req *reqs;
  ctv_header *hd;
  size_t i, nh = 0;
  int anchor, k = 0;
  prev pv;
  const void *last = NULL;
  for (i = 1; i <= n; i++) {      /* headers tables shared in a row: once */
    lua_rawgeti(L, t, (int)i);
    if (!lua_istable(L, -1)) luaL_error(L, "request %d must be a table", (int)i);
    lua_pushliteral(L, "headers");
    lua_rawget(L, -2);
    if (!lua_istable(L, -1) || lua_topointer(L, -1) != last)
      nh += count_headers(L, lua_gettop(L) - 1);
    last = lua_istable(L, -1) ? lua_topointer(L, -1) : NULL;
    lua_pop(L, 2);
  }
  reqs = (ctv_req *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *reqs, 0);
  hd = (ctv_header *)lua_newuserdatauv(L, (nh ? nh : 1) * sizeof *hd, 0);
  lua_createtable(L, (int)(n * 2 + nh * 2 + 2), 0);
  anchor = lua_gettop(L);
  lua_pushnil(L);                 /* the previous path */
  lua_pushnil(L);                 /* the previous headers table */
  pv.path = anchor + 1;
  pv.headers = anchor + 2;
  pv.url = NULL;
  pv.hd = NULL;
  pv.nheaders = 0;
  for (i = 1; i <= n; i++) {
    size_t used;
    lua_rawgeti(L, t, (int)i);
    used = read_req(L, s, lua_gettop(L), (int)i, anchor, &k, &reqs[i - 1], hd, nh,
                    &pv);
    hd += used;
    nh -= used;
    lua_pop(L, 1);
  }
  return reqs;
}

static int push_res(lua_State *L, const ctv_res *r) {
  if (r->kind) {
    lua_pushnil(L);
    lua_pushstring(L, r->msg);
    lua_pushstring(L, r->kind);
    return 3;
  }
  lua_pushinteger(L, r->status);
  lua_pushlstring(L, r->body, r->len);
  lua_pushinteger(L, r->version);
  return 3;
}

/* Runs reqs on s with the session marked busy; a close() from a callback
 * takes effect here. The result of ctv_http_run. */
static int run(session *s, const ctv_req *reqs, size_t n, int concurrency,
               ctv_done done, void *ud) {
  int rc;
  s->busy = 1;
  rc = ctv_http_run(s->h, reqs, n, concurrency, done, ud);
  s->busy = 0;
  if (s->closing) release(s);
  return rc;
}

static int keep_res(void *ud, size_t i, const ctv_res *r) {
  (void)i;
  *(ctv_res *)ud = *r;
  return 0;
}

/* session:request{method=, url= | path=, headers=, body=, fresh=, tag=}
 *   -> status, body, version | nil, message, kind */
static int l_request(lua_State *L) {
  session *s = check_session(L);
  ctv_req *req;
  ctv_res res;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, 3, 1);
  req = read_reqs(L, s, 3, 1);
  if (run(s, req, 1, 1, keep_res, &res) < 0)
    return luaL_error(L, "request: out of memory");
  return push_res(L, &res);
}

typedef struct many {
  lua_State *L;
  int fn;
} many;

/* Hands one answer to the Lua callback, protected: an error stops the run
 * and is raised once libcurl is out of the way. The callback returns
 * "drop" to have the connection of that answer closed. */
static int on_done(void *ud, size_t i, const ctv_res *r) {
  many *m = (many *)ud;
  int n, next;
  lua_pushvalue(m->L, m->fn);
  lua_pushinteger(m->L, (lua_Integer)i + 1);
  n = push_res(m->L, r);
  if (lua_pcall(m->L, n + 1, 1, 0) != 0) return CTV_STOP;
  next = lua_type(m->L, -1) == LUA_TSTRING
         && strcmp(lua_tostring(m->L, -1), "drop") == 0 ? CTV_DROP : CTV_GO_ON;
  lua_pop(m->L, 1);
  return next;
}

/* session:request_many(reqs, concurrency, on_done)
 * on_done(i, status, body, version) or on_done(i, nil, message, kind), as
 * each request finishes (version: 1 for HTTP/1.x, 2 for HTTP/2); it may
 * return "drop". A request with fresh = true goes out on a new connection;
 * one with a tag (an integer >= 0) never on a kept-alive HTTP/1.x
 * connection whose last request had the same tag. */
static int l_request_many(lua_State *L) {
  session *s = check_session(L);
  int concurrency = (int)luaL_checkinteger(L, 3);
  many m;
  ctv_req *reqs;
  size_t n;
  int rc;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  n = lua_rawlen(L, 2);
  reqs = read_reqs(L, s, 2, n);
  m.L = L;
  m.fn = 4;
  rc = run(s, reqs, n, concurrency, on_done, &m);
  if (rc < 0) return luaL_error(L, "request_many: out of memory");
  if (rc > 0) return lua_error(L);
  return 0;
}

void ctv_open_session(lua_State *L) {
  ctv_class(L, SESSION, meta, methods);
  luaL_setfuncs(L, funcs, 0);
}
