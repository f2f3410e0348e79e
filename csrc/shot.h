/*
 * shot.h: screenshots over websockets, many at once, no Lua. Each job is a
 * console websocket URL (ws:// or wss://): libcurl connects in connect-only
 * mode (TLS verified unless insecure, the same options as every request),
 * then wsc.c's handshake, frames.c's frames and rfb.c's client run over
 * curl_easy_send/recv until one frame is whole, and png.c encodes it.
 */
#ifndef CTVNC_SHOT_H
#define CTVNC_SHOT_H

#include <stddef.h>
#include <stdint.h>

#include "frames.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* How far a job got, in order; times[] holds when each was reached. */
enum ctv_shot_stage {
  CTV_SHOT_NONE = 0,
  CTV_SHOT_TCP,         /* connected */
  CTV_SHOT_TLS,         /* TLS handshake done (wss only) */
  CTV_SHOT_WEBSOCKET,   /* 101 with a good Sec-WebSocket-Accept */
  CTV_SHOT_RFB,         /* the server's RFB ProtocolVersion */
  CTV_SHOT_FRAME,       /* a whole framebuffer update */
  CTV_SHOT_STAGES
};

typedef struct ctv_shot_opts {
  long timeout_ms;          /* a whole job */
  long connect_timeout_ms;
  int insecure;
  const char *ca_file;      /* NULL: the system store */
} ctv_shot_opts;

typedef struct ctv_shot_job {
  const char *url;          /* ws:// or wss://, from direct_url/proxy_url */
  const char *password;     /* VNC password or NULL */
  size_t passlen;
  unsigned width;           /* scale down to this width; 0: full size */
  uint64_t max_pixels;      /* 0: rfb.c's default */
  int banner_only;          /* stop at the RFB banner (probe = "rfb") */
  long timeout_ms;          /* the whole job; 0: the runner's */
} ctv_shot_job;

/* A result, valid during the done callback only. */
typedef struct ctv_shot_res {
  const char *kind;         /* NULL: success; else "connect", "timeout",
                               "tls", "http", "auth", "rfb", "invalid" */
  const char *msg;          /* one line, no control characters */
  int status;               /* the handshake's HTTP status, 0 if none */
  const unsigned char *png; /* NULL with banner_only */
  size_t pnglen;
  unsigned width, height;   /* of the PNG */
  unsigned fb_width, fb_height;
  const char *name;         /* the desktop name, cleaned */
  int version;              /* RFB minor version spoken (3, 7, 8) */
  int stage;                /* enum ctv_shot_stage reached */
  double times[CTV_SHOT_STAGES];  /* seconds from the job's start */
} ctv_shot_res;

/* Returns nonzero to stop the run. */
typedef int (*ctv_shot_done)(void *ud, size_t i, const ctv_shot_res *r);

typedef struct ctv_shots ctv_shots;

/* A runner: its multi and share handles (DNS, TLS sessions) live as long
 * as it does. NULL when out of memory. */
ctv_shots *ctv_shots_new(const ctv_shot_opts *o);
void ctv_shots_free(ctv_shots *s);

/* Runs jobs[0..n) with at most `concurrency` at once; `done` as each one
 * ends. 0: all ran; 1: done stopped it; -1: out of memory. */
int ctv_shots_run(ctv_shots *s, const ctv_shot_job *jobs, size_t n,
                  int concurrency, ctv_random_fn random, void *random_ud,
                  ctv_shot_done done, void *ud);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
