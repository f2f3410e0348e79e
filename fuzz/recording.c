/*
 * fuzz/recording.c: the console recording reader (csrc/recording.c) on
 * any bytes, and the writer and reader together.
 *
 * Every input is first read raw, as a file: each outcome stays inside the
 * bytes given, "need more" always asks for more than it was given, and a
 * second reader fed only as many bytes as the first one asked for meets
 * the same records, chunk verdicts and end.
 * Then the input becomes a recording: its bytes are cut into chunks at
 * every 0xFF (a chunk whose first byte is odd is a keyframe, its time the
 * previous one plus its first byte), written with a key, and read back:
 * every chunk intact with its own data, the trailer intact and signed
 * with the key, nothing after it. Last, one byte of that recording chosen
 * by the input is changed: the reader must not find it all intact and
 * signed (every byte is covered by the chain or the signature).
 */
#define FUZZ_NAME "recording"
#include "fuzz.h"
#include "recording.h"

static const char KEY[] = "fuzz-record-key-0123456789abcdef0123";

#define MAXREC 4096

typedef struct outcome {
  int rc, kind, intact, signature;
  size_t used;
} outcome;

/* Reads p[0..n) as a file; fills out[] (at most MAXREC), returns how many. */
static size_t read_all(const unsigned char *p, size_t n, const char *key, outcome *out) {
  ctv_rec_reader r;
  size_t off = 0, k = 0;
  ctv_rec_reader_init(&r, key, key ? strlen(key) : 0);
  while (k < MAXREC) {
    ctv_rec_item it;
    size_t used;
    int rc = ctv_rec_next(&r, p + off, n - off, &it, &used);
    memset(&out[k], 0, sizeof out[k]);
    out[k].rc = rc;
    out[k].used = used;
    if (rc == CTV_REC_OK) {
      CHECK(used > 0 && used <= n - off);
      if (it.kind == CTV_REC_CHUNK || it.kind == CTV_REC_KEYFRAME) {
        CHECK(it.data >= p + off && it.data + it.len <= p + off + used);
        CHECK(it.offset == off);
      }
      out[k].kind = it.kind;
      out[k].intact = it.intact;
      out[k].signature = it.signature;
      off += used;
      k++;
      continue;
    }
    if (rc == CTV_REC_MORE) CHECK(used > n - off);
    k++;
    break;
  }
  return k;
}

/* The same bytes, each record given only as many bytes as asked for. */
static void read_in_steps(const unsigned char *p, size_t n, const outcome *want, size_t count) {
  ctv_rec_reader r;
  size_t off = 0, k = 0, give = 0;
  ctv_rec_reader_init(&r, NULL, 0);
  while (k < count) {
    ctv_rec_item it;
    size_t used, avail = n - off < give ? n - off : give;
    int rc = ctv_rec_next(&r, p + off, avail, &it, &used);
    if ((rc == CTV_REC_MORE || rc == CTV_REC_DONE) && avail < n - off) {
      CHECK(rc == CTV_REC_DONE || used > avail);
      give = rc == CTV_REC_DONE ? n - off : used;
      continue;
    }
    CHECK(rc == want[k].rc);
    if (rc != CTV_REC_OK) return;
    CHECK(used == want[k].used && it.kind == want[k].kind && it.intact == want[k].intact);
    off += used;
    give = 0;
    k++;
  }
}

/* The input as a recording: bytes, size. */
static unsigned char *write_recording(const uint8_t *data, size_t size, size_t *n) {
  ctv_rec_writer w;
  ctv_rec_meta m;
  unsigned char *out = malloc(CTV_REC_FIXED + 8 + 2 * 64 + size * (CTV_REC_CHUNK_HEAD +
                              CTV_SHA256_LEN + 1) + CTV_REC_CHUNK_HEAD + CTV_SHA256_LEN +
                              CTV_REC_TRAILER);
  size_t at, i, start = 0;
  uint64_t t = 1700000000000ull;
  CHECK(out != NULL);
  memset(&m, 0, sizeof m);
  m.start_ms = t;
  m.width = 640;
  m.height = 480;
  memcpy(m.rfb, "RFB 003.008\n", 12);
  m.session.p = "session";
  m.session.n = 7;
  m.vm.p = (const char *)data;
  m.vm.n = size < 64 ? size : 64;
  m.user.p = "user";
  m.user.n = 4;
  ctv_rec_writer_init(&w, KEY, strlen(KEY));
  CHECK(ctv_rec_write_header(&w, &m, out) == CTV_REC_OK);
  at = ctv_rec_header_size(&m);
  for (i = 0; i <= size; i++) {
    if (i < size && data[i] != 0xFF) continue;
    {
      size_t len = i - start;
      int key = len > 0 && (data[start] & 1);
      t += len > 0 ? data[start] : 0;
      CHECK(ctv_rec_write_chunk(&w, t, data + start, len, key, out + at,
                                 out + at + CTV_REC_CHUNK_HEAD + len) == CTV_REC_OK);
      if (len > 0) memcpy(out + at + CTV_REC_CHUNK_HEAD, data + start, len);
      at += CTV_REC_CHUNK_HEAD + len + CTV_SHA256_LEN;
    }
    start = i + 1;
  }
  CHECK(ctv_rec_write_trailer(&w, t, 1, out + at) == CTV_REC_OK);
  *n = at + CTV_REC_TRAILER;
  return out;
}

/* 1 when the bytes read as a whole, intact recording signed with KEY. */
static int accepted(const unsigned char *p, size_t n) {
  ctv_rec_reader r;
  size_t off = 0;
  int trailer = 0;
  ctv_rec_reader_init(&r, KEY, strlen(KEY));
  for (;;) {
    ctv_rec_item it;
    size_t used;
    int rc = ctv_rec_next(&r, p + off, n - off, &it, &used);
    if (rc == CTV_REC_DONE) return trailer;
    if (rc != CTV_REC_OK || !it.intact) return 0;
    if (it.kind == CTV_REC_END) {
      if (it.signature != CTV_REC_GOOD) return 0;
      trailer = 1;
    }
    off += used;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static outcome seen[MAXREC];
  size_t count = read_all(data, size, NULL, seen), n, at;
  unsigned char *rec;
  read_in_steps(data, size, seen, count);

  rec = write_recording(data, size, &n);
  CHECK(accepted(rec, n));
  {
    /* the chunks come back with their data, in order */
    ctv_rec_reader r;
    size_t off = 0, start = 0, i = 0;
    ctv_rec_item it;
    size_t used;
    ctv_rec_reader_init(&r, NULL, 0);
    CHECK(ctv_rec_next(&r, rec, n, &it, &used) == CTV_REC_OK && it.kind == CTV_REC_HEADER);
    off = used;
    while (ctv_rec_next(&r, rec + off, n - off, &it, &used) == CTV_REC_OK &&
           it.kind != CTV_REC_END) {
      while (i < size && data[i] != 0xFF) i++;
      CHECK(it.len == i - start && (it.len == 0 || memcmp(it.data, data + start, it.len) == 0));
      start = ++i;
      off += used;
    }
    CHECK(it.kind == CTV_REC_END && it.signature == CTV_REC_UNCHECKED && it.intact);
  }
  at = size > 0 ? (data[0] * 7919u + size * 104729u) % n : 0;
  rec[at] ^= (unsigned char)(size > 1 && data[1] != 0 ? data[1] : 0x5A);
  CHECK(!accepted(rec, n));
  free(rec);
  return 0;
}
