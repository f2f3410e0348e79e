/*
 * shot.c: see shot.h. A job goes through its phases:
 *   CONNECT  libcurl connects (CURLOPT_CONNECT_ONLY) inside the multi
 *            handle; the easy handle stays there until the job ends, since
 *            removing a connect-only handle closes its connection
 *   OPENING  the upgrade request goes out, the answer comes in
 *   RFB      frames in, RFB bytes to rfb.c, its answers out in masked frames
 * and curl_multi_poll waits on libcurl's sockets and on the jobs' own.
 */
#define _POSIX_C_SOURCE 200809L
#include "shot.h"

#include <curl/curl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grow.h"
#include "http.h"
#include "png.h"
#include "rfb.h"
#include "wsc.h"

#define MAX_FRAME ((uint64_t)1 << 30)   /* a server frame's payload */

enum phase { P_IDLE = 0, P_CONNECT, P_OPENING, P_RFB };

typedef struct job {
  CURL *easy;
  int phase;
  size_t index;
  const ctv_shot_job *spec;
  curl_socket_t fd;
  double t0, deadline;
  ctv_shot_res res;
  char key[25];
  char host[300];
  unsigned char *send;        /* bytes to send: the request, then frames */
  size_t sendlen, sendoff, sendcap;
  unsigned char in[16384];    /* the handshake answer as it arrives */
  size_t inlen;
  ctv_ws_decoder dec;
  ctv_rfbc rfb;
  int rfb_open;               /* rfb is initialised */
  char msg[256];
  char err[CURL_ERROR_SIZE];
} job;

