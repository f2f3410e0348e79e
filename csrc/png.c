/*
 * png.c: see png.h. One IDAT chunk, written by deflate into a buffer that
 * grows as needed; rows are filtered with Sub (type 1), which costs one
 * subtraction a byte and shrinks the flat areas of a screen to runs of
 * zeros.
 */
#include "png.h"

#include "grow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct out {
  unsigned char *p;
  size_t len, cap;
} out;

static int grow(out *o, size_t extra) {
  unsigned char *q = ctv_grow(o->p, &o->cap, o->len, extra, 1, (size_t)-1);
  if (!q) return -1;
  o->p = q;
  return 0;
}

static void be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Chunk header of a chunk whose data is `len` bytes; the data follows. */
static int chunk_start(out *o, const char *type, size_t len) {
  if (grow(o, 8 + len + 4)) return -1;
  be32(o->p + o->len, (uint32_t)len);
  memcpy(o->p + o->len + 4, type, 4);
  o->len += 8;
  return 0;
}

/* The CRC of the chunk that starts at `at`, whose data has just ended. */
static int chunk_end(out *o, size_t at) {
  uLong crc = crc32(0L, Z_NULL, 0);
  if (grow(o, 4)) return -1;
  crc = crc32(crc, o->p + at + 4, (uInt)(o->len - at - 4));
  be32(o->p + o->len, (uint32_t)crc);
  o->len += 4;
  return 0;
}

/* Deflates rows into the IDAT chunk started at o->len - 8. */
static int idat(out *o, z_stream *z, const unsigned char *rgb, unsigned w,
                unsigned h) {
  size_t row = (size_t)w * 3, i;
  unsigned char *f = malloc(row + 1);
  unsigned y;
  int rc = Z_OK;
  if (!f) return -1;
  for (y = 0; y < h && rc == Z_OK; y++) {
    const unsigned char *s = rgb + y * row;
    f[0] = 1;                              /* Sub */
    memcpy(f + 1, s, row < 3 ? row : 3);
    for (i = 3; i < row; i++) f[1 + i] = (unsigned char)(s[i] - s[i - 3]);
    z->next_in = f;
    z->avail_in = (uInt)(row + 1);
    do {
      if (grow(o, 65536)) {
        rc = Z_MEM_ERROR;
        break;
      }
      z->next_out = o->p + o->len;
      z->avail_out = (uInt)(o->cap - o->len);
      rc = deflate(z, y + 1 == h ? Z_FINISH : Z_NO_FLUSH);
      o->len = o->cap - z->avail_out;
    } while (rc == Z_OK && (z->avail_in > 0 || z->avail_out == 0));
    if (y + 1 == h) {
      while (rc == Z_OK) {              /* Z_FINISH wants more room */
        if (grow(o, 65536)) {
          rc = Z_MEM_ERROR;
          break;
        }
        z->next_out = o->p + o->len;
        z->avail_out = (uInt)(o->cap - o->len);
        rc = deflate(z, Z_FINISH);
        o->len = o->cap - z->avail_out;
      }
    } else if (rc == Z_BUF_ERROR) {
      rc = Z_OK;
    }
  }
  free(f);
  return rc == Z_STREAM_END ? 0 : -1;
}

unsigned char *ctv_png_rgb(const unsigned char *rgb, unsigned w, unsigned h,
                           int level, size_t *len) {
  static const unsigned char sig[8] = { 137, 'P', 'N', 'G', 13, 10, 26, 10 };
  out o = { NULL, 0, 0 };
  z_stream z;
  size_t at;
  int ok;
  *len = 0;
  if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu) return NULL;
  if (grow(&o, 8 + 25)) return NULL;
  memcpy(o.p, sig, 8);
  o.len = 8;
  at = o.len;
  chunk_start(&o, "IHDR", 13);
  be32(o.p + o.len, w);
  be32(o.p + o.len + 4, h);
  memcpy(o.p + o.len + 8, "\x08\x02\x00\x00\x00", 5);   /* 8-bit RGB */
  o.len += 13;
  if (chunk_end(&o, at)) goto fail;
  at = o.len;
  if (chunk_start(&o, "IDAT", 0)) goto fail;
  memset(&z, 0, sizeof z);
  if (deflateInit(&z, level) != Z_OK) goto fail;
  ok = idat(&o, &z, rgb, w, h) == 0;
  deflateEnd(&z);
  if (!ok || o.len - at - 8 > 0x7fffffffu) goto fail;
  be32(o.p + at, (uint32_t)(o.len - at - 8));
  if (chunk_end(&o, at)) goto fail;
  at = o.len;
  if (chunk_start(&o, "IEND", 0) || chunk_end(&o, at)) goto fail;
  *len = o.len;
  return o.p;
fail:
  free(o.p);
  return NULL;
}

void ctv_rgb_scale(unsigned char *dst, unsigned dw, unsigned dh,
                   const unsigned char *src, unsigned sw, unsigned sh) {
  unsigned x, y, i, j, c;
  for (y = 0; y < dh; y++) {
    unsigned y0 = (unsigned)((uint64_t)y * sh / dh);
    unsigned y1 = (unsigned)((uint64_t)(y + 1) * sh / dh);
    for (x = 0; x < dw; x++) {
      unsigned x0 = (unsigned)((uint64_t)x * sw / dw);
      unsigned x1 = (unsigned)((uint64_t)(x + 1) * sw / dw);
      uint64_t sum[3] = { 0, 0, 0 }, n = (uint64_t)(x1 - x0) * (y1 - y0);
      for (j = y0; j < y1; j++) {
        const unsigned char *s = src + ((size_t)j * sw + x0) * 3;
        for (i = x0; i < x1; i++, s += 3)
          for (c = 0; c < 3; c++) sum[c] += s[c];
      }
      for (c = 0; c < 3; c++)
        dst[((size_t)y * dw + x) * 3 + c] = (unsigned char)((sum[c] + n / 2) / n);
    }
  }
}

unsigned ctv_scaled_height(unsigned sw, unsigned sh, unsigned dw) {
  uint64_t h = ((uint64_t)sh * dw + sw / 2) / sw;
  if (h < 1) h = 1;
  if (h > sh) h = sh;
  return (unsigned)h;
}

unsigned char *ctv_png_thumb(const unsigned char *rgb, unsigned w, unsigned h,
                             unsigned width, size_t *len, unsigned *pw,
                             unsigned *ph) {
  unsigned char *small = NULL, *png;
  if (width && width < w) {
    unsigned dh = ctv_scaled_height(w, h, width);
    if ((small = malloc((size_t)width * dh * 3)) == NULL) return NULL;
    ctv_rgb_scale(small, width, dh, rgb, w, h);
    rgb = small;
    w = width;
    h = dh;
  }
  png = ctv_png_rgb(rgb, w, h, CTV_PNG_LEVEL, len);
  free(small);
  *pw = w;
  *ph = h;
  return png;
}
