/*
 * lctvnc.c: the Lua binding, luaopen_ctvnc_core.
 *
 * Misuse (a wrong Lua type) raises; a bad value returns nil, message, kind.
 * Messages never quote tokens, passwords or the endpoint (it may carry a
 * password in user info).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "http.h"
#include "lsignal.h"
#include "probe.h"
#include "url.h"

#if defined(__GNUC__)
#define CTVNC_API __attribute__((visibility("default")))
#else
#define CTVNC_API
#endif

CTVNC_API int luaopen_ctvnc_core(lua_State *L);

static int fail(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, kind);
  return 3;
}

/* Output that fits here is built on the C stack; longer output goes to a
 * userdata on the Lua stack, so an error can never leak it. */
#define SMALL 512

static char *scratch(lua_State *L, char *small, size_t len) {
  return len <= SMALL ? small : (char *)lua_newuserdatauv(L, len, 0);
}

static int l_encode(lua_State *L) {
  size_t n, len;
  const char *s = luaL_checklstring(L, 1, &n);
  char small[SMALL], *buf;
  len = ctv_encode_len(s, n);
  if (len == n) {
    lua_settop(L, 1);
    return 1;
  }
  buf = scratch(L, small, len);
  ctv_encode(buf, s, n);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* info.<key> as a non-empty string; the value stays on the stack so it
 * cannot be collected while we point into it. */
static const char *field(lua_State *L, int t, const char *key, size_t *len) {
  lua_getfield(L, t, key);
  if (lua_type(L, -1) != LUA_TSTRING) return NULL;
  return lua_tolstring(L, -1, len);
}

/* opts.scheme and opts.port into u; NULL or a message (with %s for the
 * function name). */
static const char *options(lua_State *L, int o, ctv_url *u) {
  if (lua_isnoneornil(L, o)) return NULL;
  luaL_checktype(L, o, LUA_TTABLE);
  lua_getfield(L, o, "scheme");
  if (!lua_isnil(L, -1)) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(s, "wss") == 0) u->scheme = "wss";
    else if (strcmp(s, "ws") == 0) u->scheme = "ws";
    else return "%s: opts.scheme must be \"ws\" or \"wss\"";
  }
  lua_getfield(L, o, "port");
  if (!lua_isnil(L, -1)) {
    lua_Number p = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (!(p >= 1 && p <= 65535 && p == (lua_Number)(unsigned)p))
      return "%s: opts.port must be an integer 1-65535";
    u->port = (unsigned)p;
  }
  lua_pop(L, 2);
  return NULL;
}

static int push_url(lua_State *L, const ctv_url *u) {
  char small[SMALL], *buf = small;
  size_t len;
  if (ctv_url_bound(u) <= SMALL) {            /* one pass, most URLs */
    len = (size_t)(ctv_url_write(small, u) - small);
  } else {
    len = ctv_url_len(u);
    buf = scratch(L, small, len);
    ctv_url_write(buf, u);
  }
  lua_pushlstring(L, buf, len);
  return 1;
}

/* Adds the query parameter `name` from info.<key>; NULL or a message. */
static const char *param(lua_State *L, int t, ctv_url *u, const char *name,
                         const char *key) {
  ctv_param *p = &u->params[u->nparams++];
  p->name = name;
  p->value = field(L, t, key, &p->valuelen);
  if (!p->value || p->valuelen == 0) return key;
  return NULL;
}

/* The three parameters in the order of `names`, the last being the host
 * (checked to be one), then the options, then the URL. */
static int build(lua_State *L, const char *fn, int info, int opts, ctv_url *u,
                 const char *const names[3][2]) {
  int i;
  const char *bad, *err;
  const ctv_param *host = &u->params[2];
  for (i = 0; i < 3; i++) {
    if ((bad = param(L, info, u, names[i][0], names[i][1])) != NULL)
      return fail(L, "invalid", "%s: info.%s must be a non-empty string", fn,
                  bad);
  }
  if (ctv_host_kind(host->value, host->valuelen) == CTV_HOST_BAD)
    return fail(L, "invalid", "%s: info.host_ip is not a valid IPv4, IPv6 "
                "or host name", fn);
  if ((err = options(L, opts, u)) != NULL) return fail(L, "invalid", err, fn);
  return push_url(L, u);
}

static const char *const DIRECT[3][2] = {
  {"uuid", "vm_uuid"}, {"token", "raw_token"}, {"host", "host_ip"}
};
static const char *const PROXY[3][2] = {
  {"token", "token"}, {"uuid", "vm_uuid"}, {"host", "host_ip"}
};

