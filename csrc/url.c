/*
 * url.c: see url.h. Locale-independent: every character class is ASCII
 * and spelled out here.
 */
#include "url.h"

#include <string.h>

/* encodeURIComponent keeps A-Z a-z 0-9 - _ . ! ~ * ' ( ) */
static const unsigned char keep[256] = {
  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
  ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
  ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
  ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
  ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
  ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
  ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
  ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
  ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
  ['7'] = 1, ['8'] = 1, ['9'] = 1,
  ['-'] = 1, ['_'] = 1, ['.'] = 1, ['!'] = 1, ['~'] = 1, ['*'] = 1,
  ['\''] = 1, ['('] = 1, [')'] = 1
};

static const char hex[] = "0123456789ABCDEF";

size_t ctv_encode_len(const char *s, size_t n) {
  size_t len = n, i;
  for (i = 0; i < n; i++)
    if (!keep[(unsigned char)s[i]]) len += 2;
  return len;
}

char *ctv_encode(char *dst, const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (keep[c]) {
      *dst++ = (char)c;
    } else {
      *dst++ = '%';
      *dst++ = hex[c >> 4];
      *dst++ = hex[c & 15];
    }
  }
  return dst;
}

static int isdigit_(int c) { return c >= '0' && c <= '9'; }
static int isalpha_(int c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static int isxdigit_(int c) {
  return isdigit_(c) || ((c | 32) >= 'a' && (c | 32) <= 'f');
}

/* Dotted quad: four decimal parts 0-255, no leading zeros ("01" is octal
 * to some parsers and decimal to others, so it is refused). */
static int is_ipv4(const char *s, size_t n) {
  size_t i = 0;
  int part;
  for (part = 0; part < 4; part++) {
    size_t start = i;
    unsigned v = 0;
    if (part > 0) {
      if (i >= n || s[i] != '.') return 0;
      start = ++i;
    }
    while (i < n && isdigit_(s[i]) && i - start < 3)
      v = v * 10 + (unsigned)(s[i++] - '0');
    if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
      return 0;
  }
  return i == n;
}

/* RFC 4291 section 2.2 text forms: eight groups of 1-4 hex digits, one "::"
 * standing for one or more zero groups, an IPv4 tail counting as two. */
static int is_ipv6(const char *s, size_t n) {
  size_t i = 0;
  int groups = 0, elided = 0;
  if (n < 2) return 0;
  if (s[0] == ':') {
    if (s[1] != ':') return 0;
    elided = 1;
    i = 2;
    if (i == n) return 1;
  }
  for (;;) {
    size_t j = i;
    while (j < n && isxdigit_(s[j])) j++;
    if (j < n && s[j] == '.') {           /* IPv4 tail: must end the text */
      if (!is_ipv4(s + i, n - i)) return 0;
      groups += 2;
      break;
    }
    if (j == i || j - i > 4) return 0;
    groups++;
    if (j == n) break;
    if (s[j] != ':') return 0;
    j++;
    if (j < n && s[j] == ':') {
      if (elided) return 0;
      elided = 1;
      j++;
      if (j == n) break;
    } else if (j == n) {
      return 0;                           /* a single trailing colon */
    }
    i = j;
  }
  return elided ? groups <= 7 : groups == 8;
}

/* A label that WHATWG URL parsers (browsers, Node) read as a number:
 * decimal digits, or "0x"/"0X" and hex digits. */
static int numeric_label(const char *s, size_t n) {
  size_t i = 0;
  if (n >= 2 && s[0] == '0' && (s[1] | 32) == 'x') {
    for (i = 2; i < n; i++)
      if (!isxdigit_(s[i])) return 0;
    return 1;
  }
  for (; i < n; i++)
    if (!isdigit_(s[i])) return 0;
  return 1;
}

/* RFC 1123 host name: dot-separated labels of letters, digits and
 * hyphens, 1-63 bytes, no hyphen at either end, 253 bytes in all. A name
 * whose last label is a number would be read as an IPv4 address by
 * browsers ("1.2.3.0x4" is 1.2.3.4 to them), so it is refused unless it is
 * one. */
static int is_hostname(const char *s, size_t n) {
  size_t i = 0, start = 0;
  if (n == 0 || n > 253) return 0;
  while (i < n) {
    start = i;
    while (i < n && s[i] != '.') {
      int c = (unsigned char)s[i];
      if (!isdigit_(c) && !isalpha_(c) && c != '-') return 0;
      i++;
    }
    if (i == start || i - start > 63 || s[start] == '-' || s[i - 1] == '-')
      return 0;
    if (i < n && ++i == n) return 0;      /* empty last label ("a.") */
  }
  return !numeric_label(s + start, n - start);
}

enum ctv_host ctv_host_kind(const char *s, size_t n) {
  if (memchr(s, ':', n)) return is_ipv6(s, n) ? CTV_HOST_IPV6 : CTV_HOST_BAD;
  if (is_ipv4(s, n)) return CTV_HOST_IPV4;
  return is_hostname(s, n) ? CTV_HOST_NAME : CTV_HOST_BAD;
}

unsigned ctv_parse_port(const char *s, size_t n) {
  unsigned v = 0;
  size_t i;
  if (n == 0 || n > 5) return 0;
  for (i = 0; i < n; i++) {
    if (!isdigit_(s[i])) return 0;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  return v <= 65535 ? v : 0;
}

/* RFC 3986 pchar plus "/": unreserved, sub-delims, ":", "@", "%XX". */
static int valid_path(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      if (i + 2 >= n) return 0;
      if (!isxdigit_(s[i + 1]) || !isxdigit_(s[i + 2])) return 0;
      i += 2;
    } else if (!(isalpha_(c) || isdigit_(c)
                 || (c && strchr("-._~!$&'()*+,;=:@/", c)))) {
      return 0;
    }
  }
  return 1;
}

