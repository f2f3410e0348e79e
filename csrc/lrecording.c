/*
 * lrecording.c: SHA-256, HMAC-SHA256 (sha256.c) and console recordings
 * (recording.c, docs/recording-format.md) for Lua, opened into ctvnc.core
 * by ctv_open_recording.
 *
 *   core.sha256(s) -> 32 bytes
 *   core.hmac_sha256(key, s) -> 32 bytes
 *   core.recording_writer(meta) -> writer | nil, msg, "invalid"
 *     meta: session, vm_id, user, node (strings of at most 1024 bytes),
 *     start_ms (Unix ms), width, height, pixel_format (16 bytes),
 *     rfb (12 bytes, e.g. "RFB 003.008\n"), key (optional: signs the
 *     trailer with HMAC-SHA256)
 *   writer:header() -> bytes
 *   writer:chunk(t_ms, data [, keyframe]) -> bytes | nil, msg, "invalid"
 *   writer:trailer(complete [, t_ms]) -> bytes, final hash (64 hex digits)
 *                                      | nil, msg, "invalid"
 *   core.recording_reader([key]) -> reader
 *   reader:next(buf [, pos [, with_data]]) -> item, next_pos
 *       | false, need (buf holds too few bytes from pos: need in all;
 *                      need 0: the trailer was read and nothing follows)
 *       | nil, msg, "invalid" (malformed: the reader stays so)
 *     item.kind "header": session, vm_id, user, node, start_ms, width,
 *       height, pixel_format, rfb, size
 *     item.kind "chunk": index, offset, t_ms, keyframe, prev_key, len,
 *       intact, data (with_data only)
 *     item.kind "trailer": offset, complete, chunks, bytes, keyframes,
 *       last_key, end_ms, hash (hex), intact, signature ("none",
 *       "unchecked": no key given, "good", "bad")
 *
 * The writer and the reader own no resource: nothing to close.
 */
#include <string.h>

#include "lctvnc.h"
#include "recording.h"

#define WRITER "ctvnc.RecordingWriter"
#define READER "ctvnc.RecordingReader"

static int l_sha256(lua_State *L);
static int l_hmac_sha256(lua_State *L);
static int l_recording_writer(lua_State *L);
static int l_recording_reader(lua_State *L);
static int w_header(lua_State *L);
static int w_chunk(lua_State *L);
static int w_trailer(lua_State *L);
static int r_next(lua_State *L);
static int w_tostring(lua_State *L);
static int r_tostring(lua_State *L);

static const luaL_Reg functions[] = {
  {"sha256", l_sha256},
  {"hmac_sha256", l_hmac_sha256},
  {"recording_writer", l_recording_writer},
  {"recording_reader", l_recording_reader},
  {NULL, NULL}
};
static const luaL_Reg writer_meta[] = { {"__tostring", w_tostring}, {NULL, NULL} };
static const luaL_Reg writer_methods[] = {
  {"header", w_header}, {"chunk", w_chunk}, {"trailer", w_trailer}, {NULL, NULL}
};
static const luaL_Reg reader_meta[] = { {"__tostring", r_tostring}, {NULL, NULL} };
static const luaL_Reg reader_methods[] = { {"next", r_next}, {NULL, NULL} };

/* A writer keeps its header's values (the strings right after the
 * struct) for header(). */
typedef struct writer {
  ctv_rec_writer w;
  ctv_rec_meta meta;
} writer;

void ctv_open_recording(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  ctv_class(L, WRITER, writer_meta, writer_methods);
  ctv_class(L, READER, reader_meta, reader_methods);
}

