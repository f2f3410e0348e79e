/*
 * grow.h: the one way a heap buffer of the module grows (as LuaSocket's
 * buffer.h and lua-cjson's strbuf.c give theirs one). Pure C99, no Lua:
 * frames.c and the fuzzers link it alone.
 */
#ifndef CTVNC_GROW_H
#define CTVNC_GROW_H

#include <stddef.h>

/* Internal in every build of the module (LuaRocks' too). */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Room for len + extra elements of elem bytes in the block p of *cap
 * elements (NULL and 0 at first). Returns p itself when it has the room;
 * else p reallocated to at least twice *cap (16 elements at the least),
 * never more than max elements, and *cap updated. NULL, with p unchanged
 * and still the caller's, when len + extra overflows, exceeds max or
 * overflows in bytes, or when memory runs out. elem > 0. */
void *ctv_grow(void *p, size_t *cap, size_t len, size_t extra, size_t elem,
               size_t max);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
