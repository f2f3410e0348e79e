/*
 * frames.h: websocket frames (RFC 6455) and the RFB protocol (RFC 6143)
 * as the console gateway needs them to enforce view-only sessions. Pure
 * C99, no Lua: a fuzzer or a C test links it alone.
 *
 * Three layers, each usable alone:
 *   ctv_ws_*    frame headers: parse (one buffer, "need more" as an
 *               outcome), write, mask/unmask; a streaming decoder that
 *               hands out payload pieces without buffering payloads.
 *   ctv_rfb_*   RFB client message splitting (normal phase) and a
 *               handshake follower fed the bytes of both directions.
 *   ctv_vo_*    the view-only filter: browser frames in, re-framed masked
 *               client frames out with input messages removed; target
 *               frames observed until the handshake is over.
 * Nothing here allocates except ctv_vo (its two growable output buffers,
 * freed by ctv_vo_free), and nothing reads past the n bytes it is given.
 */
#ifndef CTVNC_FRAMES_H
#define CTVNC_FRAMES_H

#include <stddef.h>
#include <stdint.h>

/* Internal in every build of the module (LuaRocks' too). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* ---- websocket frames ------------------------------------------------ */

/* Opcodes (RFC 6455 section 5.2). */
enum ctv_ws_op {
  CTV_WS_CONT = 0x0,    /* continuation of a fragmented data message */
  CTV_WS_TEXT = 0x1,    /* data, UTF-8 */
  CTV_WS_BINARY = 0x2,  /* data, bytes */
  CTV_WS_CLOSE = 0x8,   /* control: close, optional 2-byte code + reason */
  CTV_WS_PING = 0x9,    /* control: ping */
  CTV_WS_PONG = 0xA     /* control: pong */
};

/* Who sent the frames being parsed: clients must mask, servers must not. */
enum ctv_ws_role {
  CTV_WS_FROM_CLIENT = 0, /* browser -> gateway, gateway -> websockify */
  CTV_WS_FROM_SERVER = 1  /* websockify -> gateway, gateway -> browser */
};

/* Outcomes of parsing and decoding. */
enum ctv_ws_result {
  CTV_WS_OK = 0,        /* a header (or a payload piece) is ready */
  CTV_WS_MORE,          /* the bytes end before the header does: feed more */
  CTV_WS_ERSV,          /* an RSV bit is set (no extension was negotiated) */
  CTV_WS_EOPCODE,       /* reserved opcode 3-7 or 0xB-0xF */
  CTV_WS_EMASK,         /* MASK bit wrong for the sender's role */
  CTV_WS_ELENGTH,       /* non-minimal length encoding, or 64-bit length
                           with the most significant bit set */
  CTV_WS_ECONTROL,      /* control frame fragmented or longer than 125 */
  CTV_WS_ECLOSE,        /* close frame with a 1-byte payload */
  CTV_WS_ETOOBIG,       /* payload longer than the caller's maximum */
  CTV_WS_EFRAGMENT      /* continuation with no open message, or a new data
                           frame while a fragmented message is open */
};

/* A parsed frame header. */
typedef struct ctv_ws_frame {
  int fin;              /* 1: last frame of its message */
  int opcode;           /* enum ctv_ws_op */
  int masked;           /* 1: key holds the masking key */
  unsigned char key[4];
  size_t header_len;    /* 2 to 14 bytes */
  uint64_t payload_len; /* < 2^63 */
} ctv_ws_frame;

/* Largest header: 2 + 8 (64-bit length) + 4 (masking key). */
#define CTV_WS_MAXHEADER 14

/* Parses the frame header at p[0..n). Header errors are reported as soon
 * as the bytes that show them are present; CTV_WS_MORE only when the
 * header is valid so far and incomplete. The payload is not required to
 * be present: the frame is whole when n >= header_len + payload_len. */
enum ctv_ws_result ctv_ws_parse(const unsigned char *p, size_t n, int role,
                                uint64_t max_payload, ctv_ws_frame *f);

/* Writes a header for a payload of len bytes to out (CTV_WS_MAXHEADER
 * bytes available); key NULL gives an unmasked (server) header, else a
 * masked one with that key. Returns the header length. len < 2^63. */
size_t ctv_ws_write_header(unsigned char *out, int fin, int opcode,
                           uint64_t len, const unsigned char *key);

/* dst[i] = src[i] ^ key[(offset + i) % 4] for i < n: masks and unmasks
 * (the operation is its own inverse). dst may equal src; otherwise they
 * must not overlap. offset is the position of src[0] in the payload. */
void ctv_ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
                 const unsigned char key[4], uint64_t offset);