static int l_direct_url(lua_State *L) {
  ctv_url u;
  size_t n;
  const char *s;
  enum ctv_host kind;
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  luaL_checkstack(L, 8, NULL);
  memset(&u, 0, sizeof u);
  u.scheme = "wss";
  s = field(L, 1, "cluster_ip", &n);
  if (!s || n == 0)
    return fail(L, "invalid", "%s: info.cluster_ip must be a non-empty string",
                "direct_url");
  if (n > 2 && s[0] == '[' && s[n - 1] == ']') {
    s++;
    n -= 2;
    kind = ctv_host_kind(s, n) == CTV_HOST_IPV6 ? CTV_HOST_IPV6 : CTV_HOST_BAD;
  } else {
    kind = ctv_host_kind(s, n);
  }
  if (kind == CTV_HOST_BAD)
    return fail(L, "invalid", "%s: info.cluster_ip is not a valid IPv4, IPv6 "
                "or host name", "direct_url");
  u.host = s;
  u.hostlen = n;
  u.ipv6 = kind == CTV_HOST_IPV6;
  return build(L, "direct_url", 1, 2, &u, DIRECT);
}

static int l_proxy_url(lua_State *L) {
  ctv_url u;
  ctv_endpoint ep;
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  luaL_checkstack(L, 8, NULL);
  if ((err = ctv_parse_endpoint(s, n, &ep)) != NULL)
    return fail(L, "invalid", "proxy_url: %s", err);
  ctv_url_from_endpoint(&u, &ep);
  return build(L, "proxy_url", 2, 3, &u, PROXY);
}

/* ---- HTTP sessions: userdata owning a ctv_http ------------------------ */

#define SESSION "ctvnc.Session"

typedef struct session {
  ctv_http *h;
} session;

static session *check_session(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION);
  if (!s->h) luaL_argerror(L, 1, "session is closed");
  return s;
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

/* core.session{timeout=, connect_timeout=, insecure=, ca_file=, max_body=} */
static int l_session(lua_State *L) {
  ctv_opts o;
  session *s;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  o.timeout_ms = (long)(num_opt(L, 1, "timeout", 10) * 1000);
  o.connect_timeout_ms = (long)(num_opt(L, 1, "connect_timeout", 5) * 1000);
  o.max_body = (size_t)num_opt(L, 1, "max_body", 1048576);
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "ca_file");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "session: ca_file must be a string");
  o.ca_file = lua_tostring(L, -1);
  s = (session *)lua_newuserdatauv(L, sizeof *s, 0);
  s->h = NULL;
  luaL_setmetatable(L, SESSION);
  if (ctv_http_global_init() != 0 || (s->h = ctv_http_new(&o)) == NULL)
    return luaL_error(L, "session: libcurl could not be initialised");
  return 1;
}

/* __gc, __close and :close() */
static int l_close(lua_State *L) {
  session *s = (session *)luaL_checkudata(L, 1, SESSION);
  ctv_http_free(s->h);
  s->h = NULL;
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
  if (lua_isnil(L, -1) && strcmp(key, "body") == 0) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "request %d: %s must be a string", i, key);
  return anchored(L, anchor, k, len);
}

static size_t count_headers(lua_State *L, int t) {
  size_t n = 0;
  lua_getfield(L, t, "headers");
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

/* Request table at t (the i-th) into r, its headers into hd. */
static void read_req(lua_State *L, int t, int i, int anchor, int *k,
                     ctv_req *r, ctv_header *hd) {
  size_t len;
  r->method = str_field(L, t, "method", anchor, k, &len, i);
  r->url = str_field(L, t, "url", anchor, k, &len, i);
  r->body = str_field(L, t, "body", anchor, k, &r->bodylen, i);
  r->headers = hd;
  r->nheaders = 0;
  lua_getfield(L, t, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "request %d: headers must be a table", i);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    ctv_header *h = &hd[r->nheaders++];
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "request %d: headers must map strings to strings", i);
    h->value = anchored(L, anchor, k, &h->valuelen);
    lua_pushvalue(L, -1);
    h->name = anchored(L, anchor, k, &h->namelen);
  }
  lua_pop(L, 1);
}

/* reqs[1..n] (tables at stack index t) as C requests, kept in userdata. */
static ctv_req *read_reqs(lua_State *L, int t, size_t n) {
  ctv_req *reqs;
  ctv_header *hd;
  size_t i, nh = 0;
  int anchor, k = 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (int)i);
    if (!lua_istable(L, -1)) luaL_error(L, "request %d must be a table", (int)i);
    nh += count_headers(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  reqs = (ctv_req *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *reqs, 0);
  hd = (ctv_header *)lua_newuserdatauv(L, (nh ? nh : 1) * sizeof *hd, 0);
  lua_createtable(L, (int)(n * 4 + nh * 2), 0);
  anchor = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (int)i);
    read_req(L, lua_gettop(L), (int)i, anchor, &k, &reqs[i - 1], hd);
    hd += reqs[i - 1].nheaders;
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
  return 2;
}

static int keep_res(void *ud, size_t i, const ctv_res *r) {
  (void)i;
  *(ctv_res *)ud = *r;
  return 0;
}

/* session:request{method=, url=, headers=, body=}
 *   -> status, body | nil, message, kind */
static int l_request(lua_State *L) {
  session *s = check_session(L);
  ctv_req *req;
  ctv_res res;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, 3, 1);
  req = read_reqs(L, 3, 1);
  if (ctv_http_run(s->h, req, 1, 1, keep_res, &res) < 0)
    return luaL_error(L, "request: out of memory");
  return push_res(L, &res);
}

