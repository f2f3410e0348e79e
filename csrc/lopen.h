/*
 * lopen.h: the open functions of the binding's topic files, called by
 * luaopen_ctvnc_core. Each adds its functions to the table on top of the
 * stack. Hidden in every build (LuaRocks' too): only luaopen_ctvnc_core
 * is exported.
 */
#ifndef CTVNC_LOPEN_H
#define CTVNC_LOPEN_H

#include "compat.h"

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

void ctv_open_frames(lua_State *L);   /* lframes.c */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