static void push_hex(lua_State *L, const unsigned char *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char out[2 * CTV_SHA256_LEN];
  size_t i;
  for (i = 0; i < n && i < CTV_SHA256_LEN; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  lua_pushlstring(L, out, 2 * i);
}

static int l_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char out[CTV_SHA256_LEN];
  ctv_sha256_sum(s, n, out);
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

static int l_hmac_sha256(lua_State *L) {
  size_t kn, n;
  const char *key = luaL_checklstring(L, 1, &kn);
  const char *s = luaL_checklstring(L, 2, &n);
  unsigned char out[CTV_SHA256_LEN];
  ctv_hmac_sha256(key, kn, s, n, out);
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

/* meta[name] as a string (absent: ""), at most max bytes; exact when
 * exact is set. It stays alive in the table at index 1. */
static const char *field(lua_State *L, const char *name, size_t max, int exact, size_t *n) {
  const char *s;
  lua_getfield(L, 1, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *n = 0;
    return exact ? NULL : "";
  }
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, n) : NULL;
  lua_pop(L, 1);
  if (s == NULL || *n > max || (exact && *n != max)) return NULL;
  return s;
}

/* meta[name] as an integer in [0, max]: 1 | 0. */
static int number(lua_State *L, const char *name, double max, double *v) {
  int ok;
  lua_getfield(L, 1, name);
  *v = lua_tonumber(L, -1);
  ok = lua_type(L, -1) == LUA_TNUMBER && *v >= 0 && *v <= max && *v == (double)(uint64_t)*v;
  lua_pop(L, 1);
  return ok;
}

static int l_recording_writer(lua_State *L) {
  static const char *const names[4] = { "session", "vm_id", "user", "node" };
  ctv_rec_str str[4], *s[4];
  const char *pf, *rfb, *key;
  size_t n, kn, i, total = 0;
  double start, width, height;
  writer *w;
  char *at;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 0; i < 4; i++) {
    str[i].p = field(L, names[i], CTV_REC_MAXSTR, 0, &str[i].n);
    if (str[i].p == NULL)
      return ctv_fail(L, "invalid", "recording_writer: %s must be a string of at most %d bytes",
                      names[i], CTV_REC_MAXSTR);
    total += str[i].n;
  }
  if (!number(L, "start_ms", 9007199254740991.0, &start) || !number(L, "width", 65535, &width) ||
      !number(L, "height", 65535, &height))
    return ctv_fail(L, "invalid", "recording_writer: start_ms, width and height must be "
                    "integers (ms since 1970, 0-65535)");
  pf = field(L, "pixel_format", 16, 1, &n);
  rfb = field(L, "rfb", 12, 1, &n);
  if (pf == NULL || rfb == NULL)
    return ctv_fail(L, "invalid", "recording_writer: pixel_format must be 16 bytes and rfb 12");
  key = field(L, "key", 4096, 0, &kn);
  if (key == NULL) return ctv_fail(L, "invalid", "recording_writer: key must be a string");
  w = (writer *)lua_newuserdata(L, sizeof *w + total);
  memset(w, 0, sizeof *w);
  luaL_getmetatable(L, WRITER);
  lua_setmetatable(L, -2);
  s[0] = &w->meta.session; s[1] = &w->meta.vm; s[2] = &w->meta.user; s[3] = &w->meta.node;
  at = (char *)(w + 1);
  for (i = 0; i < 4; i++) {
    if (str[i].n > 0) memcpy(at, str[i].p, str[i].n);
    s[i]->p = at;
    s[i]->n = str[i].n;
    at += str[i].n;
  }
  w->meta.start_ms = (uint64_t)start;
  w->meta.width = (uint16_t)width;
  w->meta.height = (uint16_t)height;
  memcpy(w->meta.pixel_format, pf, 16);
  memcpy(w->meta.rfb, rfb, 12);
  ctv_rec_writer_init(&w->w, key, kn);
  return 1;
}

static writer *check_writer(lua_State *L) {
  return (writer *)luaL_checkudata(L, 1, WRITER);
}

static int w_fail(lua_State *L, int rc) {
  return ctv_fail(L, "invalid", "recording: %s", ctv_rec_strerror(rc));
}

static int w_header(lua_State *L) {
  writer *w = check_writer(L);
  unsigned char out[CTV_REC_FIXED + 4 * (2 + CTV_REC_MAXSTR)];
  int rc = ctv_rec_write_header(&w->w, &w->meta, out);
  if (rc != CTV_REC_OK) return w_fail(L, rc);
  lua_pushlstring(L, (const char *)out, ctv_rec_header_size(&w->meta));
  return 1;
}

static int w_chunk(lua_State *L) {
  writer *w = check_writer(L);
  double t = luaL_checknumber(L, 2);
  size_t n;
  const char *data = luaL_checklstring(L, 3, &n);
  unsigned char head[CTV_REC_CHUNK_HEAD], hash[CTV_SHA256_LEN];
  luaL_Buffer b;
  int rc;
  if (!(t >= 0 && t <= 9007199254740991.0))
    return ctv_fail(L, "invalid", "recording: t_ms must be ms since 1970");
  rc = ctv_rec_write_chunk(&w->w, (uint64_t)t, (const unsigned char *)data, n,
                           lua_toboolean(L, 4), head, hash);
  if (rc != CTV_REC_OK) return w_fail(L, rc);
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, (const char *)head, sizeof head);
  luaL_addlstring(&b, data, n);
  luaL_addlstring(&b, (const char *)hash, sizeof hash);
  luaL_pushresult(&b);
  return 1;
}

static int w_trailer(lua_State *L) {
  writer *w = check_writer(L);
  double t = luaL_optnumber(L, 3, (double)w->w.last_ms);
  unsigned char out[CTV_REC_TRAILER];
  int rc;
  if (!(t >= 0 && t <= 9007199254740991.0))
    return ctv_fail(L, "invalid", "recording: t_ms must be ms since 1970");
  rc = ctv_rec_write_trailer(&w->w, (uint64_t)t, lua_toboolean(L, 2), out);
  if (rc != CTV_REC_OK) return w_fail(L, rc);
  lua_pushlstring(L, (const char *)out, sizeof out);
  push_hex(L, w->w.chain, CTV_SHA256_LEN);
  return 2;
}

