/*
 * resp.c: Redis replies read from bytes (see resp.h). Pure C99, no I/O.
 */
#include <stdlib.h>
#include <string.h>

#include "resp.h"

/* Longest line of a length or an integer: "-9223372036854775808". */
#define NUMLINE 20
/* Longest double text accepted (Redis writes %.17g: at most 24 bytes). */
#define DBLLINE 63

static const char *const messages[] = {
  "complete",
  "incomplete reply",
  "unknown reply type",
  "bad number in reply",
  "bad line end in reply",
  "bad value in reply",
  "string in reply longer than max_bulk",
  "reply nested deeper than max_depth",
  "more values in reply than max_elements"
};

const char *ctv_resp_message(enum ctv_resp_result r) {
  return (unsigned)r < sizeof messages / sizeof messages[0]
           ? messages[r] : "bad reply";
}

/* The line after the type byte: p[1 .. *cr) with "\r\n" at *cr, its
 * content at most max bytes, no CR or LF inside. */
static enum ctv_resp_result line(const unsigned char *p, size_t n, size_t max,
                                 size_t *cr) {
  size_t i;
  for (i = 1; i < n; i++) {
    if (i - 1 > max) return CTV_RESP_EBULK;
    if (p[i] == '\n') return CTV_RESP_ELINE;
    if (p[i] == '\r') {
      if (i + 1 == n) return CTV_RESP_MORE;
      if (p[i + 1] != '\n') return CTV_RESP_ELINE;
      *cr = i;
      return CTV_RESP_OK;
    }
  }
  return n - 1 > max ? CTV_RESP_EBULK : CTV_RESP_MORE;
}

/* Canonical decimal: -?(0|[1-9][0-9]*), no "-0". With out, the value must
 * fit an int64_t; without, any number of digits (big numbers). */
static int decimal(const unsigned char *s, size_t len, int64_t *out) {
  const uint64_t top = UINT64_C(9223372036854775807);
  size_t i = 0;
  uint64_t v = 0;
  int neg = len > 0 && s[0] == '-';
  i = (size_t)neg;
  if (i == len || (s[i] == '0' && (neg || len - i > 1))) return 0;
  for (; i < len; i++) {
    unsigned d = (unsigned)s[i] - '0';
    if (d > 9) return 0;
    if (out) {
      if (v > (top + (uint64_t)neg - d) / 10) return 0;
      v = v * 10 + d;
    }
  }
  if (out)
    *out = neg ? (v > top ? INT64_MIN : -(int64_t)v) : (int64_t)v;
  return 1;
}

/* RESP3 double: -?digits(.digits)?([eE][+-]?digits)? | -?inf | nan. */
static int is_double(const unsigned char *s, size_t len) {
  size_t i = 0, d;
  if (len == 3 && memcmp(s, "nan", 3) == 0) return 1;
  if (i < len && s[i] == '-') i++;
  if (len - i == 3 && memcmp(s + i, "inf", 3) == 0) return 1;
  for (d = i; i < len && s[i] >= '0' && s[i] <= '9'; i++) {}
  if (i == d) return 0;
  if (i < len && s[i] == '.') {
    for (d = ++i; i < len && s[i] >= '0' && s[i] <= '9'; i++) {}
    if (i == d) return 0;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) i++;
    for (d = i; i < len && s[i] >= '0' && s[i] <= '9'; i++) {}
    if (i == d) return 0;
  }
  return i == len;
}

/* A bulk payload of len bytes after the header line ending at cr:
 * present and followed by CRLF. */
static enum ctv_resp_result payload(const unsigned char *p, size_t n,
                                    size_t cr, uint64_t len, ctv_resp_tok *t) {
  size_t start = cr + 2, end = start + (size_t)len;
  if (n > end && p[end] != '\r') return CTV_RESP_ELINE;
  if (n > end + 1 && p[end + 1] != '\n') return CTV_RESP_ELINE;
  if (n < end + 2) return CTV_RESP_MORE;
  t->str = p + start;
  t->len = (size_t)len;
  t->size = end + 2;
  return CTV_RESP_OK;
}

