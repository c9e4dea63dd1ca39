#ifndef STRATA_CLUA_SHIM_H
#define STRATA_CLUA_SHIM_H
// Lua 5.4 for Swift. Lua's API uses function-like macros that Swift cannot
// import; each is wrapped here as a static inline function with the same name
// prefixed by "strata_". Nothing here raises a Lua error into Swift frames:
// callers use the protected-call wrappers.
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static inline int strata_lua_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline int strata_lua_upvalueindex(int i) { return lua_upvalueindex(i); }

static inline int strata_lua_pcall(lua_State *L, int nargs, int nresults, int msgh) {
    return lua_pcall(L, nargs, nresults, msgh);
}
static inline void strata_lua_pop(lua_State *L, int n) { lua_pop(L, n); }
static inline void strata_lua_newtable(lua_State *L) { lua_newtable(L); }
static inline void strata_lua_pushcfunction(lua_State *L, lua_CFunction f) { lua_pushcfunction(L, f); }
static inline void strata_lua_pushglobaltable(lua_State *L) { lua_pushglobaltable(L); }
static inline void strata_lua_insert(lua_State *L, int idx) { lua_insert(L, idx); }
static inline void strata_lua_remove(lua_State *L, int idx) { lua_remove(L, idx); }
static inline void strata_lua_replace(lua_State *L, int idx) { lua_replace(L, idx); }

static inline const char *strata_lua_tostring(lua_State *L, int idx) { return lua_tostring(L, idx); }
static inline lua_Number strata_lua_tonumber(lua_State *L, int idx) { return lua_tonumber(L, idx); }
static inline lua_Integer strata_lua_tointeger(lua_State *L, int idx) { return lua_tointeger(L, idx); }

static inline int strata_lua_isfunction(lua_State *L, int idx) { return lua_isfunction(L, idx); }
static inline int strata_lua_istable(lua_State *L, int idx) { return lua_istable(L, idx); }
static inline int strata_lua_isnil(lua_State *L, int idx) { return lua_isnil(L, idx); }
static inline int strata_lua_isnone(lua_State *L, int idx) { return lua_isnone(L, idx); }
static inline int strata_lua_isnoneornil(lua_State *L, int idx) { return lua_isnoneornil(L, idx); }
static inline int strata_lua_isboolean(lua_State *L, int idx) { return lua_isboolean(L, idx); }

static inline void *strata_lua_newuserdata(lua_State *L, size_t size) { return lua_newuserdata(L, size); }
static inline int strata_lua_getuservalue(lua_State *L, int idx) { return lua_getuservalue(L, idx); }
static inline int strata_lua_setuservalue(lua_State *L, int idx) { return lua_setuservalue(L, idx); }

static inline int strata_luaL_loadbuffer(lua_State *L, const char *buff, size_t size, const char *name) {
    return luaL_loadbuffer(L, buff, size, name);
}
static inline const char *strata_luaL_typename(lua_State *L, int idx) { return luaL_typename(L, idx); }
static inline int strata_luaL_getmetatable(lua_State *L, const char *name) { return luaL_getmetatable(L, name); }
static inline const char *strata_luaL_checkstring(lua_State *L, int arg) { return luaL_checkstring(L, arg); }
static inline const char *strata_luaL_optstring(lua_State *L, int arg, const char *def) { return luaL_optstring(L, arg, def); }

#endif
