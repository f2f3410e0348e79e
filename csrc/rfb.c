/*
 * rfb.c: see rfb.h. The states are listed in rfb.h (enum ctv_rfbc_state);
 * every transition is in step() (a whole fixed-size message gathered) or
 * end_stream() (a streamed part over), as noVNC's core/rfb.js keeps its
 * state changes in one place.
 *
 * VNC Authentication is DES (FIPS 46-3) of the 16-byte challenge with the
 * password's first 8 bytes, each byte's bits reversed (the VNC quirk);
 * the DES here is the textbook one, bit by bit: two blocks a session.
 */
#include "rfb.h"

#include "grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_MAX_PIXELS ((uint64_t)7680 * 4320)
#define MAX_STRING 65536u    /* reason, name, cut text */
#define MAX_REQUESTS 4       /* resizes followed by a new full request */
#define TILE 64

enum { ENC_RAW = 0, ENC_COPYRECT = 1, ENC_ZRLE = 16, ENC_DESKTOPSIZE = -223 };

static uint32_t be16(const unsigned char *p) {
  return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8
       | p[3];
}

/* ---- DES (encryption only) ------------------------------------------- */

static const unsigned char PC1[56] = {
  57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35,
  27, 19, 11, 3, 60, 52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38,
  30, 22, 14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4 };
static const unsigned char PC2[48] = {
  14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27,
  20, 13, 2, 41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56,
  34, 53, 46, 42, 50, 36, 29, 32 };
static const unsigned char SHIFTS[16] = {
  1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1 };
static const unsigned char IP[64] = {
  58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38,
  30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1,
  59, 51, 43, 35, 27, 19, 11, 3, 61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39,
  31, 23, 15, 7 };
static const unsigned char FP[64] = {
  40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14,
  54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29, 36, 4, 44, 12, 52, 20, 60, 28,
  35, 3, 43, 11, 51, 19, 59, 27, 34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9,
  49, 17, 57, 25 };
static const unsigned char EXP[48] = {
  32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15,
  16, 17, 16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28,
  29, 28, 29, 30, 31, 32, 1 };
static const unsigned char PERM[32] = {
  16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14,
  32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25 };
static const unsigned char SBOX[8][64] = {
  { 14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
    0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
    4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
    15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13 },
  { 15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
    3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
    0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
    13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9 },
  { 10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
    13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
    13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
    1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12 },
  { 7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
    13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
    10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
    3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14 },
  { 2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
    14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
    4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
    11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3 },
  { 12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
    10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
    9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
    4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13 },
  { 4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
    13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
    1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
    6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12 },
  { 13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
    1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
    7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
    2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11 } };

/* Bits of `in` (`bits` wide, bit 1 the most significant) picked by t. */
static uint64_t permute(uint64_t in, unsigned bits, const unsigned char *t,
                        unsigned n) {
  uint64_t out = 0;
  unsigned i;
  for (i = 0; i < n; i++) out = out << 1 | ((in >> (bits - t[i])) & 1);
  return out;
}

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* One block: out = DES(key, in). */
static void des_block(const unsigned char key[8], const unsigned char in[8],
                      unsigned char out[8]) {
  uint64_t k = permute(load64(key), 64, PC1, 56), b, e;
  uint32_t c = (uint32_t)(k >> 28) & 0x0fffffff, d = (uint32_t)k & 0x0fffffff;
  uint32_t l, r, f, t;
  int round, i;
  b = permute(load64(in), 64, IP, 64);
  l = (uint32_t)(b >> 32);
  r = (uint32_t)b;
  for (round = 0; round < 16; round++) {
    for (i = 0; i < SHIFTS[round]; i++) {
      c = ((c << 1) | (c >> 27)) & 0x0fffffff;
      d = ((d << 1) | (d >> 27)) & 0x0fffffff;
    }
    e = permute(r, 32, EXP, 48)
        ^ permute((uint64_t)c << 28 | d, 56, PC2, 48);
    f = 0;
    for (i = 0; i < 8; i++) {
      unsigned six = (unsigned)(e >> (42 - 6 * i)) & 0x3f;
      f = f << 4 | SBOX[i][(six & 0x20) | (six & 1) << 4 | (six >> 1 & 0x0f)];
    }
    t = r;
    r = l ^ (uint32_t)permute(f, 32, PERM, 32);
    l = t;
  }
  b = permute((uint64_t)r << 32 | l, 64, FP, 64);
  for (i = 0; i < 8; i++) out[i] = (unsigned char)(b >> (56 - 8 * i));
}

