/*
 * frames.c: see frames.h.
 *
 * Client message types accepted in the normal phase are those of RFC 6143
 * section 7.5 plus the extensions noVNC (core/rfb.js, RFB.messages) sends:
 * EnableContinuousUpdates (150), ClientFence (248), xvp (250),
 * SetDesktopSize (251) and QEMU Extended Key Event (255, sub-type 0); their
 * layouts are those of the community RFB specification (rfbproto). Any
 * other type is refused: an unknown length cannot be split safely.
 */
#include "frames.h"
#include "grow.h"

#include <stdlib.h>
#include <string.h>

#define MAX63 UINT64_C(0x7fffffffffffffff)

static uint32_t be16(const unsigned char *p) {
  return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8
       | p[3];
}
static size_t minz(size_t a, uint64_t b) {
  return b < (uint64_t)a ? (size_t)b : a;
}

/* ---- websocket frames ------------------------------------------------ */

enum ctv_ws_result ctv_ws_parse(const unsigned char *p, size_t n, int role,
                                uint64_t max_payload, ctv_ws_frame *f) {
  uint64_t len;
  size_t hl;
  unsigned lc;
  if (n < 1) return CTV_WS_MORE;
  if (p[0] & 0x70) return CTV_WS_ERSV;
  f->fin = p[0] >> 7;
  f->opcode = p[0] & 0x0f;
  switch (f->opcode) {
  case CTV_WS_CONT: case CTV_WS_TEXT: case CTV_WS_BINARY:
  case CTV_WS_CLOSE: case CTV_WS_PING: case CTV_WS_PONG:
    break;
  default:
    return CTV_WS_EOPCODE;
  }
  if (n < 2) return CTV_WS_MORE;
  f->masked = p[1] >> 7;
  if (f->masked != (role == CTV_WS_FROM_CLIENT)) return CTV_WS_EMASK;
  lc = p[1] & 0x7f;
  if (f->opcode & 8) {
    if (!f->fin || lc > 125) return CTV_WS_ECONTROL;
    if (f->opcode == CTV_WS_CLOSE && lc == 1) return CTV_WS_ECLOSE;
  }
  if (lc < 126) {
    len = lc;
    hl = 2;
  } else if (lc == 126) {
    if (n < 4) return CTV_WS_MORE;
    len = be16(p + 2);
    if (len < 126) return CTV_WS_ELENGTH;
    hl = 4;
  } else {
    if (n < 3) return CTV_WS_MORE;
    if (p[2] & 0x80) return CTV_WS_ELENGTH;
    if (n < 10) return CTV_WS_MORE;
    len = (uint64_t)be32(p + 2) << 32 | be32(p + 6);
    if (len < 65536) return CTV_WS_ELENGTH;
    hl = 10;
  }
  if (len > max_payload) return CTV_WS_ETOOBIG;
  if (f->masked) {
    if (n < hl + 4) return CTV_WS_MORE;
    memcpy(f->key, p + hl, 4);
    hl += 4;
  } else {
    memset(f->key, 0, 4);
  }
  f->header_len = hl;
  f->payload_len = len;
  return CTV_WS_OK;
}

size_t ctv_ws_write_header(unsigned char *out, int fin, int opcode,
                           uint64_t len, const unsigned char *key) {
  unsigned char m = key ? 0x80 : 0;
  size_t h;
  int i;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (unsigned char)(m | len);
    h = 2;
  } else if (len <= 0xffff) {
    out[1] = (unsigned char)(m | 126);
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
    h = 4;
  } else {
    out[1] = (unsigned char)(m | 127);
    for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    h = 10;
  }
  if (key) {
    memcpy(out + h, key, 4);
    h += 4;
  }
  return h;
}

/* Eight bytes at a time through memcpy (no alignment assumed: compilers
 * turn it into plain loads and stores); the key's period 4 divides 8, so
 * one rotated 8-byte key serves every block. */
