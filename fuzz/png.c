/*
 * fuzz/png.c: the PNG encoder and the thumbnail scaler (csrc/png.c).
 * Bytes 0-4 give width (1-64), height (1-64), zlib level, a thumbnail
 * width; the rest, repeated, are the pixels. The PNG is read back here
 * (chunk CRCs, IHDR, IDAT inflated by zlib, the Sub filter undone) and
 * must give the pixels exactly. The thumbnail is as tall as
 * ctv_scaled_height says (1 to h) and each of its channels lies within
 * the range of the source box it averages; ctv_png_thumb's PNG of it reads
 * back to that thumbnail exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
  if (!cond) abort();
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void read_back(const unsigned char *png, size_t len, const unsigned char *rgb,
                      unsigned w, unsigned h) {
  unsigned char *idat = NULL, *raw;
  size_t pos = 8, idatlen = 0, row = (size_t)w * 3, i;
  uLongf rawlen = (uLongf)((row + 1) * h);
  unsigned y;
  check(len > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
  while (pos < len) {
    uint32_t n;
    check(pos + 12 <= len);
    n = be32(png + pos);
    check(pos + 12 + n <= len);
    check(crc32(crc32(0, Z_NULL, 0), png + pos + 4, n + 4) == be32(png + pos + 8 + n));
    if (memcmp(png + pos + 4, "IHDR", 4) == 0) {
      check(n == 13 && be32(png + pos + 8) == w && be32(png + pos + 12) == h);
      check(memcmp(png + pos + 16, "\x08\x02\x00\x00\x00", 5) == 0);
    } else if (memcmp(png + pos + 4, "IDAT", 4) == 0) {
      idat = realloc(idat, idatlen + n + 1);
      check(idat != NULL);
      memcpy(idat + idatlen, png + pos + 8, n);
      idatlen += n;
    }
    pos += 12 + n;
  }
  check(pos == len);
  raw = malloc(rawlen);
  check(raw != NULL);
  check(uncompress(raw, &rawlen, idat, (uLong)idatlen) == Z_OK);
  check(rawlen == (row + 1) * h);
  for (y = 0; y < h; y++) {
    unsigned char *r = raw + y * (row + 1);
    check(r[0] == 1);
    for (i = 0; i < row; i++) {
      unsigned char v = (unsigned char)(r[1 + i] + (i >= 3 ? r[1 + i - 3] : 0));
      r[1 + i] = v;
      check(v == rgb[y * row + i]);
    }
  }
  free(raw);
  free(idat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned w, h, dw, dh, x, y, i, j, c, pw, ph;
  int level;
  unsigned char *rgb, *png, *small;
  size_t len, n, k;
  if (size < 6) return 0;
  w = 1 + data[0] % 64;
  h = 1 + data[1] % 64;
  level = data[2] % 10;
  dw = 1 + data[3] % w;
  data += 4;
  size -= 4;
  n = (size_t)w * h * 3;
  rgb = malloc(n);
  check(rgb != NULL);
  for (k = 0; k < n; k++) rgb[k] = data[k % size];
  png = ctv_png_rgb(rgb, w, h, level, &len);
  check(png != NULL);
  read_back(png, len, rgb, w, h);
  free(png);
  dh = ctv_scaled_height(w, h, dw);
  check(dh >= 1 && dh <= h);
  small = malloc((size_t)dw * dh * 3);
  check(small != NULL);
  ctv_rgb_scale(small, dw, dh, rgb, w, h);
  for (y = 0; y < dh; y++)
    for (x = 0; x < dw; x++)
      for (c = 0; c < 3; c++) {
        unsigned lo = 255, hi = 0;
        for (j = y * h / dh; j < (y + 1) * h / dh; j++)
          for (i = x * w / dw; i < (x + 1) * w / dw; i++) {
            unsigned v = rgb[(j * w + i) * 3 + c];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          }
        check(small[(y * dw + x) * 3 + c] >= lo && small[(y * dw + x) * 3 + c] <= hi);
      }
  png = ctv_png_thumb(rgb, w, h, dw, &len, &pw, &ph);
  check(png != NULL && pw == dw && ph == dh);
  read_back(png, len, small, dw, dh);
  free(png);
  free(small);
  free(rgb);
  return 0;
}
