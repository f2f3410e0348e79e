/*
 * http.h: the libcurl transport, no Lua. One ctv_http owns a multi handle,
 * a share handle (DNS, TLS sessions, connections) and a pool of reusable
 * easy handles, so sequential and parallel requests reuse connections.
 */
#ifndef CTVNC_HTTP_H
#define CTVNC_HTTP_H

#include <stddef.h>

/* Internal to the module: only luaopen_ctvnc_core is exported, in every
 * build (LuaRocks passes no -fvisibility=hidden), as LuaSocket does. And a
 * call without a declaration is an error here too, not a warning. */
#if defined(__GNUC__)
#pragma GCC diagnostic error "-Wimplicit-function-declaration"
#pragma GCC visibility push(hidden)
#endif

typedef struct ctv_header {
  const char *name, *value;
  size_t namelen, valuelen;
} ctv_header;

/* A request; the strings must live until ctv_http_run returns. */
typedef struct ctv_req {
  const char *method;        /* "GET", "POST", ... */
  const char *url;
  const char *body;          /* NULL: none */
  size_t bodylen;
  const ctv_header *headers;
  size_t nheaders;
  int fresh;                 /* on a new connection, never a reused one */
  long tag;                  /* >= 0: never sent on a kept-alive HTTP/1.x
                                connection whose last request had the same
                                tag (a new connection then); -1: untagged */
} ctv_req;

/* An answer, or a failure when kind is not NULL. Valid during the done
 * callback only. */
typedef struct ctv_res {
  long status;
  int version;               /* 1: HTTP/1.x, 2: HTTP/2 (a stream of its own) */
  const char *body;
  size_t len;
  const char *kind;          /* "connect", "timeout", "tls", "too_large" */
  const char *msg;           /* libcurl's explanation; never has headers */
} ctv_res;

typedef struct ctv_opts {
  long timeout_ms, connect_timeout_ms;
  int insecure;
  const char *ca_file;       /* copied; NULL: system store */
  size_t max_body;
  int http2;                 /* nonzero: offer HTTP/2 over TLS and multiplex
                                requests on one connection; 0: HTTP/1.1 only */
} ctv_opts;

typedef struct ctv_http ctv_http;

/* The error kind of a CURLcode: "timeout", "tls", "invalid" (a URL
 * libcurl will not take) or "connect" (everything else). */
const char *ctv_curl_kind(int code);

/* Process-wide libcurl initialisation, done once; 0 on success. */
int ctv_http_global_init(void);

/* NULL when out of memory or libcurl refuses. */
ctv_http *ctv_http_new(const ctv_opts *o);
void ctv_http_free(ctv_http *h);

/* What a done callback asks for. */
enum ctv_next {
  CTV_GO_ON = 0,     /* run the rest */
  CTV_STOP,          /* abandon the rest */
  CTV_DROP           /* run the rest, but close the HTTP/1.x connection this
                        answer came on: it was not the answer asked for, so
                        whatever else it holds is suspect (an HTTP/2 one is
                        kept: its streams cannot be mixed up) */
};

/* Called as each request finishes, in completion order; returns an
 * enum ctv_next. */
typedef int (*ctv_done)(void *ud, size_t i, const ctv_res *res);

/* Runs reqs[0..n) with at most `concurrency` in flight, each with its own
 * timeouts; over HTTP/2 they are streams of one connection per server.
 * Returns 0 when all ran, 1 when `done` stopped it, -1 when out of memory
 * or libcurl failed as a whole. */
int ctv_http_run(ctv_http *h, const ctv_req *reqs, size_t n, int concurrency,
                 ctv_done done, void *ud);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