struct ctv_shots {
  CURLM *multi;
  CURLSH *share;
  ctv_shot_opts o;
  char *ca_file;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

ctv_shots *ctv_shots_new(const ctv_shot_opts *o) {
  ctv_shots *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->o = *o;
  s->o.ca_file = NULL;
  if (o->ca_file && (s->ca_file = malloc(strlen(o->ca_file) + 1)) != NULL) {
    strcpy(s->ca_file, o->ca_file);
    s->o.ca_file = s->ca_file;
  }
  s->multi = curl_multi_init();
  s->share = curl_share_init();
  if (!s->multi || !s->share || (o->ca_file && !s->ca_file)) {
    ctv_shots_free(s);
    return NULL;
  }
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  return s;
}

void ctv_shots_free(ctv_shots *s) {
  if (!s) return;
  if (s->multi) curl_multi_cleanup(s->multi);
  if (s->share) curl_share_cleanup(s->share);
  free(s->ca_file);
  free(s);
}

/* ---- one job ---------------------------------------------------------- */

/* Ends the job's connection (idempotent). */
static void disconnect(ctv_shots *s, job *j) {
  if (j->easy) {
    curl_multi_remove_handle(s->multi, j->easy);
    curl_easy_cleanup(j->easy);
  }
  j->easy = NULL;
}

/* Ends the job's connection and frees what it holds; the result stays. */
static void release(ctv_shots *s, job *j) {
  disconnect(s, j);
  if (j->rfb_open) ctv_rfbc_free(&j->rfb);
  j->rfb_open = 0;
  free(j->send);
  j->send = NULL;
  j->sendlen = j->sendoff = j->sendcap = 0;
  j->phase = P_IDLE;
}

static void failed(job *j, const char *kind, const char *fmt, const char *arg) {
  size_t i;
  j->res.kind = kind;
  snprintf(j->msg, sizeof j->msg, fmt, arg ? arg : "");
  for (i = 0; j->msg[i]; i++)
    if ((unsigned char)j->msg[i] < 0x20 || j->msg[i] == 0x7f) j->msg[i] = ' ';
  j->res.msg = j->msg;
}

static void reached(job *j, int stage) {
  if (j->res.stage < stage) {
    j->res.stage = stage;
    j->res.times[stage] = now() - j->t0;
  }
}

/* libcurl closes a socket whose TLS handshake failed without timing its TCP
 * connect (CURLINFO_CONNECT_TIME_T stays 0): a socket with a peer at close
 * was connected, so the job got as far as tcp (its time unknown, left 0). */
static int on_close(void *clientp, curl_socket_t fd) {
  job *j = clientp;
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  if (j->res.stage < CTV_SHOT_TCP && getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
    j->res.stage = CTV_SHOT_TCP;
  return close(fd);
}

static int queue(job *j, const unsigned char *p, size_t n) {
  unsigned char *q = ctv_grow(j->send, &j->sendcap, j->sendlen, n, 1, (size_t)-1);
  if (!q) return -1;
  j->send = q;
  memcpy(j->send + j->sendlen, p, n);
  j->sendlen += n;
  return 0;
}

/* One masked frame of p[0..n) (n <= 125 + a few: RFB client messages). */
static int queue_frame(job *j, int opcode, const unsigned char *p, size_t n,
                       ctv_random_fn random, void *rud) {
  unsigned char hdr[CTV_WS_MAXHEADER], key[4], body[256];
  size_t h;
  if (n > sizeof body || random(rud, key, 4) != 0) return -1;
  h = ctv_ws_write_header(hdr, 1, opcode, n, key);
  ctv_ws_mask(body, p, n, key, 0);
  return queue(j, hdr, h) || queue(j, body, n) ? -1 : 0;
}

/* Starts job j: its easy handle into the multi. 0, or -1 (out of memory;
 * a bad URL fails the job alone). */
static int start(ctv_shots *s, job *j, const ctv_shot_job *spec, size_t i) {
  const char *u = spec->url, *rest;
  char url[2048];
  int tls;
  size_t hl;
  long timeout;
  memset(&j->res, 0, sizeof j->res);
  j->index = i;
  j->spec = spec;
  j->inlen = 0;
  j->fd = CURL_SOCKET_BAD;
  j->t0 = now();
  timeout = spec->timeout_ms ? spec->timeout_ms : s->o.timeout_ms;
  j->deadline = j->t0 + timeout / 1000.0;
  tls = strncmp(u, "wss://", 6) == 0;
  if (!tls && strncmp(u, "ws://", 5) != 0) {
    failed(j, "invalid", "the console URL is not ws:// or wss://%s", NULL);
    return 0;
  }
  rest = u + (tls ? 6 : 5);
  hl = strcspn(rest, "/");
  if (hl == 0 || hl >= sizeof j->host || rest[hl] != '/'
      || snprintf(url, sizeof url, "%s://%.*s/", tls ? "https" : "http", (int)hl, rest)
         >= (int)sizeof url) {
    failed(j, "invalid", "the console URL has no host and path%s", NULL);
    return 0;
  }
  memcpy(j->host, rest, hl);
  j->host[hl] = '\0';
  if ((j->easy = curl_easy_init()) == NULL) return -1;
  curl_easy_setopt(j->easy, CURLOPT_URL, url);
  curl_easy_setopt(j->easy, CURLOPT_CONNECT_ONLY, 1L);
  /* ALPN must offer http/1.1 alone: the upgrade is an HTTP/1.1 request */
  curl_easy_setopt(j->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  /* through an HTTP proxy (http_proxy and the like), a CONNECT tunnel for
   * ws:// too: the upgrade must reach the console, not the proxy */
  curl_easy_setopt(j->easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
  curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(j->easy, CURLOPT_SHARE, s->share);
  curl_easy_setopt(j->easy, CURLOPT_PRIVATE, (void *)j);
  curl_easy_setopt(j->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close);
  curl_easy_setopt(j->easy, CURLOPT_CLOSESOCKETDATA, (void *)j);
  curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->err);
  curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, s->o.connect_timeout_ms < timeout
                   ? s->o.connect_timeout_ms : timeout);
  curl_easy_setopt(j->easy, CURLOPT_SSL_VERIFYPEER, s->o.insecure ? 0L : 1L);
  curl_easy_setopt(j->easy, CURLOPT_SSL_VERIFYHOST, s->o.insecure ? 0L : 2L);
  if (s->o.ca_file) curl_easy_setopt(j->easy, CURLOPT_CAINFO, s->o.ca_file);
  j->err[0] = '\0';
  if (curl_multi_add_handle(s->multi, j->easy) != CURLM_OK) {
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    return -1;
  }
  j->phase = P_CONNECT;
  return 0;
}

/* The connection is up: the upgrade request. */
static int connected(job *j, CURLcode rc, ctv_random_fn random, void *rud) {
  unsigned char nonce[16];
  char req[2600];
  const char *path = strchr(j->spec->url + 6, '/');
  curl_off_t t = 0;
  size_t n;
  if (rc != CURLE_OK) {
    failed(j, ctv_curl_kind(rc), "%s", j->err[0] ? j->err : curl_easy_strerror(rc));
    return 0;
  }
  j->res.stage = CTV_SHOT_TCP;
  if (curl_easy_getinfo(j->easy, CURLINFO_CONNECT_TIME_T, &t) == CURLE_OK)
    j->res.times[CTV_SHOT_TCP] = t / 1e6;
  if (strncmp(j->spec->url, "wss", 3) == 0) {
    j->res.stage = CTV_SHOT_TLS;
    if (curl_easy_getinfo(j->easy, CURLINFO_APPCONNECT_TIME_T, &t) == CURLE_OK)
      j->res.times[CTV_SHOT_TLS] = t / 1e6;
  }
  if (curl_easy_getinfo(j->easy, CURLINFO_ACTIVESOCKET, &j->fd) != CURLE_OK
      || j->fd == CURL_SOCKET_BAD) {
    failed(j, "connect", "no socket after connecting%s", NULL);
    return 0;
  }
  if (random(rud, nonce, sizeof nonce) != 0) return -1;
  ctv_wsc_key(j->key, nonce);
  n = ctv_wsc_request(req, sizeof req, j->host, path, j->key);
  if (n == 0) {
    failed(j, "invalid", "the console URL is too long or has a line break%s", NULL);
    return 0;
  }
  if (queue(j, (const unsigned char *)req, n)) return -1;
  ctv_ws_decoder_init(&j->dec, CTV_WS_FROM_SERVER, MAX_FRAME);
  j->phase = P_OPENING;
  return 0;
}

/* The frame is whole: the PNG, scaled when asked. */
static int picture(job *j) {
  const ctv_rfbc *c = &j->rfb;
  j->res.png = ctv_png_thumb(c->fb, c->width, c->height, j->spec->width,
                             &j->res.pnglen, &j->res.width, &j->res.height);
  return j->res.png ? 0 : -1;
}

/* RFB bytes from the server. 1: the job is over (result set), 0: go on,
 * -1: out of memory. */
static int rfb_bytes(job *j, const unsigned char *p, size_t n,
                     ctv_random_fn random, void *rud) {
  enum ctv_rfbc_result r = ctv_rfbc_feed(&j->rfb, p, n);
  if (j->rfb.version > 0) reached(j, CTV_SHOT_RFB);
  if (j->rfb.outlen) {
    if (queue_frame(j, CTV_WS_BINARY, j->rfb.out, j->rfb.outlen, random, rud))
      return -1;
    j->rfb.outlen = 0;
  }
  j->res.version = j->rfb.version > 0 ? j->rfb.version : 0;
  j->res.fb_width = j->rfb.width;
  j->res.fb_height = j->rfb.height;
  j->res.name = j->rfb.name;
  if (r == CTV_RFBC_MORE) return 0;
  if (r == CTV_RFBC_ENOMEM) return -1;
  if (r != CTV_RFBC_DONE) {
    failed(j, "rfb", "%s", j->rfb.why);
    return 1;
  }
  if (!j->spec->banner_only) {
    reached(j, CTV_SHOT_FRAME);
    if (picture(j)) return -1;
  }
  return 1;
}

/* Frame bytes from the server. */
static int frames(job *j, const unsigned char *p, size_t n,
                  ctv_random_fn random, void *rud) {
  size_t u = 0, used;
  ctv_ws_piece pc;
  while (u < n) {
    enum ctv_ws_result r = ctv_ws_decode(&j->dec, p + u, n - u, &used, &pc);
    int rc;
    u += used;
    if (r == CTV_WS_MORE) break;
    if (r != CTV_WS_OK) {
      failed(j, "rfb", "bad websocket frame from the server: %s", ctv_ws_result_name(r));
      return 1;
    }
    if (pc.opcode == CTV_WS_CLOSE) {
      failed(j, "rfb", "the server closed the websocket before a whole frame%s", NULL);
      return 1;
    }
    if (pc.opcode == CTV_WS_PING) {
      if (pc.last && queue_frame(j, CTV_WS_PONG, pc.data, pc.len, random, rud)) return -1;
      continue;
    }
    if (pc.opcode == CTV_WS_PONG || pc.len == 0) continue;
    if (pc.opcode == CTV_WS_TEXT) {
      failed(j, "rfb", "the server sent a text message (RFB is binary)%s", NULL);
      return 1;
    }
    if ((rc = rfb_bytes(j, pc.data, pc.len, random, rud)) != 0) return rc;
  }
  return 0;
}

/* The handshake answer so far. */
static int opening(job *j) {
  size_t used;
  int status;
  enum ctv_wsc_result r = ctv_wsc_answer(j->in, j->inlen, j->key, &used, &status);
  j->res.status = status;
  switch (r) {
  case CTV_WSC_MORE:
    return 0;
  case CTV_WSC_OK:
    reached(j, CTV_SHOT_WEBSOCKET);
    ctv_rfbc_init(&j->rfb, j->spec->password, j->spec->passlen,
                  j->spec->max_pixels, j->spec->banner_only);
    j->rfb_open = 1;
    j->phase = P_RFB;
    memmove(j->in, j->in + used, j->inlen - used);
    j->inlen -= used;
    return 0;
  case CTV_WSC_ESTATUS:
    snprintf(j->msg, sizeof j->msg, "the websocket handshake got HTTP %d, not 101", status);
    j->res.kind = status == 401 || status == 403 ? "auth" : "http";
    j->res.msg = j->msg;
    return 1;
  case CTV_WSC_EHEADERS:
    failed(j, "http", "the websocket handshake's answer lacks Upgrade, Connection "
           "or the right Sec-WebSocket-Accept%s", NULL);
    return 1;
  default:
    failed(j, "http", "the websocket handshake's answer is not HTTP/1.1%s", NULL);
    return 1;
  }
}

/* Sends what is queued and reads what is there. 1: the job is over, 0: it
 * waits, -1: out of memory. *want_out: it waits to send. */
static int io(job *j, ctv_random_fn random, void *rud, int *want_out) {
  unsigned char buf[65536];
  *want_out = 0;
  for (;;) {
    size_t n = 0;
    CURLcode rc;
    int r;
    while (j->sendoff < j->sendlen) {
      rc = curl_easy_send(j->easy, j->send + j->sendoff, j->sendlen - j->sendoff, &n);
      if (rc == CURLE_AGAIN) {
        *want_out = 1;
        break;
      }
      if (rc != CURLE_OK) {
        failed(j, ctv_curl_kind(rc), "sending: %s", curl_easy_strerror(rc));
        return 1;
      }
      j->sendoff += n;
    }
    if (j->sendoff == j->sendlen) j->sendoff = j->sendlen = 0;
    if (j->phase == P_OPENING) {
      rc = curl_easy_recv(j->easy, j->in + j->inlen, sizeof j->in - j->inlen, &n);
    } else if (j->inlen) {             /* frames that came with the answer */
      memcpy(buf, j->in, j->inlen);
      n = j->inlen;
      j->inlen = 0;
      rc = CURLE_OK;
    } else {
      rc = curl_easy_recv(j->easy, buf, sizeof buf, &n);
    }
    if (rc == CURLE_AGAIN) return 0;
    if (rc != CURLE_OK) {
      failed(j, ctv_curl_kind(rc), "receiving: %s", curl_easy_strerror(rc));
      return 1;
    }
    if (n == 0) {
      failed(j, j->phase == P_RFB ? "rfb" : "connect", "the server closed the "
             "connection %s", j->phase == P_RFB ? "before a whole frame"
             : "during the websocket handshake");
      return 1;
    }
    if (j->phase == P_OPENING) {
      j->inlen += n;
      if ((r = opening(j)) != 0) return r;
      if (j->phase == P_OPENING && j->inlen == sizeof j->in) {
        failed(j, "http", "the websocket handshake's answer is too long%s", NULL);
        return 1;
      }
    } else if ((r = frames(j, buf, n, random, rud)) != 0) {
      return r;
    }
  }
}

/* ---- the run ---------------------------------------------------------- */

typedef struct run {
  ctv_shots *s;
  job *jobs;
  int nj;
  ctv_shot_done done;
  void *ud;
  int stop;
} run;

/* Hands j's result out and frees the job. Its connection goes first, so
 * that on_close has said whether a failed connect reached tcp. */
static void finish(run *r, job *j) {
  disconnect(r->s, j);
  if (!r->stop && r->done(r->ud, j->index, &j->res)) r->stop = 1;
  free((void *)(uintptr_t)j->res.png);
  j->res.png = NULL;
  release(r->s, j);
}

int ctv_shots_run(ctv_shots *s, const ctv_shot_job *specs, size_t n,
                  int concurrency, ctv_random_fn random, void *rud,
                  ctv_shot_done done, void *ud) {
  run r;
  struct curl_waitfd *wfd;
  size_t next = 0, finished = 0;
  int i, rc = 0;
  if (concurrency < 1) concurrency = 1;
  if ((size_t)concurrency > n) concurrency = (int)(n ? n : 1);
  r.s = s;
  r.nj = concurrency;
  r.done = done;
  r.ud = ud;
  r.stop = 0;
  r.jobs = calloc((size_t)concurrency, sizeof *r.jobs);
  wfd = calloc((size_t)concurrency, sizeof *wfd);
  if (!r.jobs || !wfd) {
    free(r.jobs);
    free(wfd);
    return -1;
  }
  while (finished < n && !r.stop && rc == 0) {
    CURLMsg *m;
    int left, running, nfd = 0;
    double t = now(), wait = 1.0;
    for (i = 0; i < r.nj && next < n && rc == 0; i++) {
      job *j = &r.jobs[i];
      if (j->phase != P_IDLE) continue;
      if (start(s, j, &specs[next], next) != 0) rc = -1;
      next++;
      if (rc == 0 && j->phase == P_IDLE) {     /* a bad URL */
        finished++;
        finish(&r, j);
      }
    }
    if (rc || r.stop) break;
    curl_multi_perform(s->multi, &running);
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
      char *priv = NULL;
      job *j;
      if (m->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      j = (job *)(void *)priv;
      if (j->phase != P_CONNECT) continue;
      if (connected(j, m->data.result, random, rud) != 0) rc = -1;
    }
    for (i = 0; i < r.nj && rc == 0 && !r.stop; i++) {
      job *j = &r.jobs[i];
      int want_out = 0, over = 0;
      if (j->phase == P_IDLE) continue;
      if (j->phase == P_CONNECT && !j->res.kind) {
        if (t > j->deadline + 1) failed(j, "timeout", "connecting took too long%s", NULL);
        else continue;
      }
      if (!j->res.kind) {
        over = io(j, random, rud, &want_out);
        if (over < 0) {
          rc = -1;
          break;
        }
        if (!over && now() > j->deadline) {
          failed(j, "timeout", "no whole frame within the timeout%s", NULL);
          over = 1;
        }
      }
      if (over || j->res.kind) {
        finished++;
        finish(&r, j);
        wait = 0;
        continue;
      }
      wfd[nfd].fd = j->fd;
      wfd[nfd].events = (short)(CURL_WAIT_POLLIN | (want_out ? CURL_WAIT_POLLOUT : 0));
      wfd[nfd].revents = 0;
      nfd++;
      if (j->deadline - t < wait) wait = j->deadline - t;
    }
    if (rc || r.stop || finished == n) break;
    if (wait > 0)
      curl_multi_poll(s->multi, wfd, (unsigned)nfd, (int)(wait * 1000) + 1, NULL);
  }
  for (i = 0; i < r.nj; i++) {
    free((void *)(uintptr_t)r.jobs[i].res.png);
    release(s, &r.jobs[i]);
  }
  free(r.jobs);
  free(wfd);
  if (rc) return -1;
  return r.stop ? 1 : 0;
}
