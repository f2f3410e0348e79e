/*
 * compat.h: the one place where Lua 5.1 (and LuaJIT 2.1, its ABI) .. 5.4
 * differ for ctvnc. Every file of the binding includes it instead of
 * <lua.h> and <lauxlib.h>.
 *
 * The Lua 5.2+ API the binding uses is provided for 5.1 under ctvnc-private
 * names (ctv_*), as LPeg's lptypes.h and lua-compat-5.3 do: a macro maps the
 * 5.2 name to a static function of ours, so a build never links against a
 * symbol the interpreter may lack (lua5.1 has no luaL_setfuncs) and never
 * collides with one it has (OpenResty's LuaJIT exports luaL_setfuncs).
 */
#ifndef CTVNC_COMPAT_H
#define CTVNC_COMPAT_H

/* A function used without a declaration compiles to a call of a symbol that
 * may not exist at load time ("undefined symbol: luaL_setfuncs"). Make it an
 * error in every build, the rock's included (LuaRocks passes no -Werror). */
#if defined(__GNUC__)
#pragma GCC diagnostic error "-Wimplicit-function-declaration"
#endif

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502

/* LuaJIT 2.1's headers declare some of these names and define others as
 * macros of their own: ours replace them. */
#undef lua_rawlen
#undef luaL_setfuncs
#undef luaL_newlibtable
#undef luaL_newlib
#undef luaL_setmetatable
#undef luaL_testudata

#define lua_rawlen(L, i) lua_objlen((L), (i))

#define luaL_setfuncs(L, l, nup) ctv_setfuncs((L), (l), (nup))
/* luaL_setfuncs: registers l[] into the table below nup upvalues. */
static inline void ctv_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

#define luaL_newlibtable(L, l) \
  lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#define luaL_newlib(L, l) \
  (luaL_newlibtable((L), (l)), ctv_setfuncs((L), (l), 0))

#define luaL_setmetatable(L, tname) ctv_setmetatable((L), (tname))
static inline void ctv_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}

#define luaL_testudata(L, i, tname) ctv_testudata((L), (i), (tname))
static inline void *ctv_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}

#endif /* LUA_VERSION_NUM < 502 */

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, n, nuv) lua_newuserdata((L), (n))
#endif

#endif
