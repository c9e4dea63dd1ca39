import ArgumentParser
import Foundation
import Histogram
import StrataClient
import StrataSupport

/// Appends `count` events in batches of up to `batchSize` from `concurrency`
/// tasks, to `stream` (or to `stream-<n>` spread over 100 streams when `spread`).
func prepareEvents(_ client: StrataClient, count: Int, stream: String, spread: Bool, eventSize: Int,
                   concurrency: Int = 4, batchSize: Int = 1000) async throws {
    let payload = Data(repeating: UInt8(ascii: "x"), count: eventSize)
    let batches = (count + batchSize - 1) / batchSize
    try await withThrowingTaskGroup(of: Void.self) { group in
        for worker in 0 ..< concurrency {
            group.addTask {
                var batch = worker
                while batch < batches {
                    let n = min(batchSize, count - batch * batchSize)
                    let name = spread ? "\(stream)-\(batch % 100)" : stream
                    _ = try await client.append(to: name, events: (0 ..< n).map { _ in .init(type: "BenchEvent", data: payload) })
                    batch += concurrency
                }
            }
        }
        try await group.waitForAll()
    }
}

/// `strata bench subscribe`: live delivery latency and catch-up speed.
struct SubscribeBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Benchmark subscriptions: append-to-delivery latency (live) and catch-up events/s.")

    @OptionGroup var server: BenchServerOptions
    @Option(help: "Live events, appended one at a time.") var events = 2_000
    @Option(help: "Events $all must hold for the catch-up measurement (appended first if fewer).") var catchUpEvents = 1_000_000
    @Option(help: "Bytes of data per event.") var eventSize = 128

    func run() async throws {
        let client = try await StrataClient.connect(host: server.host, port: server.port, tenant: server.tenant,
                                                    apiKey: server.apiKey, defaultTimeout: .seconds(600))
        defer { client.close() }
        let run = String(UUID().uuidString.prefix(8))
        print("strata bench subscribe: \(ProcessInfo.processInfo.activeProcessorCount) cores")

        // Catch-up: $all from the start until the caught-up marker.
        let (head, _) = try await client.position(at: Int64.max)
        if head < UInt64(catchUpEvents) {
            let missing = catchUpEvents - Int(head)
            print("preparing \(missing) events for the catch-up run…")
            try await prepareEvents(client, count: missing, stream: "sub-bench-\(run)", spread: true, eventSize: eventSize)
        }
        var caughtUpAt: UInt64 = 0
        var delivered = 0
        let catchUpStart = ContinuousClock.now
        for try await message in client.subscribe(to: .all) {
            if case .event = message { delivered += 1 }
            if case .caughtUp(let position) = message {
                caughtUpAt = position
                break
            }
        }
        let catchUp = (ContinuousClock.now - catchUpStart).seconds
        print(String(format: "catch-up: %d events up to position %llu in %.2f s: %.0f events/s", delivered, caughtUpAt, catchUp,
                     Double(delivered) / catchUp))

        // Live: a subscriber on the stream; each append's acknowledgement and
        // delivery times are compared (same process, same clock).
        let stream = "sub-live-\(run)"
        let acknowledged = Locked<[UInt64: ContinuousClock.Instant]>([:])
        let sent = Locked<[UInt64: ContinuousClock.Instant]>([:])
        let live = Locked((afterAck: Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three),
                          afterSend: Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three),
                          beforeAck: 0))
        let (ready, readyContinuation) = AsyncStream<Void>.makeStream()
        let total = events
        let subscriber = Task {
            var count = 0
            for try await message in client.subscribe(to: .stream(stream)) {
                switch message {
                case .caughtUp: readyContinuation.yield()
                case .event(let event):
                    let now = ContinuousClock.now
                    let ack = acknowledged.withLock { $0[event.revision] }
                    let send = sent.withLock { $0[event.revision] }
                    live.withLock { h in
                        if let send { h.afterSend.record(UInt64((now - send).nanoseconds)) }
                        if let ack {
                            h.afterAck.record(UInt64(max(0, (now - ack).nanoseconds)))
                        } else {
                            h.beforeAck += 1  // delivered before the appender heard of its commit
                            h.afterAck.record(0)
                        }
                    }
                    count += 1
                    if count == total { return }
                case .checkpoint: break
                }
            }
        }
        for await _ in ready { break }
        let payload = Data(repeating: UInt8(ascii: "y"), count: eventSize)
        for revision in 0 ..< UInt64(events) {
            sent.withLock { $0[revision] = .now }
            _ = try await client.append(to: stream, expected: revision == 0 ? .noStream : .exact(revision - 1),
                                        events: [.init(type: "Live", data: payload)])
            acknowledged.withLock { $0[revision] = .now }
        }
        try await subscriber.value
        live.withLock { h in
            func ms(_ histogram: Histogram<UInt64>, _ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1e6 }
            print(String(format: "live: %d events; delivery after the append was acknowledged: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms (%d delivered before the acknowledgement)",
                         events, ms(h.afterAck, 50), ms(h.afterAck, 99), ms(h.afterAck, 99.9), h.beforeAck))
            print(String(format: "live: delivery after the append was sent (includes the commit and its fsync): p50 %.3f ms, p99 %.3f ms",
                         ms(h.afterSend, 50), ms(h.afterSend, 99)))
        }
    }
}

