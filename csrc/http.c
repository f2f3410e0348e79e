/*
 * http.c: see http.h. Every request goes through the multi handle, one at a
 * time or many at once, so both paths share the connection cache; the share
 * handle adds the DNS and TLS session caches.
 */
#define _POSIX_C_SOURCE 200809L
#include "http.h"
#include "grow.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

struct ctv_http;

/* A socket libcurl opened, its local and remote ports once connected (0
 * before), the HTTP version its answers came in (0 as long as none has, 1
 * for HTTP/1.x, 2 for HTTP/2) and the tag of the last request sent on it
 * (-1: none, or untagged). */
typedef struct sock {
  curl_socket_t fd;
  unsigned lport, port;
  int version;
  long tag;
} sock;

typedef struct slot {
  struct ctv_http *h;
  CURL *easy;
  struct curl_slist *headers;
  char *buf;
  size_t len, cap, max;
  int too_large, oom, busy;
  int stale;                  /* a reused connection had unasked-for bytes,
                                 or carried a request of the same tag */
  long tag;                   /* the tag of its request (ctv_req.tag) */
  curl_socket_t fd;           /* the socket its last answer came on, while
                                 libcurl keeps that connection; else BAD */
  curl_socket_t cur;          /* the socket its request went out on, while
                                 it runs (known from libcurl 7.80); else BAD */
  size_t index;
  char err[CURL_ERROR_SIZE];
} slot;

struct ctv_http {
  CURLM *multi;
  CURLSH *share;
  slot **slots;              /* each slot stays put: curl points into it */
  int nslots;
  size_t capslots;
  ctv_opts o;                 /* o.ca_file points to ca_file */
  char *ca_file;              /* our copy */
  char *line;                 /* scratch for "Name: value" */
  size_t linecap;
  sock *socks;                /* sockets libcurl opened and still holds */
  size_t nsocks, capsocks;
  struct pollfd *pfds;        /* the sockets libcurl wants watched, and */
  size_t npfds, cappfds;      /* for what (on_socket) */
  struct pollfd *ready;       /* scratch: those poll() found ready */
  size_t capready;
  long due;                   /* when libcurl wants its timeout run, in
                                 now_ms() time; -1: no timeout pending */
  int oom;                    /* a callback ran out of memory */
};

/* libcurl tells nobody which socket a reused connection has before the
 * request is sent, so the sockets it opens are tracked here. */
static curl_socket_t on_open(void *ud, curlsocktype purpose,
                             struct curl_sockaddr *a) {
  struct ctv_http *h = ud;
  curl_socket_t fd;
  sock *n = ctv_grow(h->socks, &h->capsocks, h->nsocks, 1, sizeof *n, SIZE_MAX);
  (void)purpose;
  if (!n) return CURL_SOCKET_BAD;
  h->socks = n;
  fd = socket(a->family, a->socktype, a->protocol);
  if (fd != CURL_SOCKET_BAD) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);   /* not for the commands Lua runs */
    h->socks[h->nsocks].fd = fd;
    h->socks[h->nsocks].lport = h->socks[h->nsocks].port = 0;
    h->socks[h->nsocks].tag = -1;
    h->socks[h->nsocks++].version = 0;
  }
  return fd;
}

static int on_close(void *ud, curl_socket_t fd) {
  struct ctv_http *h = ud;
  size_t i;
  for (i = 0; i < h->nsocks; i++) {
    if (h->socks[i].fd == fd) {
      h->socks[i] = h->socks[--h->nsocks];
      break;
    }
  }
  return close(fd);
}


/* Milliseconds of a monotonic clock. */
static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* libcurl says which sockets to watch for what (the multi socket API): one
 * poll() then wakes the run for the transfers that can move, where
 * curl_multi_perform would look at every transfer, with a poll() of its
 * own each, at every wake-up. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud, void *sp) {
  ctv_http *h = ud;
  size_t i;
  (void)e; (void)sp;
  for (i = 0; i < h->npfds && h->pfds[i].fd != fd; i++) continue;
  if (what == CURL_POLL_REMOVE) {
    if (i < h->npfds) h->pfds[i] = h->pfds[--h->npfds];
    return 0;
  }
  if (i == h->npfds) {
    struct pollfd *p = ctv_grow(h->pfds, &h->cappfds, h->npfds, 1, sizeof *p, SIZE_MAX);
    struct pollfd *r = NULL;
    if (p) {
      h->pfds = p;
      r = ctv_grow(h->ready, &h->capready, h->npfds, 1, sizeof *r, SIZE_MAX);
    }
    if (!r) {
      h->oom = 1;
      return 0;
    }
    h->ready = r;
    h->pfds[h->npfds++].fd = fd;
  }
  h->pfds[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0)
                              | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  return 0;
}