/* ---- helpers --------------------------------------------------------- */

static enum ctv_rfbc_result fail(ctv_rfbc *c, enum ctv_rfbc_result r,
                                 const char *msg) {
  c->state = CTV_RFBC_S_DEAD;
  if (msg) snprintf(c->why, sizeof c->why, "%s", msg);
  else snprintf(c->why, sizeof c->why, "%s", ctv_rfbc_result_name(r));
  return r;
}

/* Appends p[0..n) to dst (cap bytes, NUL-terminated, *len used) with
 * control characters as spaces and no byte past the capacity. */
static void clean(char *dst, size_t cap, size_t *len, const unsigned char *p,
                  size_t n) {
  size_t i;
  for (i = 0; i < n && *len + 1 < cap; i++)
    dst[(*len)++] = (char)(p[i] < 0x20 || p[i] == 0x7f ? ' ' : p[i]);
  dst[*len] = '\0';
}

static void put(ctv_rfbc *c, const void *p, size_t n) {
  memcpy(c->out + c->outlen, p, n);   /* fits: see the sizes in step() */
  c->outlen += n;
}

static void put_request(ctv_rfbc *c) {
  unsigned char m[10] = { 3, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  m[6] = (unsigned char)(c->width >> 8);
  m[7] = (unsigned char)c->width;
  m[8] = (unsigned char)(c->height >> 8);
  m[9] = (unsigned char)c->height;
  put(c, m, sizeof m);
  c->requests++;
}

static void expect(ctv_rfbc *c, int state, size_t want) {
  c->state = state;
  c->want = want;
  c->have = 0;
}

static int streamed(int state) {
  return state == CTV_RFBC_S_REASON || state == CTV_RFBC_S_NAME
      || state == CTV_RFBC_S_TYPES || state == CTV_RFBC_S_RAW
      || state == CTV_RFBC_S_ZDATA || state == CTV_RFBC_S_SKIP;
}

static enum ctv_rfbc_result end_stream(ctv_rfbc *c);

/* A streamed part of `left` bytes starts (maybe an empty one). */
static enum ctv_rfbc_result stream(ctv_rfbc *c, int state, uint64_t left) {
  c->state = state;
  c->left = left;
  return left ? CTV_RFBC_MORE : end_stream(c);
}

/* A new framebuffer of w x h, black. */
static enum ctv_rfbc_result resize(ctv_rfbc *c, unsigned w, unsigned h) {
  if (w == 0 || h == 0) return fail(c, CTV_RFBC_ESIZE, "the desktop is empty (0 pixels)");
  if ((uint64_t)w * h > c->max_pixels)
    return fail(c, CTV_RFBC_ESIZE, "the desktop is larger than max_pixels");
  free(c->fb);
  c->fb = calloc((size_t)w * h, 3);
  if (!c->fb) return fail(c, CTV_RFBC_ENOMEM, NULL);
  c->width = w;
  c->height = h;
  return CTV_RFBC_MORE;
}

static enum ctv_rfbc_result rect_done(ctv_rfbc *c) {
  if (--c->rects > 0) {
    expect(c, CTV_RFBC_S_RECT, 12);
    return CTV_RFBC_MORE;
  }
  if (c->resized && !c->painted) {   /* the new size, without its pixels */
    if (c->requests >= MAX_REQUESTS)
      return fail(c, CTV_RFBC_EPROTO, "the desktop keeps changing size");
    put_request(c);
    expect(c, CTV_RFBC_S_MSG, 1);
    return CTV_RFBC_MORE;
  }
  c->state = CTV_RFBC_S_DONE;
  return CTV_RFBC_DONE;
}

/* ClientInit (shared), then ServerInit. */
static void client_init(ctv_rfbc *c) {
  static const unsigned char shared = 1;
  put(c, &shared, 1);
  expect(c, CTV_RFBC_S_INIT, 24);
}

/* The desktop is known: pixel format, encodings, the full request. */
static void start_normal(ctv_rfbc *c) {
  /* SetPixelFormat: 32 bpp, depth 24, little-endian, true colour, 255 a
   * channel, red << 16, green << 8, blue: Raw pixels are B G R X and ZRLE's
   * 3-byte CPIXELs B G R */
  static const unsigned char pf[20] = { 0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0,
    255, 0, 255, 16, 8, 0, 0, 0, 0 };
  static const unsigned char enc[20] = { 2, 0, 0, 4, 0, 0, 0, ENC_ZRLE,
    0, 0, 0, ENC_COPYRECT, 0, 0, 0, ENC_RAW, 0xff, 0xff, 0xff, 0x21 };
  put(c, pf, sizeof pf);
  put(c, enc, sizeof enc);
  put_request(c);
  expect(c, CTV_RFBC_S_MSG, 1);
}

/* The security type chosen: 3.3's, or the client's choice from a list. */
static enum ctv_rfbc_result secured(ctv_rfbc *c, int type) {
  c->security = type;
  if (type == 2) {
    if (!c->has_password)
      return fail(c, CTV_RFBC_EPASSWORD, "the server asks for a VNC password "
                  "and none was given");
    expect(c, CTV_RFBC_S_CHALLENGE, 16);
  } else if (c->version == 8) {
    expect(c, CTV_RFBC_S_RESULT, 4);
  } else {
    client_init(c);
  }
  return CTV_RFBC_MORE;
}

static enum ctv_rfbc_result refused(ctv_rfbc *c) {
  c->state = CTV_RFBC_S_DEAD;
  return CTV_RFBC_REFUSED;
}

/* ---- ZRLE ------------------------------------------------------------ */

typedef struct reader {
  const unsigned char *p;
  size_t n, pos;
} reader;

static int need(const reader *r, size_t k) {
  return r->n - r->pos >= k;
}

/* The pixel at tile-local index i of the tile at (x, y) with width tw. */
static unsigned char *at(ctv_rfbc *c, unsigned x, unsigned y, unsigned tw,
                         unsigned i) {
  return c->fb + ((size_t)(y + i / tw) * c->width + x + i % tw) * 3;
}

static void cpixel(unsigned char *dst, const unsigned char *cp) {
  dst[0] = cp[2];
  dst[1] = cp[1];
  dst[2] = cp[0];
}

/* A run length: 1 + the bytes read while they are 255. -1: cut short. */
static long run_length(reader *r, unsigned left) {
  unsigned long len = 1;
  unsigned char b;
  do {
    if (!need(r, 1)) return -1;
    b = r->p[r->pos++];
    len += b;
    if (len > left) return -1;
  } while (b == 255);
  return (long)len;
}

static int tile(ctv_rfbc *c, reader *r, unsigned x, unsigned y, unsigned tw,
                unsigned th) {
  unsigned n = tw * th, i = 0, j, sub, psize = 0, bits;
  unsigned char pal[128 * 3];
  if (!need(r, 1)) return -1;
  sub = r->p[r->pos++];
  if (sub == 0) {                        /* raw CPIXELs */
    if (!need(r, (size_t)n * 3)) return -1;
    for (i = 0; i < n; i++) cpixel(at(c, x, y, tw, i), r->p + r->pos + 3 * i);
    r->pos += (size_t)n * 3;
    return 0;
  }
  if (sub == 1 || (sub >= 2 && sub <= 16) || sub >= 130) {
    psize = sub >= 130 ? sub - 128 : sub;
    if (!need(r, (size_t)psize * 3)) return -1;
    memcpy(pal, r->p + r->pos, (size_t)psize * 3);
    r->pos += (size_t)psize * 3;
  }
  if (sub == 1) {                        /* solid */
    for (i = 0; i < n; i++) cpixel(at(c, x, y, tw, i), pal);
  } else if (sub <= 16) {                /* packed palette */
    unsigned row;
    bits = sub == 2 ? 1 : sub <= 4 ? 2 : 4;
    row = (tw * bits + 7) / 8;
    if (!need(r, (size_t)row * th)) return -1;
    for (j = 0; j < th; j++) {
      const unsigned char *q = r->p + r->pos + (size_t)j * row;
      unsigned k;
      for (k = 0; k < tw; k++) {
        unsigned bit = k * bits;
        unsigned idx = (q[bit / 8] >> (8 - bits - bit % 8)) & ((1u << bits) - 1);
        if (idx >= psize) return -1;
        cpixel(at(c, x, y, tw, j * tw + k), pal + 3 * idx);
      }
    }
    r->pos += (size_t)row * th;
  } else if (sub == 128) {               /* plain RLE */
    while (i < n) {
      const unsigned char *cp;
      long len;
      if (!need(r, 3)) return -1;
      cp = r->p + r->pos;
      r->pos += 3;
      if ((len = run_length(r, n - i)) < 0) return -1;
      while (len-- > 0) cpixel(at(c, x, y, tw, i++), cp);
    }
  } else if (sub >= 130) {               /* palette RLE */
    while (i < n) {
      unsigned idx;
      long len = 1;
      if (!need(r, 1)) return -1;
      idx = r->p[r->pos++];
      if (idx & 128) {
        idx &= 127;
        if ((len = run_length(r, n - i)) < 0) return -1;
      }
      if (idx >= psize) return -1;
      while (len-- > 0) cpixel(at(c, x, y, tw, i++), pal + 3 * idx);
    }
  } else {
    return -1;                           /* 17-127 and 129: unused */
  }
  return 0;
}

static enum ctv_rfbc_result zrle_tiles(ctv_rfbc *c) {
  reader r;
  unsigned tx, ty;
  r.p = c->zout;
  r.n = c->zlen;
  r.pos = 0;
  for (ty = 0; ty < c->rh; ty += TILE)
    for (tx = 0; tx < c->rw; tx += TILE)
      if (tile(c, &r, c->rx + tx, c->ry + ty,
               c->rw - tx < TILE ? c->rw - tx : TILE,
               c->rh - ty < TILE ? c->rh - ty : TILE) != 0)
        return fail(c, CTV_RFBC_EPROTO, "bad ZRLE tile");
  c->zlen = 0;
  return rect_done(c);
}

/* Inflates p[0..n) of the current rectangle's zlib data into zout. */
static enum ctv_rfbc_result zrle_data(ctv_rfbc *c, const unsigned char *p,
                                      size_t n) {
  z_stream *z = (z_stream *)c->z;
  z->next_in = (Bytef *)(uintptr_t)p;   /* zlib's API is not const */
  z->avail_in = (uInt)n;
  while (z->avail_in > 0) {
    unsigned char spare;
    uInt before = z->avail_in, room;
    int rc;
    if (c->zlen == c->zcap && c->zcap < c->zmax) {
      size_t want = c->zmax - c->zlen < 65536 ? c->zmax - c->zlen : 65536;
      unsigned char *q = ctv_grow(c->zout, &c->zcap, c->zlen, want, 1, c->zmax);
      if (!q) return fail(c, CTV_RFBC_ENOMEM, NULL);
      c->zout = q;
    }
    if (c->zlen < c->zcap) {
      room = (uInt)(c->zcap - c->zlen < 1u << 30 ? c->zcap - c->zlen : 1u << 30);
      z->next_out = c->zout + c->zlen;
    } else {                   /* full: one byte more would be too much */
      room = 1;
      z->next_out = &spare;
    }
    z->avail_out = room;
    rc = inflate(z, Z_SYNC_FLUSH);
    if (c->zlen == c->zcap && z->avail_out == 0)
      return fail(c, CTV_RFBC_EPROTO, "ZRLE data larger than its rectangle");
    if (c->zlen < c->zcap) c->zlen += room - z->avail_out;
    if (rc == Z_STREAM_END)
      return fail(c, CTV_RFBC_EZLIB, "the ZRLE zlib stream ended");
    if ((rc != Z_OK && rc != Z_BUF_ERROR)
        || (z->avail_in == before && z->avail_out == room))
      return fail(c, CTV_RFBC_EZLIB, "ZRLE data does not inflate");
  }
  return CTV_RFBC_MORE;
}

/* ---- the state machine ----------------------------------------------- */

/* Raw pixels p[0..n), B G R X each, at rawpos of the rectangle. */
static void raw_pixels(ctv_rfbc *c, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    c->px[c->rawpos & 3] = p[i];
    if ((c->rawpos & 3) == 3) {
      uint64_t k = c->rawpos >> 2;
      cpixel(at(c, c->rx, c->ry, c->rw, (unsigned)k), c->px);
    }
    c->rawpos++;
  }
}

