import Foundation
import StrataClient
import StrataWire
import Synchronization
import Testing
import StrataTestSupport

/// The crash-safety harness (docs/reliability.md): a workload of concurrent
/// appends (single, batched and multi-stream), a live `$all` subscriber and
/// a projection runs against the real server process, which is killed with
/// SIGKILL at random moments and restarted on the same data, again and
/// again. Then the log is checked against everything the clients saw.
///
/// `TEST_CRASH_KILLS` sets the number of kills; the test runs only when it is
/// set, alone: `scripts/crash-test.sh 10` in CI, `scripts/crash-test.sh` (200)
/// for the long form.
@Suite("Crash safety: SIGKILL under a mixed workload", .serialized)
struct CrashSafetyTests {
    /// One append call and what came of it.
    struct Attempt: Sendable {
        /// Stream → the ids of the events sent to it (one or two streams).
        let writes: [(stream: String, ids: [UUID])]
        /// Nil: the outcome is unknown (the server died with the call in flight).
        let results: [StrataClient.AppendResult]?
        /// Why the call failed, when it did.
        var failure: StrataClient.Error? = nil
    }

    /// What a call cut off by a kill may fail with. Anything else (a
    /// conflict on a stream only this writer appends to, say) is a bug.
    static let cutOff: Set<StatusCode> = [.unavailable, .deadlineExceeded, .cancelled]

    static let projection = """
    -- Counts the events of the acct category and sums their positions.
    return {
      source = { category = "acct" },
      init = function() return { n = 0, sum = 0 } end,
      when = { ["$any"] = function(s, e) s.n = s.n + 1; s.sum = s.sum + e.position end },
    }
    """

    /// Appends until a call fails: batches of 1–5 events to its own stream
    /// with exact expected revisions, and every fifth call an atomic append
    /// to its stream and its audit stream.
    /// Counts a round's acknowledged appends and says when enough have been
    /// (a class: shared by the round's writers).
    final class RoundProgress: Sendable {
        let acknowledged = Atomic<Int>(0)
        let threshold: Int
        let (reached, signal) = AsyncStream<Void>.makeStream()
        init(threshold: Int) { self.threshold = threshold }
        func acknowledge() {
            if acknowledged.add(1, ordering: .relaxed).newValue == threshold { signal.finish() }
        }
    }

    static func writer(_ client: StrataClient, index: Int, seed: UInt64, progress: RoundProgress? = nil) async -> [Attempt] {
        var attempts: [Attempt] = []
        var random = SplitMix64(seed: seed)
        let stream = "acct-\(index)", audit = "audit-\(index)"
        var next: UInt64
        var nextAudit: UInt64
        // Where the streams stand after the last crash (NOT_FOUND: not
        // created yet). A failure other than the server being gone is
        // recorded, so the checks flag it.
        var failure: StrataClient.Error?
        func revisionAfter(_ name: String) async -> UInt64? {
            do {
                return try await client.streamInfo(name).lastRevision + 1
            } catch where error.code == .notFound {
                return 0
            } catch {
                failure = error
                return nil
            }
        }
        guard let resumed = await revisionAfter(stream), let resumedAudit = await revisionAfter(audit) else {
            return failure.map { [Attempt(writes: [], results: nil, failure: $0)] } ?? []
        }
        next = resumed
        nextAudit = resumedAudit
        for call in 0 ..< 100_000 {
            let count = Int(random.next() % 5) + 1
            let events = (0 ..< count).map { i in
                StrataClient.EventData(type: "Moved", data: Data("{\"w\":\(index),\"i\":\(i)}".utf8))
            }
            let expected: StrataClient.ExpectedRevision = next == 0 ? .noStream : .exact(next - 1)
            if call % 5 == 4 {
                let auditEvent = StrataClient.EventData(type: "Audited", data: Data("{}".utf8))
                let auditExpected: StrataClient.ExpectedRevision = nextAudit == 0 ? .noStream : .exact(nextAudit - 1)
                let writes = [(stream, events.map(\.id)), (audit, [auditEvent.id])]
                do {
                    let results = try await client.appendMulti([(stream, expected, events), (audit, auditExpected, [auditEvent])])
                    attempts.append(Attempt(writes: writes, results: results))
                    progress?.acknowledge()
                    next += UInt64(count)
                    nextAudit += 1
                } catch {
                    attempts.append(Attempt(writes: writes, results: nil, failure: error))
                    return attempts
                }
            } else {
                do {
                    let result = try await client.append(to: stream, expected: expected, events: events)
                    attempts.append(Attempt(writes: [(stream, events.map(\.id))], results: [result]))
                    progress?.acknowledge()
                    next += UInt64(count)
                } catch {
                    attempts.append(Attempt(writes: [(stream, events.map(\.id))], results: nil, failure: error))
                    return attempts
                }
            }
        }
        return attempts
    }

