/*
 * lresp.c: the Lua binding of resp.c (Redis replies), opened into
 * ctvnc.core by ctv_open_resp.
 *
 *   core.resp_reader([opts]) -> reader | nil, msg, "invalid"
 *     opts.max_depth (16, 1-64): aggregates nested in one reply;
 *     opts.max_bulk (67108864): longest string; opts.max_elements
 *     (1048576): values in one reply; opts.max_size (67108864): bytes
 *     held at once (the reply being read and what came after it).
 *   reader:feed(bytes)  -> true | nil, msg, "protocol"
 *   reader:read()       -> value | false, message (an error reply)
 *                        | nil, msg, "more" | nil, msg, "protocol"
 *     One whole reply, taken out of the bytes fed. Values: simple,
 *     bulk, verbatim strings and big numbers are strings; integers and
 *     doubles numbers; RESP3 booleans booleans; $-1, *-1 and _ the
 *     light userdata NULL (== ngx.null, cjson.null); arrays, sets, pushes
 *     and maps (flat: key, value, ...) sequences; an error reply inside
 *     an aggregate is { false, message } (as lua-resty-redis). A refused
 *     reply stays refused: the stream cannot be followed past it.
 *   reader:buffered()   -> bytes fed and not read yet
 *   reader:close()      -> frees the buffer; also __gc, __close
 *
 * Messages never quote the bytes they refuse.
 */
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "lctvnc.h"
#include "resp.h"

#define READER "ctvnc.RespReader"
/* An empty buffer larger than this is freed. */
#define KEEP 65536

static int l_resp_reader(lua_State *L);
static int rd_feed(lua_State *L);
static int rd_read(lua_State *L);
static int rd_buffered(lua_State *L);
static int rd_close(lua_State *L);
static int rd_tostring(lua_State *L);

static const luaL_Reg funcs[] = {
  {"resp_reader", l_resp_reader},
  {NULL, NULL}
};

static const luaL_Reg methods[] = {
  {"feed", rd_feed},
  {"read", rd_read},
  {"buffered", rd_buffered},
  {"close", rd_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", rd_close},
  {"__close", rd_close},
  {"__tostring", rd_tostring},
  {NULL, NULL}
};

typedef struct reader {
  unsigned char *buf;   /* bytes buf[start .. len) not read yet */
  size_t start, len, cap;
  size_t max_size;
  ctv_resp_scan scan;   /* the reply at buf + start */
  int open;
  int too_large;        /* max_size was passed: refused for good */
} reader;

static reader *checkreader(lua_State *L) {
  return (reader *)luaL_checkudata(L, 1, READER);
}

static int l_resp_reader(lua_State *L) {
  static const char *const known[] = {"max_depth", "max_bulk",
                                      "max_elements", "max_size", NULL};
  ctv_resp_limits lim;
  double depth, bulk, elements, size;
  int o = 0;
  reader *r;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    o = 1;
    if (!ctv_known_fields(L, o, known))
      return ctv_fail(L, "invalid", "resp_reader: unknown option");
  }
  depth = ctv_opt_size(L, o, "max_depth", 16, 1, CTV_RESP_MAXDEPTH);
  bulk = ctv_opt_size(L, o, "max_bulk", 67108864.0, 0, 2147483647.0);
  elements = ctv_opt_size(L, o, "max_elements", 1048576.0, 1, 2147483647.0);
  size = ctv_opt_size(L, o, "max_size", 67108864.0, 16, 4294967296.0);
  if (depth < 0)
    return ctv_fail(L, "invalid", "resp_reader: max_depth must be an integer 1-%d",
                    CTV_RESP_MAXDEPTH);
  if (bulk < 0 || elements < 0 || size < 0)
    return ctv_fail(L, "invalid", "resp_reader: max_bulk, max_elements and "
                    "max_size must be integers (0-2^31, 1-2^31, 16-2^32)");
  lim.max_depth = (unsigned)depth;
  lim.max_bulk = (uint64_t)bulk;
  lim.max_elements = (uint64_t)elements;
  r = (reader *)lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, READER);
  r->max_size = (size_t)size;
  ctv_resp_scan_init(&r->scan, &lim);
  r->open = 1;
  return 1;
}

static int rd_fail(lua_State *L, const reader *r) {
  if (!r->open) return ctv_fail(L, "protocol", "redis reply: reader closed");
  if (r->too_large)
    return ctv_fail(L, "protocol", "redis reply: more than max_size (%d) bytes",
                    (int)(r->max_size > 2147483647u ? 2147483647u : r->max_size));
  return ctv_fail(L, "protocol", "redis reply: %s",
                  ctv_resp_message(r->scan.result));
}

