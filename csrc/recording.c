/*
 * recording.c: the writer and the reader of docs/recording-format.md.
 * Every integer is big-endian. The chain starts at SHA-256(header); each
 * chunk's hash is SHA-256(previous hash || the chunk's bytes before its
 * hash); the trailer holds the last one, the counts and an optional
 * HMAC-SHA256 over its first CTV_REC_SIGNED bytes.
 */
#include <string.h>

#include "recording.h"

static const char MAGIC[8] = { 'C', 'T', 'V', 'N', 'C', 'R', 'E', 'C' };

enum { HEADER_NEXT = 0, RECORDS = 1, ENDED = 2, BROKEN = 3 };

static void put(unsigned char *p, uint64_t v, int n) {
  while (n-- > 0) {
    p[n] = (unsigned char)v;
    v >>= 8;
  }
}

static uint64_t get(const unsigned char *p, int n) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

void ctv_rec_key_set(ctv_rec_key *key, const void *p, size_t n) {
  memset(key, 0, sizeof *key);
  if (n > CTV_SHA256_BLOCK) {
    ctv_sha256_sum(p, n, key->k);
    key->n = CTV_SHA256_LEN;
  } else if (n > 0) {
    memcpy(key->k, p, n);
    key->n = n;
  }
}

static void state_init(ctv_rec_state *s, const void *key, size_t klen) {
  memset(s, 0, sizeof *s);
  ctv_rec_key_set(&s->key, key, klen);
}

/* chain = SHA-256(chain || a || b) */
static void link_hash(const unsigned char chain[CTV_SHA256_LEN], const unsigned char *a,
                      size_t an, const unsigned char *b, size_t bn,
                      unsigned char out[CTV_SHA256_LEN]) {
  ctv_sha256 c;
  ctv_sha256_init(&c);
  ctv_sha256_update(&c, chain, CTV_SHA256_LEN);
  ctv_sha256_update(&c, a, an);
  ctv_sha256_update(&c, b, bn);
  ctv_sha256_final(&c, out);
}

/* ---- writer ---------------------------------------------------------- */

void ctv_rec_writer_init(ctv_rec_writer *w, const void *key, size_t klen) {
  state_init(w, key, klen);
}

size_t ctv_rec_header_size(const ctv_rec_meta *m) {
  const ctv_rec_str *s[4];
  size_t i, size = CTV_REC_FIXED;
  s[0] = &m->session; s[1] = &m->vm; s[2] = &m->user; s[3] = &m->node;
  for (i = 0; i < 4; i++) {
    if (s[i]->n > CTV_REC_MAXSTR) return 0;
    size += 2 + s[i]->n;
  }
  return size;
}

int ctv_rec_write_header(ctv_rec_writer *w, const ctv_rec_meta *m, unsigned char *out) {
  const ctv_rec_str *s[4];
  size_t i, size = ctv_rec_header_size(m), at = CTV_REC_FIXED;
  if (w->phase != HEADER_NEXT) return CTV_REC_ESTATE;
  if (size == 0) return CTV_REC_ETOOBIG;
  s[0] = &m->session; s[1] = &m->vm; s[2] = &m->user; s[3] = &m->node;
  memcpy(out, MAGIC, sizeof MAGIC);
  put(out + 8, CTV_REC_VERSION, 2);
  put(out + 10, size, 4);
  put(out + 14, m->start_ms, 8);
  put(out + 22, m->width, 2);
  put(out + 24, m->height, 2);
  memcpy(out + 26, m->pixel_format, 16);
  memcpy(out + 42, m->rfb, 12);
  for (i = 0; i < 4; i++) {
    put(out + at, s[i]->n, 2);
    if (s[i]->n > 0) memcpy(out + at + 2, s[i]->p, s[i]->n);
    at += 2 + s[i]->n;
  }
  ctv_sha256_sum(out, size, w->chain);
  w->offset = size;
  w->start_ms = w->last_ms = m->start_ms;
  w->phase = RECORDS;
  return CTV_REC_OK;
}

int ctv_rec_write_chunk(ctv_rec_writer *w, uint64_t t_ms, const unsigned char *data,
                        size_t len, int keyframe, unsigned char head[CTV_REC_CHUNK_HEAD],
                        unsigned char hash[CTV_SHA256_LEN]) {
  if (w->phase != RECORDS) return CTV_REC_ESTATE;
  if (len > CTV_REC_MAXCHUNK) return CTV_REC_ETOOBIG;
  if (t_ms < w->last_ms) return CTV_REC_ETIME;
  if (t_ms - w->start_ms > UINT32_MAX) return CTV_REC_ETOOBIG;
  head[0] = keyframe ? CTV_REC_KEYFRAME : CTV_REC_CHUNK;
  put(head + 1, t_ms - w->start_ms, 4);
  put(head + 5, len, 4);
  put(head + 9, w->last_key, 8);
  link_hash(w->chain, head, CTV_REC_CHUNK_HEAD, data, len, hash);
  memcpy(w->chain, hash, CTV_SHA256_LEN);
  if (keyframe) {
    w->last_key = w->offset;
    w->keyframes++;
  }
  w->offset += CTV_REC_CHUNK_HEAD + len + CTV_SHA256_LEN;
  w->last_ms = t_ms;
  w->chunks++;
  w->bytes += len;
  return CTV_REC_OK;
}

