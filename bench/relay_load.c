/* Both ends of the console relay benchmark (bench/relay.sh), in C so that
 * the load tools are not what the benchmark measures. Loopback only.
 *
 *   relay_load target WS_HOST WS_PORT TCP_PORT [WSS_PORT CERT KEY]
 *     WS_HOST:WS_PORT a websocket server (what a cluster's websockify is to
 *     the gateway), 127.0.0.1:TCP_PORT the same stream as raw TCP (what a
 *     VNC server is to websockify), and WS_HOST:WSS_PORT the websocket over
 *     TLS 1.3 (CERT, KEY: PEM files), as clusters serve it. The client's
 *     first byte picks the stream:
 *       'F' flood: 1 MiB messages (binary frames on the websocket) as fast
 *           as the connection takes them
 *       'E' echo: every later byte (frame payload on the websocket) back
 *   relay_load client HOST PORT PATH KEY SESSIONS flood SECONDS
 *   relay_load client HOST PORT PATH KEY SESSIONS echo ROUNDS INTERVAL_MS
 *   relay_load client HOST PORT PATH KEY SESSIONS hold MS
 *   relay_load client HOST PORT PATH KEY SESSIONS opens COUNT
 *   relay_load rfb-target ...  the target, sending an RFB server's banner
 *     ("RFB 003.008\n") first on every connection, as a VNC server does
 *     SESSIONS websockets at once (KEY: an X-API-Key, or - for none).
 *     flood: MiB/s received by all of them together, after 0.5 s of warm-up.
 *     echo: ROUNDS 8-byte messages (a PointerEvent's size) a session, each
 *       timed from its send to its echo: one every INTERVAL_MS per session,
 *       spread evenly over the sessions (0: each sent when the last came
 *       back). hold: open them, print "open", keep them MS, close.
 *     opens: COUNT websocket opens (upgrade, 101, close), SESSIONS at a time.
 *     Prints {"mib_s": .., "p50_ms": .., "p99_ms": .., "opens_s": ..,
 *     "errors": 0|1}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)
#define INBUF 65536

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("{\"errors\": 1, \"error\": \"", stdout);
  vprintf(fmt, ap);
  fputs("\"}\n", stdout);
  va_end(ap);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct sockaddr_in address(const char *host, int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("bad address %s", host);
  if ((ntohl(a.sin_addr.s_addr) >> 24) != 127) die("not a loopback address: %s", host);
  return a;
}

/* Writes all of buf to a socket that may push back (waits for it). */
static void send_all(int fd, const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (k <= 0) die("send: %s", strerror(errno));
    buf += k;
    n -= (size_t)k;
  }
}

/* One websocket frame header (RFC 6455) for n payload bytes; returns its length. */
static size_t frame_head(unsigned char *h, size_t n, int masked) {
  size_t i = 2;
  h[0] = 0x82;
  if (n < 126) {
    h[1] = (unsigned char)n;
  } else if (n < 65536) {
    h[1] = 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    i = 4;
  } else {
    int b;
    h[1] = 127;
    for (b = 0; b < 8; b++) h[2 + b] = (unsigned char)((uint64_t)n >> (56 - 8 * b));
    i = 10;
  }
  if (masked) {
    h[1] |= 0x80;
    memset(h + i, 0x5a, 4); /* a fixed key: any key will do for a benchmark */
    i += 4;
  }
  return i;
}

/* A masked client frame of payload p (n <= 125) into out; its length. */
static size_t client_frame(unsigned char *out, const unsigned char *p, size_t n) {
  size_t h = frame_head(out, n, 1), i;
  for (i = 0; i < n; i++) out[h + i] = p[i] ^ 0x5a;
  return h + n;
}

