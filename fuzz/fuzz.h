/*
 * fuzz/fuzz.h: what the harnesses share. Define FUZZ_NAME (the harness's
 * name, for its reports) before including it.
 */
#ifndef CTVNC_FUZZ_H
#define CTVNC_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed property: the report names the harness and the line. */
#define CHECK(c) do { if (!(c)) { \
  fprintf(stderr, FUZZ_NAME ": check failed: %s (line %d)\n", #c, __LINE__); \
  abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A growable byte buffer; free(b.p) when done. */
typedef struct buf { unsigned char *p; size_t len, cap; } buf;

static void put(buf *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    CHECK(b->p);
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
}

#endif
