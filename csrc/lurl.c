/*
 * lurl.c: percent-encoding, console URLs, endpoints, host kinds and the
 * one validator of console options. The byte work is url.c's.
 */
#include <string.h>

#include "lctvnc.h"
#include "url.h"

static int l_encode(lua_State *L);
static int l_direct_url(lua_State *L);
static int l_proxy_url(lua_State *L);
static int l_endpoint(lua_State *L);
static int l_host_kind(lua_State *L);
static int l_check_options(lua_State *L);
static int l_ep_base(lua_State *L);
static int l_ep_tostring(lua_State *L);

static const luaL_Reg funcs[] = {
  {"encode_uri_component", l_encode},
  {"direct_url", l_direct_url},
  {"proxy_url", l_proxy_url},
  {"endpoint", l_endpoint},
  {"host_kind", l_host_kind},
  {"check_options", l_check_options},
  {NULL, NULL}
};

static const luaL_Reg ep_meta[] = {
  {"__tostring", l_ep_tostring},
  {NULL, NULL}
};

static const luaL_Reg ep_methods[] = {
  {"base", l_ep_base},
  {NULL, NULL}
};

#define ENDPOINT "ctvnc.Endpoint"

/* A parsed endpoint; ep points into s, which lives as long as it does. */
typedef struct endpoint {
  ctv_endpoint ep;
  size_t len;
  char s[];
} endpoint;

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

/* t.<key> as a string, or NULL; the value stays on the stack so it cannot
 * be collected while we point into it. */
static const char *field(lua_State *L, int t, const char *key, size_t *len) {
  lua_getfield(L, t, key);
  if (lua_type(L, -1) != LUA_TSTRING) return NULL;
  return lua_tolstring(L, -1, len);
}

static int is_port(lua_State *L, int i) {
  lua_Number p = lua_type(L, i) == LUA_TNUMBER ? lua_tonumber(L, i) : 0;
  return p >= 1 && p <= 65535 && p == (lua_Number)(unsigned)p;
}

static int is_seconds(lua_State *L, int i) {
  lua_Number v = lua_type(L, i) == LUA_TNUMBER ? lua_tonumber(L, i) : -1;
  return v >= 0 && v == v;
}

/* The options of console URLs: scheme and port for every URL (into u when
 * given), and with `console` also mode and the probe's. NULL, or a message
 * with %s for the function name. One wording per rule, for every caller. */
static const char *options(lua_State *L, int o, ctv_url *u, int console) {
  const char *s;
  int top = lua_gettop(L);
  if (lua_isnoneornil(L, o)) return NULL;
  luaL_checktype(L, o, LUA_TTABLE);
  lua_getfield(L, o, "scheme");
  if (!lua_isnil(L, -1)) {
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(s, "wss") != 0 && strcmp(s, "ws") != 0)
      return "%s: opts.scheme must be \"ws\" or \"wss\"";
    if (u) u->scheme = s[2] ? "wss" : "ws";
  }
  lua_getfield(L, o, "port");
  if (!lua_isnil(L, -1)) {
    if (!is_port(L, -1)) return "%s: opts.port must be an integer 1-65535";
    if (u) u->port = (unsigned)lua_tonumber(L, -1);
  }
  if (console) {
    lua_getfield(L, o, "mode");
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (!lua_isnil(L, -1) && strcmp(s, "auto") != 0 && strcmp(s, "direct") != 0
        && strcmp(s, "proxy") != 0)
      return "%s: opts.mode must be \"direct\", \"proxy\" or \"auto\"";
    lua_getfield(L, o, "probe_timeout");
    if (!lua_isnil(L, -1) && !is_seconds(L, -1))
      return "%s: opts.probe_timeout must be a number >= 0";
    lua_getfield(L, o, "probe_ttl");
    if (!lua_isnil(L, -1) && !is_seconds(L, -1))
      return "%s: opts.probe_ttl must be a number >= 0";
    lua_getfield(L, o, "probe");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TFUNCTION
        && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "rfb") == 0))
      return "%s: opts.probe must be a function or \"rfb\"";
  }
  lua_settop(L, top);
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

/* The parameters of `layout` from the info table, the last being the host
 * (checked to be one), then the options, then the URL. */