enum ctv_resp_result ctv_resp_token(const unsigned char *p, size_t n,
                                    const ctv_resp_limits *lim,
                                    ctv_resp_tok *t) {
  size_t cr = 0, max = NUMLINE;
  enum ctv_resp_result r;
  int64_t v;
  memset(t, 0, sizeof *t);
  if (n == 0) return CTV_RESP_MORE;
  t->type = p[0];
  switch (p[0]) {
  case '+': case '-': case '(': case ',':
    max = lim->max_bulk < SIZE_MAX ? (size_t)lim->max_bulk : SIZE_MAX;
    break;
  case '_': case '#': case ':': case '$': case '*': case '!': case '=':
  case '%': case '~': case '>':
    break;
  default:
    return CTV_RESP_ETYPE;
  }
  r = line(p, n, max, &cr);
  if (r == CTV_RESP_EBULK && max == NUMLINE)   /* a number or _ # too long */
    r = p[0] == '_' || p[0] == '#' ? CTV_RESP_EVALUE : CTV_RESP_ENUMBER;
  if (r != CTV_RESP_OK) return r;
  t->str = p + 1;
  t->len = cr - 1;
  t->size = cr + 2;
  switch (p[0]) {
  case '-':
    t->error = 1;
    return CTV_RESP_OK;
  case '+':
    return CTV_RESP_OK;
  case '(':
    return decimal(t->str, t->len, NULL) ? CTV_RESP_OK : CTV_RESP_EVALUE;
  case ',':
    if (t->len > DBLLINE || !is_double(t->str, t->len)) return CTV_RESP_EVALUE;
    {
      char text[DBLLINE + 1];
      memcpy(text, t->str, t->len);
      text[t->len] = '\0';
      t->number = strtod(text, NULL);
    }
    return CTV_RESP_OK;
  case '_':
    t->null = 1;
    return t->len == 0 ? CTV_RESP_OK : CTV_RESP_EVALUE;
  case '#':
    if (t->len != 1 || (p[1] != 't' && p[1] != 'f')) return CTV_RESP_EVALUE;
    t->integer = p[1] == 't';
    return CTV_RESP_OK;
  default:
    break;
  }
  if (!decimal(t->str, t->len, &v)) return CTV_RESP_ENUMBER;
  t->str = NULL;
  t->len = 0;
  switch (p[0]) {
  case ':':
    t->integer = v;
    return CTV_RESP_OK;
  case '$': case '!': case '=':
    if (v == -1 && p[0] == '$') {
      t->null = 1;
      return CTV_RESP_OK;
    }
    if (v < 0) return CTV_RESP_ENUMBER;
    if ((uint64_t)v > lim->max_bulk || (uint64_t)v > SIZE_MAX - cr - 4)
      return CTV_RESP_EBULK;
    if ((r = payload(p, n, cr, (uint64_t)v, t)) != CTV_RESP_OK) return r;
    t->error = p[0] == '!';
    if (p[0] == '=') {              /* "txt:" or "mkd:" before the text */
      if (t->len < 4 || t->str[3] != ':') return CTV_RESP_EVALUE;
      t->str += 4;
      t->len -= 4;
    }
    return CTV_RESP_OK;
  default:                          /* * % ~ > */
    if (v == -1 && p[0] == '*') {
      t->null = 1;
      return CTV_RESP_OK;
    }
    if (v < 0) return CTV_RESP_ENUMBER;
    t->count = (uint64_t)v * (p[0] == '%' ? 2 : 1);
    if (t->count > lim->max_elements) return CTV_RESP_EELEMENTS;
    t->aggregate = 1;
    return CTV_RESP_OK;
  }
}

void ctv_resp_scan_init(ctv_resp_scan *s, const ctv_resp_limits *lim) {
  memset(s, 0, sizeof *s);
  s->lim = *lim;
  if (s->lim.max_depth < 1) s->lim.max_depth = 1;
  if (s->lim.max_depth > CTV_RESP_MAXDEPTH)
    s->lim.max_depth = CTV_RESP_MAXDEPTH;
  s->result = CTV_RESP_MORE;
}

enum ctv_resp_result ctv_resp_scan_run(ctv_resp_scan *s,
                                       const unsigned char *p, size_t n) {
  ctv_resp_tok t;
  while (s->result == CTV_RESP_MORE) {
    enum ctv_resp_result r = ctv_resp_token(p + s->off, n - s->off, &s->lim,
                                            &t);
    if (r != CTV_RESP_OK) {
      s->result = r;
      break;
    }
    if (s->elements >= s->lim.max_elements
        || t.count > s->lim.max_elements - s->elements - 1) {
      s->result = CTV_RESP_EELEMENTS;
      break;
    }
    s->elements++;
    s->off += t.size;
    if (t.aggregate && t.count > 0) {
      if (s->depth >= s->lim.max_depth) {
        s->result = CTV_RESP_EDEPTH;
        break;
      }
      s->left[s->depth++] = t.count;
      continue;
    }
    /* a whole value: it may complete the aggregates around it */
    while (s->depth > 0 && --s->left[s->depth - 1] == 0) s->depth--;
    if (s->depth == 0) s->result = CTV_RESP_OK;
  }
  return s->result;
}