/* libcurl's one timer: run its timeouts (and what it deferred) then. */
static int on_timer(CURLM *m, long ms, void *ud) {
  ctv_http *h = ud;
  (void)m;
  h->due = ms < 0 ? -1 : now_ms() + ms;
  return 0;
}

int ctv_http_global_init(void) {
  static int done = 0;
  if (!done && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) done = 1;
  return done ? 0 : -1;
}

/* Counts the body while it streams in; past max the transfer is aborted,
 * so memory never holds more than max bytes. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  slot *s = ud;
  size_t n = size * nmemb;
  char *b;
  if (n > s->max - s->len) {
    s->too_large = 1;
    return 0;
  }
  if ((b = ctv_grow(s->buf, &s->cap, s->len, n, 1, s->max)) == NULL) {
    s->oom = 1;
    return 0;
  }
  s->buf = b;
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  return n;
}

static unsigned port_of(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
  if (ss->ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
  return 0;
}

/* The socket whose local and remote ports these are, or NULL. libcurl
 * tells nobody which socket a connection has while a transfer runs on it. */
static sock *find_sock(ctv_http *h, long lport, long port) {
  size_t i;
  for (i = 0; i < h->nsocks; i++) {
    sock *k = &h->socks[i];
    if (k->port == 0) {           /* asked once it is connected */
      struct sockaddr_storage ss;
      socklen_t len = sizeof ss;
      if (getpeername(k->fd, (struct sockaddr *)&ss, &len) != 0) continue;
      k->port = port_of(&ss);
      len = sizeof ss;
      if (getsockname(k->fd, (struct sockaddr *)&ss, &len) != 0) {
        k->port = 0;
        continue;
      }
      k->lport = port_of(&ss);
    }
    if (k->lport == (unsigned long)lport && k->port == (unsigned long)port)
      return k;
  }
  return NULL;
}

/* The status line tells the connection's HTTP version, which the guard
 * below needs before the next request goes out on it. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
  slot *s = ud;
  size_t n = size * nmemb;
  long lport = 0, port = 0;
  sock *k;
  if (n < 7 || memcmp(p, "HTTP/", 5) != 0) return n;
  if (curl_easy_getinfo(s->easy, CURLINFO_LOCAL_PORT, &lport) == CURLE_OK
      && curl_easy_getinfo(s->easy, CURLINFO_PRIMARY_PORT, &port) == CURLE_OK
      && (k = find_sock(s->h, lport, port)) != NULL)
    k->version = p[5] == '1' ? 1 : 2;
  return n;
}

/* Before a request goes out on a reused HTTP/1.x connection, two guards,
 * each of which sends the request on a fresh connection instead:
 *  - bytes already waiting there were sent by the server unasked (a late
 *    second answer after the last one's Content-Length): reading them as
 *    this request's answer would hand one VM's credentials out as another's;
 *  - the last request sent there had the same tag (ctv_req.tag): a late
 *    answer to it, arriving once this one is sent, could not be told from
 *    this one's own (the caller tags requests by what binds their answers).
 * Not over HTTP/2: there the bytes waiting are frames of the other streams
 * (or SETTINGS, PING, WINDOW_UPDATE), each bound to its stream. A reused
 * connection whose version is not known yet is one whose first answer is
 * still to come, which only multiplexing allows. */
#if LIBCURL_VERSION_NUM >= 0x075000   /* CURLOPT_PREREQFUNCTION: 7.80 */
static int on_prereq(void *ud, char *ip, char *local_ip, int port,
                     int lport) {
  slot *s = ud;
  long fresh = 0;
  struct pollfd p;
  sock *k;
  (void)ip; (void)local_ip;
  k = find_sock(s->h, lport, port);
  s->cur = k ? k->fd : CURL_SOCKET_BAD;
  if (k == NULL) return CURL_PREREQFUNC_OK;
  if (curl_easy_getinfo(s->easy, CURLINFO_NUM_CONNECTS, &fresh) == CURLE_OK
      && fresh == 0 && !(s->h->o.http2 && k->version != 1)) {
    p.fd = k->fd;
    p.events = POLLIN;
    p.revents = 0;
    if ((s->tag >= 0 && k->tag == s->tag) || poll(&p, 1, 0) > 0) {
      s->stale = 1;
      return CURL_PREREQFUNC_ABORT;
    }
  }
  k->tag = s->tag;
  return CURL_PREREQFUNC_OK;
}
#endif

