import Foundation
import Testing
@testable import StrataStorage
import StrataTestSupport

/// Snapshots and aggregates as of a revision or a time, against a brute-force
/// model built by replaying `$all`.
@Suite("Snapshots and aggregates as of T")
struct SnapshotTests {
    @Test("snapshot selection, aggregate loading and stream info at T match a replay", arguments: Array(UInt64(1)...10))
    func againstModel(seed: UInt64) async throws {
        var rng = SplitMix64(seed: seed)
        var options = TestStore.defaultOptions
        options.snapshotsPerStream = 3
        let fixture = try TestStore(options: options)
        let store = fixture.store
        let streams = ["acct-a", "acct-b", "acct-c"]
        // Snapshots saved per stream: revision → payload (the model keeps the 3 highest).
        var saved: [String: [UInt64: Data]] = [:]
        for step in 0..<Int.random(in: 20...50, using: &rng) {
            let name = streams.randomElement(using: &rng)!
            let result = try await store.append(to: name, expected: .any, events: events(Int.random(in: 1...5, using: &rng)))
            if Int.random(in: 0..<3, using: &rng) == 0 {
                let revision = UInt64.random(in: 0...result.lastRevision, using: &rng)
                let payload = Data("{\"step\":\(step),\"revision\":\(revision)}".utf8)
                let kept = saved[name, default: [:]]
                if kept[revision] == nil && kept.count >= 3 && revision < kept.keys.sorted().dropLast(2).last! {
                    // Older than every kept snapshot: refused, nothing changes.
                    await #expect(throws: StorageError.self) {
                        _ = try await store.saveSnapshot(of: name, revision: revision, payload: payload)
                    }
                    continue
                }
                _ = try await store.saveSnapshot(of: name, revision: revision, payload: payload)
                saved[name, default: [:]][revision] = payload
                // The store keeps the three highest revisions.
                if let kept = saved[name], kept.count > 3 {
                    for revision in kept.keys.sorted().dropLast(3) { saved[name]?[revision] = nil }
                }
            }
        }
        let all = try store.readAll(maxCount: 100_000).events
        let times = all.map(\.recordedAt)
        var probes = Set([times[0] - 1_000, times[times.count - 1] + 1_000])
        for t in times { probes.formUnion([t - 1, t, t + 1]) }
        for name in streams {
            let history = all.filter { $0.stream == name }
            guard !history.isEmpty else { continue }
            let kept = saved[name] ?? [:]
            for t in probes.sorted() {
                let revisionAtT = history.last { $0.recordedAt <= t }?.revision
                // Snapshot by time: the kept snapshot with the highest revision whose event is at or before T.
                let expectedSnapshot = revisionAtT.flatMap { r in kept.keys.filter { $0 <= r }.max() }
                let snapshot = try store.snapshot(of: name, atOrBefore: .time(t))
                #expect(snapshot?.revision == expectedSnapshot, "\(name) at \(t), seed \(seed)")
                if let snapshot {
                    #expect(snapshot.payload == kept[snapshot.revision])
                    #expect(snapshot.recordedAt == history[Int(snapshot.revision)].recordedAt)
                }
                // Aggregate as of T: that snapshot, then the events after it up to T.
                let aggregate = try store.loadAggregate(name, at: .time(t), maxEvents: 10_000)
                #expect(aggregate.revision == revisionAtT)
                #expect(aggregate.snapshot?.revision == expectedSnapshot)
                let from = expectedSnapshot.map { $0 + 1 } ?? 0
                let expectedEvents = revisionAtT.map { r in history.filter { $0.revision >= from && $0.revision <= r } } ?? []
                #expect(aggregate.events.map(\.position) == expectedEvents.map(\.position), "\(name) at \(t), seed \(seed)")
                // Stream info at T.
                if let revisionAtT {
                    let info = try store.streamInfo(name, at: t)
                    #expect(info.lastRevision == revisionAtT)
                    #expect(info.lastRecordedAt == history[Int(revisionAtT)].recordedAt)
                } else {
                    #expect(throws: StorageError.streamNotFound(stream: name)) { try store.streamInfo(name, at: t) }
                }
            }
            // By revision.
            for r in 0...history.last!.revision {
                let expected = kept.keys.filter { $0 <= r }.max()
                #expect(try store.snapshot(of: name, atOrBefore: .revision(r))?.revision == expected)
            }
        }
    }

    @Test("an aggregate without snapshots pages through its events; the latest point sees every event")
    func pagingWithoutSnapshots() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        for _ in 0..<5 { _ = try await store.append(to: "big", expected: .any, events: events(10)) }
        var collected: [UInt64] = []
        var slice = try store.loadAggregate("big", maxEvents: 7)
        #expect(slice.snapshot == nil && slice.revision == 49)
        collected += slice.events.map(\.revision)
        while let next = slice.nextRevision {
            slice = try store.loadAggregate("big", from: next, maxEvents: 7)
            collected += slice.events.map(\.revision)
        }
        #expect(collected == Array(0...49))
    }

    @Test("saving refuses a revision beyond the stream, a missing or deleted stream, and an oversized payload")
    func refusals() async throws {
        var options = TestStore.defaultOptions
        options.limits.maxSnapshotBytes = 64
        let fixture = try TestStore(options: options)
        let store = fixture.store
        _ = try await store.append(to: "s", expected: .any, events: events(2))
        await #expect(throws: StorageError.invalidSnapshot(stream: "s", reason: "revision 2 is beyond the stream's last revision 1")) {
            _ = try await store.saveSnapshot(of: "s", revision: 2, payload: Data("{}".utf8))
        }
        await #expect(throws: StorageError.streamNotFound(stream: "nope")) {
            _ = try await store.saveSnapshot(of: "nope", revision: 0, payload: Data("{}".utf8))
        }
        await #expect(throws: StorageError.self) {
            _ = try await store.saveSnapshot(of: "s", revision: 1, payload: Data(repeating: 1, count: 65))
        }
        let saved = try await store.saveSnapshot(of: "s", revision: 1, contentType: "application/x-state", payload: Data("{}".utf8))
        #expect(saved.revision == 1 && saved.contentType == "application/x-state" && saved.savedAt > 0)
        try await store.deleteStream("s")
        await #expect(throws: StorageError.streamDeleted(stream: "s")) {
            _ = try await store.saveSnapshot(of: "s", revision: 1, payload: Data("{}".utf8))
        }
        // History stays readable as of a time.
        let aggregate = try store.loadAggregate("s", at: .time(saved.recordedAt))
        #expect(aggregate.snapshot?.revision == 1 && aggregate.events.isEmpty)
    }

    @Test("a deleted and re-created stream: its new life ignores old snapshots, its old life still loads as it was")
    func recreatedStream() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        let before = try await store.append(to: "r", expected: .any, events: events(3))  // revisions 0...2
        _ = try await store.saveSnapshot(of: "r", revision: 2, payload: Data("{\"life\":1}".utf8))
        try await store.deleteStream("r")
        _ = try await store.append(to: "r", expected: .any, events: events(2))  // revisions 3...4, a new life
        let latest = try store.loadAggregate("r")
        #expect(latest.snapshot == nil)
        #expect(latest.events.map(\.revision) == [3, 4])
        #expect(try store.snapshot(of: "r", atOrBefore: .latest) == nil)
        let old = try store.loadAggregate("r", at: .time(before.recordedAt))
        #expect(old.snapshot?.revision == 2 && old.events.isEmpty && old.revision == 2)
        let older = try store.loadAggregate("r", at: .revision(1))
        #expect(older.snapshot == nil && older.events.map(\.revision) == [0, 1])
        await #expect(throws: StorageError.self) {
            _ = try await store.saveSnapshot(of: "r", revision: 1, payload: Data("{}".utf8))
        }
        _ = try await store.saveSnapshot(of: "r", revision: 4, payload: Data("{\"life\":2}".utf8))
        #expect(try store.loadAggregate("r").snapshot?.revision == 4)
    }

    @Test("snapshots survive a reopen")
    func persistence() async throws {
        let fixture = try TestStore()
        _ = try await fixture.store.append(to: "p", expected: .any, events: events(3))
        _ = try await fixture.store.saveSnapshot(of: "p", revision: 2, payload: Data("{\"n\":3}".utf8))
        let reopened = try fixture.reopen()
        defer { reopened.close() }
        #expect(try reopened.snapshot(of: "p", atOrBefore: .latest)?.payload == Data("{\"n\":3}".utf8))
    }
}
