/*
 * fuzz/frames.c: websocket frames, RFB splitting, the handshake follower
 * and the view-only filter (csrc/frames.c).
 *
 * Every input is first used raw:
 *   - ctv_ws_parse in both roles: a header it accepts is canonical, so
 *     ctv_ws_write_header gives back exactly its bytes; every shorter
 *     prefix is "need more", never an error or a different header;
 *   - ctv_ws_mask: unmask(unmask(x)) == x in place and out of place, and
 *     equal to byte-by-byte XOR at any offset;
 *   - the streaming decoder, fed in pieces, hands out exactly the payloads
 *     that repeated ctv_ws_parse over the whole buffer finds, and fails
 *     on the same frame;
 *   - ctv_rfb_client_split agrees with the reference splitter below;
 *   - the invariant the filter's split relies on (frames.h): a client
 *     message's header, the bytes ctv_rfb_client_len needs to know its
 *     length, is at most CTV_RFB_MAXHEAD bytes and never longer than the
 *     message;
 *   - ctv_grow (csrc/grow.c): room for what was asked, never past max, the
 *     contents kept, and NULL (nothing allocated) when a size overflows.
 * Then, by the first byte:
 *   even: bytes 1-3 set max_cut and a PRNG seed; the rest is the client's
 *     normal-phase RFB stream after a canned 3.8 handshake, cut into masked
 *     frames (fragmented messages, pings between) and fed in pieces. The
 *     filter's output, read back by the decoder here, must be well-formed
 *     masked frames whose data is exactly the reference's view-only stream
 *     (no input message ever), and it fails exactly when the reference
 *     finds an unknown or oversized message. A watching filter fed the
 *     same pieces builds no output, fails on the same input, and both
 *     count the input messages the reference counts.
 *   odd: the rest is a script of records <flags> <len> <len bytes>: bit 0
 *     target or browser, bit 1 wrap in a frame (else raw wire bytes). Until
 *     the browser reaches the normal phase its bytes pass unchanged; after,
 *     the data the filter sends is never more than the data payload the
 *     browser's frames carried (counted on the wire by data_bytes below:
 *     a wrapped record lands inside a frame that raw bytes left open, and
 *     then its own header and key are payload too), plus the header of a
 *     message held back when the handshake ended. A watching filter fed
 *     the same records hands back its input, but in the one record whose
 *     ClientInit is 0: then (unless exclusive, bit 1 of the first byte)
 *     one bit of the wire changes, the flag read as 1.
 * The ClientInit flag of the canned handshake (bits 2-3 of the first byte:
 * 0, 1 or 2) reaches the target as sent, but 0 as 1 unless exclusive.
 * Inputs are read only within [data, data + size): ASan checks the code
 * under test never reads past what it is given (each piece is copied into
 * a malloc of exactly its size first).
 */
#include "frames.h"
#include "grow.h"

#define FUZZ_NAME "frames"
#include "fuzz.h"

/* ---- small helpers ------------------------------------------------------ */

