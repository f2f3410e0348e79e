/*
 * probe.h: is a console endpoint reachable? Non-blocking TCP connects to
 * many host:port pairs at once, bounded by one timeout. No Lua.
 */
#ifndef CTVNC_PROBE_H
#define CTVNC_PROBE_H

#include <stddef.h>

/* Internal to the module: only luaopen_ctvnc_core is exported, in every
 * build (LuaRocks passes no -fvisibility=hidden), as LuaSocket does. And a
 * call without a declaration is an error here too, not a warning. */
#if defined(__GNUC__)
#pragma GCC diagnostic error "-Wimplicit-function-declaration"
#pragma GCC visibility push(hidden)
#endif

typedef struct ctv_probe {
  const char *host;          /* numeric IPv4/IPv6 or a name to resolve */
  unsigned port;
  int ok;                    /* out: connected within the timeout */
  const char *why;           /* out: "connected", "refused", "timeout", ... */
  int fd;                    /* internal */
} ctv_probe;

/* Probes p[0..n) in parallel; returns 0, or -1 when out of memory. */
int ctv_probe_run(ctv_probe *p, size_t n, int timeout_ms);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
