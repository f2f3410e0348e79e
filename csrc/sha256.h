/*
 * sha256.h: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), pure C99 with
 * no I/O and no allocation: for the recordings' hash chain and signature,
 * the audit log's chain, and the gateway's HMACs (tickets, HS256 JWTs).
 */
#ifndef CTVNC_SHA256_H
#define CTVNC_SHA256_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define CTV_SHA256_LEN 32     /* bytes of a digest */
#define CTV_SHA256_BLOCK 64   /* bytes of a block */

/* An incremental hash: init, any number of updates, one final. */
typedef struct ctv_sha256 {
  uint32_t h[8];                         /* the chaining state */
  uint64_t len;                          /* bytes hashed so far */
  unsigned char buf[CTV_SHA256_BLOCK];   /* a partial block */
  size_t n;                              /* bytes in buf */
} ctv_sha256;

void ctv_sha256_init(ctv_sha256 *c);
void ctv_sha256_update(ctv_sha256 *c, const void *data, size_t n);
/* Writes the digest; c must be initialized again before another use. */
void ctv_sha256_final(ctv_sha256 *c, unsigned char out[CTV_SHA256_LEN]);

/* One call: SHA-256(data). */
void ctv_sha256_sum(const void *data, size_t n, unsigned char out[CTV_SHA256_LEN]);

/* HMAC-SHA256(key, data); a key longer than a block is hashed first. */
void ctv_hmac_sha256(const void *key, size_t klen, const void *data, size_t n,
                     unsigned char out[CTV_SHA256_LEN]);

/* 1 when the n bytes at a and b are equal, in time that does not depend on
 * where they differ. */
int ctv_same(const unsigned char *a, const unsigned char *b, size_t n);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
