/*
 * wsc.h: the client side of the websocket opening handshake (RFC 6455
 * section 4.1): the request, and the check of the server's answer
 * (101, Upgrade, Connection, Sec-WebSocket-Accept = base64(SHA-1(key +
 * GUID))). Pure C99, no I/O; the frames themselves are frames.c's.
 */
#ifndef CTVNC_WSC_H
#define CTVNC_WSC_H

#include <stddef.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Outcomes of reading the answer. */
enum ctv_wsc_result {
  CTV_WSC_OK = 0,       /* 101 with the right headers; *used bytes were
                           the answer, the rest are frames */
  CTV_WSC_MORE,         /* the header block has not ended yet */
  CTV_WSC_ESTATUS,      /* a status other than 101 (in *status) */
  CTV_WSC_EHEADERS,     /* 101, but Upgrade, Connection or
                           Sec-WebSocket-Accept is missing or wrong */
  CTV_WSC_EMALFORMED,   /* not an HTTP/1.1 status line */
  CTV_WSC_ETOOBIG       /* no end of headers within CTV_WSC_MAXANSWER */
};

#define CTV_WSC_MAXANSWER 8192

/* The 24-character Sec-WebSocket-Key of 16 random bytes, NUL-terminated. */
void ctv_wsc_key(char key[25], const unsigned char random16[16]);

/* The GET request for host (as in the URL, brackets kept), path (with its
 * query) and key, into out (cap bytes); its length, or 0 when it does not
 * fit or a part has a CR, LF or NUL. */
size_t ctv_wsc_request(char *out, size_t cap, const char *host,
                       const char *path, const char *key);

/* The answer so far, p[0..n). */
enum ctv_wsc_result ctv_wsc_answer(const unsigned char *p, size_t n,
                                   const char *key, size_t *used,
                                   int *status);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
