import Foundation
import Testing
@testable import StrataStorage
import StrataTestSupport

/// Time queries against a brute-force model: random histories (several
/// streams, random batch sizes, some concurrent commits), then every query
/// answered by the indexes is compared with a linear scan of `$all`.
@Suite("Time queries")
struct TimeQueryTests {
    @Test("position at T and events between T1 and T2 match a replay", arguments: Array(UInt64(1)...12))
    func againstModel(seed: UInt64) async throws {
        var rng = SplitMix64(seed: seed)
        let fixture = try TestStore()
        let store = fixture.store
        let streams = ["a", "b", "c", "d"]
        for _ in 0..<Int.random(in: 5...25, using: &rng) {
            // Sometimes several appends at once, so some commits hold many.
            let parallel = Int.random(in: 1...4, using: &rng)
            let sizes = (0..<parallel).map { _ in Int.random(in: 1...4, using: &rng) }
            let names = (0..<parallel).map { _ in streams.randomElement(using: &rng)! }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (size, name) in zip(sizes, names) {
                    group.addTask { _ = try await store.append(to: name, expected: .any, events: events(size)) }
                }
                try await group.waitForAll()
            }
        }
        let model = try allEvents(store)
        let times = model.map(\.recordedAt)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 <= $1 })
        // Probe the exact commit times, their neighbours, and the outside.
        var probes = Set([times[0] - 1_000, times[times.count - 1] + 1_000, 0])
        for t in times { probes.formUnion([t - 1, t, t + 1]) }
        let sorted = probes.sorted()
        for t in sorted {
            let expected = model.last { $0.recordedAt <= t }?.position ?? 0
            #expect(try store.position(at: t) == expected, "position at \(t), seed \(seed)")
        }
        for _ in 0..<40 {
            var t1 = sorted.randomElement(using: &rng)!
            var t2 = sorted.randomElement(using: &rng)!
            if t1 > t2 { swap(&t1, &t2) }
            let expectedAll = model.filter { $0.recordedAt >= t1 && $0.recordedAt <= t2 }
            let all = try store.readAll(recordedFrom: t1, to: t2, maxCount: .max)
            #expect(all.events.map(\.position) == expectedAll.map(\.position), "seed \(seed) [\(t1), \(t2)]")
            let stream = streams.randomElement(using: &rng)!
            guard (try? store.streamInfo(stream)) != nil else { continue }
            let expectedStream = expectedAll.filter { $0.stream == stream }
            let slice = try store.readStream(stream, recordedFrom: t1, to: t2, maxCount: .max)
            #expect(slice.events.map(\.position) == expectedStream.map(\.position), "seed \(seed) stream \(stream)")
            // Paging through the same range gives the same events.
            var paged: [RecordedEvent] = []
            var page = try store.readAll(recordedFrom: t1, to: t2, maxCount: 3)
            paged += page.events
            while let next = page.nextPosition {
                page = try store.readAll(positions: next ... (try store.position(at: t2)), maxCount: 3)
                paged += page.events
            }
            #expect(paged.map(\.position) == expectedAll.map(\.position))
        }
    }

    @Test("commit times strictly increase from commit to commit and are shared within one")
    func commitTimes() throws {
        let fixture = try TestStore()
        let store = fixture.store
        var last: Int64 = 0
        for _ in 0..<50 {
            let result = try store.append(to: "s", expected: .any, events: events(2))
            #expect(result.recordedAt > last)
            last = result.recordedAt
        }
        let all = try allEvents(store)
        for pair in stride(from: 0, to: all.count, by: 2) {
            #expect(all[pair].recordedAt == all[pair + 1].recordedAt)
        }
    }
}

@Suite("Quota")
struct QuotaTests {
    @Test("a full map is a quota error; nothing partial is written and reads keep working")
    func tinyMap() throws {
        var options = EventStoreOptions()
        options.mapSize = 512 << 10
        let fixture = try TestStore(options: options)
        let store = fixture.store
        var written = 0
        var quotaError: StorageError?
        for i in 0..<500 {
            var batch = events(4)
            for j in batch.indices { batch[j].data = Data(repeating: UInt8(i % 256), count: 8_000) }
            do {
                _ = try store.append(to: "big-\(i % 3)", expected: .any, events: batch)
                written += 4
            } catch {
                quotaError = error
                break
            }
        }
        #expect(quotaError == .quotaExceeded(tenant: "test", mapSize: 512 << 10))
        #expect(written > 0)
        let all = try allEvents(store)
        #expect(all.count == written)
        #expect(all.map(\.position) == Array(1...UInt64(written)))
        // Still full for big appends, and the store keeps answering reads.
        #expect(throws: StorageError.quotaExceeded(tenant: "test", mapSize: 512 << 10)) {
            var batch = events(4)
            for j in batch.indices { batch[j].data = Data(count: 8_000) }
            _ = try store.append(to: "big-0", expected: .any, events: batch)
        }
        #expect(try store.readStream("big-0").events.count > 0)
    }

    @Test("in a shared commit only the append that does not fit fails")
    func sharedCommit() async throws {
        var options = EventStoreOptions()
        options.mapSize = 512 << 10
        let fixture = try TestStore(options: options)
        let store = fixture.store
        let results = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                group.addTask {
                    var batch = events(1)
                    batch[0].data = Data(count: i == 0 ? 900_000 : 100)
                    return (try? await store.append(to: "s-\(i)", expected: .any, events: batch)) != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.filter { $0 }.count == 7)
        #expect(try store.headPosition() == 7)
        #expect(throws: StorageError.streamNotFound(stream: "s-0")) { try store.readStream("s-0") }
    }

    @Test("the extreme bounds Int64.min and Int64.max select everything (no wrap-around)")
    func extremeBounds() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try await store.append(to: "x", expected: .any, events: events(3))
        _ = try await store.append(to: "y", expected: .any, events: events(2))
        #expect(try store.readStream("x", recordedFrom: .min, to: .max).events.map(\.revision) == [0, 1, 2])
        #expect(try store.readAll(recordedFrom: .min, to: .max).events.count == 5)
        let range = try store.positions(recordedFrom: .min, to: .max)
        #expect(range.lower == 1 && range.upper == 5)
        #expect(try store.readAll(recordedFrom: .max, to: .max).events.isEmpty)
    }
}