/* Parses one frame at buf[0..n): payload offset and length, or 0 if incomplete. */
static size_t frame_parse(unsigned char *buf, size_t n, size_t *off, size_t *len, int *opcode) {
  size_t h = 2, l;
  int masked, b;
  if (n < 2) return 0;
  masked = (buf[1] & 0x80) != 0;
  l = buf[1] & 0x7f;
  if (l == 126) {
    if (n < 4) return 0;
    l = (size_t)buf[2] << 8 | buf[3];
    h = 4;
  } else if (l == 127) {
    if (n < 10) return 0;
    for (l = 0, b = 0; b < 8; b++) l = l << 8 | buf[2 + b];
    h = 10;
  }
  if (masked) h += 4;
  if (l > n || n - l < h) return 0;
  if (masked) {
    size_t i;
    for (i = 0; i < l; i++) buf[h + i] ^= buf[h - 4 + (i & 3)];
  }
  *off = h;
  *len = l;
  *opcode = buf[0] & 0x0f;
  return h + l;
}

/* ---- the target ---------------------------------------------------------- */

enum { HEAD, MODE, FLOOD, ECHO };

typedef struct {
  int fd, ws, state;
  SSL *ssl;                  /* the wss listener's peers */
  size_t have, sent;         /* bytes in in[]; bytes of the flood message sent */
  unsigned char in[INBUF];
  unsigned char *out;        /* echo bytes waiting for the socket */
  size_t out_len, out_cap;
} Peer;

static unsigned char *flood_ws, *flood_tcp; /* one 1 MiB message, framed and raw */
static size_t flood_ws_len;
static int banner; /* rfb-target: the RFB banner first on every connection */
static const unsigned char rfb_banner[] = "RFB 003.008\n";

/* recv and send, through TLS for a wss peer (errno EAGAIN when it would block) */
static ssize_t io(Peer *p, unsigned char *b, size_t n, int writing) {
  int k, e;
  if (!p->ssl)
    return writing ? send(p->fd, b, n, MSG_NOSIGNAL) : recv(p->fd, b, n, 0);
  k = writing ? SSL_write(p->ssl, b, (int)n) : SSL_read(p->ssl, b, (int)n);
  if (k > 0) return k;
  e = SSL_get_error(p->ssl, k);
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
  return -1;
}

static void peer_close(Peer *p) {
  SSL_free(p->ssl);
  close(p->fd);
  free(p->out);
  free(p);
}

static void queue(Peer *p, const unsigned char *b, size_t n) {
  if (p->out_len + n > p->out_cap) {
    p->out_cap = (p->out_len + n) * 2;
    p->out = realloc(p->out, p->out_cap);
    if (!p->out) die("out of memory");
  }
  memcpy(p->out + p->out_len, b, n);
  p->out_len += n;
}

/* Sends what the peer has to send until the socket pushes back: 0, or -1 if it is gone. */
static int peer_write(Peer *p) {
  while (p->out_len > 0) {
    ssize_t k = io(p, p->out, p->out_len, 1);
    if (k < 0) return errno == EAGAIN ? 0 : -1;
    memmove(p->out, p->out + k, p->out_len - (size_t)k);
    p->out_len -= (size_t)k;
  }
  while (p->state == FLOOD) {
    unsigned char *m = p->ws ? flood_ws : flood_tcp;
    size_t len = p->ws ? flood_ws_len : MIB;
    ssize_t k = io(p, m + p->sent, len - p->sent, 1);
    if (k < 0) return errno == EAGAIN ? 0 : -1;
    p->sent = (p->sent + (size_t)k) % len;
  }
  return 0;
}

/* The payload of one client message: the first byte picks the mode. */
static void on_payload(Peer *p, const unsigned char *b, size_t n) {
  unsigned char h[10];
  if (n == 0) return;
  if (p->state == MODE) {
    p->state = b[0] == 'F' ? FLOOD : ECHO;
    b++;
    n--;
    if (n == 0 || p->state == FLOOD) return;
  }
  if (p->state != ECHO) return;
  if (p->ws) queue(p, h, frame_head(h, n, 0));
  queue(p, b, n);
}

