/*
 * fuzz/endpoint.c: ctv_parse_endpoint on arbitrary bytes.
 *
 * On success the parts must describe the input exactly:
 *   input = [scheme "://"] authority prefix "/"*
 *   authority = host | "[" v6host "]" , then optionally ":" port-digits
 * with host a valid IPv4 / IPv6 / name, port 1-65535 (0 when absent), the
 * prefix empty or "/..." without a trailing '/', and no space, control,
 * non-ASCII, '?', '#' anywhere nor '@' in the authority. Rebuilding the
 * canonical form "<scheme>://<host or [v6]>[:port]<prefix>" and parsing it
 * again must give the same parts.
 *
 * By design a bare (unbracketed) IPv6 address is accepted and takes no
 * port: "fd00::1:8443" is the address fd00::1:8443, not a port.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

#define CHECK(c) do { if (!(c)) { \
  fprintf(stderr, "endpoint: check failed: %s\n", #c); abort(); } } while (0)

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static int starts_ci(const char *s, size_t n, const char *w) {
  size_t i, len = strlen(w);
  if (n < len) return 0;
  for (i = 0; i < len; i++)
    if (lower((unsigned char)s[i]) != w[i]) return 0;
  return 1;
}
static int hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'f');
}
static int has(const char *s, size_t n, const char *needle) {
  size_t k = strlen(needle), i;
  for (i = 0; i + k <= n; i++)
    if (memcmp(s + i, needle, k) == 0) return 1;
  return 0;
}

/* Both parses name the same endpoint (pointers may differ). */
static int same(const ctv_endpoint *a, const ctv_endpoint *b) {
  return a->scheme == b->scheme && a->ipv6 == b->ipv6 && a->port == b->port
      && a->hostlen == b->hostlen && a->prefixlen == b->prefixlen
      && memcmp(a->host, b->host, a->hostlen) == 0
      && (a->prefixlen == 0 || memcmp(a->prefix, b->prefix, a->prefixlen) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data, *end = s + size, *a, *p;
  ctv_endpoint ep, ep2;
  enum ctv_host kind;
  size_t i;
  char *canon;
  int len;

  if (ctv_parse_endpoint(s, size, &ep) != NULL) return 0;

  /* Every byte printable ASCII; no query, no fragment. */
  for (i = 0; i < size; i++) CHECK(data[i] > ' ' && data[i] < 0x7f);
  CHECK(!memchr(s, '?', size) && !memchr(s, '#', size));

  /* Scheme and the start of the authority. */
  if (ep.scheme == CTV_SCHEME_HTTPS) {
    CHECK(starts_ci(s, size, "https://"));
    a = s + 8;
  } else if (ep.scheme == CTV_SCHEME_HTTP) {
    CHECK(starts_ci(s, size, "http://"));
    a = s + 7;
  } else {
    CHECK(ep.scheme == CTV_SCHEME_NONE);
    CHECK(!has(s, size, "://"));
    a = s;
  }

  /* Host: inside the input, right at the authority (after '[' for v6). */
  CHECK(ep.host && ep.hostlen > 0);
  CHECK(ep.host >= a && ep.host + ep.hostlen <= end);
  kind = ctv_host_kind(ep.host, ep.hostlen);
  CHECK(kind != CTV_HOST_BAD);
  CHECK(ep.ipv6 == (kind == CTV_HOST_IPV6));
  CHECK(ep.ipv6 == (memchr(ep.host, ':', ep.hostlen) != NULL));
  p = ep.host + ep.hostlen;
  if (ep.host == a + 1) {
    CHECK(a[0] == '[' && ep.ipv6 && p < end && *p == ']');
    p++;
  } else {
    CHECK(ep.host == a);
  }

  /* Port: ":digits" up to the prefix, or nothing. */
  CHECK(ep.prefix >= p && ep.prefix <= end);
  CHECK(ep.prefix + ep.prefixlen <= end);
  CHECK(ep.port <= 65535);
  if (ep.port) {
    CHECK(p < ep.prefix && *p == ':');
    CHECK(ctv_parse_port(p + 1, (size_t)(ep.prefix - p - 1)) == ep.port);
  } else {
    CHECK(ep.prefix == p);
  }
  CHECK(!memchr(a, '@', (size_t)(ep.prefix - a)));
  CHECK(!memchr(a, '/', (size_t)(ep.prefix - a)));

  /* Prefix: "" or "/...", no trailing '/', then only '/' to the end. */
  CHECK(ep.prefixlen == 0 || ep.prefix[0] == '/');
  CHECK(ep.prefixlen == 0 || ep.prefix[ep.prefixlen - 1] != '/');
  for (p = ep.prefix + ep.prefixlen; p < end; p++) CHECK(*p == '/');
  for (i = 0; i < ep.prefixlen; i++)
    if (ep.prefix[i] == '%') {
      CHECK(i + 2 < ep.prefixlen);
      CHECK(hex((unsigned char)ep.prefix[i + 1]));
      CHECK(hex((unsigned char)ep.prefix[i + 2]));
    }

  /* Canonical form parses to the same endpoint. */
  canon = malloc(size + 32);
  if (!canon) return 0;
  len = snprintf(canon, size + 32, "%s%s%.*s%s",
                 ep.scheme == CTV_SCHEME_HTTPS ? "https://"
                 : ep.scheme == CTV_SCHEME_HTTP ? "http://" : "",
                 ep.ipv6 ? "[" : "", (int)ep.hostlen, ep.host,
                 ep.ipv6 ? "]" : "");
  if (ep.port) len += snprintf(canon + len, size + 32 - (size_t)len, ":%u",
                               ep.port);
  if (ep.prefixlen) memcpy(canon + len, ep.prefix, ep.prefixlen);
  len += (int)ep.prefixlen;
  CHECK(ctv_parse_endpoint(canon, (size_t)len, &ep2) == NULL);
  CHECK(same(&ep, &ep2));
  free(canon);
  return 0;
}
