/*
 * recording.h: console recordings (docs/recording-format.md), pure C99 with
 * no I/O and no allocation, so the gateway can write with non-blocking I/O
 * and a fuzzer can link the reader alone.
 *
 *   writer  header, chunks and a trailer as bytes, in a fixed-size state:
 *           a chunk's data is never copied (its head and its hash come
 *           back apart, for a gathered write).
 *   reader  one record at a time from the caller's bytes ("need N bytes"
 *           as an outcome), rebuilding the hash chain as it goes: each
 *           chunk says whether its stored hash, time and keyframe link
 *           agree; the trailer whether its counts, final hash and
 *           signature do.
 */
#ifndef CTVNC_RECORDING_H
#define CTVNC_RECORDING_H

#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define CTV_REC_VERSION 1
#define CTV_REC_MAXSTR 1024              /* bytes of a header string */
#define CTV_REC_MAXCHUNK (16u << 20)     /* bytes of a chunk's data */
#define CTV_REC_FIXED 54                 /* header bytes before the strings */
#define CTV_REC_CHUNK_HEAD 17            /* kind, time, length, keyframe link */
#define CTV_REC_TRAILER 103              /* bytes of the trailer */
#define CTV_REC_SIGNED 71                /* trailer bytes the signature covers */

/* Record kinds (the first byte of each record after the header). */
enum ctv_rec_kind {
  CTV_REC_HEADER = 0,     /* the header (not a byte on disk: an item kind) */
  CTV_REC_CHUNK = 1,      /* target-to-browser bytes */
  CTV_REC_KEYFRAME = 2,   /* a chunk a player can start at */
  CTV_REC_END = 0xFF      /* the trailer */
};

/* Outcomes. */
enum ctv_rec_result {
  CTV_REC_OK = 0,    /* an item is ready (writer: bytes written) */
  CTV_REC_MORE,      /* the bytes end before the record does: *used says
                        how many it needs from its start */
  CTV_REC_DONE,      /* the trailer was read and no byte follows */
  CTV_REC_EMAGIC,    /* not a recording (magic) */
  CTV_REC_EVERSION,  /* a format version this reader does not know */
  CTV_REC_EHEADER,   /* header length or a string length out of bounds */
  CTV_REC_EKIND,     /* an unknown record kind */
  CTV_REC_ETOOBIG,   /* a chunk, string or time over its bound */
  CTV_REC_ETIME,     /* writer: a time before the start or the last chunk */
  CTV_REC_EAFTER,    /* bytes after the trailer */
  CTV_REC_ESTATE     /* writer: header twice, chunk first, or after the
                        trailer */
};

/* A string of the header: bytes, not NUL-terminated. */
typedef struct ctv_rec_str {
  const char *p;
  size_t n;
} ctv_rec_str;

/* What the header holds. */
typedef struct ctv_rec_meta {
  uint64_t start_ms;                /* Unix time of the first byte, ms */
  uint16_t width, height;           /* the desktop's size at the start */
  unsigned char pixel_format[16];   /* RFB PIXEL_FORMAT, as negotiated */
  unsigned char rfb[12];            /* the server's ProtocolVersion */
  ctv_rec_str session, vm, user, node;
} ctv_rec_meta;

/* An HMAC key, reduced to at most one block (RFC 2104). */
typedef struct ctv_rec_key {
  unsigned char k[CTV_SHA256_BLOCK];
  size_t n;                         /* 0: no key */
} ctv_rec_key;
void ctv_rec_key_set(ctv_rec_key *key, const void *p, size_t n);

/* Counters both ends keep. */
typedef struct ctv_rec_state {
  int phase;                        /* 0 header next, 1 records, 2 ended */
  unsigned char chain[CTV_SHA256_LEN];
  uint64_t offset;                  /* of the next record */
  uint64_t start_ms, last_ms;       /* the header's start, the last chunk's */
  uint64_t chunks, bytes, keyframes, last_key;
  ctv_rec_key key;
} ctv_rec_state;

/* ---- writer ---------------------------------------------------------- */

typedef ctv_rec_state ctv_rec_writer;

/* A writer, signing its trailer with key when klen > 0. */
void ctv_rec_writer_init(ctv_rec_writer *w, const void *key, size_t klen);
/* The header's size for m, 0 when a string is longer than CTV_REC_MAXSTR. */
size_t ctv_rec_header_size(const ctv_rec_meta *m);
/* Writes the header into out (ctv_rec_header_size bytes). */
int ctv_rec_write_header(ctv_rec_writer *w, const ctv_rec_meta *m, unsigned char *out);
/* A chunk at Unix time t_ms: its record is head, the len bytes of data,
 * then hash. */
int ctv_rec_write_chunk(ctv_rec_writer *w, uint64_t t_ms, const unsigned char *data,
                        size_t len, int keyframe, unsigned char head[CTV_REC_CHUNK_HEAD],
                        unsigned char hash[CTV_SHA256_LEN]);
/* The trailer at Unix time t_ms (not before the last chunk); complete is 0
 * when the recording stopped early. */
int ctv_rec_write_trailer(ctv_rec_writer *w, uint64_t t_ms, int complete,
                          unsigned char out[CTV_REC_TRAILER]);

/* ---- reader ---------------------------------------------------------- */

typedef ctv_rec_state ctv_rec_reader;

/* What the trailer's signature says. */
enum ctv_rec_sig {
  CTV_REC_UNSIGNED = 0,  /* the trailer carries none */
  CTV_REC_UNCHECKED,     /* signed, and the reader has no key */
  CTV_REC_GOOD,          /* signed with the reader's key */
  CTV_REC_BAD            /* signed, not with the reader's key */
};

/* One record. */
typedef struct ctv_rec_item {
  int kind;                        /* enum ctv_rec_kind */
  uint64_t offset;                 /* where the record starts */
  ctv_rec_meta meta;               /* CTV_REC_HEADER */
  /* chunks */
  uint64_t index;                  /* 1-based */
  uint64_t t_ms;                   /* Unix time, ms */
  uint64_t prev_key;               /* offset of the keyframe before, 0 none */
  const unsigned char *data;
  size_t len;
  /* chunks: hash, time and link agree; trailer: counts and hash agree */
  int intact;
  /* trailer */
  int complete;
  uint64_t chunks, bytes, keyframes, last_key, end_ms;
  unsigned char final[CTV_SHA256_LEN];
  int signature;                   /* enum ctv_rec_sig */
} ctv_rec_item;

/* A reader checking signatures with key when klen > 0. */
void ctv_rec_reader_init(ctv_rec_reader *r, const void *key, size_t klen);
/* Reads the record at p[0..n) (the bytes at r->offset). CTV_REC_OK: *it
 * is filled (pointing into p) and *used bytes were read; CTV_REC_MORE:
 * *used is the size the record needs; CTV_REC_DONE after the trailer;
 * otherwise malformed, and the reader stays so. */
int ctv_rec_next(ctv_rec_reader *r, const unsigned char *p, size_t n, ctv_rec_item *it,
                 size_t *used);

/* A short English description of an outcome. */
const char *ctv_rec_strerror(int result);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