    /// Follows `$all` after `position` until the connection dies (or it
    /// has delivered position `until`): what it delivered.
    static func subscriber(_ client: StrataClient, after position: UInt64, until: UInt64? = nil) async -> [(position: UInt64, id: UUID)] {
        var seen: [(position: UInt64, id: UUID)] = []
        let start: StrataClient.SubscriptionStart = position == 0 ? .start : .afterPosition(position)
        if let until, position >= until { return seen }
        do {
            for try await message in client.subscribe(to: .all, from: start, reconnect: .never) {
                if case .event(let event) = message {
                    seen.append((event.position, event.id))
                    if let until, event.position >= until { break }
                }
            }
        } catch {}
        return seen
    }

    @Test("every acknowledged append survives each SIGKILL exactly once; nothing partial is visible; the subscriber resumes without gaps; the projection equals a replay",
          .enabled(if: ProcessInfo.processInfo.environment["TEST_CRASH_KILLS"] != nil,
                   "runs alone, by scripts/crash-test.sh (its servers' fsyncs and restarts slow every other suite of a full run)"),
          .timeLimit(.minutes(20)))
    func killRepeatedly() async throws {
        let kills = Int(ProcessInfo.processInfo.environment["TEST_CRASH_KILLS"] ?? "") ?? 10
        let directory = NSTemporaryDirectory() + "strata-crash-safety-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var random = SplitMix64(seed: UInt64.random(in: 0 ... .max))
        var attempts: [Attempt] = []
        var delivered: [(position: UInt64, id: UUID)] = []
        let writers = 6

        for round in 0 ... kills {
            let server = try ServerProcess(directory: directory, durability: "sync")
            let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
            if round == 0 { _ = try await client.createProjection("moves", script: Self.projection) }
            let follower = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
            let last = delivered.last?.position ?? 0
            if round == kills {
                // The last round is not killed: the subscriber resumes once
                // more and must reach the head; then everything is checked.
                try await verify(client: client, follower: follower, attempts: attempts, delivered: delivered, kills: kills)
                follower.close()
                client.close()
                break
            }
            let following = Task { await Self.subscriber(follower, after: last) }
            let seeds = (0 ..< writers).map { _ in random.next() }
            let progress = RoundProgress(threshold: 100)
            let writing = Task {
                await withTaskGroup(of: [Attempt].self) { group in
                    for index in 0 ..< writers {
                        group.addTask { await Self.writer(client, index: index, seed: seeds[index], progress: progress) }
                    }
                    var all: [Attempt] = []
                    for await result in group { all += result }
                    return all
                }
            }
            // Kill at a random moment: early (mid start-up recovery and
            // catch-up) or later (mid live writes). Instrumented builds
            // (scripts/sanitize.sh) run about ten times slower: so do the delays.
            let slowdown = ProcessInfo.processInfo.environment["TEST_SANITIZER"] == nil ? 1 : 10
            let early = round.isMultiple(of: 3)
            if !early {
                // Live writes: wait until the round has done some work (on a
                // loaded machine start-up alone can take the whole delay).
                let reached = Task { for await _ in progress.reached {} }
                let timeout = Task {
                    try await Task.sleep(for: .seconds(20))
                    progress.signal.finish()
                }
                await reached.value
                timeout.cancel()
            }
            let delay = slowdown * (early ? Int(random.next() % 30) + 1 : Int(random.next() % 400) + 30)
            try await Task.sleep(for: .milliseconds(delay))
            server.kill()
            attempts += await writing.value
            delivered += await following.value
            client.close()
            follower.close()
        }
    }

