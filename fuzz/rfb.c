/*
 * fuzz/rfb.c: the RFB client (csrc/rfb.c) fed arbitrary server bytes, and
 * the websocket handshake answer reader (csrc/wsc.c).
 *
 * By bit 2 of the first byte:
 *   0: the rest is what a server sends. Bit 0 gives a password, bit 1
 *      banner_only; the upper bits seed the cuts. The same bytes are fed
 *      once whole and once in pieces (each piece copied into a malloc of
 *      exactly its size, so ASan sees any read past it): both runs must
 *      end the same way, send the same bytes, and hold the same
 *      framebuffer. A client that is done has a framebuffer within
 *      max_pixels; one that stopped refuses more bytes; its message is one
 *      line without control characters.
 *   1: the rest is a websocket handshake answer: what the reader uses is
 *      within the bytes, OK only with status 101, and every prefix shorter
 *      than the header block is "more".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rfb.h"
#include "wsc.h"

#define MAX_PIXELS 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
  enum ctv_rfbc_result r;
  unsigned char sent[4096];
  size_t sentlen;
  ctv_rfbc c;
} run;

static void check(int cond) {
  if (!cond) abort();
}

static enum ctv_rfbc_result feed(run *u, const uint8_t *p, size_t n) {
  unsigned char *copy = malloc(n ? n : 1);
  enum ctv_rfbc_result r;
  size_t i;
  check(copy != NULL);
  memcpy(copy, p, n);
  r = ctv_rfbc_feed(&u->c, copy, n);
  free(copy);
  check(u->c.outlen <= sizeof u->c.out);
  if (u->sentlen + u->c.outlen <= sizeof u->sent) {
    memcpy(u->sent + u->sentlen, u->c.out, u->c.outlen);
    u->sentlen += u->c.outlen;
  }
  u->c.outlen = 0;
  for (i = 0; u->c.why[i]; i++) check((unsigned char)u->c.why[i] >= 0x20 && u->c.why[i] != 0x7f);
  check(i < sizeof u->c.why);
  return r;
}

static void client(const uint8_t *data, size_t size) {
  static run a, b;
  int flags = data[0];
  const char *pw = (flags & 1) ? "secret" : NULL;
  uint32_t seed = (uint32_t)flags * 2654435761u;
  size_t u = 0;
  data++;
  size--;
  ctv_rfbc_init(&a.c, pw, pw ? 6 : 0, MAX_PIXELS, (flags & 2) != 0);
  ctv_rfbc_init(&b.c, pw, pw ? 6 : 0, MAX_PIXELS, (flags & 2) != 0);
  a.sentlen = b.sentlen = 0;
  a.r = size ? feed(&a, data, size) : CTV_RFBC_MORE;
  b.r = CTV_RFBC_MORE;
  while (u < size && b.r == CTV_RFBC_MORE) {
    size_t k;
    seed = seed * 1103515245u + 12345u;
    k = 1 + (seed >> 16) % 97;
    if (k > size - u) k = size - u;
    b.r = feed(&b, data + u, k);
    u += k;
  }
  check(a.r == b.r);
  check(a.sentlen == b.sentlen && memcmp(a.sent, b.sent, a.sentlen) == 0);
  check(a.c.width == b.c.width && a.c.height == b.c.height);
  check(strcmp(a.c.name, b.c.name) == 0 && strcmp(a.c.why, b.c.why) == 0);
  if (a.c.fb && b.c.fb)
    check(memcmp(a.c.fb, b.c.fb, (size_t)a.c.width * a.c.height * 3) == 0);
  if (a.r == CTV_RFBC_DONE && !(flags & 2)) {
    check(a.c.fb != NULL && a.c.width >= 1 && a.c.height >= 1);
    check((uint64_t)a.c.width * a.c.height <= MAX_PIXELS);
  }
  if (a.r != CTV_RFBC_MORE) check(feed(&a, data, 1) == CTV_RFBC_EDEAD);
  ctv_rfbc_free(&a.c);
  ctv_rfbc_free(&b.c);
}

static void answer(const uint8_t *data, size_t size) {
  static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
  unsigned char *copy = malloc(size ? size : 1);
  size_t used, i, end = 0;
  int status;
  enum ctv_wsc_result r;
  check(copy != NULL);
  memcpy(copy, data, size);
  r = ctv_wsc_answer(copy, size, key, &used, &status);
  check(used <= size);
  if (r == CTV_WSC_OK) check(status == 101 && used >= 4);
  if (r == CTV_WSC_ESTATUS) check(status != 101 && status >= 100 && status <= 599);
  for (i = 3; i < size && !end; i++)
    if (memcmp(copy + i - 3, "\r\n\r\n", 4) == 0) end = i + 1;
  if (end && end <= CTV_WSC_MAXANSWER && size > 1) {
    size_t cut = end - 1 - (size_t)data[0] % end;   /* a prefix before the end */
    check(ctv_wsc_answer(copy, cut, key, &used, &status) == CTV_WSC_MORE);
  }
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 4) answer(data + 1, size - 1);
  else client(data, size);
  return 0;
}
