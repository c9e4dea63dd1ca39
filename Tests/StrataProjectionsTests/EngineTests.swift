import Foundation
@testable import StrataProjections
import StrataStorage
import Testing
import StrataTestSupport
import StrataSupport

/// A store in its own directory, and a projection engine on it.
final class EngineFixture: @unchecked Sendable {
    let directory: String
    private(set) var store: EventStore
    private(set) var engine: ProjectionEngine
    let options: ProjectionOptions

    init(options: ProjectionOptions = EngineFixture.fastOptions) throws {
        directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-projections-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        self.options = options
        store = try EventStore(path: directory + "/tenant", tenant: "test", options: Self.storeOptions)
        engine = ProjectionEngine(store: store, options: options)
    }

    static var storeOptions: EventStoreOptions {
        var options = EventStoreOptions()
        options.mapSize = 256 << 20
        return options
    }

    static var fastOptions: ProjectionOptions {
        var options = ProjectionOptions()
        options.checkpointEvents = 50
        options.batchSize = 64
        options.snapshotEvents = 40
        return options
    }

    /// Stops the projections, closes the store, opens both again.
    func restart() throws {
        engine.stopAll()
        store.close()
        store = try EventStore(path: directory + "/tenant", tenant: "test", options: Self.storeOptions)
        engine = ProjectionEngine(store: store, options: options)
        try engine.startAll()
    }

    @discardableResult
    func append(_ stream: String, _ type: String, _ json: String = "{}") throws -> AppendResult {
        try store.append(to: stream, expected: .any, events: [ProposedEvent(id: UUID(), type: type, data: Data(json.utf8))])
    }

    /// Waits until `name` has committed everything in the log.
    @discardableResult
    func settle(_ name: String) throws -> ProjectionStatus {
        try engine.waitForCheckpoint(name, position: store.headPosition())
    }