void ctv_ws_mask(unsigned char *dst, const unsigned char *src, size_t n,
                 const unsigned char key[4], uint64_t offset) {
  unsigned char k8[8];
  uint64_t kw, w;
  size_t i;
  for (i = 0; i < 8; i++) k8[i] = key[(offset + i) & 3];
  memcpy(&kw, k8, 8);
  while (n >= 8) {
    memcpy(&w, src, 8);
    w ^= kw;
    memcpy(dst, &w, 8);
    src += 8;
    dst += 8;
    n -= 8;
  }
  for (i = 0; i < n; i++) dst[i] = (unsigned char)(src[i] ^ k8[i]);
}

void ctv_ws_decoder_init(ctv_ws_decoder *d, int role, uint64_t max_payload) {
  memset(d, 0, sizeof *d);
  d->role = role;
  d->max_payload = max_payload;
}

enum ctv_ws_result ctv_ws_decode(ctv_ws_decoder *d, const unsigned char *p,
                                 size_t n, size_t *used, ctv_ws_piece *pc) {
  size_t u = 0, k;
  int first = 0;
  *used = 0;
  if (!d->in_payload) {
    ctv_ws_frame f;
    enum ctv_ws_result r;
    /* Tentatively copy up to a whole header; keep what it really used. */
    k = n < CTV_WS_MAXHEADER - d->have ? n : CTV_WS_MAXHEADER - d->have;
    memcpy(d->hdr + d->have, p, k);
    r = ctv_ws_parse(d->hdr, d->have + k, d->role, d->max_payload, &f);
    if (r == CTV_WS_MORE) {   /* then k == n: the header needs more */
      d->have += k;
      *used = k;
      return r;
    }
    if (r != CTV_WS_OK) return r;
    if (f.opcode == CTV_WS_CONT) {
      if (!d->open) return CTV_WS_EFRAGMENT;
    } else if (!(f.opcode & 8)) {
      if (d->open) return CTV_WS_EFRAGMENT;
      d->open_opcode = f.opcode;
    }
    if (!(f.opcode & 8)) d->open = !f.fin;
    u = f.header_len - d->have;
    d->have = 0;
    d->f = f;
    d->in_payload = 1;
    d->left = f.payload_len;
    d->offset = 0;
    first = 1;
  } else {
    first = d->offset == 0;
  }
  k = minz(n - u, d->left);
  if (k == 0 && d->left > 0) {   /* header done, no payload byte yet */
    *used = u;
    return CTV_WS_MORE;
  }
  pc->frame = &d->f;
  pc->opcode = (d->f.opcode & 8) ? d->f.opcode : d->open_opcode;
  pc->data = p + u;
  pc->len = k;
  pc->offset = d->offset;
  pc->first = first;
  d->left -= k;
  d->offset += k;
  pc->last = d->left == 0;
  if (pc->last) d->in_payload = 0;
  *used = u + k;
  return CTV_WS_OK;
}

/* ---- RFB client messages --------------------------------------------- */

static enum ctv_rfb_result more(ctv_rfb_msg *m, size_t need) {
  m->len = need;
  return CTV_RFB_MORE;
}

