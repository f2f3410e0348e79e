/*
 * resp.h: Redis replies (RESP2, and the RESP3 types a server may send),
 * read from bytes. Pure C99, no I/O, no Lua: a fuzzer or a C test links
 * it alone.
 *
 * Two layers:
 *   ctv_resp_token  one value's header at p: its type and, for strings,
 *                   where its bytes are; an aggregate says how many
 *                   values follow it.
 *   ctv_resp_scan   a whole reply, resumable: fed the bytes of one reply
 *                   as they arrive (the same start, more bytes each
 *                   time), it says "need more", "complete after N bytes"
 *                   or why the bytes are no reply. Nothing is copied or
 *                   allocated; depth and sizes are bounded by limits.
 * A reply is accepted only in the canonical form Redis writes: decimal
 * numbers with no sign but a leading '-', no leading zeros, "\r\n" after
 * every line and every bulk. An error found stays an error whatever bytes
 * follow; a prefix of a reply is always "need more".
 */
#ifndef CTVNC_RESP_H
#define CTVNC_RESP_H

#include <stddef.h>
#include <stdint.h>

/* Internal in every build of the module (LuaRocks' too). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Deepest nesting of aggregates any limits may allow. */
#define CTV_RESP_MAXDEPTH 64

/* Outcomes. */
enum ctv_resp_result {
  CTV_RESP_OK = 0,      /* a token (or a whole reply) is there */
  CTV_RESP_MORE,        /* the bytes end before it does: feed more */
  CTV_RESP_ETYPE,       /* unknown type byte (RESP3 attributes, '|',
                           and streamed strings, "$?", included) */
  CTV_RESP_ENUMBER,     /* a length or integer not in canonical decimal,
                           out of range, or a length below -1 */
  CTV_RESP_ELINE,       /* a line with a bare CR or LF, or a bulk not
                           followed by CRLF */
  CTV_RESP_EVALUE,      /* a value the type does not allow: a boolean
                           not t/f, a double or big number that is not
                           one, a verbatim string with no "xxx:" */
  CTV_RESP_EBULK,       /* a bulk string or a line longer than max_bulk */
  CTV_RESP_EDEPTH,      /* aggregates nested deeper than max_depth */
  CTV_RESP_EELEMENTS    /* more values in the reply than max_elements */
};

/* Bounds on one reply. */
typedef struct ctv_resp_limits {
  unsigned max_depth;     /* 1 .. CTV_RESP_MAXDEPTH */
  uint64_t max_bulk;      /* longest string: bulk, simple, error, number */
  uint64_t max_elements;  /* values in one reply, aggregates included */
} ctv_resp_limits;

/* One value's header. */
typedef struct ctv_resp_tok {
  int type;               /* the type byte: + - : $ * _ , # ! = ( % ~ > */
  int null;               /* 1: $-1, *-1 or _ */
  int error;              /* 1: - or ! (its text in str, len) */
  int aggregate;          /* 1: * % ~ > that is not null; count values
                             follow (a map's pairs count twice) */
  const unsigned char *str; /* simple, error, bulk, verbatim (after its
                             "xxx:"), big number and double text */
  size_t len;
  int64_t integer;        /* ':' value; '#' 1 or 0 */
  double number;          /* ',' value */
  uint64_t count;         /* values inside an aggregate */
  size_t size;            /* bytes the token takes, its payload included
                             (an aggregate's values not) */
} ctv_resp_tok;

/* Reads the token at p[0..n). CTV_RESP_MORE only while what is there can
 * still begin a valid token. */
enum ctv_resp_result ctv_resp_token(const unsigned char *p, size_t n,
                                    const ctv_resp_limits *lim,
                                    ctv_resp_tok *t);

/* A reply being scanned. */
typedef struct ctv_resp_scan {
  ctv_resp_limits lim;
  size_t off;             /* bytes of the reply accepted so far; the
                             reply's size once the scan says OK */
  unsigned depth;         /* aggregates open */
  uint64_t left[CTV_RESP_MAXDEPTH]; /* values still to come in each */
  uint64_t elements;      /* values counted so far */
  enum ctv_resp_result result; /* the last outcome (errors stick) */
} ctv_resp_scan;

/* Starts a scan with these limits (max_depth clamped to 1 ..
 * CTV_RESP_MAXDEPTH). */
void ctv_resp_scan_init(ctv_resp_scan *s, const ctv_resp_limits *lim);

/* Goes on scanning the reply that starts at p[0]; n bytes are there now
 * (never fewer than the last call). OK: the reply is p[0 .. s->off). */
enum ctv_resp_result ctv_resp_scan_run(ctv_resp_scan *s,
                                       const unsigned char *p, size_t n);

/* One line of English for an outcome. */
const char *ctv_resp_message(enum ctv_resp_result r);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