/* s[0..n) equals the lower-case `word`, ignoring ASCII case. */
static int eq_ci(const char *s, size_t n, const char *word) {
  size_t i, len = strlen(word);
  if (n != len) return 0;
  for (i = 0; i < len; i++)
    if ((s[i] | 32) != word[i]) return 0;
  return 1;
}

const char *ctv_parse_endpoint(const char *s, size_t n, ctv_endpoint *ep) {
  const char *end = s + n, *p = s, *auth, *authend, *colon = NULL, *q;
  memset(ep, 0, sizeof *ep);
  if (n == 0) return "endpoint is empty";
  for (q = s; q < end; q++) {
    unsigned char c = (unsigned char)*q;
    if (c <= ' ' || c >= 0x7f)
      return "endpoint contains a space, control or non-ASCII byte";
  }
  if (memchr(s, '?', n)) return "endpoint must not have a query";
  if (memchr(s, '#', n)) return "endpoint must not have a fragment";
  for (q = s; q + 3 <= end; q++) {
    if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
      size_t len = (size_t)(q - s);
      if (eq_ci(s, len, "https")) ep->scheme = CTV_SCHEME_HTTPS;
      else if (eq_ci(s, len, "http")) ep->scheme = CTV_SCHEME_HTTP;
      else return "endpoint scheme must be http or https";
      p = q + 3;
      break;
    }
  }
  auth = p;
  authend = memchr(p, '/', (size_t)(end - p));
  if (!authend) authend = end;
  if (memchr(auth, '@', (size_t)(authend - auth)))
    return "endpoint must not carry user info";
  if (auth == authend) return "endpoint has no host";
  if (*auth == '[') {
    const char *close = memchr(auth, ']', (size_t)(authend - auth));
    if (!close) return "endpoint has an unclosed '['";
    ep->host = auth + 1;
    ep->hostlen = (size_t)(close - auth - 1);
    if (close + 1 < authend) {
      if (close[1] != ':') return "endpoint has junk after ']'";
      colon = close + 1;
    }
    if (ctv_host_kind(ep->host, ep->hostlen) != CTV_HOST_IPV6)
      return "endpoint has an invalid IPv6 address in brackets";
  } else {
    const char *c1 = memchr(auth, ':', (size_t)(authend - auth));
    ep->host = auth;
    ep->hostlen = (size_t)(authend - auth);
    if (c1 && !memchr(c1 + 1, ':', (size_t)(authend - c1 - 1))) {
      colon = c1;                         /* one colon: host:port */
      ep->hostlen = (size_t)(c1 - auth);
    }
    if (ctv_host_kind(ep->host, ep->hostlen) == CTV_HOST_BAD)
      return "endpoint host is not a valid IPv4, IPv6 or host name";
  }
  ep->ipv6 = memchr(ep->host, ':', ep->hostlen) != NULL;
  if (colon) {
    ep->port = ctv_parse_port(colon + 1, (size_t)(authend - colon - 1));
    if (!ep->port) return "endpoint port must be 1-65535";
  }
  while (end > authend && end[-1] == '/') end--;
  ep->prefix = authend;
  ep->prefixlen = (size_t)(end - authend);
  if (!valid_path(ep->prefix, ep->prefixlen))
    return "endpoint path has an invalid character";
  return NULL;
}

