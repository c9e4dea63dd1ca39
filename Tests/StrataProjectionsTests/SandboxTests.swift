import Foundation
import StrataProjections
import StrataStorage
import Testing

/// An event for the sandbox, as the engine would hand it over from the store.
struct TestEvent {
    var type: String
    var stream: String = "s-1"
    var data: String = "{}"
    var contentType = "application/json"
    var metadata = ""
    var revision: UInt64 = 0
    var position: UInt64 = 1
    var recordedAt: Int64 = 1_700_000_000_000_000_000

    func withFieldBytes<R>(_ body: (EventFieldBytes) throws -> R) rethrows -> R {
        let id = [UInt8](repeating: 0xab, count: 16)
        let (stream, type, contentType, data, metadata) = (Array(stream.utf8), Array(type.utf8), Array(contentType.utf8),
                                                           Array(data.utf8), Array(metadata.utf8))
        return try id.withUnsafeBytes { id in
            try stream.withUnsafeBytes { stream in
                try type.withUnsafeBytes { type in
                    try contentType.withUnsafeBytes { contentType in
                        try data.withUnsafeBytes { data in
                            try metadata.withUnsafeBytes { metadata in
                                try body(EventFieldBytes(id: id, stream: stream, type: type, contentType: contentType, data: data,
                                                         metadata: metadata, revision: revision, position: position,
                                                         recordedAt: recordedAt))
                            }
                        }
                    }
                }
            }
        }
    }
}

extension LuaSandbox {
    @discardableResult
    func handle(_ event: TestEvent) throws(ProjectionError) -> Bool {
        do {
            return try event.withFieldBytes { try handle($0) }
        } catch let error as ProjectionError {
            throw error
        } catch {
            throw .sandbox("\(error)")
        }
    }

    /// The partition's state decoded from JSON.
    func state(_ partition: String = "") throws -> [String: Any]? {
        guard let json = try stateJSON(partition: partition) else { return nil }
        return try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any]
    }
}

func sandbox(_ script: String, limits: SandboxLimits = SandboxLimits(memoryBytes: 8 << 20, instructionsPerCall: 100_000),
             stored: [String: String] = [:]) throws -> (LuaSandbox, ProjectionDefinition) {
    let sandbox = try LuaSandbox(limits: limits) { key in stored[key].map { Array($0.utf8) } }
    let definition = try sandbox.define(script: script, name: "test.lua")
    return (sandbox, definition)
}

let countScript = """
return {
  source = { all = true },
  init = function() return { count = 0, types = {} } end,
  when = {
    ["$any"] = function(s, e)
      s.count = s.count + 1
      s.types[e.type] = (s.types[e.type] or 0) + 1
    end,
  },
}
"""

@Suite("Lua sandbox")
struct SandboxTests {
    @Test("a script's table becomes a definition: source, types, handlers, partitioning")
    func definition() throws {
        let (_, all) = try sandbox(countScript)
        #expect(all.source == .all && all.handlesAny && !all.partitioned)
        let (_, category) = try sandbox("""
        return { source = { category = "account", types = { "Deposited" } },
                 partition = function(e) return e.stream end,
                 when = { Deposited = function(s, e) end } }
        """)
        #expect(category.source == .category("account"))
        #expect(category.types == ["Deposited"])
        #expect(category.handledTypes == ["Deposited"] && !category.handlesAny && category.partitioned)
    }

    @Test("handlers see the event's fields and lazily decoded data; state survives across events")
    func handlers() throws {
        let (box, _) = try sandbox("""
        return {
          source = { all = true },
          when = {
            Deposited = function(s, e)
              s.balance = (s.balance or 0) + e.data.amount
              s.last = { stream = e.stream, revision = e.revision, position = e.position, id = e.id,
                         day = os.date("%Y-%m-%d", e.time // 1000000000) }
              return s
            end,
          },
        }
        """)
        #expect(try box.handle(TestEvent(type: "Deposited", data: #"{"amount": 5}"#)))
        #expect(try box.handle(TestEvent(type: "Deposited", data: #"{"amount": 7}"#, revision: 1, position: 9)))
        #expect(try !box.handle(TestEvent(type: "Ignored")))
        let state = try #require(try box.state())
        #expect(state["balance"] as? Int == 12)
        let last = try #require(state["last"] as? [String: Any])
        #expect(last["position"] as? Int == 9 && last["revision"] as? Int == 1 && last["stream"] as? String == "s-1")
        #expect(last["id"] as? String == "abababab-abab-abab-abab-abababababab")
        #expect(last["day"] as? String == "2023-11-14")
    }

