/*
 * fuzz/host.c: ctv_host_kind on arbitrary bytes, cross-checked against
 * glibc's inet_pton and an independent RFC 1123 host name checker.
 *
 * - IPv4: CTV_HOST_IPV4 exactly when inet_pton(AF_INET) accepts. Our parser
 *   refuses leading zeros ("01.2.3.4"); glibc's inet_pton refuses them too
 *   (checked on glibc 2.36), so no exception is needed.
 * - IPv6: CTV_HOST_IPV6 exactly when inet_pton(AF_INET6) accepts. glibc
 *   rejects zone ids ("fe80::1%eth0") as ctv_host_kind does, and no
 *   disagreement class has been found, so the check covers every input
 *   without a NUL byte (inet_pton needs a C string). Inputs holding '%' or
 *   NUL must be CTV_HOST_BAD.
 * - Host names: CTV_HOST_NAME exactly when is_name() below accepts and
 *   the last label is not a WHATWG hex number ("0x" + hex digits): URL
 *   parsers in browsers and Node read "1.2.3.0x4" as 1.2.3.4 and refuse
 *   "a.0x10", so such names must be CTV_HOST_BAD (the fuzzer found it;
 *   the seeds host/whatwg-hex-* keep it found).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static int digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int ldh(unsigned char c) {
  return digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
      || c == '-';
}

/* RFC 1123: labels of 1-63 letters, digits and hyphens, no hyphen at
 * either end of a label, 253 bytes in all, and (our rule, so browsers do
 * not read it as IPv4) the last label is not all digits. */
static int is_name(const char *s, size_t n) {
  const char *p = s, *end = s + n, *label = s;
  size_t i;
  if (n == 0 || n > 253) return 0;
  for (;;) {
    const char *dot = memchr(p, '.', (size_t)(end - p));
    const char *le = dot ? dot : end;
    size_t len = (size_t)(le - p);
    if (len < 1 || len > 63 || p[0] == '-' || le[-1] == '-') return 0;
    for (i = 0; i < len; i++)
      if (!ldh((unsigned char)p[i])) return 0;
    label = p;
    if (!dot) break;
    p = dot + 1;
  }
  for (p = label; p < end; p++)
    if (!digit((unsigned char)*p)) return 1;
  return 0;                                 /* last label all digits */
}

/* The last label is a WHATWG hex number: "0x" or "0X", then hex digits. */
static int hex_last_label(const char *s, size_t n) {
  const char *p = s + n;
  while (p > s && p[-1] != '.') p--;
  if (s + n - p < 2 || p[0] != '0' || (p[1] != 'x' && p[1] != 'X')) return 0;
  for (p += 2; p < s + n; p++)
    if (!digit((unsigned char)*p) && !((*p | 32) >= 'a' && (*p | 32) <= 'f'))
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  enum ctv_host kind = ctv_host_kind(s, size);
  unsigned char addr[16];
  char *z;
  int v4, v6;

  if (kind != CTV_HOST_BAD && kind != CTV_HOST_IPV4 && kind != CTV_HOST_IPV6
      && kind != CTV_HOST_NAME)
    abort();
  if (is_name(s, size) && hex_last_label(s, size)) {
    if (kind != CTV_HOST_BAD) abort();
  } else if ((kind == CTV_HOST_NAME) != is_name(s, size)) {
    abort();
  }
  if (memchr(s, '%', size) || memchr(s, '\0', size)) {
    if (kind != CTV_HOST_BAD) abort();
    return 0;
  }

  z = malloc(size + 1);                     /* inet_pton wants a C string */
  if (!z) return 0;
  memcpy(z, s, size);
  z[size] = '\0';
  v4 = inet_pton(AF_INET, z, addr) == 1;
  v6 = inet_pton(AF_INET6, z, addr) == 1;
  free(z);
  if ((kind == CTV_HOST_IPV4) != v4) abort();
  if ((kind == CTV_HOST_IPV6) != v6) abort();
  return 0;
}