/* A streamed part of the input: n <= left bytes of it. */
static enum ctv_rfbc_result stream_bytes(ctv_rfbc *c, const unsigned char *p,
                                         size_t n) {
  size_t i, len;
  switch (c->state) {
  case CTV_RFBC_S_REASON:
    len = strlen(c->why);
    clean(c->why, sizeof c->why, &len, p, n);
    break;
  case CTV_RFBC_S_NAME:
    clean(c->name, sizeof c->name, &c->namelen, p, n);
    break;
  case CTV_RFBC_S_TYPES:
    for (i = 0; i < n; i++)
      if (p[i] == 1 || p[i] == 2) c->security |= p[i];   /* offered */
    break;
  case CTV_RFBC_S_RAW:
    raw_pixels(c, p, n);
    break;
  case CTV_RFBC_S_ZDATA:
    return zrle_data(c, p, n);
  default:                        /* CTV_RFBC_S_SKIP */
    break;
  }
  return CTV_RFBC_MORE;
}

static enum ctv_rfbc_result end_stream(ctv_rfbc *c) {
  unsigned char choice;
  switch (c->state) {
  case CTV_RFBC_S_REASON:
    return refused(c);
  case CTV_RFBC_S_NAME:
    start_normal(c);
    return CTV_RFBC_MORE;
  case CTV_RFBC_S_TYPES:          /* None if offered, else VNC Authentication */
    if (!c->security) return fail(c, CTV_RFBC_ESECURITY, "the server offers "
                                  "no security type but None and VNC Authentication");
    choice = (c->security & 1) ? 1 : 2;
    put(c, &choice, 1);
    return secured(c, choice);
  case CTV_RFBC_S_RAW:
    return rect_done(c);
  case CTV_RFBC_S_ZDATA:
    return zrle_tiles(c);
  default:                        /* CTV_RFBC_S_SKIP */
    expect(c, CTV_RFBC_S_MSG, 1);
    return CTV_RFBC_MORE;
  }
}

