import CLua
import Testing

/// The shim's wrappers are what the projection runtime will stand on; these
/// tests check that each macro wrapper behaves like the macro it replaces.
@Suite("CLua shim")
struct CLuaShimTests {
    @Test("a chunk loaded from a buffer runs under pcall and returns values")
    func loadAndCall() throws {
        let state = try #require(luaL_newstate())
        defer { lua_close(state) }
        luaL_openlibs(state)
        let source = "return 40 + 2, 'strata'"
        let loaded = source.withCString { strata_luaL_loadbuffer(state, $0, source.utf8.count, "=test") }
        #expect(loaded == LUA_OK)
        #expect(strata_lua_pcall(state, 0, 2, 0) == LUA_OK)
        #expect(strata_lua_tointeger(state, -2) == 42)
        #expect(String(cString: strata_lua_tostring(state, -1)) == "strata")
        strata_lua_pop(state, 2)
        #expect(lua_gettop(state) == 0)
    }

    @Test("a syntax error is returned with its line number, not raised")
    func syntaxError() throws {
        let state = try #require(luaL_newstate())
        defer { lua_close(state) }
        let source = "local x = 1\nreturn x +"
        let loaded = source.withCString { strata_luaL_loadbuffer(state, $0, source.utf8.count, "=script") }
        #expect(loaded == LUA_ERRSYNTAX)
        let message = String(cString: strata_lua_tostring(state, -1))
        #expect(message.contains("script:2"))
    }

    @Test("a runtime error comes back from pcall as a status and a message")
    func runtimeError() throws {
        let state = try #require(luaL_newstate())
        defer { lua_close(state) }
        luaL_openlibs(state)
        let source = "error('boom')"
        _ = source.withCString { strata_luaL_loadbuffer(state, $0, source.utf8.count, "=script") }
        #expect(strata_lua_pcall(state, 0, 0, 0) == LUA_ERRRUN)
        #expect(String(cString: strata_lua_tostring(state, -1)).contains("boom"))
    }

    @Test("tables built through the wrappers are visible to scripts")
    func tables() throws {
        let state = try #require(luaL_newstate())
        defer { lua_close(state) }
        luaL_openlibs(state)
        strata_lua_newtable(state)
        lua_pushinteger(state, 7)
        lua_setfield(state, -2, "count")
        lua_setglobal(state, "input")
        let source = "return input.count * 6"
        _ = source.withCString { strata_luaL_loadbuffer(state, $0, source.utf8.count, "=script") }
        #expect(strata_lua_pcall(state, 0, 1, 0) == LUA_OK)
        #expect(strata_lua_tonumber(state, -1) == 42)
        #expect(strata_lua_registryindex() < 0)
    }
}