static uint64_t rng;
static unsigned next(unsigned n) {   /* 0 .. n-1, xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return n ? (unsigned)((rng * UINT64_C(2685821657736338717)) >> 33) % n : 0;
}

static int test_random(void *ud, unsigned char *b, size_t n) {
  size_t i;
  (void)ud;
  for (i = 0; i < n; i++) b[i] = (unsigned char)next(256);
  return 0;
}

/* Calls f on an exact-size heap copy, so ASan sees any over-read. */
static enum ctv_vo_result feed(ctv_vo *vo, int browser,
                               const unsigned char *p, size_t n) {
  unsigned char *c = malloc(n ? n : 1);
  enum ctv_vo_result r;
  CHECK(c);
  if (n) memcpy(c, p, n);
  r = browser ? ctv_vo_from_browser(vo, c, n) : ctv_vo_from_target(vo, c, n);
  free(c);
  return r;
}

/* A masked client frame around p[0..n), written here byte by byte. */
static void frame(buf *w, int fin, int op, const unsigned char *p, size_t n) {
  unsigned char h[14], key[4];
  size_t hl = 2, i;
  for (i = 0; i < 4; i++) key[i] = (unsigned char)next(256);
  h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
  if (n < 126) {
    h[1] = (unsigned char)(0x80 | n);
  } else if (n < 65536) {
    h[1] = 0x80 | 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    hl = 4;
  } else {
    h[1] = 0x80 | 127;
    for (i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  memcpy(h + hl, key, 4);
  put(w, h, hl + 4);
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)(p[i] ^ key[i & 3]);
    put(w, &c, 1);
  }
}

/* Reads frames the filter sent: masked, FIN, minimal lengths, known
 * opcodes; data payloads appended to d. */
static void read_out(const unsigned char *p, size_t n, buf *d) {
  size_t i = 0, k;
  while (i < n) {
    uint64_t len;
    int op;
    const unsigned char *key;
    CHECK(n - i >= 2);
    CHECK(p[i] & 0x80);                 /* FIN */
    CHECK((p[i] & 0x70) == 0);
    op = p[i] & 15;
    CHECK(op == 2 || op == 8 || op == 9 || op == 10);
    CHECK(p[i + 1] & 0x80);             /* masked */
    len = p[i + 1] & 127;
    i += 2;
    if (len == 126) {
      CHECK(n - i >= 2);
      len = (uint64_t)p[i] << 8 | p[i + 1];
      CHECK(len >= 126);
      i += 2;
    } else if (len == 127) {
      CHECK(n - i >= 8);
      len = 0;
      for (k = 0; k < 8; k++) len = len << 8 | p[i + k];
      CHECK(len >= 65536 && len < (UINT64_C(1) << 63));
      i += 8;
    }
    if (op & 8) CHECK(len <= 125);
    else CHECK(len > 0);                /* no empty data frames */
    CHECK(n - i >= 4 && n - i - 4 >= len);
    key = p + i;
    i += 4;
    for (k = 0; k < len; k++) {
      unsigned char c = (unsigned char)(p[i + k] ^ key[k & 3]);
      if (op == 2) put(d, &c, 1);
    }
    i += (size_t)len;
  }
}

/* ---- reference RFB client splitter (written apart from frames.c) -------- */

/* Whole length of the message at p[0..n), 0 if unknown/too big, or
 * SIZE_MAX if more bytes are needed to say. *drop: not a view message. */
static size_t ref_len(const unsigned char *p, size_t n, uint32_t max_cut,
                      int *drop) {
  static const unsigned char fixed[256] = {
    [0] = 20, [3] = 10, [4] = 8, [5] = 6, [150] = 10, [250] = 4
  };
  uint32_t l;
  if (n < 1) return SIZE_MAX;
  *drop = p[0] == 4 || p[0] == 5 || p[0] == 6 || p[0] == 250
       || p[0] == 251 || p[0] == 255;
  if (fixed[p[0]]) return fixed[p[0]];
  switch (p[0]) {
  case 2:
    return n < 4 ? SIZE_MAX : 4 + 4 * (size_t)(p[2] * 256 + p[3]);
  case 6:
    if (n < 8) return SIZE_MAX;
    l = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    if (l >= 0x80000000u) l = (uint32_t)(UINT64_C(0x100000000) - l);
    return l > max_cut ? 0 : 8 + (size_t)l;
  case 248:
    if (n < 9) return SIZE_MAX;
    return p[8] > 64 ? 0 : 9 + (size_t)p[8];
  case 251:
    return n < 7 ? SIZE_MAX : 8 + 16 * (size_t)p[6];
  case 255:
    if (n < 2) return SIZE_MAX;
    return p[1] == 0 ? 12 : 0;
  default:
    return 0;
  }
}

/* The view-only stream of s[0..n): view messages kept (a trailing partial
 * one too once its length is known). Returns 1 if s has an error, sets
 * *boundary when s ends exactly between messages. */
static int reference(const unsigned char *s, size_t n, uint32_t max_cut,
                     buf *e, int *boundary, uint64_t *inputs) {
  size_t i = 0;
  *boundary = 1;
  *inputs = 0;
  while (i < n) {
    int drop = 0;
    size_t len = ref_len(s + i, n - i, max_cut, &drop);
    if (len == 0) return 1;
    *boundary = 0;
    if (len == SIZE_MAX) return 0;   /* header cut: held back, not sent */
    if (s[i] == 4 || s[i] == 5 || s[i] == 6 || s[i] == 255) ++*inputs;
    if (len > n - i) len = n - i;
    else *boundary = 1;
    if (!drop) put(e, s + i, len);
    i += len;
  }
  return 0;
}

/* ---- raw checks --------------------------------------------------------- */

static void check_parse(const uint8_t *data, size_t size) {
  int role;
  for (role = 0; role < 2; role++) {
    ctv_ws_frame f, g;
    uint64_t max = size > 3 ? data[3] * 300u : UINT64_C(0x7fffffffffffffff);
    enum ctv_ws_result r = ctv_ws_parse(data, size, role, max, &f);
    if (r == CTV_WS_OK) {
      unsigned char h[CTV_WS_MAXHEADER];
      size_t hl, k;
      CHECK(f.header_len <= size && f.header_len <= CTV_WS_MAXHEADER);
      CHECK(f.payload_len <= max);
      CHECK(f.masked == (role == CTV_WS_FROM_CLIENT));
      hl = ctv_ws_write_header(h, f.fin, f.opcode, f.payload_len,
                               f.masked ? f.key : NULL);
      CHECK(hl == f.header_len && memcmp(h, data, hl) == 0);
      for (k = 0; k < f.header_len; k++)
        CHECK(ctv_ws_parse(data, k, role, max, &g) == CTV_WS_MORE);
      CHECK(ctv_ws_parse(data, f.header_len, role, max, &g) == CTV_WS_OK);
      CHECK(g.payload_len == f.payload_len && g.opcode == f.opcode);
    } else if (r == CTV_WS_MORE) {
      CHECK(size < CTV_WS_MAXHEADER);
    } else {
      /* an error stays an error with more bytes */
      unsigned char more[CTV_WS_MAXHEADER + 1];
      size_t k = size < CTV_WS_MAXHEADER ? size : CTV_WS_MAXHEADER;
      memcpy(more, data, k);
      memset(more + k, 0xff, sizeof more - k);
      CHECK(ctv_ws_parse(more, sizeof more, role, max, &g) == r);
    }
  }
}

static void check_mask(const uint8_t *data, size_t size) {
  unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  unsigned char *a, *b;
  uint64_t off = size ? data[0] : 0;
  size_t i;
  if (size >= 5) memcpy(key, data + 1, 4);
  a = malloc(size + 1);
  b = malloc(size + 1);
  CHECK(a && b);
  ctv_ws_mask(a, data, size, key, off);
  for (i = 0; i < size; i++)
    CHECK(a[i] == (data[i] ^ key[(off + i) & 3]));
  memcpy(b, a, size);
  ctv_ws_mask(b, b, size, key, off);           /* in place */
  CHECK(size == 0 || memcmp(b, data, size) == 0);
  free(a);
  free(b);
}

/* The streaming decoder against repeated whole-buffer parsing. */
static void check_decoder(const uint8_t *data, size_t size) {
  ctv_ws_decoder d;
  buf got = {0}, want = {0};
  size_t i = 0, u, cut = size ? 1 + data[size - 1] % 17 : 1;
  int err_s = 0, err_w = 0, open = 0;
  enum ctv_ws_result r;
  uint64_t max = 100000;
  /* reference */
  while (i < size) {
    ctv_ws_frame f;
    r = ctv_ws_parse(data + i, size - i, CTV_WS_FROM_SERVER, max, &f);
    if (r == CTV_WS_MORE) break;
    if (r != CTV_WS_OK) { err_w = 1; break; }
    if (f.opcode == CTV_WS_CONT ? !open : (!(f.opcode & 8) && open)) {
      err_w = 1;
      break;
    }
    if (!(f.opcode & 8)) open = !f.fin;
    if (f.payload_len > size - i - f.header_len) {
      put(&want, data + i + f.header_len, size - i - f.header_len);
      break;
    }
    put(&want, data + i + f.header_len, (size_t)f.payload_len);
    i += f.header_len + (size_t)f.payload_len;
  }
  /* streaming, cut pieces */
  ctv_ws_decoder_init(&d, CTV_WS_FROM_SERVER, max);
  for (i = 0; i < size && !err_s; ) {
    size_t end = size - i < cut ? size : i + cut, j = i;
    unsigned char *c = malloc(end - i + 1);
    CHECK(c);
    memcpy(c, data + i, end - i);
    while (j < end) {
      ctv_ws_piece pc;
      r = ctv_ws_decode(&d, c + (j - i), end - j, &u, &pc);
      CHECK(u <= end - j);
      j += u;
      if (r == CTV_WS_MORE) { CHECK(j == end); break; }
      if (r != CTV_WS_OK) { err_s = 1; break; }
      CHECK(pc.data >= c && pc.data + pc.len <= c + (end - i));
      put(&got, pc.data, pc.len);
    }
    free(c);
    i = end;
  }
  CHECK(err_s == err_w);
  CHECK(got.len == want.len && (got.len == 0 || memcmp(got.p, want.p, got.len) == 0));
  free(got.p);
  free(want.p);
}

static void check_split(const uint8_t *data, size_t size) {
  ctv_rfb_msg m;
  uint32_t max_cut = 1000;
  int drop = 0;
  size_t ref = ref_len(data, size, max_cut, &drop);
  enum ctv_rfb_result r = ctv_rfb_client_split(data, size, max_cut, &m);
  if (ref == 0) {
    CHECK(r != CTV_RFB_OK && r != CTV_RFB_MORE);
  } else if (ref == SIZE_MAX || ref > size) {
    CHECK(r == CTV_RFB_MORE);
  } else {
    CHECK(r == CTV_RFB_OK && m.len == ref && (m.klass != CTV_RFB_VIEW) == drop);
  }
}

/* Asks for the header one step at a time, as the filter's split does. */
static void check_header(const uint8_t *data, size_t size) {
  ctv_rfb_msg m;
  size_t k = 0;
  enum ctv_rfb_result r;
  while ((r = ctv_rfb_client_len(data, k, UINT32_MAX, &m)) == CTV_RFB_MORE) {
    CHECK(m.len > k && m.len <= CTV_RFB_MAXHEAD);
    if (m.len > size) return;
    k = (size_t)m.len;
  }
  if (r == CTV_RFB_OK) CHECK(m.len >= k);
}

/* Sizes from the input, small enough to allocate; and sizes that overflow
 * in elements or in bytes, which must fail before any allocation. */
static void check_grow(const uint8_t *data, size_t size) {
  size_t elem = size ? 1 + data[0] % 16 : 1, cap = 0, len = 0, c = 0, i;
  size_t max = size > 1 && data[1] ? (size_t)data[1] * 4 : SIZE_MAX;
  unsigned char *p = NULL, *q;
  CHECK(ctv_grow(NULL, &c, SIZE_MAX - 3, 4, 1, SIZE_MAX) == NULL);
  CHECK(ctv_grow(NULL, &c, 0, SIZE_MAX / 2 + 1, 2, SIZE_MAX) == NULL);
  CHECK(ctv_grow(NULL, &c, 1, SIZE_MAX / elem, elem, SIZE_MAX) == NULL);
  CHECK(ctv_grow(NULL, &c, 0, 5, 1, 4) == NULL && c == 0);
  for (i = 2; i < size && i < 18; i++) {
    size_t extra = data[i], old = cap;
    q = ctv_grow(p, &cap, len, extra, elem, max);
    if (len + extra > max) {
      CHECK(q == NULL && cap == old);
      continue;
    }
    CHECK(q != NULL && cap >= len + extra && cap <= max);
    CHECK(q == p ? cap == old : cap >= 2 * old || cap == max);
    if (q != p)
      for (c = 0; c < len * elem; c++) CHECK(q[c] == (unsigned char)c);
    for (c = len * elem; c < (len + extra) * elem; c++) q[c] = (unsigned char)c;
    p = q;
    len += extra;
  }
  free(p);
}

/* ---- filter sessions ---------------------------------------------------- */

/* The canned 3.8 handshake, its ClientInit flag `shared`. What reaches the
 * target is the browser's bytes, but a ClientInit of 0 becomes 1 unless
 * the filter lets the session be exclusive: a view-only filter re-frames
 * it, a watching one hands back the input with that byte re-masked. */
static void canned(ctv_vo *vo, unsigned char shared) {
  static const unsigned char sv[] = "RFB 003.008\n", sinit[] = {
    4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
    0, 0, 0, 2, 'h', 'i'};
  static const unsigned char types[] = {1, 1}, one[] = {1}, ok[] = {0, 0, 0, 0};
  const unsigned char init[1] = {shared};
  const struct { int browser; const unsigned char *p; size_t n; } s[] = {
    {0, sv, 12}, {1, sv, 12}, {0, types, 2}, {1, one, 1}, {0, ok, 4},
    {1, init, 1}, {0, sinit, sizeof sinit}};
  size_t i;
  int forced = shared == 0 && !vo->exclusive;
  for (i = 0; i < sizeof s / sizeof s[0]; i++) {
    buf w = {0}, d = {0};
    int is_init = s[i].p == init;
    if (s[i].browser) {
      frame(&w, 1, 2, s[i].p, s[i].n);
    } else {
      unsigned char h[2] = {0x82, (unsigned char)s[i].n};
      put(&w, h, 2);
      put(&w, s[i].p, s[i].n);
    }
    CHECK(feed(vo, s[i].browser, w.p, w.len) == CTV_VO_OK);
    if (s[i].browser && vo->watch && !(is_init && forced)) {
      CHECK(vo->out.len == 0);
    } else if (s[i].browser) {
      read_out(vo->out.p, vo->out.len, &d);
      CHECK(d.len == s[i].n);
      if (is_init && forced) CHECK(d.p[0] == 1);
      else CHECK(memcmp(d.p, s[i].p, d.len) == 0);
      /* a watching filter changes that one byte of the wire, nothing else */
      if (vo->watch) CHECK(vo->out.len == w.len && memcmp(vo->out.p, w.p, w.len - 1) == 0);
    }
    free(w.p);
    free(d.p);
  }
  CHECK(vo->hs.client_normal && vo->target_done);
  CHECK(vo->shared_forced == forced);
}

static void structured(const uint8_t *data, size_t size) {
  uint32_t max_cut = size > 1 ? (uint32_t)data[1] * 8 : 0;
  const unsigned char *s = data + (size > 3 ? 4 : size);
  size_t n = size > 3 ? size - 4 : 0, i, pos;
  buf wire = {0}, out = {0}, e = {0};
  ctv_vo vo, watch;
  int bad, boundary, failed = 0, wfailed = 0;
  uint64_t inputs;
  rng = 0x9e3779b97f4a7c15u ^ (size > 3 ? (uint64_t)data[2] << 8 | data[3] : 7);
  unsigned char shared = (unsigned char)(data[0] >> 2) % 3;
  ctv_vo_init(&vo, 70000, max_cut, 100, test_random, NULL);
  canned(&vo, shared);
  ctv_vo_init(&watch, 70000, max_cut, 100, test_random, NULL);
  watch.watch = 1;
  watch.exclusive = (data[0] >> 1) & 1;
  canned(&watch, shared);
  /* frames of 1..300 bytes, some fragmented, pings between */
  for (i = 0; i < n; ) {
    size_t len = 1 + next(300), cont = 0;
    if (len > n - i) len = n - i;
    if (next(4) == 0 && len > 1) {       /* a two-frame message */
      size_t a = 1 + next((unsigned)len - 1);
      frame(&wire, 0, 2, s + i, a);
      if (next(2)) frame(&wire, 1, 9, (const unsigned char *)"ping", 4);
      frame(&wire, 1, 0, s + i + a, len - a);
      cont = 1;
    }
    if (!cont) frame(&wire, 1, 2, s + i, len);
    i += len;
  }
  bad = reference(s, n, max_cut, &e, &boundary, &inputs);
  for (pos = 0; pos < wire.len; ) {
    size_t k = 1 + next(200);
    enum ctv_vo_result r;
    if (k > wire.len - pos) k = wire.len - pos;
    if (!wfailed) {      /* watching: no output, same verdicts and counts */
      r = feed(&watch, 1, wire.p + pos, k);
      CHECK(watch.out.len == 0);
      if (r != CTV_VO_OK) {
        CHECK(r == CTV_VO_ERFB);
        wfailed = 1;
      }
    }
    r = feed(&vo, 1, wire.p + pos, k);
    if (r != CTV_VO_OK) {
      CHECK(r == CTV_VO_ERFB);
      failed = 1;
      break;
    }
    read_out(vo.out.p, vo.out.len, &out);
    pos += k;
  }
  CHECK(failed == bad);
  CHECK(wfailed == bad);
  if (!bad) CHECK(watch.inputs == inputs && vo.inputs == inputs);
  /* the output is the reference stream, or a prefix of it on failure */
  CHECK(out.len <= e.len && (out.len == 0 || memcmp(out.p, e.p, out.len) == 0));
  if (!bad && boundary) CHECK(out.len == e.len);
  /* no input or control message in what went out */
  for (i = 0; i < out.len; ) {
    int drop = 0;
    size_t len = ref_len(out.p + i, out.len - i, UINT32_MAX, &drop);
    CHECK(len != 0);
    if (len == SIZE_MAX || len > out.len - i) break;
    CHECK(!drop);
    i += len;
  }
  ctv_vo_free(&vo);
  ctv_vo_free(&watch);
  free(wire.p);
  free(out.p);
  free(e.p);
}

/* Data payload bytes (continuation frames included, control frames not)
 * in the browser's wire bytes p[0..n), a partial last frame counted for
 * what is there; written apart from frames.c. Only called while the filter
 * accepts every frame, so each one is a valid masked client frame. The
 * walk resumes at *at, where *whole data bytes of whole frames end. */
static size_t data_bytes(const unsigned char *p, size_t n, size_t *at,
                         size_t *whole) {
  size_t i = *at;
  while (n - i >= 2) {
    uint64_t len = p[i + 1] & 127;
    size_t hl = 6, avail, k;
    int is_data = !(p[i] & 8);
    if (len == 126) {
      hl = 8;
      if (n - i < 4) break;
      len = (uint64_t)p[i + 2] << 8 | p[i + 3];
    } else if (len == 127) {
      hl = 14;
      if (n - i < 10) break;
      for (len = 0, k = 0; k < 8; k++) len = len << 8 | p[i + 2 + k];
    }
    if (n - i < hl) break;
    avail = n - i - hl;
    if (len > avail) return *whole + (is_data ? avail : 0);
    if (is_data) *whole += (size_t)len;
    i += hl + (size_t)len;
    *at = i;
  }
  return *whole;
}

/* A watching filter fed the same record as the view-only one: it hands
 * back the input itself, or in the one call where the client's handshake
 * ends with a ClientInit of 0 (and only if not exclusive) the input with
 * exactly one byte changed, that byte read as 1 by the target. The two
 * filters follow the same handshake, so they agree on that rewrite. */
static void watch_record(ctv_vo *watch, const ctv_vo *vo, int browser,
                         const buf *w, int *dead, int *changed) {
  int was_normal = watch->hs.client_normal;
  size_t k, diff = 0, where = 0;
  if (*dead) return;
  if (feed(watch, browser, w->p, w->len) != CTV_VO_OK) {
    *dead = 1;
    return;
  }
  if (!browser) return;
  if (watch->out.len == 0) return;
  CHECK(!was_normal && watch->hs.client_normal && !watch->exclusive);
  CHECK(watch->shared_forced && !*changed);
  *changed = 1;
  CHECK(watch->out.len == w->len);
  for (k = 0; k < w->len; k++)
    if (watch->out.p[k] != w->p[k]) { diff++; where = k; }
  CHECK(diff == 1);
  /* 0 masked by some key byte became 1 masked by the same: one bit */
  CHECK((watch->out.p[where] ^ w->p[where]) == 1);
  CHECK(vo->shared_forced);
}

static void script(const uint8_t *data, size_t size) {
  ctv_vo vo, watch;
  size_t i = 1, in_normal = 0, out_normal = 0, carry = 0, at = 0, whole = 0;
  buf wire = {0};              /* every browser byte fed so far */
  int wdead = 0, changed = 0;
  rng = size;
  ctv_vo_init(&vo, 4096, 64, 64, test_random, NULL);
  ctv_vo_init(&watch, 4096, 64, 64, test_random, NULL);
  watch.watch = 1;
  watch.exclusive = (data[0] >> 1) & 1;
  while (i + 2 <= size) {
    int flags = data[i], browser = flags & 1;
    size_t len = data[i + 1], was_normal = (size_t)vo.hs.client_normal;
    int aligned = !vo.browser.in_payload && vo.browser.have == 0;
    const unsigned char *p = data + i + 2;
    buf w = {0}, d = {0};
    enum ctv_vo_result r;
    size_t seen = browser ? data_bytes(wire.p, wire.len, &at, &whole) : 0;
    if (len > size - i - 2) len = size - i - 2;
    if (flags & 2) {
      if (browser) {
        frame(&w, 1, 2, p, len);
      } else {
        unsigned char h[2] = {0x82, (unsigned char)(len < 126 ? len : 125)};
        if (len > 125) len = 125;
        put(&w, h, 2);
        put(&w, p, len);
      }
    } else {
      put(&w, p, len);
    }
    if (browser) put(&wire, w.p, w.len);
    r = feed(&vo, browser, w.p, w.len);
    watch_record(&watch, &vo, browser, &w, &wdead, &changed);
    if (r == CTV_VO_OK && browser) {
      read_out(vo.out.p, vo.out.len, &d);
      if ((flags & 2) && aligned && !vo.hs.client_normal)  /* unchanged */
        CHECK(d.len == len && (len == 0 || memcmp(d.p, p, len) == 0));
      if (!was_normal && vo.hs.client_normal) {
        /* The record that ended the handshake: the normal-phase bytes it
         * carried went out with it, except a message header cut short,
         * held in vo.head (fewer than CTV_RFB_MAXHEAD bytes) and sent
         * later. */
        carry = vo.headlen;
        CHECK(carry < CTV_RFB_MAXHEAD);
      }
      if (was_normal) {
        /* Since the handshake ended, the filter has sent at most the data
         * payload it was given plus that held header: every payload byte
         * goes out at most once (a dropped one never, a held one later).
         * The payload is counted on the wire, not as this record's len:
         * after raw bytes left a frame open, a wrapped record's header
         * and masking key are payload of that frame. */
        in_normal += data_bytes(wire.p, wire.len, &at, &whole) - seen;
        out_normal += d.len;
        CHECK(out_normal <= in_normal + carry);
      }
    }
    if (r != CTV_VO_OK) CHECK(vo.error != 0 && ctv_vo_message(&vo)[0]);
    free(w.p);
    free(d.p);
    i += 2 + len;
  }
  if (!watch.exclusive && vo.hs.client_normal && watch.hs.client_normal)
    CHECK(vo.shared_forced == watch.shared_forced);
  ctv_vo_free(&vo);
  ctv_vo_free(&watch);
  free(wire.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_parse(data, size);
  check_mask(data, size);
  check_decoder(data, size);
  check_split(data, size);
  check_header(data, size);
  check_grow(data, size);
  if (size == 0) return 0;
  if (data[0] & 1) script(data, size);
  else structured(data, size);
  return 0;
}