    /// Checks the final log against the clients' records.
    func verify(client: StrataClient, follower: StrataClient, attempts: [Attempt], delivered earlier: [(position: UInt64, id: UUID)],
                kills: Int) async throws {
        var log: [UUID: StrataClient.RecordedEvent] = [:]
        var positions: [UInt64] = []
        for try await event in client.read("$all") {
            #expect(log[event.id] == nil, "event \(event.id) stored twice")
            log[event.id] = event
            positions.append(event.position)
        }
        // The log is gapless from position 1.
        #expect(positions == (0 ..< positions.count).map { UInt64($0) + 1 })
        // The subscriber resumes once more and catches up to the head; a
        // subscription stuck short of it is closed after two minutes, and
        // the check below fails rather than the test hanging.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(120))
            follower.close()
        }
        let delivered = earlier + (await Self.subscriber(follower, after: earlier.last?.position ?? 0, until: UInt64(positions.count)))
        watchdog.cancel()

        var acknowledgedEvents = 0
        var unknownLanded = 0, unknownLost = 0
        for attempt in attempts {
            if let failure = attempt.failure {
                #expect(Self.cutOff.contains(failure.code), "an append failed with \(failure), not because the server died")
            }
            if let results = attempt.results {
                // Acknowledged: every event where the server said, exactly once.
                #expect(results.count == attempt.writes.count)
                for (write, result) in zip(attempt.writes, results) {
                    for (offset, id) in write.ids.enumerated() {
                        let stored = log[id]
                        #expect(stored?.stream == write.stream, "acknowledged event \(id) missing")
                        #expect(stored?.revision == result.firstRevision + UInt64(offset))
                        #expect(stored?.position == result.firstPosition + UInt64(offset))
                        acknowledgedEvents += 1
                    }
                }
            } else {
                // Unknown outcome: all of it or none of it, across streams.
                let ids = attempt.writes.flatMap(\.ids)
                let present = ids.filter { log[$0] != nil }.count
                #expect(present == 0 || present == ids.count, "a partial append is visible: \(present) of \(ids.count) events")
                if present == 0 { unknownLost += 1 } else { unknownLanded += 1 }
            }
        }
        // Nothing in the log that no client sent.
        let sent = Set(attempts.flatMap { $0.writes.flatMap(\.ids) })
        for event in log.values where event.stream.hasPrefix("acct-") || event.stream.hasPrefix("audit-") {
            #expect(sent.contains(event.id), "\(event.stream)@\(event.revision) was never sent")
        }
        // Each stream's revisions run 0, 1, 2, … with no gap.
        var revisions: [String: [UInt64]] = [:]
        for event in log.values { revisions[event.stream, default: []].append(event.revision) }
        for (stream, list) in revisions {
            #expect(list.sorted() == Array(0 ..< UInt64(list.count)), "\(stream) has a gap or a repeat")
        }
        // The subscriber, resumed after each crash from its last event, saw
        // every position once, in order, and only events that are stored there.
        let seenPositions = delivered.map(\.position)
        #expect(seenPositions == positions, "the subscriber saw a gap or a repeat, or did not reach the head")
        for (position, id) in delivered {
            #expect(log[id]?.position == position, "the subscriber saw \(id) at \(position), which the log does not hold")
        }
        // Something happened: appends were acknowledged and delivered.
        #expect(acknowledgedEvents > 0 && !delivered.isEmpty)
        // The projection equals a replay of the log: the count, and the sum
        // of positions (a skipped event and a doubled one do not cancel out).
        let replayed = log.values.filter { $0.stream.hasPrefix("acct-") }
        let expected = replayed.count
        let expectedSum = replayed.reduce(0) { $0 + Int($1.position) }
        var state: [String: Int]?
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let info = try await client.projectionStatus("moves")
            if info.state != .running || info.checkpointPosition >= UInt64(positions.count) {
                let json = try #require(try await client.projectionState("moves").json,
                                        "no state: \(info.state) at \(info.checkpointPosition) of \(positions.count) \(info.fault)")
                state = try JSONSerialization.jsonObject(with: json) as? [String: Int]
                #expect(info.state == .running, "\(info.fault)")
                break
            }
            try await Task.sleep(for: .milliseconds(20))  // polling a remote status; there is nothing to await
        }
        #expect(state?["n"] == expected, "the projection counted \(state?["n"] ?? -1) events, a replay counts \(expected)")
        #expect(state?["sum"] == expectedSum, "the projection's position sum differs from a replay")
        print("crash safety: \(kills) kills survived; \(positions.count) events in the log, \(acknowledgedEvents) acknowledged, "
              + "\(unknownLanded + unknownLost) appends cut off by a kill (\(unknownLanded) landed whole, \(unknownLost) not at all), "
              + "\(delivered.count) delivered to the subscriber")
    }
}