static int l_recording_reader(lua_State *L) {
  size_t kn = 0;
  const char *key = luaL_optlstring(L, 1, "", &kn);
  ctv_rec_reader *r = (ctv_rec_reader *)lua_newuserdata(L, sizeof *r);
  ctv_rec_reader_init(r, key, kn);
  luaL_getmetatable(L, READER);
  lua_setmetatable(L, -2);
  return 1;
}

static void set_num(lua_State *L, const char *name, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

static void set_str(lua_State *L, const char *name, const char *p, size_t n) {
  lua_pushlstring(L, p, n);
  lua_setfield(L, -2, name);
}

static void set_bool(lua_State *L, const char *name, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, name);
}

static void push_header(lua_State *L, const ctv_rec_item *it, size_t size) {
  const ctv_rec_meta *m = &it->meta;
  lua_createtable(L, 0, 11);
  set_str(L, "kind", "header", 6);
  set_str(L, "session", m->session.p, m->session.n);
  set_str(L, "vm_id", m->vm.p, m->vm.n);
  set_str(L, "user", m->user.p, m->user.n);
  set_str(L, "node", m->node.p, m->node.n);
  set_num(L, "start_ms", m->start_ms);
  set_num(L, "width", m->width);
  set_num(L, "height", m->height);
  set_str(L, "pixel_format", (const char *)m->pixel_format, 16);
  set_str(L, "rfb", (const char *)m->rfb, 12);
  set_num(L, "size", size);
}

static void push_chunk(lua_State *L, const ctv_rec_item *it, int with_data) {
  lua_createtable(L, 0, 9);
  set_str(L, "kind", "chunk", 5);
  set_num(L, "index", it->index);
  set_num(L, "offset", it->offset);
  set_num(L, "t_ms", it->t_ms);
  set_bool(L, "keyframe", it->kind == CTV_REC_KEYFRAME);
  set_num(L, "prev_key", it->prev_key);
  set_num(L, "len", it->len);
  set_bool(L, "intact", it->intact);
  if (with_data) set_str(L, "data", (const char *)it->data, it->len);
}

static void push_trailer(lua_State *L, const ctv_rec_item *it) {
  static const char *const sigs[] = { "none", "unchecked", "good", "bad" };
  lua_createtable(L, 0, 11);
  set_str(L, "kind", "trailer", 7);
  set_num(L, "offset", it->offset);
  set_bool(L, "complete", it->complete);
  set_num(L, "chunks", it->chunks);
  set_num(L, "bytes", it->bytes);
  set_num(L, "keyframes", it->keyframes);
  set_num(L, "last_key", it->last_key);
  set_num(L, "end_ms", it->end_ms);
  push_hex(L, it->final, CTV_SHA256_LEN);
  lua_setfield(L, -2, "hash");
  set_bool(L, "intact", it->intact);
  lua_pushstring(L, sigs[it->signature]);
  lua_setfield(L, -2, "signature");
}

static int r_next(lua_State *L) {
  ctv_rec_reader *r = (ctv_rec_reader *)luaL_checkudata(L, 1, READER);
  size_t n, used;
  const char *buf = luaL_checklstring(L, 2, &n);
  lua_Integer pos = luaL_optinteger(L, 3, 1);
  ctv_rec_item it;
  int rc;
  luaL_argcheck(L, pos >= 1 && (size_t)pos <= n + 1, 3, "out of range");
  rc = ctv_rec_next(r, (const unsigned char *)buf + (size_t)pos - 1, n - ((size_t)pos - 1),
                    &it, &used);
  if (rc == CTV_REC_MORE || rc == CTV_REC_DONE) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, rc == CTV_REC_DONE ? 0 : (lua_Integer)used);
    return 2;
  }
  if (rc != CTV_REC_OK)
    return ctv_fail(L, "invalid", "%s at byte %f", ctv_rec_strerror(rc), (double)r->offset);
  if (it.kind == CTV_REC_HEADER) push_header(L, &it, used);
  else if (it.kind == CTV_REC_END) push_trailer(L, &it);
  else push_chunk(L, &it, lua_toboolean(L, 4));
  lua_pushinteger(L, pos + (lua_Integer)used);
  return 2;
}

static int w_tostring(lua_State *L) {
  lua_pushfstring(L, "%s: %p", WRITER, lua_touserdata(L, 1));
  return 1;
}

static int r_tostring(lua_State *L) {
  lua_pushfstring(L, "%s: %p", READER, lua_touserdata(L, 1));
  return 1;
}
