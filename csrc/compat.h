/*
 * compat.h: the one place where Lua 5.4 and LuaJIT 2.1 (Lua 5.1 ABI)
 * differ for ctvnc. OpenResty's LuaJIT already has luaL_setfuncs,
 * luaL_newlib, luaL_testudata and luaL_setmetatable.
 */
#ifndef CTVNC_COMPAT_H
#define CTVNC_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, n, nuv) lua_newuserdata((L), (n))
#endif

#endif