const char *ctv_curl_kind(int code) {
  switch ((CURLcode)code) {
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    return "tls";
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return "invalid";
  default:
    return "connect";
  }
}

static const char *kind_of(const slot *s, CURLcode rc) {
  if (s->too_large || rc == CURLE_FILESIZE_EXCEEDED) return "too_large";
  if (rc == CURLE_OUT_OF_MEMORY)   /* our own allocations set s->oom: this */
    return "too_large";            /* is libcurl refusing oversized headers */
  return ctv_curl_kind(rc);
}

/* Options that stay the same for every request of this handle. */
static int setup(ctv_http *h, slot *s) {
  CURL *e = s->easy = curl_easy_init();
  s->h = h;
  if (!e) return -1;
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_SHARE, h->share);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)s);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->err);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)s);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)s);
  /* HTTP/2 over TLS only, as browsers do */
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, h->o.http2
                   ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
#if LIBCURL_VERSION_NUM >= 0x075000
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, (void *)s);
#endif
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)h);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)h);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->o.timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->o.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->o.max_body);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->o.insecure ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->o.insecure ? 0L : 2L);
  if (h->o.ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, h->o.ca_file);
  s->max = h->o.max_body;
  return 0;
}

ctv_http *ctv_http_new(const ctv_opts *o) {
  ctv_http *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->o = *o;
  h->o.ca_file = NULL;
  if (o->ca_file && (h->ca_file = malloc(strlen(o->ca_file) + 1)) != NULL) {
    strcpy(h->ca_file, o->ca_file);
    h->o.ca_file = h->ca_file;
  }
  h->multi = curl_multi_init();
  h->share = curl_share_init();
  if (!h->multi || !h->share || (o->ca_file && !h->o.ca_file)) {
    ctv_http_free(h);
    return NULL;
  }
  h->due = -1;
  curl_multi_setopt(h->multi, CURLMOPT_PIPELINING,
                    o->http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, (void *)h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, (void *)h);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  return h;
}

/* Takes back every transfer still in the multi handle (a run that was
 * stopped, or left by a Lua error raised in a done callback). */
static void abandon(ctv_http *h) {
  int i;
  for (i = 0; i < h->nslots; i++) {
    if (h->slots[i]->busy) {
      curl_multi_remove_handle(h->multi, h->slots[i]->easy);
      h->slots[i]->busy = 0;
    }
  }
}

void ctv_http_free(ctv_http *h) {
  int i;
  if (!h) return;
  abandon(h);
  for (i = 0; i < h->nslots; i++) {
    curl_easy_cleanup(h->slots[i]->easy);
    curl_slist_free_all(h->slots[i]->headers);
    free(h->slots[i]->buf);
    free(h->slots[i]);
  }
  if (h->multi) curl_multi_cleanup(h->multi);
  if (h->share) curl_share_cleanup(h->share);
  free(h->ca_file);
  free(h->socks);             /* after the cleanups, which close them */
  free(h->pfds);
  free(h->ready);
  free(h->slots);
  free(h->line);
  free(h);
}

static int grow_slots(ctv_http *h, int n) {
  slot **s;
  if (n <= h->nslots) return 0;
  s = ctv_grow(h->slots, &h->capslots, 0, (size_t)n, sizeof *s, SIZE_MAX);
  if (s == NULL) return -1;
  h->slots = s;
  while (h->nslots < n) {
    slot *one = calloc(1, sizeof *one);
    if (!one) return -1;
    if (setup(h, one) != 0) {        /* not counted: no half-made slot */
      curl_easy_cleanup(one->easy);
      free(one);
      return -1;
    }
    s[h->nslots++] = one;
  }
  return 0;
}

static int has_crlf(const char *p, size_t n) {
  return memchr(p, '\r', n) || memchr(p, '\n', n) || memchr(p, '\0', n);
}

/* Why a request could not start. */
enum start_outcome {
  STARTED = 0,       /* it is in the multi handle */
  BAD_HEADER,        /* a header name or value is empty or has a line break:
                        the request alone fails, as "invalid" */
  NO_MEMORY          /* out of memory: the whole run fails */
};

/* Are r's headers the lines of s's list already (the previous request's:
 * in a batch, all of them)? Lines are only built from valid headers, so a
 * request that matches them passes set_headers' checks too. */