    func state(_ name: String, partition: String = "") throws -> [String: Any]? {
        guard let json = try engine.state(name, partition: partition).json else { return nil }
        return try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any]
    }

    deinit {
        engine.stopAll()
        store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite("Projection engine")
struct EngineTests {
    @Test("a projection catches up, follows live appends, and resumes after a restart without counting twice")
    func catchUpLiveRestart() throws {
        let f = try EngineFixture()
        for i in 0 ..< 120 { try f.append("s-\(i % 7)", i % 3 == 0 ? "A" : "B") }
        try f.engine.create(name: "counts", script: countScript)
        var status = try f.settle("counts")
        #expect(status.state == .running && status.checkpoint == 120 && status.eventsHandled == 120)
        #expect(try f.state("counts")?["count"] as? Int == 120)
        for i in 0 ..< 30 { try f.append("s-\(i)", "C") }
        status = try f.settle("counts")
        #expect(status.checkpoint == 150)
        #expect(try f.state("counts")?["count"] as? Int == 150)
        try f.restart()
        for _ in 0 ..< 5 { try f.append("s-x", "A") }
        status = try f.settle("counts")
        let state = try #require(try f.state("counts"))
        #expect(state["count"] as? Int == 155)
        #expect((state["types"] as? [String: Int])?["A"] == 40 + 5)
        #expect(status.eventsHandled == 155)
    }

    @Test("a faulting script stops only its projection, at the failing event; a fixed script resumes from the checkpoint")
    func faultAndFix() throws {
        let f = try EngineFixture()
        for _ in 0 ..< 10 { try f.append("a-1", "Good") }
        try f.append("a-1", "Bad")
        for _ in 0 ..< 5 { try f.append("a-1", "Good") }
        let failing = """
        return { source = { all = true }, init = function() return { n = 0 } end,
                 when = { Good = function(s) s.n = s.n + 1 end, Bad = function(s) error("cannot handle Bad") end } }
        """
        try f.engine.create(name: "fragile", script: failing)
        try f.engine.create(name: "counts", script: countScript)
        let faulted = try f.settle("fragile")
        #expect(faulted.state == .faulted)
        #expect(faulted.faultPosition == 11)
        #expect(faulted.fault?.contains("cannot handle Bad") == true)
        #expect(try f.settle("counts").checkpoint == 16, "the other projection went on")
        try f.append("a-1", "Good")
        #expect(try f.settle("counts").checkpoint == 17, "appends went on")
        // Still faulted after a restart, with the same story.
        try f.restart()
        #expect(try f.engine.status("fragile").state == .faulted)
        #expect(try f.engine.status("fragile").faultPosition == 11)
        // Fix it without a reset: it resumes from its checkpoint and counts each Good once.
        try f.engine.update(name: "fragile", script: failing.replacingOccurrences(of: #"error("cannot handle Bad")"#, with: "s.bad = true"),
                            compatible: true)
        try f.engine.resume("fragile")
        let fixed = try f.settle("fragile")
        #expect(fixed.state == .running)
        #expect(try f.state("fragile")?["n"] as? Int == 16)
    }

    @Test("pause keeps the position, resume continues, reset rebuilds from the start, delete removes the state")
    func lifecycle() throws {
        let f = try EngineFixture()
        for _ in 0 ..< 20 { try f.append("s-1", "A") }
        try f.engine.create(name: "counts", script: countScript)
        try f.settle("counts")
        try f.engine.pause("counts")
        #expect(try f.engine.status("counts").state == .paused)
        for _ in 0 ..< 10 { try f.append("s-1", "A") }
        #expect(try f.engine.status("counts").checkpoint == 20, "paused: nothing handled")
        try f.restart()
        #expect(try f.engine.status("counts").state == .paused, "paused survives a restart")
        try f.engine.resume("counts")
        #expect(try f.settle("counts").checkpoint == 30)
        #expect(try f.state("counts")?["count"] as? Int == 30)
        try f.engine.reset("counts")
        let rebuilt = try f.settle("counts")
        #expect(rebuilt.checkpoint == 30 && rebuilt.generation == 2)
        #expect(try f.state("counts")?["count"] as? Int == 30, "rebuilt, not doubled")
        try f.engine.delete("counts")
        #expect(throws: StorageError.projectionNotFound(name: "counts")) { _ = try f.engine.state("counts") }
        #expect(try f.store.projections().isEmpty)
        // The name is free again; a new projection starts from scratch.
        try f.engine.create(name: "counts", script: countScript)
        #expect(try f.settle("counts").eventsHandled == 30)
    }

    @Test("an incompatible update resets; a compatible one keeps state")
    func updates() throws {
        let f = try EngineFixture()
        for _ in 0 ..< 10 { try f.append("s-1", "A") }
        try f.engine.create(name: "counts", script: countScript)
        try f.settle("counts")
        let doubled = countScript.replacingOccurrences(of: "s.count = s.count + 1", with: "s.count = s.count + 2")
        try f.engine.update(name: "counts", script: doubled, compatible: true)
        try f.append("s-1", "A")
        try f.settle("counts")
        #expect(try f.state("counts")?["count"] as? Int == 12)
        try f.engine.update(name: "counts", script: doubled, compatible: false)
        try f.settle("counts")
        #expect(try f.state("counts")?["count"] as? Int == 22)
        // A script that does not compile is refused and changes nothing.
        #expect(throws: ProjectionError.self) { try f.engine.update(name: "counts", script: "return {", compatible: false) }
        #expect(throws: ProjectionError.self) { try f.engine.create(name: "broken", script: "return 1") }
        #expect(throws: StorageError.self) { try f.engine.create(name: "bad name!", script: countScript) }
        #expect(throws: StorageError.projectionExists(name: "counts")) { try f.engine.create(name: "counts", script: countScript) }
        #expect(try f.state("counts")?["count"] as? Int == 22)
    }

    @Test("emitted events are written once with the state, and the projection never reads its own output")
    func emits() throws {
        let f = try EngineFixture()
        let script = """
        return { source = { all = true }, init = function() return { seen = 0 } end,
                 when = { ["$any"] = function(s, e) s.seen = s.seen + 1; emit("derived-" .. e.stream, "Seen", { from = e.position }) end } }
        """
        for i in 0 ..< 60 { try f.append("src-\(i % 3)", "A") }
        try f.engine.create(name: "echo", script: script)
        try f.settle("echo")
        let derived = try f.store.readAll(maxCount: 1000, filter: EventFilter(streamPrefixes: ["derived-"])).events
        #expect(derived.count == 60)
        #expect(Set(derived.map { String(decoding: $0.data, as: UTF8.self) }).count == 60, "each source event emitted once")
        #expect(try f.state("echo")?["seen"] as? Int == 60, "its own 60 emitted events were not handled")
        try f.restart()
        try f.append("src-0", "A")
        try f.settle("echo")
        #expect(try f.store.readAll(maxCount: 1000, filter: EventFilter(streamPrefixes: ["derived-"])).events.count == 61)
    }

    @Test("partitions: listed by prefix with paging, each with its own state")
    func partitions() throws {
        let f = try EngineFixture()
        let script = """
        return { source = { category = "order" }, partition = function(e) return e.data.customer end,
                 init = function() return { total = 0 } end,
                 when = { Placed = function(s, e) s.total = s.total + e.data.amount end } }
        """
        for i in 0 ..< 30 {
            try f.append("order-\(i)", "Placed", #"{"customer":"c\#(i % 10)","amount":\#(i)}"#)
            try f.append("other-\(i)", "Placed", #"{"customer":"x","amount":1}"#)
        }
        try f.engine.create(name: "totals", script: script)
        try f.settle("totals")
        let first = try f.engine.partitions("totals", prefix: "c", after: nil, limit: 4)
        #expect(first.keys == ["c0", "c1", "c2", "c3"] && first.more)
        let rest = try f.engine.partitions("totals", prefix: "c", after: "c3", limit: 100)
        #expect(rest.keys == ["c4", "c5", "c6", "c7", "c8", "c9"] && !rest.more)
        #expect(try f.engine.partitions("totals", prefix: "x", after: nil, limit: 10).keys.isEmpty, "other category ignored")
        #expect(try f.state("totals", partition: "c3")?["total"] as? Int == 3 + 13 + 23)
        #expect(try f.state("totals", partition: "nobody") == nil)
    }

    @Test("state as of T matches a replay of the events recorded up to T", arguments: [1, 2, 3] as [UInt64])
    func stateAtTime(seed: UInt64) throws {
        let f = try EngineFixture()
        var generator = SplitMix64(seed: seed)
        var commits: [(time: Int64, count: Int, sum: Int)] = []
        var count = 0
        var sum = 0
        for _ in 0 ..< 40 {
            let size = Int.random(in: 1 ... 5, using: &generator)
            var events: [ProposedEvent] = []
            for _ in 0 ..< size {
                let amount = Int.random(in: 1 ... 100, using: &generator)
                events.append(ProposedEvent(id: UUID(), type: "Added", data: Data(#"{"amount":\#(amount)}"#.utf8)))
                sum += amount
            }
            count += size
            let result = try f.store.append(to: "acc-\(Int.random(in: 0 ..< 3, using: &generator))", expected: .any, events: events)
            let time = try #require(f.store.readAll(from: .position(result.firstPosition), maxCount: 1).events.first).recordedAt
            commits.append((time, count, sum))
        }
        let script = """
        return { source = { category = "acc" }, init = function() return { n = 0, sum = 0 } end,
                 when = { Added = function(s, e) s.n = s.n + 1; s.sum = s.sum + e.data.amount end } }
        """
        try f.engine.create(name: "sums", script: script)
        try f.settle("sums")
        #expect(try f.store.projectionSnapshot("sums", atOrBefore: .max) != nil, "snapshots were kept")
        for _ in 0 ..< 10 {
            let commit = commits[Int.random(in: 0 ..< commits.count, using: &generator)]
            for time in [commit.time, commit.time + 1] {
                let (json, _) = try f.engine.state("sums", at: time)
                let state = try JSONSerialization.jsonObject(with: Data(try #require(json))) as? [String: Int]
                #expect(state?["n"] == commit.count && state?["sum"] == commit.sum)
            }
        }
        let before = try f.engine.state("sums", at: commits[0].time - 1)
        #expect(before.position == 0)
        let initial = try JSONSerialization.jsonObject(with: Data(try #require(before.json))) as? [String: Int]
        #expect(initial == ["n": 0, "sum": 0])
    }
}

@Suite("Hostile projections in the engine")
struct HostileEngineTests {
    @Test("each hostile script faults only its own projection; appends and a healthy projection go on", arguments: [
        "error('runtime error')",
        "while true do end",
        "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end",
        "os.execute('true')",
        "io.open('/etc/passwd')",
        "require('os')",
        "assert(load(string.char(27) .. 'LuaT'))",
        "return 'garbage'",
        "s.f = function() end",  // fails at the checkpoint: state must be JSON
    ])
    func hostile(_ body: String) throws {
        var options = EngineFixture.fastOptions
        options.sandbox = SandboxLimits(memoryBytes: 16 << 20, instructionsPerCall: 200_000)
        let f = try EngineFixture(options: options)
        for _ in 0 ..< 5 { try f.append("s-1", "A") }
        try f.append("s-1", "Evil")
        try f.engine.create(name: "hostile", script: """
        return { source = { all = true }, when = { A = function(s, e) end, Evil = function(s, e) \(body) end } }
        """)
        try f.engine.create(name: "counts", script: countScript)
        let faulted = try f.settle("hostile")
        #expect(faulted.state == .faulted, "\(body)")
        #expect(faulted.faultPosition == 6)
        for _ in 0 ..< 10 { try f.append("s-2", "A") }
        #expect(try f.settle("counts").checkpoint == 16)
        #expect(try f.state("counts")?["count"] as? Int == 16)
        #expect(try f.engine.status("hostile").state == .faulted)
    }
}
