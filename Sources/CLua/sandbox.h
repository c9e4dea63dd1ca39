#ifndef STRATA_CLUA_SANDBOX_H
#define STRATA_CLUA_SANDBOX_H
// The C half of the projection sandbox: a capped allocator, an instruction
// budget enforced by a count hook, and entry points that run everything a
// projection does inside lua_pcall. Lua errors are raised only here, in C,
// never through a Swift frame: Swift calls these functions, they return a
// status, and the one Swift callback (the partition loader) returns a status
// that the C side turns into an error.
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <lua-cjson.h>

/// How many VM instructions run between two checks of the budget.
#define STRATA_HOOK_INTERVAL 1000

/// Loads one partition's stored state for the sandbox. Returns 1 and sets
/// `json`/`length` (valid until the next call) when a state is stored, 0 when
/// there is none, -1 on a storage error (then `json`/`length` hold a message).
typedef int (*strata_partition_loader)(void *host, const char *key, size_t key_length,
                                       const char **json, size_t *length);

/// Per-state accounting, the allocator's user data. Owned by the thread that
/// owns the lua_State.
typedef struct strata_sandbox {
    size_t used;             // bytes allocated now
    size_t limit;            // 0 while the libraries load, then the cap
    long long budget;        // instructions per call
    long long remaining;     // instructions left in the current call
    int budget_exceeded;     // set by the hook, cleared per call
    int memory_refused;      // an allocation was refused since the last reset
    strata_partition_loader loader;
    void *host;
} strata_sandbox;

static void *strata_sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    strata_sandbox *s = (strata_sandbox *)ud;
    size_t old = ptr ? osize : 0;  // with ptr NULL, osize is the object's type
    if (nsize == 0) {
        free(ptr);
        s->used -= old;
        return NULL;
    }
    if (nsize > old && s->limit != 0 && s->used - old + nsize > s->limit) {
        s->memory_refused = 1;
        return NULL;  // Lua collects garbage and retries once, then raises a memory error
    }
    void *grown = realloc(ptr, nsize);
    if (grown == NULL) {
        // Shrinking must never fail: keep the larger block.
        return nsize <= old ? ptr : NULL;
    }
    s->used = s->used - old + nsize;
    return grown;
}

static void strata_sandbox_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    void *ud = NULL;
    lua_getallocf(L, &ud);
    strata_sandbox *s = (strata_sandbox *)ud;
    s->remaining -= STRATA_HOOK_INTERVAL;
    if (s->remaining < 0) {
        if (!s->budget_exceeded) {
            s->budget_exceeded = 1;
            // From now on every instruction raises, so a script that catches
            // the error with pcall in a loop still cannot keep running.
            lua_sethook(L, strata_sandbox_hook, LUA_MASKCOUNT, 1);
        }
        luaL_error(L, "instruction budget exceeded (%I instructions per call)", (lua_Integer)s->budget);
    }
}

/// A new state whose allocations are counted in `s`. The cap applies once
/// `strata_sandbox_arm` is called (the standard libraries load first).
static lua_State *strata_sandbox_newstate(strata_sandbox *s) {
    memset(s, 0, sizeof(*s));
    return lua_newstate(strata_sandbox_alloc, s);
}

static void strata_sandbox_arm(lua_State *L, strata_sandbox *s, size_t memory_limit, long long budget) {
    s->limit = memory_limit;
    s->budget = budget;
    s->remaining = budget;
    lua_sethook(L, strata_sandbox_hook, LUA_MASKCOUNT, STRATA_HOOK_INTERVAL);
}

/// Gives the next protected call a fresh budget.
static void strata_sandbox_reset_budget(lua_State *L, strata_sandbox *s) {
    if (s->budget_exceeded) lua_sethook(L, strata_sandbox_hook, LUA_MASKCOUNT, STRATA_HOOK_INTERVAL);
    s->budget_exceeded = 0;
    s->memory_refused = 0;
    s->remaining = s->budget;
}

/// Message handler: adds a traceback to string errors and passes any other
/// error value through unchanged.
static int strata_sandbox_message_handler(lua_State *L) {
    const char *message = lua_tostring(L, 1);
    if (message == NULL) return 1;
    luaL_traceback(L, L, message, 1);
    return 1;
}

// MARK: - Opening the libraries (protected)

static int strata_sandbox_open_body(lua_State *L) {
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 1);  // also as a global, for the prelude
    lua_pop(L, 1);
    return 0;
}

/// Opens the standard libraries and cjson. Returns a Lua status; on an error
/// the message is on the stack.
static int strata_sandbox_open(lua_State *L) {
    lua_pushcfunction(L, strata_sandbox_open_body);
    return lua_pcall(L, 0, 0, 0);
}