static int same_headers(const slot *s, const ctv_req *r) {
  const struct curl_slist *l = s->headers;
  size_t i;
  for (i = 0; i < r->nheaders; i++, l = l->next) {
    const ctv_header *hd = &r->headers[i];
    if (l == NULL || strncmp(l->data, hd->name, hd->namelen) != 0
        || hd->namelen == 0 || memchr(hd->name, '\0', hd->namelen)
        || memchr(hd->name, ':', hd->namelen)
        || strncmp(l->data + hd->namelen, ": ", 2) != 0
        || memchr(hd->value, '\0', hd->valuelen)
        || strncmp(l->data + hd->namelen + 2, hd->value, hd->valuelen) != 0
        || l->data[hd->namelen + 2 + hd->valuelen] != '\0')
      return 0;
  }
  return l == NULL && s->headers != NULL;
}

/* "Name: value" lists; a line break in either would smuggle a header. */
static enum start_outcome set_headers(ctv_http *h, slot *s, const ctv_req *r) {
  size_t i;
  if (same_headers(s, r)) return STARTED;    /* checked when first built */
  curl_slist_free_all(s->headers);
  s->headers = NULL;
  for (i = 0; i < r->nheaders; i++) {
    const ctv_header *hd = &r->headers[i];
    size_t need = hd->namelen + hd->valuelen + 3;
    struct curl_slist *l;
    char *b;
    if (has_crlf(hd->name, hd->namelen) || has_crlf(hd->value, hd->valuelen)
        || hd->namelen == 0 || memchr(hd->name, ':', hd->namelen))
      return BAD_HEADER;
    if ((b = ctv_grow(h->line, &h->linecap, 0, need, 1, SIZE_MAX)) == NULL)
      return NO_MEMORY;
    h->line = b;
    memcpy(h->line, hd->name, hd->namelen);
    memcpy(h->line + hd->namelen, ": ", 2);
    memcpy(h->line + hd->namelen + 2, hd->value, hd->valuelen);
    h->line[need - 1] = '\0';
    if ((l = curl_slist_append(s->headers, h->line)) == NULL) return NO_MEMORY;
    s->headers = l;
  }
  return STARTED;
}

static int is_https(const char *url) {
  static const char https[] = "https://";
  size_t i;
  for (i = 0; i < sizeof https - 1; i++) {
    char c = url[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != https[i]) return 0;
  }
  return 1;
}

/* Starts r on s. */
static enum start_outcome start(ctv_http *h, slot *s, const ctv_req *r, size_t i) {
  CURL *e = s->easy;
  enum start_outcome why = set_headers(h, s, r);
  s->len = 0;
  s->too_large = s->oom = s->stale = 0;
  s->cur = CURL_SOCKET_BAD;
  s->err[0] = '\0';
  s->index = i;
  s->tag = r->tag;
  if (why != STARTED) return why;
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, r->fresh ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  /* over TLS a request waits for the connection being made (HTTP/2, as
   * ALPN will likely tell) rather than opening one more; plain HTTP is
   * HTTP/1.1, where that wait would cost the first wave a round trip */
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, h->o.http2 && is_https(r->url) ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (char *)NULL);
  if (strcmp(r->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)(r->body ? r->bodylen : 0));
    if (strcmp(r->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) return NO_MEMORY;
  s->busy = 1;
  return STARTED;
}

static void finish(slot *s, CURLcode rc, ctv_res *res) {
  memset(res, 0, sizeof *res);
  if (rc == CURLE_OK) {
    long version = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &res->status);
    curl_easy_getinfo(s->easy, CURLINFO_HTTP_VERSION, &version);
    res->version = version >= CURL_HTTP_VERSION_2_0 ? 2 : 1;
    res->body = s->len ? s->buf : "";
    res->len = s->len;
  } else if (s->oom) {
    res->kind = "connect";
    res->msg = "out of memory while reading the answer";
  } else {
    res->kind = kind_of(s, rc);
    res->msg = s->too_large ? "answer exceeds max_body"
             : rc == CURLE_OUT_OF_MEMORY ? "the answer's headers are too large"
             : s->err[0] ? s->err : curl_easy_strerror(rc);
  }
}

/* Closes the HTTP/1.x connection s's answer came on: libcurl finds it dead
 * when it next looks, and opens a new one. libcurl returns a connection to
 * its pool as a transfer ends, so another transfer of this run may already
 * be using it: then it is left alone (that transfer's own answer is judged
 * in its turn), never cut under an innocent transfer. */