enum ctv_rfb_result ctv_rfb_client_len(const unsigned char *p, size_t n,
                                       uint32_t max_cut, ctv_rfb_msg *m) {
  uint32_t l;
  m->sub = 0;
  m->klass = CTV_RFB_VIEW;
  if (n < 1) {
    m->type = -1;
    return more(m, 1);
  }
  m->type = p[0];
  switch (p[0]) {
  case CTV_RFB_SET_PIXEL_FORMAT:
    m->len = 20;
    break;
  case CTV_RFB_SET_ENCODINGS:      /* U8 type, pad, U16 n, n x S32 */
    if (n < 4) return more(m, 4);
    m->len = 4 + 4 * (uint64_t)be16(p + 2);
    break;
  case CTV_RFB_FB_UPDATE_REQUEST:
    m->len = 10;
    break;
  case CTV_RFB_KEY_EVENT:
    m->len = 8;
    m->klass = CTV_RFB_INPUT;
    break;
  case CTV_RFB_POINTER_EVENT:
    m->len = 6;
    m->klass = CTV_RFB_INPUT;
    break;
  case CTV_RFB_CLIENT_CUT_TEXT:    /* U8 type, 3 pad, S32 length, text */
    if (n < 8) return more(m, 8);
    l = be32(p + 4);
    if (l & 0x80000000u) l = 0u - l;   /* extended clipboard: -length */
    if (l > max_cut) return CTV_RFB_ETOOBIG;
    m->len = 8 + (uint64_t)l;
    m->klass = CTV_RFB_INPUT;
    break;
  case CTV_RFB_ENABLE_CONTINUOUS_UPDATES:  /* U8 type, U8 on, 4 x U16 */
    m->len = 10;
    break;
  case CTV_RFB_CLIENT_FENCE:       /* U8 type, 3 pad, U32 flags, U8 n, n */
    if (n < 9) return more(m, 9);
    if (p[8] > 64) return CTV_RFB_ETOOBIG;
    m->len = 9 + (uint64_t)p[8];
    break;
  case CTV_RFB_XVP:                /* U8 type, pad, U8 version, U8 code */
    m->len = 4;
    m->klass = CTV_RFB_CONTROL;
    break;
  case CTV_RFB_SET_DESKTOP_SIZE:   /* type, pad, w, h, U8 n, pad, n x 16 */
    if (n < 7) return more(m, 7);
    m->len = 8 + 16 * (uint64_t)p[6];
    m->klass = CTV_RFB_CONTROL;
    break;
  case CTV_RFB_QEMU:               /* U8 255, U8 sub-type, ... */
    if (n < 2) return more(m, 2);
    m->sub = p[1];
    if (p[1] != 0) return CTV_RFB_EUNKNOWN;
    m->len = 12;                   /* U16 down, U32 keysym, U32 keycode */
    m->klass = CTV_RFB_INPUT;
    break;
  default:
    return CTV_RFB_EUNKNOWN;
  }
  return CTV_RFB_OK;
}

enum ctv_rfb_result ctv_rfb_client_split(const unsigned char *p, size_t n,
                                         uint32_t max_cut, ctv_rfb_msg *m) {
  enum ctv_rfb_result r = ctv_rfb_client_len(p, n, max_cut, m);
  if (r == CTV_RFB_OK && m->len > (uint64_t)n) return CTV_RFB_MORE;
  return r;
}

/* ---- RFB handshake follower ------------------------------------------ */

static int speaker(int state) {
  switch (state) {
  case CTV_HS_C_VERSION: case CTV_HS_C_SECTYPE:
  case CTV_HS_C_RESPONSE: case CTV_HS_C_INIT:
    return CTV_RFB_CLIENT;
  default:
    return CTV_RFB_SERVER;
  }
}

void ctv_rfb_hs_init(ctv_rfb_hs *hs, uint32_t max_string) {
  memset(hs, 0, sizeof *hs);
  hs->state = CTV_HS_S_VERSION;
  hs->want = 12;
  hs->max_string = max_string;
}

/* "RFB 003.00x\n" with x one of 3, 7, 8: the minor version, else -1. */
static int version(const unsigned char *b) {
  if (memcmp(b, "RFB 003.00", 10) != 0 || b[11] != '\n') return -1;
  if (b[10] == '3' || b[10] == '7' || b[10] == '8') return b[10] - '0';
  return -1;
}

static void expect(ctv_rfb_hs *hs, int state, size_t want) {
  hs->state = state;
  hs->want = want;
  hs->have = 0;
}

/* A failure reason of len bytes follows; it is skipped. */
static enum ctv_hs_result reason(ctv_rfb_hs *hs, uint32_t len) {
  if (len > hs->max_string) return CTV_HS_ETOOBIG;
  if (len == 0) {
    hs->state = CTV_HS_DEAD;
    return CTV_HS_FAILED;
  }
  hs->skip = len;
  expect(hs, CTV_HS_S_REASON, 0);
  return CTV_HS_OK;
}