/* "RFB xxx.yyy\n": the minor version to speak, or -1. */
static int banner(const unsigned char *b) {
  int major = 0, minor = 0, i;
  if (memcmp(b, "RFB ", 4) != 0 || b[7] != '.' || b[11] != '\n') return -1;
  for (i = 4; i < 11; i++) {
    if (i == 7) continue;
    if (b[i] < '0' || b[i] > '9') return -1;
    if (i < 7) major = major * 10 + (b[i] - '0');
    else minor = minor * 10 + (b[i] - '0');
  }
  if (major < 3 || (major == 3 && minor < 3)) return -1;
  if (major > 3 || minor >= 8) return 8;
  return minor == 7 ? 7 : 3;
}

static enum ctv_rfbc_result rect_header(ctv_rfbc *c) {
  const unsigned char *b = c->buf;
  int32_t enc = (int32_t)be32(b + 8);
  c->rx = be16(b);
  c->ry = be16(b + 2);
  c->rw = be16(b + 4);
  c->rh = be16(b + 6);
  if (enc == ENC_DESKTOPSIZE) {
    enum ctv_rfbc_result r = resize(c, c->rw, c->rh);
    if (r != CTV_RFBC_MORE) return r;
    c->resized = 1;
    c->painted = 0;
    return rect_done(c);
  }
  if ((uint64_t)c->rx + c->rw > c->width || (uint64_t)c->ry + c->rh > c->height)
    return fail(c, CTV_RFBC_EPROTO, "a rectangle lies outside the desktop");
  c->painted = 1;
  switch (enc) {
  case ENC_RAW:
    c->rawpos = 0;
    return stream(c, CTV_RFBC_S_RAW, (uint64_t)c->rw * c->rh * 4);
  case ENC_COPYRECT:
    expect(c, CTV_RFBC_S_COPY, 4);
    return CTV_RFBC_MORE;
  case ENC_ZRLE:
    expect(c, CTV_RFBC_S_ZLEN, 4);
    return CTV_RFBC_MORE;
  default:
    snprintf(c->why, sizeof c->why, "an encoding that was not asked for (%ld)",
             (long)enc);
    c->state = CTV_RFBC_S_DEAD;
    return CTV_RFBC_EPROTO;
  }
}