static int build(lua_State *L, const char *fn, int info, int opts, ctv_url *u,
                 ctv_layout layout) {
  int i;
  const char *err;
  const ctv_param *host = &u->params[2];
  for (i = 0; i < 3; i++) {
    const ctv_field *f = &ctv_layouts[layout][i];
    ctv_param *p = &u->params[u->nparams++];
    p->name = f->param;
    p->value = field(L, info, f->key, &p->valuelen);
    if (!p->value || p->valuelen == 0)
      return ctv_fail(L, "invalid", "%s: info.%s must be a non-empty string",
                      fn, f->key);
  }
  if (ctv_host_kind(host->value, host->valuelen) == CTV_HOST_BAD)
    return ctv_fail(L, "invalid", "%s: info.host_ip is not a valid IPv4, IPv6 "
                    "or host name", fn);
  if ((err = options(L, opts, u, 0)) != NULL)
    return ctv_fail(L, "invalid", err, fn);
  return push_url(L, u);
}

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
    return ctv_fail(L, "invalid", "%s: info.cluster_ip must be a non-empty "
                    "string", "direct_url");
  if ((kind = ctv_cluster_host(&s, &n)) == CTV_HOST_BAD)
    return ctv_fail(L, "invalid", "%s: info.cluster_ip is not a valid IPv4, "
                    "IPv6 or host name", "direct_url");
  u.host = s;
  u.hostlen = n;
  u.ipv6 = kind == CTV_HOST_IPV6;
  return build(L, "direct_url", 1, 2, &u, CTV_DIRECT);
}

/* proxy_url(endpoint, info [, opts]): endpoint is a string or an
 * ctvnc.Endpoint (parsed once by a client); opts.raw_token = true builds
 * the link of towers from before the token field. */
static int l_proxy_url(lua_State *L) {
  ctv_url u;
  ctv_endpoint parsed;
  const ctv_endpoint *ep = &parsed;
  const char *err;
  int raw = 0;
  if (lua_type(L, 1) == LUA_TUSERDATA) {
    ep = &((endpoint *)luaL_checkudata(L, 1, ENDPOINT))->ep;
  } else {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if ((err = ctv_parse_endpoint(s, n, &parsed)) != NULL)
      return ctv_fail(L, "invalid", "proxy_url: %s", err);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "raw_token");
    raw = lua_toboolean(L, -1);
  }
  lua_settop(L, 3);
  luaL_checkstack(L, 8, NULL);
  ctv_url_from_endpoint(&u, ep);
  return build(L, "proxy_url", 2, 3, &u, raw ? CTV_PROXY_RAW : CTV_PROXY);
}

/* core.endpoint(s) -> ctvnc.Endpoint | nil, message, "invalid" */
static int l_endpoint(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n), *err;
  endpoint *e = (endpoint *)lua_newuserdatauv(L, sizeof *e + n + 1, 0);
  memcpy(e->s, s, n);
  e->s[n] = '\0';
  e->len = n;
  if ((err = ctv_parse_endpoint(e->s, n, &e->ep)) != NULL)
    return ctv_fail(L, "invalid", "%s", err);
  luaL_setmetatable(L, ENDPOINT);
  return 1;
}

/* ep:base() -> "<http|https>://<host>[:port]<prefix>": where the API is. */
static int l_ep_base(lua_State *L) {
  const ctv_endpoint *ep = &((endpoint *)luaL_checkudata(L, 1, ENDPOINT))->ep;
  int ipv6 = ep->ipv6;
  lua_pushstring(L, ep->scheme == CTV_SCHEME_HTTP ? "http://" : "https://");
  lua_pushstring(L, ipv6 ? "[" : "");
  lua_pushlstring(L, ep->host, ep->hostlen);
  lua_pushstring(L, ipv6 ? "]" : "");
  if (ep->port) lua_pushfstring(L, ":%d", (int)ep->port);
  else lua_pushliteral(L, "");
  lua_pushlstring(L, ep->prefix, ep->prefixlen);
  lua_concat(L, 6);
  return 1;
}

static int l_ep_tostring(lua_State *L) {
  lua_pushfstring(L, ENDPOINT ": %p", luaL_checkudata(L, 1, ENDPOINT));
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

/* core.check_options(fname, opts) -> true | nil, message, "invalid":
 * mode, scheme, port, probe_timeout, probe_ttl and probe. */
static int l_check_options(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1), *err;
  if ((err = options(L, 2, NULL, 1)) != NULL)
    return ctv_fail(L, "invalid", err, fn);
  lua_pushboolean(L, 1);
  return 1;
}

void ctv_open_url(lua_State *L) {
  ctv_class(L, ENDPOINT, ep_meta, ep_methods);
  luaL_setfuncs(L, funcs, 0);
}
