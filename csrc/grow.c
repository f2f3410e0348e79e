/*
 * grow.c: see grow.h.
 */
#include "grow.h"

#include <stdint.h>
#include <stdlib.h>

void *ctv_grow(void *p, size_t *cap, size_t len, size_t extra, size_t elem,
               size_t max) {
  size_t need, lim = SIZE_MAX / elem, c;
  void *q;
  if (max < lim) lim = max;
  if (extra > SIZE_MAX - len) return NULL;
  need = len + extra;
  if (need <= *cap && p) return p;
  if (need > lim) return NULL;
  c = *cap < 16 ? 16 : *cap;
  while (c < need) c = c > lim / 2 ? lim : c * 2;
  if (c > lim) c = lim;
  if ((q = realloc(p, c * elem)) == NULL) return NULL;
  *cap = c;
  return q;
}
