/*
 * fuzz/url.c: console URL assembly round trip.
 *
 * Input: fields separated by 0xFF bytes (missing fields are empty):
 *   0 endpoint (proxy mode) or cluster address (direct mode)
 *   1 token   2 vm uuid   3 host ip
 *   4 options: first byte bit 0 = direct mode, bit 1 = scheme "ws",
 *     bit 2 = scheme "wss", bit 3 = the raw-token proxy layout; the rest, if a valid port, overrides the port.
 * The URL is built with the binding's own helpers (ctv_cluster_host and
 * ctv_layouts, as lurl.c uses them), into a malloc of exactly
 * ctv_url_len bytes, then parsed back independently: scheme, host, port,
 * path "<prefix>/websockify/" and the percent-decoded query must give back
 * exactly what went in. The URL's "http://<authority><path>" form must also
 * parse with ctv_parse_endpoint to the same host and port.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

#define CHECK(c) do { if (!(c)) { \
  fprintf(stderr, "url: check failed: %s\n", #c); abort(); } } while (0)

#define NFIELDS 5

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
static int kept(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
      || (c >= '0' && c <= '9') || (c != 0 && strchr("-_.!~*'()", c));
}
static const char *find(const char *p, const char *e, char c) {
  const char *q = memchr(p, c, (size_t)(e - p));
  return q ? q : e;
}
static int eq(const char *a, size_t an, const char *b, size_t bn) {
  return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* value == percent-decode(p..e), with only kept bytes and %XX allowed. */
static void check_value(const char *p, const char *e, const ctv_param *pr) {
  size_t k = 0;
  for (; p < e; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%') {
      CHECK(e - p >= 3 && hexval((unsigned char)p[1]) >= 0
            && hexval((unsigned char)p[2]) >= 0);
      c = (unsigned char)(hexval((unsigned char)p[1]) * 16
                          + hexval((unsigned char)p[2]));
      p += 2;
    } else {
      CHECK(kept(c));
    }
    CHECK(k < pr->valuelen && (unsigned char)pr->value[k] == c);
    k++;
  }
  CHECK(k == pr->valuelen);
}