/* The websocket handshake's answer, once the request head is in: 0, or -1. */
static int on_head(Peer *p) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char reply[512], acc[29], *end, *key;
  unsigned char d[21], in[128];
  size_t klen;
  int i, o = 0;
  p->in[p->have] = 0;
  end = strstr((char *)p->in, "\r\n\r\n");
  if (!end) return p->have < INBUF - 1 ? 0 : -1;
  key = strcasestr((char *)p->in, "sec-websocket-key:");
  if (!key) return -1;
  for (key += 18; *key == ' '; key++) {}
  klen = strcspn(key, "\r");
  if (klen + sizeof guid > sizeof in) return -1;
  memcpy(in, key, klen);
  memcpy(in + klen, guid, sizeof guid - 1);
  SHA1(in, klen + sizeof guid - 1, d);
  d[20] = 0;
  for (i = 0; i < 21; i += 3) {  /* base64 of 20 bytes: 27 characters and one '=' */
    unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
    acc[o++] = b64[v >> 18];
    acc[o++] = b64[(v >> 12) & 63];
    acc[o++] = b64[(v >> 6) & 63];
    acc[o++] = b64[v & 63];
  }
  acc[27] = '=';
  acc[28] = 0;
  snprintf(reply, sizeof reply,
           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: %s\r\n%s\r\n",
           acc, strcasestr((char *)p->in, "binary") ? "Sec-WebSocket-Protocol: binary\r\n" : "");
  queue(p, (const unsigned char *)reply, strlen(reply));
  if (banner) {
    unsigned char h[10];
    size_t hlen = frame_head(h, sizeof rfb_banner - 1, 0);
    queue(p, h, hlen);
    queue(p, rfb_banner, sizeof rfb_banner - 1);
  }
  end += 4;
  p->have -= (size_t)(end - (char *)p->in);
  memmove(p->in, end, p->have);
  p->state = MODE;
  return 0;
}

/* Reads what the peer sent until the socket is empty: 0, or -1 if it is gone. */
static int peer_read(Peer *p) {
  for (;;) {
    ssize_t k = io(p, p->in + p->have, INBUF - 1 - p->have, 0);
    if (k == 0) return -1;
    if (k < 0) return errno == EAGAIN ? 0 : -1;
    if (!p->ws) {
      on_payload(p, p->in, (size_t)k);
      continue;
    }
    p->have += (size_t)k;
    if (p->state == HEAD && on_head(p) < 0) return -1;
    if (p->state == HEAD) continue;
    for (;;) {
      size_t off, len, used;
      int opcode;
      used = frame_parse(p->in, p->have, &off, &len, &opcode);
      if (used == 0) break;
      if (opcode == 8) return -1;
      on_payload(p, p->in + off, len);
      p->have -= used;
      memmove(p->in, p->in + used, p->have);
    }
    if (p->have >= INBUF - 1) return -1; /* a frame larger than a benchmark sends */
  }
}

static int listener(const char *host, int port) {
  struct sockaddr_in a = address(host, port);
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0)
    die("listen %s:%d: %s", host, port, strerror(errno));
  return fd;
}

/* A TLS 1.3 server context (one cipher, so every proxy's hop pays the same). */
static SSL_CTX *tls_server(const char *cert, const char *key) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
      SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
    die("TLS: cannot use %s and %s", cert, key);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