/// `strata bench temporal`: aggregate as of a random time on a long stream
/// with periodic snapshots.
struct TemporalBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "temporal",
        abstract: "Benchmark loading an aggregate as of a time (snapshot + later events) on a long stream.",
        discussion: "The server must keep every snapshot the bench saves: run it with STRATA_STORAGE_SNAPSHOTS_PER_STREAM at least events/snapshot-every.")

    @OptionGroup var server: BenchServerOptions
    @Option(help: "Events in the stream.") var events = 1_000_000
    @Option(help: "A snapshot every this many events.") var snapshotEvery = 100
    @Option(help: "Aggregate loads to time.") var loads = 2_000
    @Option(help: "Events per append while preparing. Events of one append share a time, so a size that is not a multiple of --snapshot-every makes times land anywhere between snapshots.")
    var batch = 937
    @Option(help: "Bytes of data per event.") var eventSize = 64

    func run() async throws {
        guard events > 0, snapshotEvery > 0, loads > 0 else { throw ValidationError("counts must be positive") }
        let client = try await StrataClient.connect(host: server.host, port: server.port, tenant: server.tenant,
                                                    apiKey: server.apiKey, defaultTimeout: .seconds(600))
        defer { client.close() }
        let stream = "temporal-bench-\(UUID().uuidString.prefix(8))"
        print("strata bench temporal: \(ProcessInfo.processInfo.activeProcessorCount) cores; \(events) events in \(stream), a snapshot every \(snapshotEvery)")
        let prepareStart = ContinuousClock.now
        // One writer, so each append is its own commit with its own time.
        try await prepareEvents(client, count: events, stream: stream, spread: false, eventSize: eventSize, concurrency: 1,
                                batchSize: batch)
        let appended = (ContinuousClock.now - prepareStart).seconds
        let snapshotStart = ContinuousClock.now
        let revisions = Array(stride(from: UInt64(snapshotEvery - 1), to: UInt64(events), by: snapshotEvery))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0 ..< 16 {
                group.addTask {
                    for index in stride(from: worker, to: revisions.count, by: 16) {
                        _ = try await client.saveSnapshot(of: stream, revision: revisions[index],
                                                          payload: Data("{\"count\":\(revisions[index] + 1)}".utf8))
                    }
                }
            }
            try await group.waitForAll()
        }
        print(String(format: "prepared: %d events in %.1f s, %d snapshots in %.1f s", events, appended, revisions.count,
                     (ContinuousClock.now - snapshotStart).seconds))
        if let first = revisions.first, try await client.loadSnapshot(of: stream, at: .revision(first)) == nil {
            print("warning: the server did not keep the early snapshots (STRATA_STORAGE_SNAPSHOTS_PER_STREAM is below \(revisions.count)); loads will replay long runs of events")
        }
        let info = try await client.streamInfo(stream)
        var firstEvent: Int64 = 0
        for try await event in client.read(stream, maxCount: 1) { firstEvent = event.recordedAt }
        let lastTime = info.lastRecordedAt
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var eventsLoaded = 0
        var rng = SystemRandomNumberGenerator()
        let start = ContinuousClock.now
        for _ in 0 ..< loads {
            let t = Int64.random(in: firstEvent ... max(firstEvent, lastTime), using: &rng)
            let t0 = ContinuousClock.now
            let aggregate = try await client.loadAggregate(stream, at: .time(t))
            histogram.record(UInt64((ContinuousClock.now - t0).nanoseconds))
            eventsLoaded += aggregate.events.count
        }
        let elapsed = (ContinuousClock.now - start).seconds
        print(String(format: "aggregate as of a random time: %d loads in %.2f s (%.0f/s), %.1f events after the snapshot on average; latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms",
                     loads, elapsed, Double(loads) / elapsed, Double(eventsLoaded) / Double(loads),
                     Double(histogram.valueAtPercentile(50)) / 1e6, Double(histogram.valueAtPercentile(99)) / 1e6,
                     Double(histogram.valueAtPercentile(99.9)) / 1e6))
    }
}