    @Test("checkpoint returns the changed partitions and the emitted events, once")
    func checkpoint() throws {
        let (box, _) = try sandbox("""
        return {
          source = { category = "order" },
          partition = function(e) return e.data.customer end,
          when = {
            Placed = function(s, e)
              s.total = (s.total or 0) + e.data.amount
              if s.total > 100 then emit("vip-" .. e.data.customer, "BecameVip", { total = s.total }) end
            end,
          },
        }
        """)
        try box.handle(TestEvent(type: "Placed", data: #"{"customer":"c1","amount":60}"#))
        try box.handle(TestEvent(type: "Placed", data: #"{"customer":"c2","amount":10}"#))
        try box.handle(TestEvent(type: "Placed", data: #"{"customer":"c1","amount":50}"#))
        let output = try box.checkpoint()
        #expect(Set(output.states.map(\.partition)) == ["c1", "c2"])
        #expect(output.emitted.map(\.stream) == ["vip-c1"])
        #expect(String(decoding: output.emitted[0].json, as: UTF8.self) == #"{"total":110}"#)
        #expect(try box.checkpoint().states.isEmpty)
    }

    @Test("a stored partition state is loaded when first touched; whole numbers stay integers")
    func storedState() throws {
        let (box, _) = try sandbox("""
        return { source = { all = true }, when = { ["$any"] = function(s, e) s.n = s.n + 1; s.text = tostring(s.n) end } }
        """, stored: ["": #"{"n": 41}"#])
        try box.handle(TestEvent(type: "X"))
        let state = try #require(try box.state())
        #expect(state["n"] as? Int == 42)
        #expect(state["text"] as? String == "42")
    }

    @Test("syntax and load errors name the script and the line")
    func loadErrors() throws {
        #expect(throws: ProjectionError.invalidScript("test.lua:2: unexpected symbol near '}'")) {
            _ = try sandbox("return {\n  source = }")
        }
        let cases: [(String, String)] = [
            ("return 42", "must return a table"),
            ("return { source = { all = true } }", "needs 'when'"),
            ("return { source = { all = true }, when = { X = 1 } }", "when['X'] must be a function"),
            ("return { when = { X = function() end } }", "needs 'source'"),
            ("return { source = { all = true, category = 'a' }, when = { X = function() end } }", "one of all, streams or category"),
            ("local x = nil\nreturn x.y", "test.lua:2:"),
        ]
        for (script, expected) in cases {
            do {
                _ = try sandbox(script)
                Issue.record("\(script) was accepted")
            } catch ProjectionError.invalidScript(let message) {
                #expect(message.contains(expected), "\(message)")
            }
        }
    }

    @Test("hostile scripts fail with a precise error and cannot reach the host", arguments: [
        ("runtime error", "error('broken handler')", "broken handler"),
        ("endless loop", "while true do end", "instruction budget exceeded"),
        ("endless loop that catches its error", "while true do pcall(function() while true do end end) end", "instruction budget exceeded"),
        ("memory bomb", "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end", "memory limit exceeded"),
        ("os.execute", "os.execute('touch /tmp/strata-pwned')", "attempt to call a nil value (field 'execute')"),
        ("io.open", "io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"),
        ("require", "require('os')", "attempt to call a nil value (global 'require')"),
        ("bytecode", "assert(load(string.char(27) .. 'LuaT'))", "attempt to load a binary chunk"),
        ("string.dump", "string.dump(function() end)", "attempt to call a nil value (field 'dump')"),
        ("dofile", "dofile('/etc/passwd')", "global 'dofile'"),
        ("debug", "debug.sethook()", "global 'debug'"),
        ("wall clock", "os.time()", "field 'time'"),
        ("os.date without a time", "os.date('%Y')", "projections have no wall clock"),
        ("randomness", "math.random()", "field 'random'"),
        ("returning garbage", "return 42", "returned a number"),
    ])
    func hostile(_ name: String, body: String, expected: String) throws {
        let (box, _) = try sandbox("return { source = { all = true }, when = { X = function(s, e) \(body) end } }")
        let error = #expect(throws: ProjectionError.self, "\(name) ran") { try box.handle(TestEvent(type: "X", position: 7)) }
        #expect(error?.position == 7)
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        // The sandbox is still usable afterwards (the engine discards it, but nothing is broken).
        #expect(box.memoryUsed < 8 << 20)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/strata-pwned"))
    }

    @Test("state that JSON cannot hold fails at the checkpoint, naming the problem")
    func unserializableState() throws {
        let (box, _) = try sandbox("return { source = { all = true }, when = { X = function(s, e) s.f = function() end end } }")
        try box.handle(TestEvent(type: "X"))
        #expect(throws: ProjectionError.self) { _ = try box.checkpoint() }
        do { _ = try box.checkpoint() } catch { #expect("\(error)".contains("Cannot serialise")) }
    }

    @Test("a partition function that returns a table faults; nil skips the event")
    func badPartition() throws {
        let (box, _) = try sandbox("""
        return { source = { all = true }, partition = function(e) if e.type == 'Skip' then return nil end return {} end,
                 when = { ["$any"] = function(s, e) end } }
        """)
        #expect(try !box.handle(TestEvent(type: "Skip")))
        #expect(throws: ProjectionError.self) { try box.handle(TestEvent(type: "X")) }
    }
}

@Suite("Lua sandbox, EventStoreDB habits")
struct SandboxAliasTests {
    @Test("when['$init'] stands for init, and event.body for event.data")
    func aliases() throws {
        let (box, _) = try sandbox("""
        return { source = { all = true }, when = { ["$init"] = function() return { sum = 10 } end,
                                                   X = function(s, e) s.sum = s.sum + e.body.n end } }
        """)
        try box.handle(TestEvent(type: "X", data: #"{"n": 5}"#))
        #expect(try box.state()?["sum"] as? Int == 15)
    }
}