/* Streaming decoder: payloads are handed out in pieces as they arrive. */
typedef struct ctv_ws_decoder {
  int role;
  uint64_t max_payload;
  unsigned char hdr[CTV_WS_MAXHEADER];
  size_t have;          /* header bytes gathered */
  int in_payload;       /* 1: f is the current frame, left bytes to come */
  ctv_ws_frame f;
  uint64_t left;
  uint64_t offset;      /* payload bytes already handed out */
  int open;             /* a fragmented data message is open */
  int open_opcode;      /* its opcode (text or binary) */
} ctv_ws_decoder;

/* A piece of one frame's payload, pointing into the caller's input and
 * still masked when the frame is (unmask with ctv_ws_mask(.., offset)). */
typedef struct ctv_ws_piece {
  const ctv_ws_frame *frame;  /* its header (valid until the next call) */
  int opcode;           /* the message's opcode: a continuation frame
                           reports the opcode its message started with */
  const unsigned char *data;
  size_t len;
  uint64_t offset;      /* of data[0] in the frame's payload */
  int first, last;      /* first / last piece of the frame (both for an
                           empty payload) */
} ctv_ws_piece;

void ctv_ws_decoder_init(ctv_ws_decoder *d, int role, uint64_t max_payload);

/* Consumes bytes from p[0..n) and sets *used. CTV_WS_OK: *pc is a piece
 * (call again with the rest); CTV_WS_MORE: all n bytes were used and no
 * piece is ready; any other result is an error and the decoder is dead. */
enum ctv_ws_result ctv_ws_decode(ctv_ws_decoder *d, const unsigned char *p,
                                 size_t n, size_t *used, ctv_ws_piece *pc);

/* ---- RFB client messages (normal phase) ------------------------------ */

/* What a client message does, for policy. */
enum ctv_rfb_class {
  CTV_RFB_VIEW = 0,     /* needed to watch: pixel format, encodings, update
                           requests, continuous updates, fences, audio */
  CTV_RFB_INPUT,        /* reaches the guest's input: key, pointer,
                           clipboard, QEMU extended key */
  CTV_RFB_CONTROL       /* changes the machine or its display: xvp power
                           operations, SetDesktopSize */
};

/* Outcomes of splitting. */
enum ctv_rfb_result {
  CTV_RFB_OK = 0,       /* the length is known (see ctv_rfb_client_len) */
  CTV_RFB_MORE,         /* not enough bytes yet */
  CTV_RFB_EUNKNOWN,     /* unknown message type or QEMU sub-type */
  CTV_RFB_ETOOBIG,      /* cut text or fence payload over its maximum */
  CTV_RFB_EHEADER       /* the filter's own guard: a header longer than
                           CTV_RFB_MAXHEAD or than its message (see split
                           in frames.c); no message type gives it today */
};

/* Client message types (RFC 6143 section 7.5 and the community register
 * in rfbproto, limited to what noVNC sends; see frames.c). */
enum ctv_rfb_type {
  CTV_RFB_SET_PIXEL_FORMAT = 0,
  CTV_RFB_SET_ENCODINGS = 2,
  CTV_RFB_FB_UPDATE_REQUEST = 3,
  CTV_RFB_KEY_EVENT = 4,
  CTV_RFB_POINTER_EVENT = 5,
  CTV_RFB_CLIENT_CUT_TEXT = 6,
  CTV_RFB_ENABLE_CONTINUOUS_UPDATES = 150,
  CTV_RFB_CLIENT_FENCE = 248,
  CTV_RFB_XVP = 250,
  CTV_RFB_SET_DESKTOP_SIZE = 251,
  CTV_RFB_QEMU = 255
};

typedef struct ctv_rfb_msg {
  int type;             /* enum ctv_rfb_type */
  int sub;              /* QEMU sub-type, else 0 */
  int klass;            /* enum ctv_rfb_class */
  uint64_t len;         /* whole message length, header included */
} ctv_rfb_msg;

/* Header bytes ctv_rfb_client_len may ask for at most. */
#define CTV_RFB_MAXHEAD 9

/* From the first bytes of a client message at p[0..n): CTV_RFB_OK with
 * m->len the whole length (which may exceed n), CTV_RFB_MORE with m->len
 * the number of bytes needed to know it (<= CTV_RFB_MAXHEAD), or an
 * error. max_cut bounds ClientCutText's text.
 * Invariant (the view-only filter relies on it, fuzz/frames.c asserts it):
 * a message's header, the bytes needed to know its length, never exceeds
 * CTV_RFB_MAXHEAD nor the message's length. */
