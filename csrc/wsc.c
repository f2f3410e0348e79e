/*
 * wsc.c: see wsc.h. SHA-1 (FIPS 180-4) is here for the one digest the
 * handshake needs: the accept value of a 60-byte string.
 */
#include "wsc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char B64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static uint32_t rol(uint32_t x, int n) {
  return x << n | x >> (32 - n);
}

static void sha1_block(uint32_t h[5], const unsigned char *b) {
  uint32_t w[80], a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f, k, t;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16
         | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
  for (i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (i = 0; i < 80; i++) {
    if (i < 20) { f = (bb & c) | (~bb & d); k = 0x5A827999; }
    else if (i < 40) { f = bb ^ c ^ d; k = 0x6ED9EBA1; }
    else if (i < 60) { f = (bb & c) | (bb & d) | (c & d); k = 0x8F1BBCDC; }
    else { f = bb ^ c ^ d; k = 0xCA62C1D6; }
    t = rol(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol(bb, 30);
    bb = a;
    a = t;
  }
  h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e;
}

/* SHA-1 of p[0..n), n < 2^29. */
static void sha1(const unsigned char *p, size_t n, unsigned char out[20]) {
  uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
  unsigned char last[128];
  size_t full = n / 64 * 64, rest = n - full, pad;
  uint64_t bits = (uint64_t)n * 8;
  int i;
  for (i = 0; (size_t)i < full; i += 64) sha1_block(h, p + i);
  memset(last, 0, sizeof last);
  memcpy(last, p + full, rest);
  last[rest] = 0x80;
  pad = rest + 9 <= 64 ? 64 : 128;
  for (i = 0; i < 8; i++) last[pad - 1 - i] = (unsigned char)(bits >> (8 * i));
  sha1_block(h, last);
  if (pad == 128) sha1_block(h, last + 64);
  for (i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

/* base64 of p[0..n) into out (4 * ceil(n / 3) + 1 bytes). */
static void base64(char *out, const unsigned char *p, size_t n) {
  size_t i;
  for (i = 0; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *out++ = B64[v >> 18]; *out++ = B64[v >> 12 & 63];
    *out++ = B64[v >> 6 & 63]; *out++ = B64[v & 63];
  }
  if (n - i == 1) {
    *out++ = B64[p[i] >> 2]; *out++ = B64[(p[i] & 3) << 4];
    *out++ = '='; *out++ = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
    *out++ = B64[v >> 10]; *out++ = B64[v >> 4 & 63];
    *out++ = B64[(v & 15) << 2]; *out++ = '=';
  }
  *out = '\0';
}

void ctv_wsc_key(char key[25], const unsigned char random16[16]) {
  base64(key, random16, 16);
}

static int one_line(const char *s) {
  return strpbrk(s, "\r\n") == NULL;
}

size_t ctv_wsc_request(char *out, size_t cap, const char *host,
                       const char *path, const char *key) {
  int n;
  if (!one_line(host) || !one_line(path) || !one_line(key)) return 0;
  n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n",
               path, host, key);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Does p[0..n) hold `word` (lower case) as a comma-separated token? */
static int has_token(const unsigned char *p, size_t n, const char *word) {
  size_t i = 0, wl = strlen(word);
  while (i < n) {
    size_t s, e, k;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ',')) i++;
    s = i;
    while (i < n && p[i] != ',') i++;
    e = i;
    while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t')) e--;
    if (e - s == wl) {
      for (k = 0; k < wl && lower(p[s + k]) == word[k]; k++) {}
      if (k == wl) return 1;
    }
  }
  return 0;
}

enum ctv_wsc_result ctv_wsc_answer(const unsigned char *p, size_t n,
                                   const char *key, size_t *used,
                                   int *status) {
  unsigned char in[60], digest[20];
  char accept[29];
  size_t end = 0, i, line;
  int upgrade = 0, connection = 0, accepted = 0;
  *used = 0;
  *status = 0;
  for (i = 3; i < n; i++) {
    if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' && p[i] == '\n') {
      end = i + 1;
      break;
    }
  }
  if (!end) return n >= CTV_WSC_MAXANSWER ? CTV_WSC_ETOOBIG : CTV_WSC_MORE;
  if (end > CTV_WSC_MAXANSWER) return CTV_WSC_ETOOBIG;
  if (end < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[9] < '1' || p[9] > '5'
      || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
    return CTV_WSC_EMALFORMED;
  *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  *used = end;
  if (*status != 101) return CTV_WSC_ESTATUS;
  memcpy(in, key, 24);
  memcpy(in + 24, GUID, 36);
  sha1(in, 60, digest);
  base64(accept, digest, 20);
  for (line = 0; line < end && !(p[line] == '\r' && p[line + 1] == '\n'); line++) {}
  line += 2;                                     /* the first header */
  while (line + 2 < end) {
    size_t eol = line, colon, v, ve;
    while (eol < end && p[eol] != '\r') eol++;
    for (colon = line; colon < eol && p[colon] != ':'; colon++) {}
    if (colon < eol) {
      v = colon + 1;
      while (v < eol && (p[v] == ' ' || p[v] == '\t')) v++;
      ve = eol;
      while (ve > v && (p[ve - 1] == ' ' || p[ve - 1] == '\t')) ve--;
#define NAME_IS(s) (colon - line == sizeof s - 1 && has_token(p + line, colon - line, s))
      if (NAME_IS("upgrade")) upgrade = has_token(p + v, ve - v, "websocket");
      else if (NAME_IS("connection")) connection = has_token(p + v, ve - v, "upgrade");
      else if (NAME_IS("sec-websocket-accept"))
        accepted = ve - v == 28 && memcmp(p + v, accept, 28) == 0;
#undef NAME_IS
    }
    line = eol + 2;
  }
  return upgrade && connection && accepted ? CTV_WSC_OK : CTV_WSC_EHEADERS;
}
