import Foundation
import StrataProtocolTestSupport
import StrataClient
import StrataWire
import Testing

/// An account folded from Deposited/Withdrawn events, for the repository tests.
struct Account: Codable, Sendable, Equatable {
    var balance = 0
    var events = 0

    func applying(_ event: StrataClient.RecordedEvent) throws -> Account {
        let amount = try JSONDecoder().decode([String: Int].self, from: event.data)["amount"] ?? 0
        var next = self
        next.balance += event.type == "Withdrawn" ? -amount : amount
        next.events += 1
        return next
    }
}

@Suite("History over TCP: time ranges, positions, snapshots, aggregates")
struct HistoryTests {
    @Test("a stream as of T, events between T1 and T2, stream info and the position at T agree with what was appended")
    func timeQueries() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        var commits: [StrataClient.AppendResult] = []
        for i in 0..<12 {
            commits.append(try await client.append(to: i % 3 == 0 ? "other" : "ledger", events: events(1 + i % 2)))
        }
        var all: [StrataClient.RecordedEvent] = []
        for try await event in client.read("$all") { all.append(event) }
        for commit in commits {
            let t = commit.recordedAt
            // The ledger as of T.
            var asOf: [StrataClient.RecordedEvent] = []
            for try await event in client.read("ledger", recorded: Int64.min ... t) { asOf.append(event) }
            let expected = all.filter { $0.stream == "ledger" && $0.recordedAt <= t }
            #expect(asOf == expected)
            if let last = expected.last {
                let info = try await client.streamInfo("ledger", asOf: t)
                #expect(info.lastRevision == last.revision)
            }
            // The position at T (and just before T).
            let at = try await client.position(at: t)
            #expect(at.position == commit.lastPosition && at.recordedAt == t)
            let before = try await client.position(at: t - 1)
            #expect(before.position == commit.firstPosition - 1)
        }
        // $all between two commit times, with a type filter.
        let t1 = commits[3].recordedAt, t2 = commits[8].recordedAt
        var between: [StrataClient.RecordedEvent] = []
        for try await event in client.read("$all", recorded: t1 ... t2) { between.append(event) }
        #expect(between == all.filter { $0.recordedAt >= t1 && $0.recordedAt <= t2 })
        // Before the first event: a stream that did not exist yet.
        do {
            _ = try await client.streamInfo("ledger", asOf: commits[0].recordedAt - 1)
            Issue.record("stream info before the stream existed succeeded")
        } catch {
            #expect(error.code == .notFound)
        }
        // A backwards time-range read is refused.
        do {
            for try await _ in client.read("ledger", direction: .backwards, recorded: 0 ... 1) {}
            Issue.record("a backwards time-range read was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("snapshots over TCP: save, load by revision and time, aggregate as of T from the newest snapshot before it")
    func snapshotsAndAggregates() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        var results: [StrataClient.AppendResult] = []
        for _ in 0..<10 { results.append(try await client.append(to: "acct-1", events: events(3))) }
        // Revisions 0...29; snapshots at 5 and 20.
        let early = try await client.saveSnapshot(of: "acct-1", revision: 5, payload: Data(#"{"at":5}"#.utf8))
        _ = try await client.saveSnapshot(of: "acct-1", revision: 20, payload: Data(#"{"at":20}"#.utf8))
        #expect(early.revision == 5 && early.recordedAt == results[1].recordedAt && early.payload.isEmpty)
        #expect(try await client.loadSnapshot(of: "acct-1")?.revision == 20)
        #expect(try await client.loadSnapshot(of: "acct-1", at: .revision(19))?.payload == Data(#"{"at":5}"#.utf8))
        #expect(try await client.loadSnapshot(of: "acct-1", at: .revision(4)) == nil)
        // As of the 5th commit (revisions 12...14): snapshot 5, then events 6...14.
        let asOf = try await client.loadAggregate("acct-1", at: .time(results[4].recordedAt))
        #expect(asOf.snapshot?.revision == 5)
        #expect(asOf.revision == 14)
        #expect(asOf.events.map(\.revision) == Array(6...14))
        let latest = try await client.loadAggregate("acct-1")
        #expect(latest.snapshot?.revision == 20 && latest.events.map(\.revision) == Array(21...29))
        // Refusals carry their status.
        do {
            _ = try await client.saveSnapshot(of: "acct-1", revision: 30, payload: Data())
            Issue.record("a snapshot beyond the stream was saved")
        } catch {
            #expect(error.code == .invalidArgument)
        }
        do {
            _ = try await client.loadAggregate("missing")
            Issue.record("a missing stream loaded")
        } catch {
            #expect(error.code == .notFound)
        }
    }

    @Test("the aggregate repository under concurrent writers: every update counts once, snapshots are taken and used")
    func repositoryUnderConcurrentWriters() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        let repository = AggregateRepository(client: client, initial: Account(), snapshotEvery: 5) { try $0.applying($1) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    for _ in 0..<8 {
                        try await repository.update("account-7", maxAttempts: 200) { _, _ in
                            [StrataClient.EventData(type: "Deposited", data: Data(#"{"amount":2}"#.utf8))]
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let loaded = try await repository.load("account-7")
        #expect(loaded.state == Account(balance: 96, events: 48))
        #expect(loaded.revision == 47)
        #expect(loaded.snapshotRevision != nil)
        // The snapshot-based load equals a replay from the first event.
        var replayed = Account()
        for try await event in client.read("account-7") { replayed = try replayed.applying(event) }
        #expect(replayed == loaded.state)
        // Loading as of a past revision folds only that far.
        let past = try await repository.load("account-7", at: .revision(9))
        #expect(past.state == Account(balance: 20, events: 10))
        // A decision that refuses does not append.
        let (state, result) = try await repository.update("account-7") { account, _ in
            account.balance > 1_000 ? [StrataClient.EventData(type: "Withdrawn", data: Data(#"{"amount":1000}"#.utf8))] : []
        }
        #expect(result == nil && state.balance == 96)
        // A stream that does not exist loads as the initial state.
        #expect(try await repository.load("account-none").revision == nil)
    }
}