enum ctv_rfb_result ctv_rfb_client_len(const unsigned char *p, size_t n,
                                       uint32_t max_cut, ctv_rfb_msg *m);

/* Like ctv_rfb_client_len, but CTV_RFB_OK only when the whole message is
 * in p[0..n) (a partial message is CTV_RFB_MORE). */
enum ctv_rfb_result ctv_rfb_client_split(const unsigned char *p, size_t n,
                                         uint32_t max_cut, ctv_rfb_msg *m);

/* ---- RFB handshake follower ------------------------------------------ */

/* Which side sent the bytes. */
enum ctv_rfb_dir { CTV_RFB_CLIENT = 0, CTV_RFB_SERVER = 1 };

/* Outcomes of feeding handshake bytes. */
enum ctv_hs_result {
  CTV_HS_OK = 0,        /* all bytes were handshake bytes; more to come */
  CTV_HS_NORMAL,        /* this direction's handshake ended after *used
                           bytes; the rest is normal-phase traffic */
  CTV_HS_FAILED,        /* the server refused (security failure, reason
                           read): the session is over, not an attack */
  CTV_HS_ETURN,         /* a side spoke when the other one had to */
  CTV_HS_EVERSION,      /* ProtocolVersion other than 3.3, 3.7 or 3.8, or
                           a client version above the server's */
  CTV_HS_ESECURITY,     /* security type other than None or VNC
                           Authentication, or one the server did not offer */
  CTV_HS_ETOOBIG,       /* reason or desktop name over the maximum */
  CTV_HS_EDONE          /* bytes after the session failed */
};

/* The step the handshake waits for (who speaks is in ctv_rfb_hs_turn). */
enum ctv_hs_state {
  CTV_HS_S_VERSION = 0, /* server ProtocolVersion, 12 bytes */
  CTV_HS_C_VERSION,     /* client ProtocolVersion, 12 bytes */
  CTV_HS_S_SECTYPE33,   /* 3.3: server's U32 security type */
  CTV_HS_S_SECTYPES,    /* 3.7+: U8 count, then count types */
  CTV_HS_S_TYPELIST,    /* 3.7+: the count types */
  CTV_HS_S_REASONLEN,   /* failure: U32 reason length */
  CTV_HS_S_REASON,      /* failure: the reason, skipped */
  CTV_HS_C_SECTYPE,     /* 3.7+: client's U8 choice */
  CTV_HS_S_CHALLENGE,   /* VNC Authentication: 16 bytes */
  CTV_HS_C_RESPONSE,    /* VNC Authentication: 16 bytes */
  CTV_HS_S_RESULT,      /* U32 SecurityResult */
  CTV_HS_C_INIT,        /* ClientInit, 1 byte */
  CTV_HS_S_INIT,        /* ServerInit: 24 bytes */
  CTV_HS_S_NAME,        /* ServerInit: the name, skipped */
  CTV_HS_NORMAL_PHASE,  /* both sides are past the handshake */
  CTV_HS_DEAD           /* failed or broken */
};

typedef struct ctv_rfb_hs {
  int state;            /* enum ctv_hs_state */
  int client_normal;    /* the client sent ClientInit */
  int version;          /* minor: 3, 7 or 8 once the client answered */
  int server_version;
  int security;         /* 1 or 2 once chosen */
  uint32_t max_string;  /* bound on reasons and the desktop name */
  unsigned char buf[24];
  size_t have, want;
  uint64_t skip;        /* bytes of a string still to skip */
  unsigned char offered[32];  /* bit set of the offered security types */
} ctv_rfb_hs;

void ctv_rfb_hs_init(ctv_rfb_hs *hs, uint32_t max_string);

/* Feeds p[0..n) sent by dir. *used is how many bytes belong to the
 * handshake (all of them unless CTV_HS_NORMAL). After CTV_HS_NORMAL for
 * the server direction the follower ignores further server bytes (and
 * returns CTV_HS_NORMAL with *used = 0); after the client's, feeding
 * client bytes returns CTV_HS_NORMAL with *used = 0. Errors are final. */
enum ctv_hs_result ctv_rfb_hs_feed(ctv_rfb_hs *hs, int dir,
                                   const unsigned char *p, size_t n,
                                   size_t *used);

/* ---- the view-only filter -------------------------------------------- */

/* A growable byte buffer (the filter's only heap memory). */
typedef struct ctv_bytes {
  unsigned char *p;
  size_t len, cap;
} ctv_bytes;

/* Outcomes of the filter: a websocket, RFB or handshake error, or one of
 * these. */