static int failed(const reader *r) {
  return !r->open || r->too_large
      || (r->scan.result != CTV_RESP_MORE && r->scan.result != CTV_RESP_OK);
}

static int rd_feed(lua_State *L) {
  reader *r = checkreader(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  unsigned char *p;
  if (failed(r)) return rd_fail(L, r);
  if (n > r->max_size - (r->len - r->start)) {
    r->too_large = 1;
    return rd_fail(L, r);
  }
  if (r->len + n > r->cap && r->start > 0) {   /* drop what was read */
    memmove(r->buf, r->buf + r->start, r->len - r->start);
    r->len -= r->start;
    r->start = 0;
  }
  p = (unsigned char *)ctv_grow(r->buf, &r->cap, r->len, n, 1, SIZE_MAX);
  if (p == NULL) return luaL_error(L, "resp reader: out of memory");
  r->buf = p;
  if (n) memcpy(r->buf + r->len, s, n);
  r->len += n;
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes the value at p[0..n) (a whole one: the scan said so); returns
 * its size. *err: set for an error reply at the top (its text pushed). */
static size_t build(lua_State *L, const unsigned char *p, size_t n,
                    const ctv_resp_limits *lim, int *err) {
  ctv_resp_tok t;
  size_t off;
  uint64_t i;
  if (ctv_resp_token(p, n, lim, &t) != CTV_RESP_OK)
    luaL_error(L, "resp reader: reply changed under the scan");
  luaL_checkstack(L, 4, "resp reader: reply nested too deep");
  if (t.null) {
    lua_pushlightuserdata(L, NULL);
  } else if (t.error) {
    if (err) {
      *err = 1;
      lua_pushlstring(L, (const char *)t.str, t.len);
    } else {                  /* { false, message } */
      lua_createtable(L, 2, 0);
      lua_pushboolean(L, 0);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, (const char *)t.str, t.len);
      lua_rawseti(L, -2, 2);
    }
  } else if (t.aggregate) {
    lua_createtable(L, (int)t.count, 0);
    off = t.size;
    for (i = 1; i <= t.count; i++) {
      off += build(L, p + off, n - off, lim, NULL);
      lua_rawseti(L, -2, (int)i);
    }
    return off;
  } else if (t.type == ':') {
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)t.integer);
#else
    lua_pushnumber(L, (lua_Number)t.integer);
#endif
  } else if (t.type == '#') {
    lua_pushboolean(L, (int)t.integer);
  } else if (t.type == ',') {
    lua_pushnumber(L, (lua_Number)t.number);
  } else {
    lua_pushlstring(L, (const char *)t.str, t.len);
  }
  return t.size;
}

static int rd_read(lua_State *L) {
  reader *r = checkreader(L);
  enum ctv_resp_result res;
  ctv_resp_limits lim;
  int err = 0;
  if (failed(r)) return rd_fail(L, r);
  res = ctv_resp_scan_run(&r->scan, r->buf + r->start, r->len - r->start);
  if (res == CTV_RESP_MORE)
    return ctv_fail(L, "more", "redis reply: incomplete");
  if (res != CTV_RESP_OK) return rd_fail(L, r);
  lim = r->scan.lim;
  build(L, r->buf + r->start, r->scan.off, &lim, &err);
  r->start += r->scan.off;
  if (r->start == r->len) {
    r->start = r->len = 0;
    if (r->cap > KEEP) {
      free(r->buf);
      r->buf = NULL;
      r->cap = 0;
    }
  }
  ctv_resp_scan_init(&r->scan, &lim);
  if (!err) return 1;
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int rd_buffered(lua_State *L) {
  reader *r = checkreader(L);
  lua_pushinteger(L, (lua_Integer)(r->len - r->start));
  return 1;
}

static int rd_close(lua_State *L) {
  reader *r = checkreader(L);
  if (r->open) {
    free(r->buf);
    r->buf = NULL;
    r->start = r->len = r->cap = 0;
    r->open = 0;
  }
  return 0;
}

static int rd_tostring(lua_State *L) {
  lua_pushfstring(L, "%s: %p", READER, lua_touserdata(L, 1));
  return 1;
}

void ctv_open_resp(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  ctv_class(L, READER, meta, methods);
}
