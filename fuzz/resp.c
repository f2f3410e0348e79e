/*
 * fuzz/resp.c: Redis replies (csrc/resp.c).
 *
 * Input: byte 0 picks the limits (bits 0-2 max_depth 1-8, bits 3-4
 * max_bulk 16 / 300 / 65536 / 2^40, bits 5-6 max_elements 4 / 100 / 10000
 * / 2^40); the rest is a stream of replies, scanned one after another
 * until one is incomplete or refused. For each reply:
 *   - accepted (size k): every shorter prefix is "need more"; a scan fed
 *     the bytes in pieces (one resumable scan, sizes from the input)
 *     ends at the same k; the reply written back canonically here from
 *     its tokens (numbers printed with printf, bulks with their lengths)
 *     is exactly its k bytes, and its nesting and value count are within
 *     the limits;
 *   - refused: the same error with any bytes after it, and from the scan
 *     fed in pieces.
 * Bytes are read only within [data, data + size): every scan works on an
 * exact-size heap copy, so ASan sees any over-read.
 */
#include <inttypes.h>

#include "resp.h"

#define FUZZ_NAME "resp"
#include "fuzz.h"

static void putf(buf *b, const char *fmt, int64_t v) {
  char s[32];
  int k = snprintf(s, sizeof s, fmt, v);
  CHECK(k > 0 && (size_t)k < sizeof s);
  put(b, s, (size_t)k);
}

/* A fresh scan of p[0..n) in one go, on an exact-size copy. */
static enum ctv_resp_result scan_copy(const unsigned char *p, size_t n,
                                      const ctv_resp_limits *lim, size_t *k) {
  ctv_resp_scan s;
  enum ctv_resp_result r;
  unsigned char *c = malloc(n ? n : 1);
  CHECK(c);
  if (n) memcpy(c, p, n);
  ctv_resp_scan_init(&s, lim);
  r = ctv_resp_scan_run(&s, c, n);
  free(c);
  *k = s.off;
  return r;
}

/* Writes the value at p back canonically; returns its size. */
static size_t rewrite(const unsigned char *p, size_t n,
                      const ctv_resp_limits *lim, buf *out, unsigned depth,
                      uint64_t *values) {
  ctv_resp_tok t;
  size_t off;
  uint64_t i;
  char type;
  CHECK(ctv_resp_token(p, n, lim, &t) == CTV_RESP_OK);
  CHECK(t.size <= n);
  ++*values;
  type = (char)t.type;
  put(out, &type, 1);
  if (t.null && t.type != '_') {
    put(out, "-1\r\n", 4);
    return t.size;
  }
  switch (t.type) {
  case ':':
    putf(out, "%" PRId64 "\r\n", t.integer);
    return t.size;
  case '#':
    put(out, t.integer ? "t\r\n" : "f\r\n", 3);
    return t.size;
  case '_':
    put(out, "\r\n", 2);
    return t.size;
  case '+': case '-': case '(': case ',':
    CHECK(!memchr(t.str, '\r', t.len) && !memchr(t.str, '\n', t.len));
    CHECK(t.len <= lim->max_bulk);
    put(out, t.str, t.len);
    put(out, "\r\n", 2);
    return t.size;
  case '$': case '!':
    CHECK(t.len <= lim->max_bulk);
    putf(out, "%" PRId64 "\r\n", (int64_t)t.len);
    put(out, t.str, t.len);
    put(out, "\r\n", 2);
    return t.size;
  case '=':
    CHECK(t.len + 4 <= lim->max_bulk && t.str[-1] == ':');
    putf(out, "%" PRId64 "\r\n", (int64_t)t.len + 4);
    put(out, t.str - 4, t.len + 4);
    put(out, "\r\n", 2);
    return t.size;
  default:
    CHECK(t.aggregate);
    CHECK(t.count <= lim->max_elements);
    putf(out, "%" PRId64 "\r\n",
         (int64_t)(t.type == '%' ? t.count / 2 : t.count));
    if (t.count > 0) CHECK(depth < lim->max_depth);
    off = t.size;
    for (i = 0; i < t.count; i++)
      off += rewrite(p + off, n - off, lim, out, depth + 1, values);
    return off;
  }
}

/* The same stream fed in pieces to one scan; piece sizes from cuts[]. */
static enum ctv_resp_result scan_pieces(const unsigned char *p, size_t n,
                                        const ctv_resp_limits *lim,
                                        const uint8_t *cuts, size_t ncuts,
                                        size_t *k) {
  ctv_resp_scan s;
  enum ctv_resp_result r = CTV_RESP_MORE;
  size_t have = 0, i = 0;
  ctv_resp_scan_init(&s, lim);
  while (r == CTV_RESP_MORE && have < n) {
    size_t step = ncuts ? 1 + cuts[i++ % ncuts] % 23 : 1;
    unsigned char *c;
    have = n - have < step ? n : have + step;
    c = malloc(have);
    CHECK(c);
    memcpy(c, p, have);
    r = ctv_resp_scan_run(&s, c, have);
    free(c);
  }
  *k = s.off;
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint64_t bulks[] = {16, 300, 65536, UINT64_C(1) << 40};
  static const uint64_t counts[] = {4, 100, 10000, UINT64_C(1) << 40};
  ctv_resp_limits lim;
  const unsigned char *s;
  size_t n, at = 0;
  if (size == 0) return 0;
  lim.max_depth = 1 + (data[0] & 7);
  lim.max_bulk = bulks[(data[0] >> 3) & 3];
  lim.max_elements = counts[(data[0] >> 5) & 3];
  s = data + 1;
  n = size - 1;
  while (at < n) {
    size_t k = 0, k2 = 0, j;
    enum ctv_resp_result r = scan_copy(s + at, n - at, &lim, &k), r2;
    r2 = scan_pieces(s + at, n - at, &lim, data, size, &k2);
    CHECK(r2 == r);
    if (r == CTV_RESP_MORE) break;
    if (r != CTV_RESP_OK) {
      /* refused: stays refused with more bytes after it */
      buf more = {0};
      size_t k3;
      CHECK(ctv_resp_message(r)[0] != '\0');
      put(&more, s + at, n - at);
      put(&more, "\r\n$1\r\n\r\n*1\r\n", 12);
      CHECK(scan_copy(more.p, more.len, &lim, &k3) == r);
      free(more.p);
      break;
    }
    CHECK(k2 == k && k > 0 && k <= n - at);
    {
      buf out = {0};
      uint64_t values = 0;
      CHECK(rewrite(s + at, k, &lim, &out, 0, &values) == k);
      CHECK(out.len == k && memcmp(out.p, s + at, k) == 0);
      CHECK(values <= lim.max_elements);
      free(out.p);
    }
    /* every shorter prefix needs more (all of them for small replies) */
    for (j = 0; j < k; j += k <= 512 ? 1 : 1 + k / 256) {
      size_t kp;
      CHECK(scan_copy(s + at, j, &lim, &kp) == CTV_RESP_MORE);
    }
    at += k;
  }
  return 0;
}
