import Foundation
@testable import StrataStorage
import StrataSupport
import Synchronization
import Testing
import StrataTestSupport

/// The stream index's newest entries live in memory (`StreamIndexTail`) and
/// are flushed in bulk; after a crash they are rebuilt from the log. These
/// tests check that reads never tell the difference.
@Suite("Deferred stream index")
struct StreamIndexTests {
    /// What the reads of each stream must return: positions by revision,
    /// the first visible revision, and whether it is deleted.
    struct Model {
        var positions: [String: [UInt64]] = [:]
        var firstVisible: [String: UInt64] = [:]
        var deleted: Set<String> = []

        mutating func record(_ result: AppendResult) {
            if deleted.remove(result.stream) != nil {
                firstVisible[result.stream] = result.firstRevision
            }
            positions[result.stream, default: []].append(contentsOf: result.firstPosition...result.lastPosition)
        }
    }

    static func options(flushEvery events: Int) -> EventStoreOptions {
        var options = TestStore.defaultOptions
        options.indexFlushEvents = events
        options.indexFlushInterval = .seconds(3600)
        return options
    }

    /// Every read of every stream against the model: both directions, from
    /// every revision, info, and a time query over all time.
    static func check(_ store: EventStore, against model: Model) throws {
        for (stream, positions) in model.positions {
            let info = try store.streamInfo(stream)
            #expect(info.lastRevision == UInt64(positions.count - 1), "\(stream)")
            #expect(info.isDeleted == model.deleted.contains(stream))
            let history = try store.readStream(stream, recordedFrom: 0, to: .max, maxCount: 10_000)
            #expect(history.events.map(\.position) == positions, "\(stream) by time")
            if model.deleted.contains(stream) { continue }
            let first = Int(model.firstVisible[stream] ?? 0)
            let visible = Array(positions[first...])
            let forwards = try store.readStream(stream, maxCount: 10_000)
            #expect(forwards.events.map(\.position) == visible, "\(stream) forwards")
            #expect(forwards.events.map(\.revision) == (first..<positions.count).map(UInt64.init))
            let backwards = try store.readStream(stream, from: .end, direction: .backwards, maxCount: 10_000)
            #expect(backwards.events.map(\.position) == visible.reversed(), "\(stream) backwards")
            for revision in stride(from: first, to: positions.count, by: 3) {
                let page = try store.readStream(stream, from: .revision(UInt64(revision)), maxCount: 2)
                #expect(page.events.map(\.position) == Array(positions[revision..<min(revision + 2, positions.count)]))
            }
        }
    }

    /// A random history of appends (single and multi-stream), deletions and
    /// re-creations, checked against the model after every step.
    static func run(seed: UInt64, steps: Int, on store: EventStore, model: inout Model) throws {
        var random = SplitMix64(seed: seed)
        let streams = (0..<6).map { "s\(seed)-\($0)" }
        for _ in 0..<steps {
            let stream = streams.randomElement(using: &random)!
            switch random.next() % 10 {
            case 0 where model.positions[stream] != nil && !model.deleted.contains(stream):
                try store.deleteStream(stream)
                model.deleted.insert(stream)
            case 1:
                let other = streams.filter { $0 != stream }.randomElement(using: &random)!
                let results = try store.appendMulti([
                    StreamWrite(stream: stream, expected: .any, events: events(Int(random.next() % 3) + 1)),
                    StreamWrite(stream: other, expected: .any, events: events(1)),
                ])
                results.forEach { model.record($0) }
            default:
                let expected: ExpectedRevision = model.positions[stream].map { model.deleted.contains(stream) ? .any : .exact(UInt64($0.count - 1)) } ?? .noStream
                model.record(try store.append(to: stream, expected: expected, events: events(Int(random.next() % 4) + 1)))
            }
            try check(store, against: model)
        }
    }

    @Test("reads match the model whether entries are on disk, in memory or both", arguments: [1, 2, 5, 64, 1 << 20])
    func readsAcrossFlushes(flushEvery: Int) throws {
        let fixture = try TestStore(options: Self.options(flushEvery: flushEvery))
        var model = Model()
        try Self.run(seed: UInt64(flushEvery), steps: 60, on: fixture.store, model: &model)
    }

    @Test("after a crash the index is rebuilt from the log", arguments: [3, 1 << 20])
    func recoveryAfterCrash(flushEvery: Int) throws {
        let fixture = try TestStore(options: Self.options(flushEvery: flushEvery))
        var model = Model()
        try Self.run(seed: 7, steps: 40, on: fixture.store, model: &model)
        let head = try fixture.store.headPosition()
        fixture.store.close(flushingIndex: false)
        // One caller, one commit per append: where the flushes fell is deterministic.
        #expect(fixture.store.indexTail.watermark < head, "entries were left in memory")

        let reopened = try EventStore(path: fixture.directory.sub("tenant"), tenant: "test", options: Self.options(flushEvery: flushEvery))
        defer { reopened.close() }
        #expect(reopened.indexTail.watermark == head)
        try Self.check(reopened, against: model)
        // Revisions continue where the log left them, not where the old index did.
        try Self.run(seed: 8, steps: 20, on: reopened, model: &model)
        for (stream, positions) in model.positions where !model.deleted.contains(stream) {
            let next = try reopened.append(to: stream, expected: .exact(UInt64(positions.count - 1)), events: events(1))
            #expect(next.firstRevision == UInt64(positions.count))
        }
    }