static enum ctv_rfbc_result copy_rect(ctv_rfbc *c) {
  unsigned sx = be16(c->buf), sy = be16(c->buf + 2), j;
  size_t row = (size_t)c->rw * 3, stride = (size_t)c->width * 3;
  if ((uint64_t)sx + c->rw > c->width || (uint64_t)sy + c->rh > c->height)
    return fail(c, CTV_RFBC_EPROTO, "a CopyRect source lies outside the desktop");
  for (j = 0; j < c->rh; j++) {     /* rows in the order that never reads */
    unsigned k = sy < c->ry ? c->rh - 1 - j : j;   /* a row already written */
    memmove(c->fb + (c->ry + k) * stride + (size_t)c->rx * 3,
            c->fb + (sy + k) * stride + (size_t)sx * 3, row);
  }
  return rect_done(c);
}

static enum ctv_rfbc_result zrle_start(ctv_rfbc *c) {
  uint32_t len = be32(c->buf);
  uint64_t tiles = (uint64_t)((c->rw + TILE - 1) / TILE) * ((c->rh + TILE - 1) / TILE);
  if (!c->z) {
    z_stream *z = calloc(1, sizeof *z);
    if (!z) return fail(c, CTV_RFBC_ENOMEM, NULL);
    if (inflateInit(z) != Z_OK) {
      free(z);
      return fail(c, CTV_RFBC_ENOMEM, NULL);
    }
    c->z = z;
  }
  /* the most a tile can take: its type, a palette, 4 bytes a pixel */
  c->zmax = (size_t)(tiles * (1 + 127 * 3 + 4 * TILE * TILE));
  c->zlen = 0;
  return stream(c, CTV_RFBC_S_ZDATA, len);
}

