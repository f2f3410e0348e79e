/*
 * fuzz/encode.c: ctv_encode_len / ctv_encode on arbitrary bytes.
 *
 * Checks: the written length equals ctv_encode_len (and the buffer is
 * malloc'ed at exactly that size, so ASan catches any overrun); the output
 * holds only the bytes encodeURIComponent keeps and "%XX" escapes with
 * upper-case hex; an escape never stands for a kept byte; decoding the
 * output gives back the input exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

/* encodeURIComponent keeps A-Z a-z 0-9 - _ . ! ~ * ' ( ) */
static int kept(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
      || (c >= '0' && c <= '9') || (c != 0 && strchr("-_.!~*'()", c));
}

/* Upper-case hex digit value, or -1. */
static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  size_t len = ctv_encode_len(s, size), i, k = 0;
  char *out, *end;

  if (len < size || len > 3 * size) abort();
  out = malloc(len ? len : 1);
  if (!out) return 0;
  end = ctv_encode(out, s, size);
  if ((size_t)(end - out) != len) abort();

  /* Decode, comparing with the input as we go. */
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)out[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= len) abort();
      hi = hexval((unsigned char)out[i + 1]);
      lo = hexval((unsigned char)out[i + 2]);
      if (hi < 0 || lo < 0) abort();          /* lower-case or not hex */
      c = (unsigned char)(hi * 16 + lo);
      if (kept(c)) abort();                   /* needless escape */
      i += 2;
    } else if (!kept(c)) {
      abort();                                /* raw reserved byte */
    }
    if (k >= size || data[k++] != c) abort();
  }
  if (k != size) abort();
  free(out);
  return 0;
}