static void sign(const ctv_rec_key *key, const unsigned char *trailer,
                 unsigned char out[CTV_SHA256_LEN]) {
  ctv_hmac_sha256(key->k, key->n, trailer, CTV_REC_SIGNED, out);
}

int ctv_rec_write_trailer(ctv_rec_writer *w, uint64_t t_ms, int complete,
                          unsigned char out[CTV_REC_TRAILER]) {
  if (w->phase != RECORDS) return CTV_REC_ESTATE;
  if (t_ms < w->last_ms) return CTV_REC_ETIME;
  if (t_ms - w->start_ms > UINT32_MAX) return CTV_REC_ETOOBIG;
  out[0] = CTV_REC_END;
  out[1] = complete ? 1 : 0;
  put(out + 2, w->chunks, 8);
  put(out + 10, w->bytes, 8);
  put(out + 18, w->keyframes, 8);
  put(out + 26, w->last_key, 8);
  put(out + 34, t_ms - w->start_ms, 4);
  memcpy(out + 38, w->chain, CTV_SHA256_LEN);
  out[70] = w->key.n > 0 ? 1 : 0;
  if (w->key.n > 0) sign(&w->key, out, out + CTV_REC_SIGNED);
  else memset(out + CTV_REC_SIGNED, 0, CTV_SHA256_LEN);
  w->offset += CTV_REC_TRAILER;
  w->phase = ENDED;
  return CTV_REC_OK;
}

/* ---- reader ---------------------------------------------------------- */

void ctv_rec_reader_init(ctv_rec_reader *r, const void *key, size_t klen) {
  state_init(r, key, klen);
}

static int broken(ctv_rec_reader *r, int result) {
  r->phase = BROKEN;
  return result;
}

static int read_header(ctv_rec_reader *r, const unsigned char *p, size_t n,
                       ctv_rec_item *it, size_t *used) {
  ctv_rec_str *s[4];
  size_t size, at = CTV_REC_FIXED, i;
  *used = 14;
  if (n > 0 && n < 8 && memcmp(p, MAGIC, n) != 0) return broken(r, CTV_REC_EMAGIC);
  if (n < 14) return CTV_REC_MORE;
  if (memcmp(p, MAGIC, sizeof MAGIC) != 0) return broken(r, CTV_REC_EMAGIC);
  if (get(p + 8, 2) != CTV_REC_VERSION) return broken(r, CTV_REC_EVERSION);
  size = (size_t)get(p + 10, 4);
  if (size < CTV_REC_FIXED + 8 || size > CTV_REC_FIXED + 4 * (2 + CTV_REC_MAXSTR))
    return broken(r, CTV_REC_EHEADER);
  *used = size;
  if (n < size) return CTV_REC_MORE;
  memset(it, 0, sizeof *it);
  it->kind = CTV_REC_HEADER;
  it->meta.start_ms = get(p + 14, 8);
  it->meta.width = (uint16_t)get(p + 22, 2);
  it->meta.height = (uint16_t)get(p + 24, 2);
  memcpy(it->meta.pixel_format, p + 26, 16);
  memcpy(it->meta.rfb, p + 42, 12);
  s[0] = &it->meta.session; s[1] = &it->meta.vm; s[2] = &it->meta.user; s[3] = &it->meta.node;
  for (i = 0; i < 4; i++) {
    size_t len;
    if (at + 2 > size) return broken(r, CTV_REC_EHEADER);
    len = (size_t)get(p + at, 2);
    if (len > CTV_REC_MAXSTR || at + 2 + len > size) return broken(r, CTV_REC_EHEADER);
    s[i]->p = (const char *)(p + at + 2);
    s[i]->n = len;
    at += 2 + len;
  }
  if (at != size) return broken(r, CTV_REC_EHEADER);
  ctv_sha256_sum(p, size, r->chain);
  r->start_ms = r->last_ms = it->meta.start_ms;
  r->offset = size;
  r->phase = RECORDS;
  it->intact = 1;
  return CTV_REC_OK;
}