/* The message in buf[0..want) is whole: act on it. */
static enum ctv_rfbc_result step(ctv_rfbc *c) {
  const unsigned char *b = c->buf;
  unsigned char resp[16], key[8];
  uint32_t v;
  int i;
  switch (c->state) {
  case CTV_RFBC_S_VERSION:
    if ((c->version = banner(b)) < 0)
      return fail(c, CTV_RFBC_ENOTRFB, "the server did not send an RFB "
                  "ProtocolVersion (3.3 or later)");
    if (c->banner_only) {
      c->state = CTV_RFBC_S_DONE;
      return CTV_RFBC_DONE;
    }
    put(c, c->version == 8 ? "RFB 003.008\n" : c->version == 7
        ? "RFB 003.007\n" : "RFB 003.003\n", 12);
    expect(c, c->version == 3 ? CTV_RFBC_S_SECTYPE33 : CTV_RFBC_S_NTYPES,
           c->version == 3 ? 4 : 1);
    break;
  case CTV_RFBC_S_SECTYPE33:
    v = be32(b);
    if (v == 0) {
      expect(c, CTV_RFBC_S_REASONLEN, 4);
      break;
    }
    if (v != 1 && v != 2)
      return fail(c, CTV_RFBC_ESECURITY, "the server asks for a security "
                  "type other than None and VNC Authentication");
    return secured(c, (int)v);
  case CTV_RFBC_S_NTYPES:
    if (b[0] == 0) expect(c, CTV_RFBC_S_REASONLEN, 4);
    else return stream(c, CTV_RFBC_S_TYPES, b[0]);
    break;
  case CTV_RFBC_S_REASONLEN:
    v = be32(b);
    if (v > c->max_string) return fail(c, CTV_RFBC_EPROTO, "the server's reason is too long");
    snprintf(c->why, sizeof c->why, "the server refused: ");
    if (v == 0) snprintf(c->why, sizeof c->why, "the server refused (no reason given)");
    return stream(c, CTV_RFBC_S_REASON, v);
  case CTV_RFBC_S_CHALLENGE:
    for (i = 0; i < 8; i++) {        /* each key byte's bits reversed */
      unsigned char x = c->password[i], y = 0;
      int k;
      for (k = 0; k < 8; k++) y = (unsigned char)(y | ((x >> k) & 1) << (7 - k));
      key[i] = y;
    }
    des_block(key, b, resp);
    des_block(key, b + 8, resp + 8);
    memset(key, 0, sizeof key);
    put(c, resp, 16);
    expect(c, CTV_RFBC_S_RESULT, 4);
    break;
  case CTV_RFBC_S_RESULT:
    if (be32(b) == 0) {
      client_init(c);
    } else if (c->version == 8) {
      expect(c, CTV_RFBC_S_REASONLEN, 4);
    } else {
      snprintf(c->why, sizeof c->why, "%s", c->security == 2
               ? "the server refused the VNC password" : "the server refused the session");
      return refused(c);
    }
    break;
  case CTV_RFBC_S_INIT: {
    enum ctv_rfbc_result r = resize(c, be16(b), be16(b + 2));
    if (r != CTV_RFBC_MORE) return r;
    v = be32(b + 20);
    if (v > c->max_string) return fail(c, CTV_RFBC_EPROTO, "the desktop name is too long");
    return stream(c, CTV_RFBC_S_NAME, v);
  }
  case CTV_RFBC_S_MSG:
    switch (b[0]) {
    case 0: expect(c, CTV_RFBC_S_UPDATE, 3); break;
    case 1: expect(c, CTV_RFBC_S_COLOURS, 5); break;
    case 2: expect(c, CTV_RFBC_S_MSG, 1); break;          /* Bell */
    case 3: expect(c, CTV_RFBC_S_CUTLEN, 7); break;
    default:
      snprintf(c->why, sizeof c->why, "an unknown server message type (%u)", b[0]);
      c->state = CTV_RFBC_S_DEAD;
      return CTV_RFBC_EPROTO;
    }
    break;
  case CTV_RFBC_S_UPDATE:
    c->rects = be16(b + 1);
    c->resized = c->painted = 0;
    if (c->rects == 0) {            /* nothing: as if one rectangle ended */
      c->rects = 1;
      return rect_done(c);
    }
    expect(c, CTV_RFBC_S_RECT, 12);
    break;
  case CTV_RFBC_S_RECT:
    return rect_header(c);
  case CTV_RFBC_S_COPY:
    return copy_rect(c);
  case CTV_RFBC_S_ZLEN:
    return zrle_start(c);
  case CTV_RFBC_S_COLOURS:
    return stream(c, CTV_RFBC_S_SKIP, (uint64_t)be16(b + 3) * 6);
  case CTV_RFBC_S_CUTLEN:
    return stream(c, CTV_RFBC_S_SKIP, be32(b + 3));
  default:
    return fail(c, CTV_RFBC_EDEAD, NULL);
  }
  return CTV_RFBC_MORE;
}