/* The message in hs->buf[0..want) is complete: act on it. */
static enum ctv_hs_result step(ctv_rfb_hs *hs) {
  const unsigned char *b = hs->buf;
  uint32_t v;
  switch (hs->state) {
  case CTV_HS_S_VERSION:
    if ((hs->server_version = version(b)) < 0) return CTV_HS_EVERSION;
    expect(hs, CTV_HS_C_VERSION, 12);
    break;
  case CTV_HS_C_VERSION:
    hs->version = version(b);
    if (hs->version < 0 || hs->version > hs->server_version)
      return CTV_HS_EVERSION;
    if (hs->version == 3) expect(hs, CTV_HS_S_SECTYPE33, 4);
    else expect(hs, CTV_HS_S_SECTYPES, 1);
    break;
  case CTV_HS_S_SECTYPE33:         /* 3.3: the server decides */
    v = be32(b);
    if (v == 0) {
      expect(hs, CTV_HS_S_REASONLEN, 4);
    } else if (v == 1) {
      hs->security = 1;
      expect(hs, CTV_HS_C_INIT, 1);
    } else if (v == 2) {
      hs->security = 2;
      expect(hs, CTV_HS_S_CHALLENGE, 16);
    } else {
      return CTV_HS_ESECURITY;
    }
    break;
  case CTV_HS_S_SECTYPES:          /* 3.7+: a list, or 0 and a reason */
    if (b[0] == 0) {
      expect(hs, CTV_HS_S_REASONLEN, 4);
    } else {
      hs->skip = b[0];             /* types still to read */
      expect(hs, CTV_HS_S_TYPELIST, 1);
    }
    break;
  case CTV_HS_S_TYPELIST:
    hs->offered[b[0] >> 3] |= (unsigned char)(1u << (b[0] & 7));
    if (--hs->skip == 0) expect(hs, CTV_HS_C_SECTYPE, 1);
    else expect(hs, CTV_HS_S_TYPELIST, 1);
    break;
  case CTV_HS_S_REASONLEN:
    return reason(hs, be32(b));
  case CTV_HS_C_SECTYPE:
    if ((b[0] != 1 && b[0] != 2) || !(hs->offered[0] & (1u << b[0])))
      return CTV_HS_ESECURITY;
    hs->security = b[0];
    if (b[0] == 2) expect(hs, CTV_HS_S_CHALLENGE, 16);
    else if (hs->version == 8) expect(hs, CTV_HS_S_RESULT, 4);
    else expect(hs, CTV_HS_C_INIT, 1);
    break;
  case CTV_HS_S_CHALLENGE:
    expect(hs, CTV_HS_C_RESPONSE, 16);
    break;
  case CTV_HS_C_RESPONSE:
    expect(hs, CTV_HS_S_RESULT, 4);
    break;
  case CTV_HS_S_RESULT:
    if (be32(b) == 0) {
      expect(hs, CTV_HS_C_INIT, 1);
    } else if (hs->version == 8) {
      expect(hs, CTV_HS_S_REASONLEN, 4);
    } else {
      hs->state = CTV_HS_DEAD;
      return CTV_HS_FAILED;
    }
    break;
  case CTV_HS_C_INIT:
    hs->client_normal = 1;
    expect(hs, CTV_HS_S_INIT, 24);
    return CTV_HS_NORMAL;
  case CTV_HS_S_INIT:               /* U16 w, U16 h, 16 pixel format, U32 n */
    v = be32(b + 20);
    if (v > hs->max_string) return CTV_HS_ETOOBIG;
    if (v == 0) {
      expect(hs, CTV_HS_NORMAL_PHASE, 0);
      return CTV_HS_NORMAL;
    }
    hs->skip = v;
    expect(hs, CTV_HS_S_NAME, 0);
    break;
  default:
    return CTV_HS_EDONE;
  }
  return CTV_HS_OK;
}

static int is_error(enum ctv_hs_result r) {
  return r != CTV_HS_OK && r != CTV_HS_NORMAL && r != CTV_HS_FAILED;
}