static int target(const char *ws_host, int ws_port, int tcp_port, char **tls) {
  int ep = epoll_create1(0), lws = listener(ws_host, ws_port), ltcp = listener("127.0.0.1", tcp_port);
  int lwss = tls ? listener(ws_host, atoi(tls[0])) : -1;
  SSL_CTX *ctx = tls ? tls_server(tls[1], tls[2]) : NULL;
  struct epoll_event ev, evs[256];
  size_t i;
  flood_ws = malloc(MIB + 10);
  flood_tcp = flood_ws ? flood_ws + 10 : NULL;
  if (!flood_ws) die("out of memory");
  flood_ws_len = frame_head(flood_ws, MIB, 0) + MIB;
  for (i = 0; i < MIB; i++) flood_tcp[i] = (unsigned char)(i * 2654435761u >> 13);
  ev.events = EPOLLIN;
  ev.data.ptr = &lws;
  epoll_ctl(ep, EPOLL_CTL_ADD, lws, &ev);
  ev.data.ptr = &ltcp;
  epoll_ctl(ep, EPOLL_CTL_ADD, ltcp, &ev);
  if (tls) {
    ev.data.ptr = &lwss;
    epoll_ctl(ep, EPOLL_CTL_ADD, lwss, &ev);
  }
  puts("ready");
  fflush(stdout);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1), e;
    if (n < 0 && errno != EINTR) break;
    for (e = 0; e < n; e++) {
      Peer *p;
      if (evs[e].data.ptr == &lws || evs[e].data.ptr == &ltcp || evs[e].data.ptr == &lwss) {
        int fd = accept4(*(int *)evs[e].data.ptr, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) continue;
        nodelay(fd);
        p = calloc(1, sizeof *p);
        if (!p) die("out of memory");
        p->fd = fd;
        p->ws = evs[e].data.ptr != &ltcp;
        if (evs[e].data.ptr == &lwss) {
          p->ssl = SSL_new(ctx);
          if (!p->ssl || !SSL_set_fd(p->ssl, fd)) die("TLS: no session");
          SSL_set_accept_state(p->ssl);
        }
        p->state = p->ws ? HEAD : MODE;
        if (banner && !p->ws) queue(p, rfb_banner, sizeof rfb_banner - 1);
        ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
        ev.data.ptr = p;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        continue;
      }
      p = evs[e].data.ptr;
      if (peer_read(p) < 0 || peer_write(p) < 0) peer_close(p);
    }
  }
  die("epoll_wait: %s", strerror(errno));
  return 1;
}

/* ---- the client ---------------------------------------------------------- */

typedef struct {
  int fd;
  size_t have;
  unsigned char in[INBUF];
  double sent[64];       /* send times of the messages not yet echoed (a ring) */
  unsigned head, tail;   /* ring indexes; tail - head messages outstanding */
  size_t echoed;         /* payload bytes of echoes so far */
  int done;              /* rounds finished */
} Session;

/* The upgrade request of a websocket to PATH (KEY: an X-API-Key, or -). */
static int upgrade_request(char *req, size_t size, const char *host, int port, const char *path,
                           const char *key) {
  int n = snprintf(req, size,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: binary\r\n%s%s%s\r\n",
                   path, host, port, strcmp(key, "-") ? "X-API-Key: " : "", strcmp(key, "-") ? key : "",
                   strcmp(key, "-") ? "\r\n" : "");
  if (n < 0 || (size_t)n >= size) die("request too long");
  return n;
}

/* Opens one websocket (blocking until the 101), then makes it non-blocking. */
static void ws_open(Session *s, const char *host, int port, const char *path, const char *key) {
  struct sockaddr_in a = address(host, port);
  char req[1024];
  int n;
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("connect %s:%d: %s", host, port, strerror(errno));
  nodelay(s->fd);
  n = upgrade_request(req, sizeof req, host, port, path, key);
  send_all(s->fd, (const unsigned char *)req, (size_t)n);
  for (;;) {
    char *end;
    ssize_t k = recv(s->fd, s->in + s->have, INBUF - 1 - s->have, 0);
    if (k <= 0) die("no answer to the upgrade");
    s->have += (size_t)k;
    s->in[s->have] = 0;
    end = strstr((char *)s->in, "\r\n\r\n");
    if (!end) continue;
    if (strncmp((char *)s->in + 8, " 101", 4) != 0) die("%.12s", (char *)s->in);
    end += 4;
    s->have -= (size_t)(end - (char *)s->in);
    memmove(s->in, end, s->have);
    break;
  }
}

/* COUNT websocket opens, conc at a time (each: connect, upgrade, 101,
 * close): opens per second. */
typedef struct {
  int fd, sent;
  size_t have;
  char in[1024];
} Open;

