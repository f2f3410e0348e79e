/*
 * sha256.c: SHA-256 as FIPS 180-4 section 6.2 states it, HMAC as RFC 2104
 * does. Big-endian words are built byte by byte, so the code is the same
 * on any host.
 */
#include <string.h>

#include "sha256.h"

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(uint32_t h[8], const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
  for (i = 0; i < 64; i++) {
    t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

void ctv_sha256_init(ctv_sha256 *c) {
  static const uint32_t IV[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
  memcpy(c->h, IV, sizeof IV);
  c->len = 0;
  c->n = 0;
}

void ctv_sha256_update(ctv_sha256 *c, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  c->len += n;
  if (c->n > 0) {
    size_t take = CTV_SHA256_BLOCK - c->n;
    if (take > n) take = n;
    memcpy(c->buf + c->n, p, take);
    c->n += take;
    p += take;
    n -= take;
    if (c->n < CTV_SHA256_BLOCK) return;
    block(c->h, c->buf);
    c->n = 0;
  }
  for (; n >= CTV_SHA256_BLOCK; p += CTV_SHA256_BLOCK, n -= CTV_SHA256_BLOCK) block(c->h, p);
  if (n > 0) memcpy(c->buf, p, n);
  c->n = n;
}

void ctv_sha256_final(ctv_sha256 *c, unsigned char out[CTV_SHA256_LEN]) {
  uint64_t bits = c->len * 8;
  int i;
  c->buf[c->n++] = 0x80;
  if (c->n > CTV_SHA256_BLOCK - 8) {
    memset(c->buf + c->n, 0, CTV_SHA256_BLOCK - c->n);
    block(c->h, c->buf);
    c->n = 0;
  }
  memset(c->buf + c->n, 0, CTV_SHA256_BLOCK - 8 - c->n);
  for (i = 0; i < 8; i++) c->buf[CTV_SHA256_BLOCK - 1 - i] = (unsigned char)(bits >> (8 * i));
  block(c->h, c->buf);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(c->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)c->h[i];
  }
  memset(c, 0, sizeof *c);
}

void ctv_sha256_sum(const void *data, size_t n, unsigned char out[CTV_SHA256_LEN]) {
  ctv_sha256 c;
  ctv_sha256_init(&c);
  ctv_sha256_update(&c, data, n);
  ctv_sha256_final(&c, out);
}

void ctv_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                     unsigned char out[CTV_SHA256_LEN]) {
  unsigned char k[CTV_SHA256_BLOCK], pad[CTV_SHA256_BLOCK], inner[CTV_SHA256_LEN];
  ctv_sha256 c;
  size_t i;
  memset(k, 0, sizeof k);
  if (klen > CTV_SHA256_BLOCK) ctv_sha256_sum(key, klen, k);
  else if (klen > 0) memcpy(k, key, klen);
  for (i = 0; i < sizeof pad; i++) pad[i] = k[i] ^ 0x36;
  ctv_sha256_init(&c);
  ctv_sha256_update(&c, pad, sizeof pad);
  ctv_sha256_update(&c, data, n);
  ctv_sha256_final(&c, inner);
  for (i = 0; i < sizeof pad; i++) pad[i] = k[i] ^ 0x5c;
  ctv_sha256_init(&c);
  ctv_sha256_update(&c, pad, sizeof pad);
  ctv_sha256_update(&c, inner, sizeof inner);
  ctv_sha256_final(&c, out);
  memset(k, 0, sizeof k);
  memset(pad, 0, sizeof pad);
}

int ctv_same(const unsigned char *a, const unsigned char *b, size_t n) {
  unsigned char d = 0;
  size_t i;
  for (i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}