enum ctv_hs_result ctv_rfb_hs_feed(ctv_rfb_hs *hs, int dir,
                                   const unsigned char *p, size_t n,
                                   size_t *used) {
  size_t u = 0, k;
  enum ctv_hs_result r;
  *used = 0;
  if (dir == CTV_RFB_CLIENT && hs->client_normal) return CTV_HS_NORMAL;
  if (hs->state == CTV_HS_NORMAL_PHASE) return CTV_HS_NORMAL;
  if (hs->state == CTV_HS_DEAD) return CTV_HS_EDONE;
  while (u < n) {
    if (speaker(hs->state) != dir) {
      r = CTV_HS_ETURN;
      goto done;
    }
    if (hs->state == CTV_HS_S_REASON || hs->state == CTV_HS_S_NAME) {
      k = minz(n - u, hs->skip);
      hs->skip -= k;
      u += k;
      if (hs->skip) break;
      if (hs->state == CTV_HS_S_REASON) {
        hs->state = CTV_HS_DEAD;
        r = CTV_HS_FAILED;
      } else {
        hs->state = CTV_HS_NORMAL_PHASE;
        r = CTV_HS_NORMAL;
      }
      goto done;
    }
    k = minz(n - u, hs->want - hs->have);
    memcpy(hs->buf + hs->have, p + u, k);
    hs->have += k;
    u += k;
    if (hs->have < hs->want) break;
    r = step(hs);
    if (r != CTV_HS_OK) goto done;
  }
  *used = u;
  return CTV_HS_OK;
done:
  if (is_error(r)) hs->state = CTV_HS_DEAD;
  *used = u;
  return r;
}

/* ---- the view-only filter -------------------------------------------- */

static int reserve(ctv_bytes *b, size_t extra) {
  unsigned char *q = ctv_grow(b->p, &b->cap, b->len, extra, 1, SIZE_MAX);
  if (!q) return -1;
  b->p = q;
  return 0;
}

