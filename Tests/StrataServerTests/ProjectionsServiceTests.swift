import Foundation
import StrataProtocolTestSupport
import StrataClient
import StrataProjections
import StrataWire
import Testing

/// The Projections service over TCP: every status PROTOCOL.md section 12
/// promises, through the Swift client.
@Suite("Projections over TCP")
struct ProjectionsServiceTests {
    static let counting = """
    return { source = { category = "acc" }, init = function() return { n = 0 } end,
             partition = function(e) return e.stream end,
             when = { Added = function(s, e) s.n = s.n + 1 end, Poison = function(s, e) error("poisoned") end } }
    """

    func code(_ body: () async throws -> Void) async -> (StatusCode?, String?) {
        do {
            try await body()
            return (nil, nil)
        } catch let error as StrataClient.Error {
            if case .invalidArgument(let field, _) = error.reason { return (error.code, field) }
            return (error.code, nil)
        } catch {
            return (nil, "\(error)")
        }
    }

    /// Polls status until the checkpoint reaches `position` (bounded).
    func settle(_ client: StrataClient, _ name: String, at position: UInt64) async throws -> ProjectionInfo {
        for _ in 0 ..< 500 {
            let info = try await client.projectionStatus(name)
            if info.checkpointPosition >= position || info.state != .running { return info }
            try await Task.sleep(for: .milliseconds(10))  // polling a remote status
        }
        return try await client.projectionStatus(name)
    }

    @Test("create, state and partitions; each error status the section promises")
    func statuses() async throws {
        let fixture = try ServerFixture(projections: ProjectionOptions())
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0 ..< 6 { _ = try await client.append(to: "acc-\(i % 3)", events: events(1, type: "Added")) }
        try await client.createProjection("per-account", script: Self.counting)
        let info = try await settle(client, "per-account", at: 6)
        #expect(info.state == .running && info.partitioned && info.eventsHandled == 6)
        let state = try await client.projectionState("per-account", partition: "acc-1")
        #expect(try JSONSerialization.jsonObject(with: try #require(state.json)) as? [String: Int] == ["n": 2])
        #expect(state.position == 6)
        #expect(try await client.projectionState("per-account", partition: "nobody").json == nil)
        let page = try await client.projectionPartitions("per-account", prefix: "acc-", after: "a", limit: 2)
        #expect(page.keys == ["acc-0", "acc-1"] && page.more, "an `after` before the prefix starts at the prefix")

        #expect(await code { try await client.createProjection("per-account", script: Self.counting) } == (.alreadyExists, nil))
        #expect(await code { try await client.createProjection("bad name", script: Self.counting) } == (.invalidArgument, "name"))
        #expect(await code { try await client.createProjection("broken", script: "return {") } == (.invalidArgument, "script"))
        #expect(await code { _ = try await client.projectionStatus("missing") } == (.notFound, nil))
        #expect(await code { _ = try await client.projectionPartitions("per-account", limit: 1001) } == (.invalidArgument, "limit"))
        #expect(try await client.projections().map(\.name) == ["per-account"], "nothing refused was stored")

        // A poisoned event faults the live projection; replaying it for a time is FAILED_PRECONDITION.
        _ = try await client.append(to: "acc-0", events: events(1, type: "Poison"))
        let faulted = try await settle(client, "per-account", at: 7)
        #expect(faulted.state == .faulted && faulted.faultPosition == 7 && faulted.fault.contains("poisoned"))
        #expect(await code { _ = try await client.projectionState("per-account", partition: "acc-0", at: .max) }
                == (.failedPrecondition, nil))
        // A compatible update that handles it, then resume: it continues from its checkpoint.
        try await client.updateProjection("per-account", script: Self.counting.replacingOccurrences(of: #"error("poisoned")"#, with: "s.poisoned = true"),
                                          compatible: true)
        #expect(try await client.resumeProjection("per-account").state == .running)
        #expect(try await settle(client, "per-account", at: 7).eventsHandled == 7)
        try await client.deleteProjection("per-account")
        #expect(await code { try await client.deleteProjection("per-account") } == (.notFound, nil))
    }
}
