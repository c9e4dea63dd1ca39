import ArgumentParser
import Foundation
import Histogram
import StrataStorage
import StrataSupport

/// `strata bench storage`: the in-process event store under load. Three
/// phases on one fresh tenant: single-event appends from many threads (each
/// thread owns its streams and appends with exact expected revisions),
/// batched appends, and a full `$all` read of everything written.
struct StorageBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Benchmark the in-process event store (appends, batches, $all read)."
    )

    @Option(help: "Threads for single-event appends.") var threads = 64
    @Option(help: "Single-event appends in total.") var singleEvents = 320_000
    @Option(help: "Threads for batched appends.") var batchThreads = 16
    @Option(help: "Events per batched append.") var batchSize = 100
    @Option(help: "Batched events in total.") var batchEvents = 2_000_000
    @Option(help: "Bytes of data per event.") var eventSize = 128
    @Option(help: "Streams per thread.") var streamsPerThread = 16
    @Option(help: "Durability: sync or relaxed.") var durability = "sync"
    @Option(help: "Stream-index entries kept in memory before a bulk write.") var indexFlushEvents = EventStoreOptions().indexFlushEvents
    @Flag(help: "Random (v4) event ids instead of time-ordered (v7) ones.") var randomIds = false
    @Option(help: "Directory for the benchmark's data (default: a new temporary directory, removed after).")
    var data: String?

    func run() throws {
        guard let durability = Durability(rawValue: durability) else {
            throw ValidationError("--durability must be 'sync' or 'relaxed'")
        }
        guard threads > 0, batchThreads > 0, batchSize > 0, streamsPerThread > 0 else {
            throw ValidationError("thread, batch and stream counts must be positive")
        }
        let directory = data ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-bench-\(UUID().uuidString)")
        defer { if data == nil { try? FileManager.default.removeItem(atPath: directory) } }
        var options = EventStoreOptions()
        options.durability = durability
        options.mapSize = 64 << 30
        guard indexFlushEvents > 0 else { throw ValidationError("--index-flush-events must be positive") }
        options.indexFlushEvents = indexFlushEvents
        let store = try EventStore(path: directory, tenant: "bench", options: options)
        defer { store.close() }

        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory >> 30
        print("strata bench storage: \(cores) cores, \(memory) GiB, durability \(durability.rawValue), \(eventSize)-byte events, \(randomIds ? "random v4" : "time-ordered v7") ids, data in \(directory)")

        let payload = Data(repeating: UInt8(ascii: "x"), count: eventSize)
        let random = randomIds
        let makeID: @Sendable () -> UUID = { random ? UUID() : UUID.timeOrdered() }

        try phase(name: "single-event appends", store: store, threads: threads,
                  appendsPerThread: max(1, singleEvents / threads), eventsPerAppend: 1,
                  payload: payload, makeID: makeID, streamPrefix: "single")
        try phase(name: "\(batchSize)-event batches", store: store, threads: batchThreads,
                  appendsPerThread: max(1, batchEvents / batchThreads / batchSize), eventsPerAppend: batchSize,
                  payload: payload, makeID: makeID, streamPrefix: "batch")
        // The first pass maps the file's pages into this process (the writer
        // wrote them with pwrite), the second reads an already mapped file,
        // as a long-running server mostly does.
        try readAll(store: store, pass: "first")
        try readAll(store: store, pass: "second")
        let usage = try store.usage()
        print(String(format: "data file: %.1f MiB used of a %.0f GiB map", Double(usage.usedBytes) / 1048576, Double(usage.mapSize) / 1073741824))
    }

    private func phase(name: String, store: EventStore, threads: Int, appendsPerThread: Int, eventsPerAppend: Int,
                       payload: Data, makeID: @escaping @Sendable () -> UUID, streamPrefix: String) throws {
        let streams = streamsPerThread
        let before = store.commitStatistics
        let results = ThreadResults(count: threads)
        let start = ContinuousClock.now
        runThreads(threads) { thread in
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
            var revisions = [UInt64?](repeating: nil, count: streams)
            var failure: String?
            for i in 0..<appendsPerThread {
                let slot = i % streams
                let events = (0..<eventsPerAppend).map { _ in
                    ProposedEvent(id: makeID(), type: "BenchEvent", data: payload)
                }
                let expected: ExpectedRevision = revisions[slot].map { .exact($0) } ?? .noStream
                let t0 = ContinuousClock.now
                do {
                    let result = try store.append(to: "\(streamPrefix)-\(thread)-\(slot)", expected: expected, events: events)
                    revisions[slot] = result.lastRevision
                } catch {
                    failure = "\(error)"
                    break
                }
                histogram.record(UInt64((ContinuousClock.now - t0).nanoseconds))
            }
            results.set(thread, histogram: histogram, failure: failure)
        }
        let elapsed = (ContinuousClock.now - start).seconds
        if let failure = results.failure { throw ValidationError("\(name) failed: \(failure)") }
        let histogram = results.merged()
        let after = store.commitStatistics
        let events = Double(threads * appendsPerThread * eventsPerAppend)
        let commits = after.batches - before.batches
        print(String(format: "%@: %d threads × %d appends × %d events = %.0f events in %.2f s: %.0f events/s; append latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms",
                     name, threads, appendsPerThread, eventsPerAppend, events, elapsed, events / elapsed,
                     Double(histogram.valueAtPercentile(50)) / 1e6, Double(histogram.valueAtPercentile(99)) / 1e6,
                     Double(histogram.valueAtPercentile(99.9)) / 1e6))
        let build = (after.buildTime - before.buildTime).seconds
        let commit = (after.commitTime - before.commitTime).seconds
        print(String(format: "    %d commits (%.0f/s), %.1f appends per commit; writer busy %.0f%%: building %.3f ms, committing (pages + fsync) %.3f ms per commit",
                     commits, Double(commits) / elapsed, Double(after.operations - before.operations) / Double(max(1, commits)),
                     100 * (build + commit) / elapsed, 1000 * build / Double(max(1, commits)), 1000 * commit / Double(max(1, commits))))
        let flushes = after.indexFlushes - before.indexFlushes
        if flushes > 0 {
            print(String(format: "    %d stream-index flushes, %.1f ms and %.0f entries each (%.0f%% of the time)",
                         flushes, 1000 * (after.indexFlushTime - before.indexFlushTime).seconds / Double(flushes),
                         Double(after.indexEntriesFlushed - before.indexEntriesFlushed) / Double(flushes),
                         100 * (after.indexFlushTime - before.indexFlushTime).seconds / elapsed))
        }
    }

    private func readAll(store: EventStore, pass: String) throws {
        let start = ContinuousClock.now
        var next: UInt64? = 1
        var count = 0
        var bytes = 0
        while let position = next {
            let slice = try store.readAll(from: .position(position), maxCount: 10_000)
            count += slice.events.count
            for event in slice.events { bytes &+= Int(event.revision & 1) }
            next = slice.nextPosition
        }
        let elapsed = (ContinuousClock.now - start).seconds
        print(String(format: "$all read (%@ pass): %d events in %.2f s: %.0f events/s (pages of 10,000, one read transaction each)",
                     pass, count, elapsed, Double(count) / elapsed) + (bytes < 0 ? "" : ""))
    }
}

/// Per-thread results, each slot written by its own thread once; read after
/// every thread has finished (`runThreads` joins them). Owned by `state`'s lock.
final class ThreadResults: Sendable {
    private struct State {
        var histograms: [Histogram<UInt64>?]
        var failures: [String] = []
    }
    private let state: Locked<State>

    init(count: Int) { state = Locked(State(histograms: Array(repeating: nil, count: count))) }

    func set(_ index: Int, histogram: Histogram<UInt64>, failure: String?) {
        state.withLock { state in
            state.histograms[index] = histogram
            if let failure { state.failures.append(failure) }
        }
    }

    var failure: String? { state.withLock { $0.failures.first } }

    func merged() -> Histogram<UInt64> {
        state.withLock { state in
            var total = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
            for histogram in state.histograms.compactMap({ $0 }) { total.add(histogram) }
            return total
        }
    }
}

/// Runs `body(index)` on `count` OS threads (not a pool: the point is many
/// blocked callers at once) and waits for all of them.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}

