/*
 * rfb.h: an RFB *client* (RFC 6143) that takes one screenshot, fed the
 * server's bytes. Pure C99 and zlib, no I/O: the caller moves bytes (over
 * a libcurl websocket in the library, cosockets in nginx) and a fuzzer
 * links it alone.
 *
 * What it speaks: ProtocolVersion 3.3, 3.7 and 3.8 (anything above 3.8 is
 * answered with 3.8, anything between 3.3 and 3.7 with 3.3, as RFC 6143
 * says); security None, or VNC Authentication when a password is given;
 * ClientInit with the shared flag set (a live viewer is never
 * disconnected); SetPixelFormat 32 bits true colour; SetEncodings ZRLE,
 * CopyRect, Raw and the DesktopSize pseudo-encoding; one non-incremental
 * FramebufferUpdateRequest of the whole desktop, decoded into an RGB
 * framebuffer. A DesktopSize change that comes without pixels is followed
 * by a new full request at the new size.
 *
 * Memory: the framebuffer (3 bytes a pixel) and, for ZRLE, the inflated
 * data of one rectangle (at most 4 bytes a pixel of it, plus zlib's own
 * state); desktops over max_pixels are refused before anything is
 * allocated. Every byte the caller must send is put in out[0..outlen).
 */
#ifndef CTVNC_RFB_H
#define CTVNC_RFB_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Outcomes of feeding bytes. */
enum ctv_rfbc_result {
  CTV_RFBC_MORE = 0,    /* all bytes used; send out[], then feed more */
  CTV_RFBC_DONE,        /* the frame is whole (or, banner_only, the banner
                           came): fb, width, height, name are set */
  CTV_RFBC_REFUSED,     /* the server refused the session; why has its
                           reason, cleaned */
  CTV_RFBC_ENOTRFB,     /* the first 12 bytes are not an RFB banner */
  CTV_RFBC_ESECURITY,   /* no security type this client can use */
  CTV_RFBC_EPASSWORD,   /* the server asks for a password and none was
                           given */
  CTV_RFBC_ESIZE,       /* empty desktop, or over max_pixels */
  CTV_RFBC_EPROTO,      /* a message no server may send: unknown type or
                           encoding, rectangle outside the desktop, bad
                           ZRLE tile, string over its maximum */
  CTV_RFBC_EZLIB,       /* the ZRLE stream does not inflate */
  CTV_RFBC_ENOMEM,      /* out of memory */
  CTV_RFBC_EDEAD        /* fed again after DONE or an error */
};

/* Where the client is: what it waits for from the server. */
enum ctv_rfbc_state {
  CTV_RFBC_S_VERSION = 0, /* ProtocolVersion, 12 bytes */
  CTV_RFBC_S_SECTYPE33,   /* 3.3: U32 security type */
  CTV_RFBC_S_NTYPES,      /* 3.7+: U8 number of security types */
  CTV_RFBC_S_TYPES,       /* 3.7+: the types */
  CTV_RFBC_S_REASONLEN,   /* failure: U32 reason length */
  CTV_RFBC_S_REASON,      /* failure: the reason */
  CTV_RFBC_S_CHALLENGE,   /* VNC Authentication: 16 bytes */
  CTV_RFBC_S_RESULT,      /* SecurityResult, U32 */
  CTV_RFBC_S_INIT,        /* ServerInit: 24 bytes */
  CTV_RFBC_S_NAME,        /* ServerInit: the desktop name */
  CTV_RFBC_S_MSG,         /* a server message type, U8 */
  CTV_RFBC_S_UPDATE,      /* FramebufferUpdate: padding, U16 rectangles */
  CTV_RFBC_S_RECT,        /* rectangle header: x, y, w, h, S32 encoding */
  CTV_RFBC_S_RAW,         /* Raw pixels, 4 bytes each, streamed */
  CTV_RFBC_S_COPY,        /* CopyRect: U16 src-x, src-y */
  CTV_RFBC_S_ZLEN,        /* ZRLE: U32 length of the zlib data */
  CTV_RFBC_S_ZDATA,       /* ZRLE: the zlib data, streamed into inflate */
  CTV_RFBC_S_COLOURS,     /* SetColourMapEntries: padding, first, count */
  CTV_RFBC_S_SKIP,        /* bytes to skip (colour entries, cut text) */
  CTV_RFBC_S_CUTLEN,      /* ServerCutText: padding, U32 length */
  CTV_RFBC_S_DONE,        /* the frame is whole */
  CTV_RFBC_S_DEAD         /* refused or broken */
};

typedef struct ctv_rfbc {
  int state;              /* enum ctv_rfbc_state */
  int version;            /* minor version spoken: 3, 7 or 8 */
  int security;           /* 1 None, 2 VNC Authentication */
  int banner_only;        /* stop at the server's ProtocolVersion */
  int has_password;
  unsigned char password[8];
  uint64_t max_pixels;    /* largest desktop accepted, width x height */
  uint32_t max_string;    /* largest reason, name or cut text */
  /* the message being gathered */
  unsigned char buf[24];
  size_t have, want;
  uint64_t left;          /* bytes still to come in a streamed state */
  /* the desktop */
  unsigned width, height;
  unsigned char *fb;      /* width * height * 3, RGB, rows top down */
  char name[128];         /* the desktop name, cleaned, cut to fit */
  size_t namelen;
  /* the update being decoded */
  unsigned rects;         /* rectangles still to come in it */
  unsigned rx, ry, rw, rh;
  int resized;            /* a DesktopSize came in this update */
  int painted;            /* pixels came after it */
  int requests;           /* FramebufferUpdateRequests sent */
  unsigned char px[4];    /* a Raw pixel split across feeds */
  uint64_t rawpos;        /* bytes of the Raw rectangle seen */
  /* ZRLE */
  void *z;                /* z_stream, once the first ZRLE rectangle comes */
  unsigned char *zout;    /* inflated bytes of the current rectangle */
  size_t zlen, zcap, zmax;
  /* bytes to send */
  unsigned char out[96];
  size_t outlen;
  /* why it stopped: one line, no control characters */
  char why[200];
} ctv_rfbc;

/* password NULL: security None only. max_pixels 0: the default (8K). */
void ctv_rfbc_init(ctv_rfbc *c, const char *password, size_t passlen,
                   uint64_t max_pixels, int banner_only);
void ctv_rfbc_free(ctv_rfbc *c);

/* Server bytes p[0..n) in. The caller sends out[0..outlen) and sets
 * outlen to 0 after every call (the client only ever appends). */
enum ctv_rfbc_result ctv_rfbc_feed(ctv_rfbc *c, const unsigned char *p,
                                   size_t n);

/* A static English name of a result. */
const char *ctv_rfbc_result_name(int r);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