static int append(ctv_bytes *b, const unsigned char *p, size_t n) {
  if (n == 0) return 0;
  if (reserve(b, n)) return -1;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

void ctv_vo_init(ctv_vo *vo, uint64_t max_payload, uint32_t max_cut,
                 uint32_t max_string, ctv_random_fn random, void *ud) {
  memset(vo, 0, sizeof *vo);
  ctv_ws_decoder_init(&vo->browser, CTV_WS_FROM_CLIENT,
                      max_payload > MAX63 ? MAX63 : max_payload);
  ctv_ws_decoder_init(&vo->target, CTV_WS_FROM_SERVER, MAX63);
  ctv_rfb_hs_init(&vo->hs, max_string);
  vo->max_cut = max_cut;
  vo->keypos = sizeof vo->keys;
  vo->random = random;
  vo->random_ud = ud;
}

void ctv_vo_free(ctv_vo *vo) {
  free(vo->stage.p);
  free(vo->out.p);
  memset(&vo->stage, 0, sizeof vo->stage);
  memset(&vo->out, 0, sizeof vo->out);
  memset(vo->keys, 0, sizeof vo->keys);
  vo->keypos = sizeof vo->keys;
  if (!vo->error) vo->error = CTV_VO_EDEAD;
}

static void trim(ctv_bytes *b, size_t keep) {
  if (b->cap > keep) {
    free(b->p);
    memset(b, 0, sizeof *b);
  }
}

void ctv_vo_trim(ctv_vo *vo, size_t keep) {
  trim(&vo->stage, keep);
  trim(&vo->out, keep);
}

static enum ctv_vo_result fail(ctv_vo *vo, enum ctv_vo_result e, int sub) {
  vo->error = e;
  if (e == CTV_VO_EWS) vo->ws = sub;
  else if (e == CTV_VO_ERFB) vo->rfb = sub;
  else if (e == CTV_VO_EHS) vo->hsr = sub;
  vo->out.len = 0;
  vo->stage.len = 0;
  return e;
}

/* Appends one masked frame with a fresh key to vo->out. */
static enum ctv_vo_result emit(ctv_vo *vo, int opcode,
                               const unsigned char *payload, size_t len) {
  unsigned char key[4];
  size_t h;
  if (vo->keypos + 4 > sizeof vo->keys) {
    if (!vo->random || vo->random(vo->random_ud, vo->keys, sizeof vo->keys))
      return fail(vo, CTV_VO_ERANDOM, 0);
    vo->keypos = 0;
  }
  memcpy(key, vo->keys + vo->keypos, 4);
  memset(vo->keys + vo->keypos, 0, 4);   /* each key used once */
  vo->keypos += 4;
  if (reserve(&vo->out, CTV_WS_MAXHEADER + len)) return fail(vo, CTV_VO_ENOMEM, 0);
  h = ctv_ws_write_header(vo->out.p + vo->out.len, 1, opcode, len, key);
  ctv_ws_mask(vo->out.p + vo->out.len + h, payload, len, key, 0);
  vo->out.len += h + len;
  vo->frames_out++;
  return CTV_VO_OK;
}

static enum ctv_vo_result flush(ctv_vo *vo) {
  enum ctv_vo_result r = CTV_VO_OK;
  if (vo->stage.len) {
    r = emit(vo, CTV_WS_BINARY, vo->stage.p, vo->stage.len);
    vo->stage.len = 0;
  }
  return r;
}

/* A new client message starts: drop it or pass it. */
static void start(ctv_vo *vo, const ctv_rfb_msg *m) {
  vo->left = m->len;
  if (m->klass == CTV_RFB_INPUT) vo->inputs++;
  if (vo->watch) {               /* nothing dropped, nothing copied */
    vo->dropping = 1;
    vo->passed++;
    return;
  }
  vo->dropping = m->klass != CTV_RFB_VIEW;
  if (!vo->dropping) {
    vo->passed++;
  } else if (m->type == CTV_RFB_KEY_EVENT || m->type == CTV_RFB_QEMU) {
    vo->dropped[CTV_DROP_KEY]++;
  } else if (m->type == CTV_RFB_POINTER_EVENT) {
    vo->dropped[CTV_DROP_POINTER]++;
  } else if (m->type == CTV_RFB_CLIENT_CUT_TEXT) {
    vo->dropped[CTV_DROP_CUT]++;
  } else {
    vo->dropped[CTV_DROP_CONTROL]++;
  }
}

/* Normal-phase client bytes are split into messages, the view ones kept.
 * A message header cut short by the end of a frame is held in vo->head
 * and completed from the next bytes; the message's other bytes then number
 * its length less the header. That relies on the invariant stated in
 * frames.h: a header never exceeds CTV_RFB_MAXHEAD (the size of vo->head)
 * nor its message's length. A message type that broke it would overflow
 * vo->head, or wrap vo->left around and let the rest of the stream through
 * as one message, unfiltered; so header() checks it on every call, given
 * the held bytes, and the filter fails closed (CTV_RFB_EHEADER). */
static enum ctv_rfb_result header(const ctv_vo *vo, const unsigned char *p,
                                  size_t n, size_t held, ctv_rfb_msg *m) {
  enum ctv_rfb_result r = ctv_rfb_client_len(p, n, vo->max_cut, m);
  if (r == CTV_RFB_MORE && m->len > CTV_RFB_MAXHEAD) return CTV_RFB_EHEADER;
  if (r == CTV_RFB_OK && m->len < held) return CTV_RFB_EHEADER;
  return r;
}

static enum ctv_vo_result split(ctv_vo *vo, const unsigned char *q,
                                size_t m) {
  ctv_rfb_msg msg;
  enum ctv_rfb_result r;
  size_t k;
  while (m > 0) {
    if (vo->left) {
      k = minz(m, vo->left);
      if (!vo->dropping && append(&vo->stage, q, k))
        return fail(vo, CTV_VO_ENOMEM, 0);
      vo->left -= k;
      q += k;
      m -= k;
      continue;
    }
    if (vo->headlen == 0) {
      r = header(vo, q, m, 0, &msg);
      if (r == CTV_RFB_OK) {
        start(vo, &msg);
        continue;
      }
      if (r != CTV_RFB_MORE) return fail(vo, CTV_VO_ERFB, r);
      memcpy(vo->head, q, m);        /* m < msg.len <= CTV_RFB_MAXHEAD */
      vo->headlen = m;
      return CTV_VO_OK;
    }
    /* A message header split across frames: complete it in head. */
    r = header(vo, vo->head, vo->headlen, vo->headlen, &msg);
    if (r == CTV_RFB_MORE) {
      k = minz(m, msg.len - vo->headlen);
      memcpy(vo->head + vo->headlen, q, k);
      vo->headlen += k;
      q += k;
      m -= k;
      r = header(vo, vo->head, vo->headlen, vo->headlen, &msg);
      if (r == CTV_RFB_MORE) continue;
    }
    if (r != CTV_RFB_OK) return fail(vo, CTV_VO_ERFB, r);
    start(vo, &msg);
    vo->left -= vo->headlen;         /* msg.len >= headlen: header() */
    if (!vo->dropping && append(&vo->stage, vo->head, vo->headlen))
      return fail(vo, CTV_VO_ENOMEM, 0);
    vo->headlen = 0;
  }
  return CTV_VO_OK;
}

/* Unmasked data from the browser, q[0..m): a copy the filter may change.
 * The byte that ends the client's handshake is ClientInit's shared flag
 * (ctv_rfb_hs_feed's CTV_HS_NORMAL comes after it): unless the session may
 * be exclusive, a 0 there becomes 1 and *init its index in q. */
static enum ctv_vo_result data(ctv_vo *vo, unsigned char *q, size_t m,
                               size_t *init) {
  size_t used;
  enum ctv_hs_result r;
  if (!vo->hs.client_normal) {
    r = ctv_rfb_hs_feed(&vo->hs, CTV_RFB_CLIENT, q, m, &used);
    if (r == CTV_HS_NORMAL && used > 0 && !vo->exclusive && q[used - 1] == 0) {
      q[used - 1] = 1;
      vo->shared_forced = 1;
      *init = used - 1;
    }
    if (!vo->watch && append(&vo->stage, q, used))
      return fail(vo, CTV_VO_ENOMEM, 0);
    if (r == CTV_HS_OK) return CTV_VO_OK;
    if (r != CTV_HS_NORMAL) return fail(vo, CTV_VO_EHS, r);
    q += used;
    m -= used;
  }
  return split(vo, q, m);
}

/* Watching: out becomes the input p[0..n) with the byte at `at` set to
 * `wire` (a rewritten ClientInit, masked as its frame is). */
static enum ctv_vo_result patch(ctv_vo *vo, const unsigned char *p, size_t n,
                                size_t at, unsigned char wire) {
  vo->out.len = 0;
  if (append(&vo->out, p, n)) return fail(vo, CTV_VO_ENOMEM, 0);
  vo->out.p[at] = wire;
  return CTV_VO_OK;
}

enum ctv_vo_result ctv_vo_from_browser(ctv_vo *vo, const unsigned char *p,
                                       size_t n) {
  unsigned char buf[4096];
  size_t u = 0, used, off, k, init;
  uint64_t pos;
  ctv_ws_piece pc;
  enum ctv_ws_result r;
  enum ctv_vo_result e;
  if (vo->error) return CTV_VO_EDEAD;
  vo->out.len = 0;
  vo->stage.len = 0;
  while (u < n) {
    r = ctv_ws_decode(&vo->browser, p + u, n - u, &used, &pc);
    u += used;
    if (r == CTV_WS_MORE) break;
    if (r != CTV_WS_OK) return fail(vo, CTV_VO_EWS, r);
    if (vo->closed) return fail(vo, CTV_VO_ECLOSED, 0);
    if (pc.first) vo->frames_in++;
    if (pc.opcode & 8) {             /* control: gather, then re-frame */
      if (pc.opcode == CTV_WS_CLOSE && !vo->closer) vo->closer = CTV_VO_BROWSER;
      if (vo->watch) {
        if (pc.last && pc.opcode == CTV_WS_CLOSE) vo->closed = 1;
        continue;
      }
      ctv_ws_mask(vo->ctl + pc.offset, pc.data, pc.len, pc.frame->key,
                  pc.offset);
      if (!pc.last) continue;
      if ((e = flush(vo)) != CTV_VO_OK) return e;
      e = emit(vo, pc.opcode, vo->ctl, (size_t)pc.frame->payload_len);
      if (e != CTV_VO_OK) return e;
      if (pc.opcode == CTV_WS_CLOSE) vo->closed = 1;
      continue;
    }
    if (pc.opcode == CTV_WS_TEXT) return fail(vo, CTV_VO_ETEXT, 0);
    for (off = 0; off < pc.len; off += k) {
      k = pc.len - off < sizeof buf ? pc.len - off : sizeof buf;
      ctv_ws_mask(buf, pc.data + off, k, pc.frame->key, pc.offset + off);
      init = SIZE_MAX;
      if ((e = data(vo, buf, k, &init)) != CTV_VO_OK) return e;
      if (init != SIZE_MAX && vo->watch) {
        pos = pc.offset + off + init;
        e = patch(vo, p, n, (size_t)(pc.data - p) + off + init,
                  (unsigned char)(buf[init] ^ pc.frame->key[pos & 3]));
        if (e != CTV_VO_OK) return e;
      }
    }
  }
  return flush(vo);
}

enum ctv_vo_result ctv_vo_from_target(ctv_vo *vo, const unsigned char *p,
                                      size_t n) {
  size_t u = 0, used, hu;
  ctv_ws_piece pc;
  enum ctv_ws_result r;
  enum ctv_hs_result h;
  if (vo->error) return CTV_VO_EDEAD;
  while (u < n && !vo->target_lost) {
    r = ctv_ws_decode(&vo->target, p + u, n - u, &used, &pc);
    u += used;
    if (r == CTV_WS_MORE) break;
    if (r != CTV_WS_OK) {
      if (!vo->target_done) return fail(vo, CTV_VO_EWS, r);
      vo->target_lost = 1;           /* past the handshake: only who closed */
      break;
    }
    if (pc.opcode & 8) {             /* the target's pings and close */
      if (pc.opcode == CTV_WS_CLOSE && !vo->closer) vo->closer = CTV_VO_TARGET;
      continue;
    }
    if (vo->target_done) continue;
    if (pc.opcode == CTV_WS_TEXT) return fail(vo, CTV_VO_ETEXT, 0);
    h = ctv_rfb_hs_feed(&vo->hs, CTV_RFB_SERVER, pc.data, pc.len, &hu);
    if (h == CTV_HS_NORMAL || h == CTV_HS_FAILED) vo->target_done = 1;
    else if (h != CTV_HS_OK) return fail(vo, CTV_VO_EHS, h);
  }
  return CTV_VO_OK;
}

const char *ctv_ws_result_name(int r) {
  switch (r) {
  case CTV_WS_OK: return "ok";
  case CTV_WS_MORE: return "incomplete frame";
  case CTV_WS_ERSV: return "RSV bit set";
  case CTV_WS_EOPCODE: return "reserved opcode";
  case CTV_WS_EMASK: return "wrong MASK bit for the sender";
  case CTV_WS_ELENGTH: return "bad payload length encoding";
  case CTV_WS_ECONTROL: return "control frame fragmented or over 125 bytes";
  case CTV_WS_ECLOSE: return "close frame with a 1-byte payload";
  case CTV_WS_ETOOBIG: return "frame payload over the maximum";
  case CTV_WS_EFRAGMENT: return "bad fragmentation";
  default: return "unknown";
  }
}

const char *ctv_rfb_result_name(int r) {
  switch (r) {
  case CTV_RFB_OK: return "ok";
  case CTV_RFB_MORE: return "incomplete message";
  case CTV_RFB_EUNKNOWN: return "unknown client message type";
  case CTV_RFB_ETOOBIG: return "client cut text or fence over the maximum";
  case CTV_RFB_EHEADER: return "client message header longer than the message";
  default: return "unknown";
  }
}

const char *ctv_hs_result_name(int r) {
  switch (r) {
  case CTV_HS_OK: return "ok";
  case CTV_HS_NORMAL: return "handshake done";
  case CTV_HS_FAILED: return "the server refused the session";
  case CTV_HS_ETURN: return "a side spoke out of turn in the handshake";
  case CTV_HS_EVERSION: return "unsupported RFB protocol version";
  case CTV_HS_ESECURITY: return "unsupported security type";
  case CTV_HS_ETOOBIG: return "server reason or desktop name too long";
  case CTV_HS_EDONE: return "data after the session failed";
  default: return "unknown";
  }
}

const char *ctv_vo_message(const ctv_vo *vo) {
  switch (vo->error) {
  case CTV_VO_OK: return "no error";
  case CTV_VO_EWS: return ctv_ws_result_name(vo->ws);
  case CTV_VO_ERFB: return ctv_rfb_result_name(vo->rfb);
  case CTV_VO_EHS: return ctv_hs_result_name(vo->hsr);
  case CTV_VO_ETEXT: return "text message (RFB is binary)";
  case CTV_VO_ECLOSED: return "data after the browser's close frame";
  case CTV_VO_ERANDOM: return "no random bytes for a masking key";
  case CTV_VO_ENOMEM: return "out of memory";
  default: return "filter closed";
  }
}