    @Test("long streams cross 64-revision chunks at any flush point, before and after a crash", arguments: [7, 64, 100])
    func chunkBoundaries(flushEvery: Int) throws {
        let fixture = try TestStore(options: Self.options(flushEvery: flushEvery))
        var model = Model()
        var random = SplitMix64(seed: UInt64(flushEvery))
        for _ in 0..<40 {
            let stream = random.next() % 3 == 0 ? "short" : "long"
            model.record(try fixture.store.append(to: stream, expected: .any, events: events(Int(random.next() % 23) + 1)))
        }
        try Self.check(fixture.store, against: model)
        #expect(model.positions["long"]!.count > 3 * Int(StreamIndexChunk.revisions))
        fixture.store.close(flushingIndex: false)
        let reopened = try EventStore(path: fixture.directory.sub("tenant"), tenant: "test", options: Self.options(flushEvery: flushEvery))
        defer { reopened.close() }
        try Self.check(reopened, against: model)
    }

    @Test("the writer flushes on its own once the oldest entry is older than the interval")
    func flushByTime() async throws {
        var options = TestStore.defaultOptions
        options.indexFlushInterval = .milliseconds(20)
        let fixture = try TestStore(options: options)
        _ = try await fixture.store.append(to: "a", expected: .noStream, events: events(3))
        let deadline = ContinuousClock.now + .seconds(10)
        while fixture.store.indexTail.unflushedCount > 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(fixture.store.indexTail.unflushedCount == 0)
        #expect(fixture.store.indexTail.watermark == 3)
        #expect(try fixture.store.readStream("a").events.map(\.revision) == [0, 1, 2])
    }

    @Test("readers racing with appends and a flush every two events always see whole streams")
    func concurrentReaders() throws {
        let fixture = try TestStore(options: Self.options(flushEvery: 2))
        let store = fixture.store
        let writersDone = Atomic<Int>(0)
        let reads = Atomic<Int>(0)
        let problems = Locked<[String]>([])
        // Threads of their own (concurrentPerform on two cores may run both
        // writers to the end before a reader starts); the writers begin once a
        // reader is reading, and the readers read until both writers are done.
        let readerStarted = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        @Sendable func write() {
            readerStarted.wait()
            readerStarted.signal()  // for the other writer
            for i in 0..<150 {
                do {
                    _ = try store.append(to: "c\(i % 4)", expected: .any, events: events(1 + i % 2))
                } catch {
                    problems.withLock { $0.append("append: \(error)") }
                }
            }
            writersDone.add(1, ordering: .sequentiallyConsistent)
        }
        @Sendable func read(signalling: Bool) {
            var lastSeen = [UInt64](repeating: 0, count: 4)
            if signalling { readerStarted.signal() }
            repeat {
                for k in 0..<4 {
                    guard let slice = try? store.readStream("c\(k)", maxCount: 10_000) else { continue }
                    reads.add(1, ordering: .relaxed)
                    let revisions = slice.events.map(\.revision)
                    let positions = slice.events.map(\.position)
                    if revisions != Array(0..<UInt64(revisions.count)) || positions != positions.sorted()
                        || UInt64(revisions.count) < lastSeen[k] || slice.lastRevision + 1 != UInt64(revisions.count) {
                        problems.withLock { $0.append("c\(k): revisions \(revisions.count), last \(slice.lastRevision), seen before \(lastSeen[k])") }
                    }
                    lastSeen[k] = UInt64(revisions.count)
                }
            } while writersDone.load(ordering: .sequentiallyConsistent) < 2
        }
        let workers: [@Sendable () -> Void] = [write, write, { read(signalling: true) }, { read(signalling: false) }]
        for work in workers {
            group.enter()
            Thread {
                work()
                group.leave()
            }.start()
        }
        group.wait()
        #expect(problems.withLock { $0 } == [])
        #expect(reads.load(ordering: .relaxed) > 0)
        #expect(try store.headPosition() == 2 * (75 * 1 + 75 * 2))
    }

    @Test("a failed batch leaves no index entries behind")
    func rollback() {
        let tail = StreamIndexTail(watermark: 0)
        tail.add(stream: 1, revision: 0, position: 1)
        tail.commitBatch()
        tail.add(stream: 1, revision: 1, position: 2)
        tail.add(stream: 2, revision: 0, position: 3)
        tail.rollbackBatch(from: 2)
        #expect(tail.unflushedCount == 1)
        #expect(tail.writerNextRevision(stream: 1) == 1)
        #expect(tail.writerNextRevision(stream: 2) == nil)
    }

    @Test("a snapshot older than the kept entries is told to retry; entries above its head are invisible")
    func staleSnapshot() throws {
        let tail = StreamIndexTail(watermark: 0)
        for position in 1...4 as ClosedRange<UInt64> {
            tail.add(stream: 1, revision: position - 1, position: position)
        }
        tail.commitBatch()
        // A snapshot at head 3 sees revisions 0...2, not revision 3.
        #expect(try tail.nextRevision(stream: 1, head: 3, watermark: 0) == 3)
        #expect(try tail.position(stream: 1, revision: 3, head: 3, watermark: 0) == nil)
        tail.flushed(through: 2, entries: 2)
        // The first flush keeps everything: a snapshot from before it still works.
        #expect(try tail.position(stream: 1, revision: 0, head: 4, watermark: 0) == 1)
        tail.flushed(through: 4, entries: 2)
        // The second drops what the first wrote; a snapshot from before both must retry.
        #expect(throws: StreamIndexTail.Stale.self) { try tail.position(stream: 1, revision: 0, head: 4, watermark: 0) }
        #expect(try tail.position(stream: 1, revision: 2, head: 4, watermark: 2) == 3)
        #expect(try tail.nextRevision(stream: 1, head: 4, watermark: 4) == 4)
        #expect(tail.writerNextRevision(stream: 1) == nil, "its newest entry is on disk")
    }
}