typedef struct many {
  lua_State *L;
  int fn;
} many;

/* Hands one answer to the Lua callback, protected: an error stops the run
 * and is raised once libcurl is out of the way. */
static int on_done(void *ud, size_t i, const ctv_res *r) {
  many *m = (many *)ud;
  int n;
  lua_pushvalue(m->L, m->fn);
  lua_pushinteger(m->L, (lua_Integer)i + 1);
  n = push_res(m->L, r);
  return lua_pcall(m->L, n + 1, 0, 0) != 0;
}

/* session:request_many(reqs, concurrency, on_done)
 * on_done(i, status, body) or on_done(i, nil, message, kind), as each
 * request finishes. */
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
  reqs = read_reqs(L, 2, n);
  m.L = L;
  m.fn = 4;
  rc = ctv_http_run(s->h, reqs, n, concurrency, on_done, &m);
  if (rc < 0) return luaL_error(L, "request_many: out of memory");
  if (rc > 0) return lua_error(L);
  return 0;
}

/* core.probe(targets, timeout) -> oks, whys
 * targets: array of {host, port}; oks[i] true when a TCP connect to it
 * succeeded within timeout seconds, whys[i] the reason. */
static int l_probe(lua_State *L) {
  size_t n, i;
  ctv_probe *p;
  lua_Number t;
  luaL_checktype(L, 1, LUA_TTABLE);
  t = luaL_checknumber(L, 2);
  n = lua_rawlen(L, 1);
  p = (ctv_probe *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *p, 0);
  luaL_checkstack(L, (int)(n + 4), "too many probe targets");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    luaL_argcheck(L, lua_istable(L, -1), 1, "targets must be {host, port} tables");
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING
                  && lua_type(L, -1) == LUA_TNUMBER, 1,
                  "targets must be {host, port} tables");
    p[i].host = lua_tostring(L, -2);
    p[i].port = (unsigned)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_remove(L, -2);          /* keep the host string on the stack */
  }
  if (ctv_probe_run(p, n, t > 0 ? (int)(t * 1000) : 0) != 0)
    return luaL_error(L, "probe: out of memory");
  lua_createtable(L, (int)n, 0);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushboolean(L, p[i].ok);
    lua_rawseti(L, -3, (int)i + 1);
    lua_pushstring(L, p[i].why);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 2;
}

static const luaL_Reg session_methods[] = {
  {"request", l_request},
  {"request_many", l_request_many},
  {"close", l_close},
  {NULL, NULL}
};

static const luaL_Reg session_meta[] = {
  {"__gc", l_close},
  {"__close", l_close},
  {"__tostring", l_tostring},
  {NULL, NULL}
};

/* core.endpoint(s) -> {scheme=, host=, port=, prefix=, ipv6=}
 *                   | nil, message, "invalid" */
static int l_endpoint(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  ctv_endpoint ep;
  if ((err = ctv_parse_endpoint(s, n, &ep)) != NULL)
    return fail(L, "invalid", "%s", err);
  lua_createtable(L, 0, 5);
  if (ep.scheme != CTV_SCHEME_NONE) {
    lua_pushstring(L, ep.scheme == CTV_SCHEME_HTTP ? "http" : "https");
    lua_setfield(L, -2, "scheme");
  }
  lua_pushlstring(L, ep.host, ep.hostlen);
  lua_setfield(L, -2, "host");
  if (ep.port) {
    lua_pushinteger(L, (lua_Integer)ep.port);
    lua_setfield(L, -2, "port");
  }
  lua_pushlstring(L, ep.prefix, ep.prefixlen);
  lua_setfield(L, -2, "prefix");
  lua_pushboolean(L, ep.ipv6);
  lua_setfield(L, -2, "ipv6");
  return 1;
}

/* core.host_kind(s) -> "ipv4" | "ipv6" | "name" | nil */
static int l_host_kind(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  static const char *const names[] = {NULL, "ipv4", "ipv6", "name"};
  const char *k = names[ctv_host_kind(s, n)];
  if (k) lua_pushstring(L, k);
  else lua_pushnil(L);
  return 1;
}

/* core.sleep(seconds): blocks; not for nginx workers (ctvnc.resty). */
static int l_sleep(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  struct timespec ts;
  if (t <= 0) return 0;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

/* core.now() -> seconds on a monotonic clock */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"encode_uri_component", l_encode},
  {"direct_url", l_direct_url},
  {"proxy_url", l_proxy_url},
  {"session", l_session},
  {"probe", l_probe},
  {"endpoint", l_endpoint},
  {"host_kind", l_host_kind},
  {"sleep", l_sleep},
  {"now", l_now},
  {NULL, NULL}
};

CTVNC_API int luaopen_ctvnc_core(lua_State *L) {
  if (luaL_newmetatable(L, SESSION)) {
    luaL_setfuncs(L, session_meta, 0);
    luaL_newlib(L, session_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  ctv_open_signal(L);
  return 1;
}