static void drop(ctv_http *h, slot *s) {
  size_t i;
  int j;
  long version = 0;
  if (s->fd == CURL_SOCKET_BAD
      || (curl_easy_getinfo(s->easy, CURLINFO_HTTP_VERSION, &version) == CURLE_OK
          && version >= CURL_HTTP_VERSION_2_0))
    return;                   /* gone already, or HTTP/2: streams never mix */
  for (j = 0; j < h->nslots; j++)
    if (h->slots[j]->busy && h->slots[j]->cur == s->fd) return;
  for (i = 0; i < h->nsocks; i++) {
    if (h->socks[i].fd == s->fd) {
      shutdown(s->fd, SHUT_RDWR);
      return;
    }
  }
}

/* Moves the transfers on: libcurl's timeout when it is due, else what the
 * watched sockets are ready for, waiting for them up to the next timeout
 * (a second at most). 0, or -1 when libcurl failed as a whole. */
static int drive(ctv_http *h) {
  int running, ready;
  size_t i, n = 0;
  long wait = h->due < 0 ? 1000 : h->due - now_ms();
  if (h->due >= 0 && wait <= 0) {
    h->due = -1;
    return curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running) == CURLM_OK ? 0 : -1;
  }
  if (wait > 1000) wait = 1000;
  ready = poll(h->pfds, (nfds_t)h->npfds, (int)wait);
  if (ready < 0) return errno == EINTR ? 0 : -1;
  /* the callbacks of socket_action change pfds: take the ready ones first */
  for (i = 0; i < h->npfds && ready > 0; i++) {
    if (h->pfds[i].revents) h->ready[n++] = h->pfds[i];
  }
  for (i = 0; i < n; i++) {
    short r = h->ready[i].revents;
    int mask = ((r & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0)
             | ((r & POLLOUT) ? CURL_CSELECT_OUT : 0)
             | ((r & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
    if (curl_multi_socket_action(h->multi, h->ready[i].fd, mask, &running)
        != CURLM_OK)
      return -1;
  }
  return 0;
}

int ctv_http_run(ctv_http *h, const ctv_req *reqs, size_t n, int concurrency,
                 ctv_done done, void *ud) {
  size_t next = 0, finished = 0;
  int i, stop = 0;
  abandon(h);
  h->oom = 0;
  if (concurrency < 1) concurrency = 1;
  if ((size_t)concurrency > n) concurrency = (int)n;
  if (grow_slots(h, concurrency) != 0) return -1;
#if LIBCURL_VERSION_NUM >= 0x074300   /* 7.67 */
  /* concurrency is the number of streams in flight, on one connection */
  curl_multi_setopt(h->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                    (long)(concurrency > 100 ? concurrency : 100));
#endif
  while (finished < n && !stop) {
    CURLMsg *m;
    int left;
    for (i = 0; i < concurrency && next < n && !stop; i++) {
      slot *s = h->slots[i];
      enum start_outcome why;
      if (s->busy) continue;
      if ((why = start(h, s, &reqs[next], next)) == NO_MEMORY) {
        abandon(h);
        return -1;
      }
      if (why == BAD_HEADER) {
        ctv_res res;
        memset(&res, 0, sizeof res);
        res.kind = "invalid";
        res.msg = "a header name or value is empty or has a line break";
        finished++;
        stop = done(ud, next, &res) == CTV_STOP;
      }
      next++;
    }
    if (drive(h) != 0 || h->oom) {
      abandon(h);
      return -1;
    }
    while (!stop && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
      char *priv = NULL;
      slot *s;
      ctv_res res;
      if (m->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      s = (slot *)(void *)priv;
      /* while the transfer is still in the multi handle, libcurl can tell
       * the socket of its connection, if that is still open: the only one
       * drop() may close (a port number could be another's by now) */
      s->fd = CURL_SOCKET_BAD;
      curl_easy_getinfo(s->easy, CURLINFO_ACTIVESOCKET, &s->fd);
      curl_multi_remove_handle(h->multi, s->easy);
      s->busy = 0;
      if (s->stale && m->data.result == CURLE_ABORTED_BY_CALLBACK) {
        s->stale = 0;             /* once more, on a new connection */
        curl_easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
        if (curl_multi_add_handle(h->multi, s->easy) != CURLM_OK) {
          abandon(h);
          return -1;
        }
        s->busy = 1;
        continue;
      }
      finish(s, m->data.result, &res);
      finished++;
      stop = done(ud, s->index, &res);
      if (stop == CTV_DROP) {
        drop(h, s);
        stop = CTV_GO_ON;
      }
    }
  }
  abandon(h);
  return stop ? 1 : 0;
}
