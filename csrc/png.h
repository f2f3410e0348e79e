/*
 * png.h: PNG images of RGB framebuffers (zlib's deflate and crc32), and
 * scaling down to thumbnails. Pure C99, no I/O.
 */
#ifndef CTVNC_PNG_H
#define CTVNC_PNG_H

#include <stddef.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* A PNG (8-bit RGB, no interlace, each row filtered with Sub) of the image
 * rgb[0..w*h*3), rows top down; malloc'd, its size in *len; NULL when out
 * of memory or w, h are 0 or over 2^31 - 1. level is zlib's (0-9). */
unsigned char *ctv_png_rgb(const unsigned char *rgb, unsigned w, unsigned h,
                           int level, size_t *len);

/* The zlib level of every screenshot (fast: screens are flat areas). */
#define CTV_PNG_LEVEL 3

/* The PNG of rgb (w x h), scaled down to `width` pixels across (keeping
 * the aspect) when 0 < width < w, at CTV_PNG_LEVEL; its size in *len and
 * its own in *pw, *ph. NULL when out of memory. */
unsigned char *ctv_png_thumb(const unsigned char *rgb, unsigned w, unsigned h,
                             unsigned width, size_t *len, unsigned *pw,
                             unsigned *ph);

/* dst (dw x dh RGB) from src (sw x sh RGB): each destination pixel is the
 * rounded mean of the source box it covers, [x * sw / dw, (x + 1) * sw / dw)
 * across and the same down (area averaging on integer bounds).
 * 1 <= dw <= sw, 1 <= dh <= sh. */
void ctv_rgb_scale(unsigned char *dst, unsigned dw, unsigned dh,
                   const unsigned char *src, unsigned sw, unsigned sh);

/* The height that keeps the aspect of sw x sh at width dw: rounded, at
 * least 1 and at most sh. */
unsigned ctv_scaled_height(unsigned sw, unsigned sh, unsigned dw);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