// MARK: - Loading a chunk (text only)

typedef struct strata_chunk {
    const char *source;
    size_t length;
    const char *name;
} strata_chunk;

static int strata_sandbox_load_body(lua_State *L) {
    const strata_chunk *chunk = (const strata_chunk *)lua_touserdata(L, 1);
    // Mode "t": a binary chunk is refused, it could break the VM.
    if (luaL_loadbufferx(L, chunk->source, chunk->length, chunk->name, "t") != LUA_OK) return lua_error(L);
    lua_call(L, 0, 1);
    return 1;
}

/// Compiles and runs a text chunk, leaving its first result on the stack.
/// Returns a Lua status; on an error the message (with line numbers) is on
/// the stack.
static int strata_sandbox_run_chunk(lua_State *L, strata_sandbox *s, const char *source, size_t length,
                                    const char *name) {
    strata_chunk chunk = { source, length, name };
    strata_sandbox_reset_budget(L, s);
    int base = lua_gettop(L);
    lua_pushcfunction(L, strata_sandbox_message_handler);
    lua_pushcfunction(L, strata_sandbox_load_body);
    lua_pushlightuserdata(L, &chunk);
    int status = lua_pcall(L, 1, 1, base + 1);
    lua_remove(L, base + 1);
    return status;
}

// MARK: - Calling a registry function with string and integer arguments

/// One argument of `strata_sandbox_call`: a string (bytes may be NULL with
/// length 0, which pushes nil when `nil_if_empty`) or an integer.
typedef struct strata_argument {
    const char *bytes;
    size_t length;
    long long integer;
    int kind;  // 0 string, 1 integer, 2 string or nil when empty, 3 boolean
} strata_argument;

typedef struct strata_call {
    int function_ref;
    const strata_argument *arguments;
    int count;
    int results;
} strata_call;

static int strata_sandbox_call_body(lua_State *L) {
    const strata_call *call = (const strata_call *)lua_touserdata(L, 1);
    luaL_checkstack(L, call->count + 2, "too many arguments");
    lua_rawgeti(L, LUA_REGISTRYINDEX, call->function_ref);
    for (int i = 0; i < call->count; i++) {
        const strata_argument *a = &call->arguments[i];
        switch (a->kind) {
        case 1: lua_pushinteger(L, (lua_Integer)a->integer); break;
        case 2: if (a->length == 0) { lua_pushnil(L); break; } /* fallthrough */
        case 0: lua_pushlstring(L, a->bytes ? a->bytes : "", a->length); break;
        default: lua_pushboolean(L, a->integer != 0); break;
        }
    }
    lua_call(L, call->count, call->results);
    return call->results;
}

/// Calls the function at registry reference `function_ref` with `arguments`
/// under a fresh budget, leaving `results` values on the stack. Returns a
/// Lua status; on an error the message is on the stack instead.
static int strata_sandbox_call(lua_State *L, strata_sandbox *s, int function_ref,
                               const strata_argument *arguments, int count, int results) {
    strata_call call = { function_ref, arguments, count, results };
    strata_sandbox_reset_budget(L, s);
    int base = lua_gettop(L);
    lua_pushcfunction(L, strata_sandbox_message_handler);
    lua_pushcfunction(L, strata_sandbox_call_body);
    lua_pushlightuserdata(L, &call);
    int status = lua_pcall(L, 1, results, base + 1);
    lua_remove(L, base + 1);
    return status;
}

// MARK: - The partition loader, as a Lua function

/// `load_partition(key)` → the stored JSON text, or nil. The Swift loader
/// returns a status; the error is raised here, in C.
static int strata_sandbox_load_partition(lua_State *L) {
    size_t key_length = 0;
    const char *key = luaL_checklstring(L, 1, &key_length);
    void *ud = NULL;
    lua_getallocf(L, &ud);
    strata_sandbox *s = (strata_sandbox *)ud;
    if (s->loader == NULL) {
        lua_pushnil(L);
        return 1;
    }
    const char *json = NULL;
    size_t length = 0;
    int found = s->loader(s->host, key, key_length, &json, &length);
    if (found < 0) {
        lua_pushlstring(L, json ? json : "storage error", json ? length : 13);
        return lua_error(L);
    }
    if (found == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, json, length);
    return 1;
}

/// Pushes `load_partition` as a value (no allocation: a light C function).
static void strata_sandbox_push_loader(lua_State *L) {
    lua_pushcfunction(L, strata_sandbox_load_partition);
}

#endif