/* Parses url[0..len) back and compares it with u. */
static void check_url(const char *url, size_t len, const ctv_url *u) {
  static const char WS[] = "/websockify/";
  const char *e = url + len, *p, *q, *auth, *path, *query;
  ctv_endpoint ep;
  char *http;
  size_t n;
  int i;

  CHECK(!memchr(url, '#', len));             /* no fragment, ever */
  for (p = url; p < e; p++) CHECK(*p > ' ' && *p < 0x7f);

  /* scheme "://" */
  n = strlen(u->scheme);
  CHECK(len > n + 3 && memcmp(url, u->scheme, n) == 0
        && memcmp(url + n, "://", 3) == 0);
  auth = url + n + 3;

  /* authority: up to the first '/' (a '?' before it would end it too) */
  path = find(auth, e, '/');
  CHECK(find(auth, path, '?') == path);
  if (auth < path && *auth == '[') {
    q = find(auth, path, ']');
    CHECK(q < path && u->ipv6);
    CHECK(eq(auth + 1, (size_t)(q - auth - 1), u->host, u->hostlen));
    p = q + 1;
  } else {
    q = find(auth, path, ':');
    CHECK(!u->ipv6);
    CHECK(eq(auth, (size_t)(q - auth), u->host, u->hostlen));
    p = q;
  }
  if (p < path) {                            /* ":port", canonical digits */
    unsigned v = 0;
    CHECK(*p++ == ':' && p < path && *p != '0' && path - p <= 5);
    for (; p < path; p++) {
      CHECK(*p >= '0' && *p <= '9');
      v = v * 10 + (unsigned)(*p - '0');
    }
    CHECK(v == u->port);
  } else {
    CHECK(u->port == 0);
  }

  /* path: "<prefix>/websockify/" up to the '?' */
  query = find(path, e, '?');
  CHECK(query < e);
  n = (size_t)(query - path);
  CHECK(n >= sizeof WS - 1);
  CHECK(memcmp(query - (sizeof WS - 1), WS, sizeof WS - 1) == 0);
  CHECK(eq(path, n - (sizeof WS - 1), u->prefix, u->prefixlen));

  /* query: name=value pairs split on '&', in order */
  p = query + 1;
  for (i = 0; i < u->nparams; i++) {
    const char *amp = find(p, e, '&'), *is = find(p, amp, '=');
    CHECK(is < amp);
    CHECK(eq(p, (size_t)(is - p), u->params[i].name,
             strlen(u->params[i].name)));
    check_value(is + 1, amp, &u->params[i]);
    CHECK(i + 1 < u->nparams ? amp < e : amp == e);
    p = amp + 1;
  }

  /* "http://<authority><path>" parses to the same host and port. */
  n = (size_t)(query - auth);
  http = malloc(7 + n);
  if (!http) return;
  memcpy(http, "http://", 7);
  memcpy(http + 7, auth, n);
  CHECK(ctv_parse_endpoint(http, 7 + n, &ep) == NULL);
  CHECK(eq(ep.host, ep.hostlen, u->host, u->hostlen));
  CHECK(ep.ipv6 == u->ipv6 && ep.port == u->port);
  CHECK(eq(ep.prefix, ep.prefixlen, path, n - (size_t)(path - auth) - 1));
  free(http);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *e = s + size;
  const char *f[NFIELDS];
  size_t fl[NFIELDS], len;
  int nf = 0, opt = 0, direct, i;
  ctv_layout layout;
  ctv_url u;
  char *buf, *end;
  unsigned port;

  /* Split on 0xFF; the last field takes the rest (0xFF included). */
  memset(fl, 0, sizeof fl);
  while (nf < NFIELDS) {
    const char *sep = nf < NFIELDS - 1 ? memchr(s, 0xFF, (size_t)(e - s)) : NULL;
    f[nf] = s;
    fl[nf] = (size_t)((sep ? sep : e) - s);
    nf++;
    if (!sep) break;
    s = sep + 1;
  }
  for (; nf < NFIELDS; nf++) f[nf] = "";
  if (fl[4] > 0) opt = (unsigned char)f[4][0];
  direct = opt & 1;

  memset(&u, 0, sizeof u);
  if (direct) {                   /* as l_direct_url */
    const char *h = f[0];
    size_t n = fl[0];
    enum ctv_host kind = ctv_cluster_host(&h, &n);
    if (kind == CTV_HOST_BAD) return 0;
    u.scheme = "wss";
    u.host = h;
    u.hostlen = n;
    u.ipv6 = kind == CTV_HOST_IPV6;
    layout = CTV_DIRECT;
  } else {                        /* as l_proxy_url */
    ctv_endpoint ep;
    if (ctv_parse_endpoint(f[0], fl[0], &ep) != NULL) return 0;
    ctv_url_from_endpoint(&u, &ep);
    layout = opt & 8 ? CTV_PROXY_RAW : CTV_PROXY;
  }
  if (opt & 2) u.scheme = "ws";
  if (opt & 4) u.scheme = "wss";
  if (fl[4] > 1 && (port = ctv_parse_port(f[4] + 1, fl[4] - 1)) != 0)
    u.port = port;

  /* the binding's layouts: field 1 is whichever token the layout takes */
  for (i = 0; i < 3; i++) {
    const ctv_field *fd = &ctv_layouts[layout][i];
    int k = strcmp(fd->key, "vm_uuid") == 0 ? 2
          : strcmp(fd->key, "host_ip") == 0 ? 3 : 1;
    u.params[i] = (ctv_param){fd->param, f[k], fl[k]};
  }
  u.nparams = 3;

  len = ctv_url_len(&u);
  CHECK(ctv_url_bound(&u) >= len);  /* the binding's one-pass buffer */
  buf = malloc(len);              /* exactly len: ASan sees any overrun */
  if (!buf) return 0;
  end = ctv_url_write(buf, &u);
  CHECK((size_t)(end - buf) == len);
  check_url(buf, len, &u);
  free(buf);
  return 0;
}
