/*
 * lsys.c: what a runtime needs from the system besides HTTP: the TCP
 * reachability probe (probe.c), a blocking sleep, a monotonic clock and
 * the module's one source of random bytes (getrandom(2)).
 *
 *   core.random_bytes(n) -> string | nil, msg, "system"
 *     n (0-1024) bytes from getrandom(2), for tickets, nonces, session
 *     ids, keys. No other source, never a weaker one: when the kernel
 *     gives none the caller gets the failure.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lctvnc.h"
#include "probe.h"

#define RANDOM_MAX 1024

static int l_probe(lua_State *L);
static int l_sleep(lua_State *L);
static int l_now(lua_State *L);
static int l_random_bytes(lua_State *L);

static const luaL_Reg funcs[] = {
  {"probe", l_probe},
  {"sleep", l_sleep},
  {"now", l_now},
  {"random_bytes", l_random_bytes},
  {NULL, NULL}
};

int ctv_random(void *ud, unsigned char *buf, size_t n) {
  size_t got = 0;
  (void)ud;
  while (got < n) {
    ssize_t r = getrandom(buf + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;
      return -1;
    }
    got += (size_t)r;            /* a short read: ask for the rest */
  }
  return 0;
}

/* core.random_bytes(n) -> string | nil, msg, "system" */
static int l_random_bytes(lua_State *L) {
  unsigned char buf[RANDOM_MAX];
  lua_Number x = luaL_checknumber(L, 1);
  size_t n;
  int ok;
  luaL_argcheck(L, x >= 0 && x <= RANDOM_MAX && x == (lua_Number)(size_t)x, 1,
                "an integer from 0 to 1024");
  n = (size_t)x;
  ok = ctv_random(NULL, buf, n) == 0;
  if (ok) lua_pushlstring(L, (const char *)buf, n);
  memset(buf, 0, sizeof buf);
  if (!ok) return ctv_fail(L, "system", "no random bytes: %s", strerror(errno));
  return 1;
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

void ctv_open_sys(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
}