void ctv_rfbc_init(ctv_rfbc *c, const char *password, size_t passlen,
                   uint64_t max_pixels, int banner_only) {
  memset(c, 0, sizeof *c);
  c->max_pixels = max_pixels ? max_pixels : DEFAULT_MAX_PIXELS;
  c->max_string = MAX_STRING;
  c->banner_only = banner_only;
  if (password) {
    c->has_password = 1;
    memcpy(c->password, password, passlen < 8 ? passlen : 8);
  }
  expect(c, CTV_RFBC_S_VERSION, 12);
}

void ctv_rfbc_free(ctv_rfbc *c) {
  if (c->z) {
    inflateEnd((z_stream *)c->z);
    free(c->z);
  }
  free(c->zout);
  free(c->fb);
  c->z = NULL;
  c->zout = c->fb = NULL;
  c->zlen = c->zcap = 0;
  memset(c->password, 0, sizeof c->password);
  c->state = CTV_RFBC_S_DEAD;
}

enum ctv_rfbc_result ctv_rfbc_feed(ctv_rfbc *c, const unsigned char *p,
                                   size_t n) {
  size_t u = 0, k;
  enum ctv_rfbc_result r;
  while (u < n) {
    if (c->state == CTV_RFBC_S_DONE || c->state == CTV_RFBC_S_DEAD)
      return CTV_RFBC_EDEAD;
    if (streamed(c->state)) {
      k = c->left < (uint64_t)(n - u) ? (size_t)c->left : n - u;
      r = stream_bytes(c, p + u, k);
      u += k;
      c->left -= k;
      if (r == CTV_RFBC_MORE && c->left == 0) r = end_stream(c);
    } else {
      k = c->want - c->have < n - u ? c->want - c->have : n - u;
      memcpy(c->buf + c->have, p + u, k);
      c->have += k;
      u += k;
      if (c->have < c->want) break;
      r = step(c);
    }
    if (r != CTV_RFBC_MORE) return r;
  }
  return CTV_RFBC_MORE;
}

const char *ctv_rfbc_result_name(int r) {
  switch (r) {
  case CTV_RFBC_MORE: return "more bytes needed";
  case CTV_RFBC_DONE: return "frame complete";
  case CTV_RFBC_REFUSED: return "the server refused the session";
  case CTV_RFBC_ENOTRFB: return "not an RFB server";
  case CTV_RFBC_ESECURITY: return "no usable security type";
  case CTV_RFBC_EPASSWORD: return "a VNC password is needed";
  case CTV_RFBC_ESIZE: return "bad desktop size";
  case CTV_RFBC_EPROTO: return "RFB protocol error";
  case CTV_RFBC_EZLIB: return "bad compressed data";
  case CTV_RFBC_ENOMEM: return "out of memory";
  default: return "the RFB client is closed";
  }
}
