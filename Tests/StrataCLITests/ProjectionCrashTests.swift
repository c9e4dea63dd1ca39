import Foundation
import StrataTestSupport
import StrataClient
import Testing

/// Exactly-once under `kill -9`: the real server process is killed while a
/// projection catches up and while it follows live appends, again and again.
/// After each restart the count it keeps must equal the number of matching
/// events in the log, and every event it emitted must be there exactly once.
@Suite("Projections survive kill -9", .serialized)
struct ProjectionCrashTests {
    static let script = """
    -- Counts Tick events and emits one Tocked per Tick.
    return {
      source = { category = "clock", types = { "Tick" } },
      init = function() return { ticks = 0 } end,
      when = {
        Tick = function(s, e)
          s.ticks = s.ticks + 1
          emit("tocks-" .. (e.position % 4), "Tocked", { tick = e.position })
        end,
      },
    }
    """

    func connect(_ server: ServerProcess) async throws -> StrataClient {
        try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
    }

    /// Appends batches of Ticks (and some noise) until cancelled or the connection dies.
    func writer(_ client: StrataClient, batches: Int) async -> Int {
        var acknowledged = 0
        for batch in 0 ..< batches {
            let ticks = (0 ..< 50).map { _ in StrataClient.EventData(type: "Tick", data: Data("{}".utf8)) }
            do {
                _ = try await client.append(to: "clock-\(batch % 5)", events: ticks)
                acknowledged += ticks.count
                _ = try await client.append(to: "noise-\(batch % 3)", events: [.init(type: "Tick", data: Data("{}".utf8))])
            } catch {
                break  // the server was killed
            }
        }
        return acknowledged
    }

    /// Polls the projection's status until its checkpoint reaches the head.
    func settle(_ client: StrataClient) async throws -> ProjectionInfo {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let info = try await client.projectionStatus("ticks")
            if info.state != .running || (info.checkpointPosition >= info.headPosition && info.lag == 0) { return info }
            guard ContinuousClock.now < deadline else { return info }
            try await Task.sleep(for: .milliseconds(20))  // polling a remote status; there is nothing to await
        }
    }

    @Test("kill -9 mid catch-up and mid live processing: every Tick counts once, every Tocked exists once")
    func killRepeatedly() async throws {
        let directory = NSTemporaryDirectory() + "strata-crash-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var kills = 0
        var acknowledged = 0
        var generator = SystemRandomNumberGenerator()

        // A backlog to catch up on, then the projection, then a kill during its catch-up.
        do {
            let server = try ServerProcess(directory: directory, durability: "sync")
            let client = try await connect(server)
            acknowledged += await writer(client, batches: 200)
            try await client.createProjection("ticks", script: Self.script)
            try await Task.sleep(for: .milliseconds(Int.random(in: 5 ... 60, using: &generator)))
            server.kill()
            kills += 1
            client.close()
        }
        // Restarts that are killed while catching up and while appends race with live processing.
        for round in 0 ..< 12 {
            let server = try ServerProcess(directory: directory, durability: "sync")
            let client = try await connect(server)
            let writing = Task { await writer(client, batches: 400) }
            try await Task.sleep(for: .milliseconds(Int.random(in: round.isMultiple(of: 2) ? 1 ... 20 : 50 ... 250, using: &generator)))
            server.kill()
            kills += 1
            acknowledged += await writing.value
            client.close()
        }

        let server = try ServerProcess(directory: directory, durability: "sync")
        let client = try await connect(server)
        defer { client.close() }
        let info = try await settle(client)
        #expect(info.state == .running, "\(info.fault)")

        // The truth is the log: count Ticks in clock-* and Tocked events anywhere.
        var ticks = 0
        var tocks: [Int] = []
        for try await event in client.read("$all") {
            if event.stream.hasPrefix("clock-") && event.type == "Tick" { ticks += 1 }
            if event.type == "Tocked" {
                let body = try JSONSerialization.jsonObject(with: event.data) as? [String: Int]
                tocks.append(try #require(body?["tick"]))
            }
        }
        let state = try await client.projectionState("ticks")
        let counted = try JSONSerialization.jsonObject(with: try #require(state.json)) as? [String: Int]
        #expect(ticks >= acknowledged, "every acknowledged append is in the log")
        #expect(counted?["ticks"] == ticks, "each Tick counted exactly once after \(kills) kills")
        #expect(tocks.count == ticks, "one Tocked per Tick")
        #expect(Set(tocks).count == tocks.count, "no Tocked twice")
        print("projection crash test: \(kills) kills survived, \(ticks) ticks, \(acknowledged) acknowledged")
    }
}