static double opens(const char *host, int port, const char *path, const char *key, int conc,
                    int count) {
  struct sockaddr_in a = address(host, port);
  struct epoll_event ev, evs[256];
  char req[1024];
  int n = upgrade_request(req, sizeof req, host, port, path, key), ep = epoll_create1(0);
  int started = 0, done = 0, i;
  double t0 = now_s();
  Open *ops = calloc((size_t)conc, sizeof *ops);
  if (!ops) die("out of memory");
  for (i = 0; i < conc; i++) ops[i].fd = -1;
  for (;;) {
    int k, e;
    for (i = 0; i < conc && started < count; i++) {
      Open *o = &ops[i];
      if (o->fd >= 0) continue;
      o->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (o->fd < 0) die("socket: %s", strerror(errno));
      nodelay(o->fd);
      if (connect(o->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
      o->sent = 0;
      o->have = 0;
      ev.events = EPOLLOUT | EPOLLIN;
      ev.data.ptr = o;
      epoll_ctl(ep, EPOLL_CTL_ADD, o->fd, &ev);
      started++;
    }
    if (done >= count) break;
    k = epoll_wait(ep, evs, 256, 5000);
    if (k == 0) die("no answer for 5 s");
    for (e = 0; e < k; e++) {
      Open *o = evs[e].data.ptr;
      ssize_t r;
      char *end;
      if (!o->sent) {
        if (send(o->fd, req, (size_t)n, MSG_NOSIGNAL) != n) die("send: %s", strerror(errno));
        o->sent = 1;
        ev.events = EPOLLIN;
        ev.data.ptr = o;
        epoll_ctl(ep, EPOLL_CTL_MOD, o->fd, &ev);
        continue;
      }
      r = recv(o->fd, o->in + o->have, sizeof o->in - 1 - o->have, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) die("no answer to the upgrade");
      o->have += (size_t)r;
      o->in[o->have] = 0;
      end = strstr(o->in, "\r\n\r\n");
      if (!end && o->have < sizeof o->in - 1) continue;
      if (strncmp(o->in + 8, " 101", 4) != 0) die("%.12s", o->in);
      close(o->fd);
      o->fd = -1;
      done++;
    }
  }
  free(ops);
  close(ep);
  return (double)count / (now_s() - t0);
}

static void set_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl: %s", strerror(errno));
}

static Session *sessions;
static int nsessions;

/* One small message from session s, its send time recorded. */
static void ping(Session *s) {
  static const unsigned char pointer[8] = {5, 0, 0, 10, 0, 10, 0, 0};
  unsigned char f[16];
  if (s->tail - s->head >= 64) die("more than 64 messages waiting for their echo");
  s->sent[s->tail++ % 64] = now_s();
  send_all(s->fd, f, client_frame(f, pointer, sizeof pointer));
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs one job; prints its figures. */
static int client(char **argv) {
  const char *host = argv[0], *path = argv[2], *key = argv[3], *job = argv[5];
  int port = atoi(argv[1]), rounds = 0, ep = epoll_create1(0), i, tfd = -1;
  double seconds = 0, interval = 0, hold = 0, t0, mib = -1;
  double *rtt = NULL;
  size_t nrtt = 0;
  unsigned char scratch[INBUF], f[16];
  struct epoll_event ev, evs[256];
  nsessions = atoi(argv[4]);
  if (nsessions < 1 || nsessions > 20000) die("SESSIONS: 1-20000");
  if (!strcmp(job, "opens")) {
    printf("{\"errors\": 0, \"opens_s\": %.1f}\n",
           opens(host, port, path, key, nsessions, atoi(argv[6])));
    return 0;
  }
  if (!strcmp(job, "flood")) seconds = atof(argv[6]);
  else if (!strcmp(job, "hold")) hold = atof(argv[6]) / 1000;
  else if (!strcmp(job, "echo") && argv[7]) {
    rounds = atoi(argv[6]);
    interval = atof(argv[7]) / 1000 / nsessions; /* between two sends, any session */
    if (rounds < 1) die("ROUNDS: at least 1");
    rtt = malloc(sizeof *rtt * (size_t)rounds * (size_t)nsessions);
    if (!rtt) die("out of memory");
  } else die("job: flood, echo, hold or opens");
  sessions = calloc((size_t)nsessions, sizeof *sessions);
  if (!sessions) die("out of memory");
  for (i = 0; i < nsessions; i++) {
    Session *s = &sessions[i];
    ws_open(s, host, port, path, key);
    set_nonblocking(s->fd);
    ev.events = EPOLLIN;
    ev.data.ptr = s;
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    send_all(s->fd, f, client_frame(f, (const unsigned char *)(seconds > 0 ? "F" : "E"), 1));
  }
  if (hold > 0) { /* "open" once every session is, then hold */
    struct timespec ts;
    puts("open");
    fflush(stdout);
    ts.tv_sec = (time_t)hold;
    ts.tv_nsec = (long)((hold - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
  }
  if (seconds > 0) { /* flood: count what arrives after the warm-up */
    double t_count = now_s() + 0.5, t_end = t_count + seconds;
    size_t bytes = 0;
    for (;;) {
      double t = now_s();
      int n = epoll_wait(ep, evs, 256, 10), e;
      if (t >= t_end) break;
      for (e = 0; e < n; e++) {
        Session *s = evs[e].data.ptr;
        ssize_t k;
        while ((k = recv(s->fd, scratch, sizeof scratch, 0)) > 0)
          if (t >= t_count) bytes += (size_t)k;
        if (k == 0) die("a session closed during the flood");
      }
    }
    mib = (double)bytes / seconds / MIB;
  }
  if (rounds > 0) { /* echo: timed round trips */
    size_t total = (size_t)rounds * (size_t)nsessions, next = 0;
    double t_next;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    t0 = now_s();
    t_next = t0;
    if (interval <= 0) { /* closed loop: one message per session in flight */
      for (i = 0; i < nsessions; i++) ping(&sessions[i]);
      next = (size_t)nsessions;
    }
    while (nrtt < total) {
      int n, e;
      if (interval > 0 && next < total) {
        double t = now_s();
        while (next < total && t_next <= t) {
          ping(&sessions[next % (size_t)nsessions]);
          next++;
          t_next = t0 + (double)next * interval;
        }
        its.it_value.tv_sec = (time_t)t_next;
        its.it_value.tv_nsec = (long)((t_next - (double)its.it_value.tv_sec) * 1e9);
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
      }
      n = epoll_wait(ep, evs, 256, 5000);
      if (n == 0) die("no echo for 5 s");
      for (e = 0; e < n; e++) {
        Session *s = evs[e].data.ptr;
        ssize_t k;
        if (!s) {
          uint64_t ticks;
          if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd");
          continue;
        }
        while ((k = recv(s->fd, s->in + s->have, INBUF - s->have, 0)) > 0) {
          double t = now_s();
          size_t off, len, used;
          int opcode;
          s->have += (size_t)k;
          while ((used = frame_parse(s->in, s->have, &off, &len, &opcode)) > 0) {
            s->echoed += len;
            while (s->echoed >= 8 && s->head != s->tail) { /* an echo is 8 bytes */
              s->echoed -= 8;
              rtt[nrtt++] = (t - s->sent[s->head++ % 64]) * 1000;
              if (++s->done < rounds && interval <= 0) ping(s);
            }
            s->have -= used;
            memmove(s->in, s->in + used, s->have);
          }
        }
        if (k == 0) die("a session closed during the echo");
      }
    }
    qsort(rtt, nrtt, sizeof *rtt, by_value);
  }
  for (i = 0; i < nsessions; i++) close(sessions[i].fd);
  printf("{\"errors\": 0");
  if (mib >= 0) printf(", \"mib_s\": %.1f", mib);
  if (nrtt > 0)
    printf(", \"p50_ms\": %.3f, \"p99_ms\": %.3f", rtt[nrtt / 2], rtt[nrtt * 99 / 100]);
  printf("}\n");
  if (tfd >= 0) close(tfd);
  free(rtt);
  free(sessions);
  close(ep);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  banner = !strcmp(argv[1], "rfb-target");
  if ((argc == 5 || argc == 8) && (!strcmp(argv[1], "target") || banner))
    return target(argv[2], atoi(argv[3]), atoi(argv[4]), argc == 8 ? argv + 5 : NULL);
  if ((argc == 9 || argc == 10) && !strcmp(argv[1], "client")) return client(argv + 2);
  fputs("usage: relay_load target|rfb-target WS_HOST WS_PORT TCP_PORT [WSS_PORT CERT KEY]\n"
        "       relay_load client HOST PORT PATH KEY SESSIONS flood SECONDS | echo ROUNDS INTERVAL_MS"
        " | hold MS | opens COUNT\n", stderr);
  return 2;
}