enum ctv_host ctv_cluster_host(const char **s, size_t *n) {
  if (*n > 2 && (*s)[0] == '[' && (*s)[*n - 1] == ']') {
    if (ctv_host_kind(*s + 1, *n - 2) != CTV_HOST_IPV6) return CTV_HOST_BAD;
    (*s)++;
    *n -= 2;
    return CTV_HOST_IPV6;
  }
  return ctv_host_kind(*s, *n);
}

const ctv_field ctv_layouts[3][3] = {
  /* CTV_DIRECT */    {{"uuid", "vm_uuid"}, {"token", "raw_token"}, {"host", "host_ip"}},
  /* CTV_PROXY */     {{"token", "token"}, {"uuid", "vm_uuid"}, {"host", "host_ip"}},
  /* CTV_PROXY_RAW */ {{"token", "raw_token"}, {"uuid", "vm_uuid"}, {"host", "host_ip"}},
};

void ctv_url_from_endpoint(ctv_url *u, const ctv_endpoint *ep) {
  memset(u, 0, sizeof *u);
  u->scheme = ep->scheme == CTV_SCHEME_HTTP ? "ws" : "wss";
  u->host = ep->host;
  u->hostlen = ep->hostlen;
  u->ipv6 = ep->ipv6;
  u->port = ep->port;
  u->prefix = ep->prefix;
  u->prefixlen = ep->prefixlen;
}

static size_t ndigits(unsigned v) {
  size_t d = 1;
  while (v >= 10) { v /= 10; d++; }
  return d;
}

static const char WSPATH[] = "/websockify/?";

/* The length, exact or (bound) assuming every value byte is encoded. */
static size_t url_len(const ctv_url *u, int bound) {
  size_t len = strlen(u->scheme) + 3 + u->hostlen + (u->ipv6 ? 2 : 0)
             + u->prefixlen + sizeof WSPATH - 1;
  int i;
  if (u->port) len += 1 + ndigits(u->port);
  for (i = 0; i < u->nparams; i++) {
    const ctv_param *p = &u->params[i];
    len += (i > 0) + strlen(p->name) + 1
         + (bound ? 3 * p->valuelen : ctv_encode_len(p->value, p->valuelen));
  }
  return len;
}

size_t ctv_url_len(const ctv_url *u) { return url_len(u, 0); }
size_t ctv_url_bound(const ctv_url *u) { return url_len(u, 1); }

static char *put(char *dst, const char *s, size_t n) {
  if (n) memcpy(dst, s, n);     /* s may be NULL when n is 0 */
  return dst + n;
}

char *ctv_url_write(char *dst, const ctv_url *u) {
  int i;
  dst = put(dst, u->scheme, strlen(u->scheme));
  dst = put(dst, "://", 3);
  if (u->ipv6) *dst++ = '[';
  dst = put(dst, u->host, u->hostlen);
  if (u->ipv6) *dst++ = ']';
  if (u->port) {
    size_t d = ndigits(u->port), k;
    unsigned v = u->port;
    *dst++ = ':';
    for (k = d; k > 0; k--) { dst[k - 1] = (char)('0' + v % 10); v /= 10; }
    dst += d;
  }
  dst = put(dst, u->prefix, u->prefixlen);
  dst = put(dst, WSPATH, sizeof WSPATH - 1);
  for (i = 0; i < u->nparams; i++) {
    const ctv_param *pr = &u->params[i];
    if (i > 0) *dst++ = '&';
    dst = put(dst, pr->name, strlen(pr->name));
    *dst++ = '=';
    dst = ctv_encode(dst, pr->value, pr->valuelen);
  }
  return dst;
}