enum ctv_vo_result {
  CTV_VO_OK = 0,        /* out holds the bytes to send (maybe none) */
  CTV_VO_EWS,           /* bad frame: ws holds the ctv_ws_result */
  CTV_VO_ERFB,          /* bad client message: rfb holds the result */
  CTV_VO_EHS,           /* handshake refused: hs holds the result */
  CTV_VO_ETEXT,         /* a text message (RFB is binary) */
  CTV_VO_ECLOSED,       /* data after the browser's close frame */
  CTV_VO_ERANDOM,       /* no random bytes for a masking key */
  CTV_VO_ENOMEM,        /* out of memory */
  CTV_VO_EDEAD          /* called again after an error */
};

/* Fills buf[0..n) with unpredictable bytes; 0 on success. */
typedef int (*ctv_random_fn)(void *ud, unsigned char *buf, size_t n);

/* Counters by kind of dropped message. */
enum ctv_vo_drop {
  CTV_DROP_KEY = 0,     /* KeyEvent and QEMU extended key events */
  CTV_DROP_POINTER,     /* PointerEvent */
  CTV_DROP_CUT,         /* ClientCutText */
  CTV_DROP_CONTROL,     /* xvp, SetDesktopSize */
  CTV_DROP_KINDS
};

enum { CTV_VO_BROWSER = 1, CTV_VO_TARGET = 2 };

typedef struct ctv_vo {
  ctv_ws_decoder browser, target;
  ctv_rfb_hs hs;
  uint32_t max_cut;
  /* the client message being split in the normal phase */
  unsigned char head[CTV_RFB_MAXHEAD];
  size_t headlen;
  uint64_t left;        /* bytes of the current message still to come */
  int dropping;         /* the current message is being dropped (or, when
                           watching, not copied) */
  /* a control frame's payload, gathered whole before it is re-framed */
  unsigned char ctl[125];
  size_t ctllen;
  int closed;           /* the browser sent a close frame */
  int watch;            /* 1: classify and count only; nothing is dropped
                           and no output is built (set after ctv_vo_init) */
  int target_done;      /* the server's handshake is over: stop looking
                           at its messages (its frames are still followed) */
  int target_lost;      /* a bad server frame after its handshake: its
                           frames are no longer followed */
  int closer;           /* who sent the first close frame: 0 nobody yet,
                           CTV_VO_BROWSER or CTV_VO_TARGET */
  int exclusive;        /* 1: ClientInit's shared flag passes as sent (set
                           after ctv_vo_init); 0: a flag of 0 (exclusive:
                           the server disconnects every other client) is
                           sent as 1, so one session never drops the rest */
  int shared_forced;    /* the filter turned ClientInit's 0 into 1 */
  ctv_bytes stage;      /* payload of the next data frame to send */
  ctv_bytes out;        /* frames to send */
  unsigned char keys[256];
  size_t keypos;
  ctv_random_fn random;
  void *random_ud;
  int error;            /* enum ctv_vo_result of the first error */
  int ws, rfb, hsr;     /* the layer's own result for that error */
  uint64_t passed, dropped[CTV_DROP_KINDS];
  uint64_t inputs;      /* input messages seen (dropped or, when watching,
                           passed): key, pointer, clipboard */
  uint64_t frames_in, frames_out;
} ctv_vo;

/* max_payload bounds a browser frame, max_cut ClientCutText, max_string
 * the server's reason strings and desktop name. */
void ctv_vo_init(ctv_vo *vo, uint64_t max_payload, uint32_t max_cut,
                 uint32_t max_string, ctv_random_fn random, void *ud);
void ctv_vo_free(ctv_vo *vo);

/* Browser bytes in; on CTV_VO_OK vo->out.p[0..vo->out.len) is what to
 * send to the target (replaced by the next call). When watching, out stays
 * empty (the caller sends its input unchanged) except in the call that
 * carries a ClientInit the filter makes shared: then out is the input with
 * that one byte changed (masked with its frame's key). */
enum ctv_vo_result ctv_vo_from_browser(ctv_vo *vo, const unsigned char *p,
                                       size_t n);

/* Target bytes, observed only: they go to the browser unchanged. */
enum ctv_vo_result ctv_vo_from_target(ctv_vo *vo, const unsigned char *p,
                                      size_t n);

/* Gives back the output buffers when a burst grew them over keep bytes
 * (call after using vo->out): a filter's idle footprint stays small. */
void ctv_vo_trim(ctv_vo *vo, size_t keep);

/* A one-line English description of vo's error (static, no input bytes). */
const char *ctv_vo_message(const ctv_vo *vo);

/* Static names of results, for messages. */
const char *ctv_ws_result_name(int r);
const char *ctv_rfb_result_name(int r);
const char *ctv_hs_result_name(int r);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