static int read_chunk(ctv_rec_reader *r, const unsigned char *p, size_t n,
                      ctv_rec_item *it, size_t *used) {
  unsigned char want[CTV_SHA256_LEN];
  size_t len;
  *used = CTV_REC_CHUNK_HEAD;
  if (n < CTV_REC_CHUNK_HEAD) return CTV_REC_MORE;
  len = (size_t)get(p + 5, 4);
  if (len > CTV_REC_MAXCHUNK) return broken(r, CTV_REC_ETOOBIG);
  *used = CTV_REC_CHUNK_HEAD + len + CTV_SHA256_LEN;
  if (n < *used) return CTV_REC_MORE;
  memset(it, 0, sizeof *it);
  it->kind = p[0];
  it->offset = r->offset;
  it->index = ++r->chunks;
  it->t_ms = r->start_ms + get(p + 1, 4);
  it->prev_key = get(p + 9, 8);
  it->data = p + CTV_REC_CHUNK_HEAD;
  it->len = len;
  link_hash(r->chain, p, CTV_REC_CHUNK_HEAD, it->data, len, want);
  it->intact = ctv_same(want, it->data + len, CTV_SHA256_LEN) && it->t_ms >= r->last_ms &&
               it->prev_key == r->last_key;
  /* the chain goes on from the stored hash: a damaged chunk is named
   * alone, the chunks after it still check */
  memcpy(r->chain, it->data + len, CTV_SHA256_LEN);
  if (it->t_ms > r->last_ms) r->last_ms = it->t_ms;
  if (it->kind == CTV_REC_KEYFRAME) {
    r->last_key = r->offset;
    r->keyframes++;
  }
  r->bytes += len;
  r->offset += *used;
  return CTV_REC_OK;
}

static int read_trailer(ctv_rec_reader *r, const unsigned char *p, size_t n,
                        ctv_rec_item *it, size_t *used) {
  unsigned char mac[CTV_SHA256_LEN];
  *used = CTV_REC_TRAILER;
  if (n < CTV_REC_TRAILER) return CTV_REC_MORE;
  memset(it, 0, sizeof *it);
  it->kind = CTV_REC_END;
  it->offset = r->offset;
  it->complete = p[1] == 1;
  it->chunks = get(p + 2, 8);
  it->bytes = get(p + 10, 8);
  it->keyframes = get(p + 18, 8);
  it->last_key = get(p + 26, 8);
  it->end_ms = r->start_ms + get(p + 34, 4);
  memcpy(it->final, p + 38, CTV_SHA256_LEN);
  it->intact = p[1] <= 1 && p[70] <= 1 && it->chunks == r->chunks && it->bytes == r->bytes &&
               it->keyframes == r->keyframes && it->last_key == r->last_key &&
               it->end_ms >= r->last_ms && ctv_same(it->final, r->chain, CTV_SHA256_LEN);
  if (p[70] == 0) {
    it->signature = CTV_REC_UNSIGNED;
  } else if (r->key.n == 0) {
    it->signature = CTV_REC_UNCHECKED;
  } else {
    sign(&r->key, p, mac);
    it->signature = ctv_same(mac, p + CTV_REC_SIGNED, CTV_SHA256_LEN) ? CTV_REC_GOOD
                                                                     : CTV_REC_BAD;
  }
  r->offset += CTV_REC_TRAILER;
  r->phase = ENDED;
  return CTV_REC_OK;
}

int ctv_rec_next(ctv_rec_reader *r, const unsigned char *p, size_t n, ctv_rec_item *it,
                 size_t *used) {
  *used = 0;
  switch (r->phase) {
  case HEADER_NEXT:
    return read_header(r, p, n, it, used);
  case RECORDS:
    *used = 1;
    if (n == 0) return CTV_REC_MORE;
    if (p[0] == CTV_REC_CHUNK || p[0] == CTV_REC_KEYFRAME) return read_chunk(r, p, n, it, used);
    if (p[0] == CTV_REC_END) return read_trailer(r, p, n, it, used);
    return broken(r, CTV_REC_EKIND);
  case ENDED:
    if (n > 0) return broken(r, CTV_REC_EAFTER);
    return CTV_REC_DONE;
  default:
    return CTV_REC_ESTATE;
  }
}

const char *ctv_rec_strerror(int result) {
  switch (result) {
  case CTV_REC_OK: return "ok";
  case CTV_REC_MORE: return "the file ends inside a record";
  case CTV_REC_DONE: return "the trailer was read";
  case CTV_REC_EMAGIC: return "not a ctvnc recording";
  case CTV_REC_EVERSION: return "a recording format version this ctvnc does not know";
  case CTV_REC_EHEADER: return "a malformed header";
  case CTV_REC_EKIND: return "an unknown record kind";
  case CTV_REC_ETOOBIG: return "a chunk, string or time over its bound";
  case CTV_REC_ETIME: return "a time before the start or the last chunk";
  case CTV_REC_EAFTER: return "bytes after the trailer";
  default: return "the reader or writer was used out of order";
  }
}
