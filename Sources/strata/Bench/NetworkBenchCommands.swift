import ArgumentParser
import Foundation
import Histogram
import StrataClient
import StrataSupport

/// Options shared by the benchmarks that talk to a running server.
struct BenchServerOptions: ParsableArguments {
    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port: UInt16 = 7070
    @Option(help: "Tenant (env STRATA_TENANT).") var tenant = ProcessInfo.processInfo.environment["STRATA_TENANT"] ?? "default"
    @Option(help: "API key with the write role (env STRATA_API_KEY).") var apiKey = ProcessInfo.processInfo.environment["STRATA_API_KEY"] ?? ""
}

/// Latencies from many tasks, merged under a lock.
final class LatencyRecorder: Sendable {
    private let histogram = Locked(Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three))

    func merge(_ other: Histogram<UInt64>) { histogram.withLock { $0.add(other) } }

    func summary() -> String {
        histogram.withLock { h in
            String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms", Double(h.valueAtPercentile(50)) / 1e6,
                   Double(h.valueAtPercentile(99)) / 1e6, Double(h.valueAtPercentile(99.9)) / 1e6)
        }
    }
}

/// `strata bench append`: appends against a running server from many
/// connections and concurrent calls; prints events/s and latency percentiles.
struct AppendBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "append", abstract: "Benchmark appends against a running server.")

    @OptionGroup var server: BenchServerOptions
    @Option(help: "Client connections.") var connections = 4
    @Option(help: "Concurrent calls per connection.") var concurrency = 16
    @Option(help: "Events per append.") var batch = 1
    @Option(help: "Events to append in total.") var events = 200_000
    @Option(help: "Bytes of data per event.") var eventSize = 128
    @Option(help: "Measured runs, one after another on the same connections and each on new streams; with more than one, their median, lowest and highest rates follow (a noisy machine is judged by the median).")
    var runs = 1

    func validate() throws {
        guard connections > 0, concurrency > 0, batch > 0, events > 0, runs > 0 else {
            throw ValidationError("--connections, --concurrency, --batch, --events and --runs must be positive")
        }
    }

    func run() async throws {
        let clients = try await withThrowingTaskGroup(of: StrataClient.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    try await StrataClient.connect(host: server.host, port: server.port, tenant: server.tenant,
                                                   apiKey: server.apiKey, defaultTimeout: .seconds(60))
                }
            }
            return try await group.reduce(into: [StrataClient]()) { $0.append($1) }
        }
        defer { clients.forEach { $0.close() } }
        let callers = connections * concurrency
        let appendsPerCaller = max(1, events / batch / callers)
        print("strata bench append: \(ProcessInfo.processInfo.activeProcessorCount) cores; \(connections) connections × \(concurrency) concurrent calls, \(batch) events of \(eventSize) bytes per append, \(callers * appendsPerCaller * batch) events\(runs > 1 ? " per run, \(runs) runs" : "")")
        var rates: [Double] = []
        for _ in 0..<runs {
            rates.append(try await measure(clients: clients, callers: callers, appendsPerCaller: appendsPerCaller))
        }
        if runs > 1 {
            let sorted = rates.sorted()
            let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            print(String(format: "%d runs: median %.0f events/s (lowest %.0f, highest %.0f)", runs, median, sorted[0], sorted[sorted.count - 1]))
        }
    }

    /// One measured run on new streams; prints its line and returns its events/s.
    private func measure(clients: [StrataClient], callers: Int, appendsPerCaller: Int) async throws -> Double {
        let payload = Data(repeating: UInt8(ascii: "x"), count: eventSize)
        let recorder = LatencyRecorder()
        let run = UUID().uuidString.prefix(8)
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0..<callers {
                let client = clients[caller % connections]
                let stream = "bench-\(run)-\(caller)"
                group.addTask {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
                    var expected: StrataClient.ExpectedRevision = .noStream
                    for _ in 0..<appendsPerCaller {
                        let batchEvents = (0..<batch).map { _ in StrataClient.EventData(type: "BenchEvent", data: payload) }
                        let t0 = ContinuousClock.now
                        let result = try await client.append(to: stream, expected: expected, events: batchEvents)
                        histogram.record(UInt64((ContinuousClock.now - t0).nanoseconds))
                        expected = .exact(result.lastRevision)
                    }
                    recorder.merge(histogram)
                }
            }
            try await group.waitForAll()
        }
        let elapsed = (ContinuousClock.now - start).seconds
        let total = Double(callers * appendsPerCaller * batch)
        print(String(format: "appended %.0f events in %.2f s: %.0f events/s (%.0f appends/s); latency %@",
                     total, elapsed, total / elapsed, Double(callers * appendsPerCaller) / elapsed, recorder.summary()))
        return total / elapsed
    }
}

/// `strata bench read`: streams `$all` (or a stream) from a running server to
/// one reader; prints events/s. `--prepare N` first appends N events.
struct ReadBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Benchmark streaming reads from a running server.")

    @OptionGroup var server: BenchServerOptions
    @Option(help: "Append this many events first (in batches of 1,000).") var prepare = 0
    @Option(help: "Bytes of data per prepared event.") var eventSize = 128
    @Option(help: "Stream to read, or $all.") var stream = "$all"
    @Option(help: "Read passes.") var passes = 2

    func run() async throws {
        let client = try await StrataClient.connect(host: server.host, port: server.port, tenant: server.tenant,
                                                    apiKey: server.apiKey, defaultTimeout: .seconds(600))
        defer { client.close() }
        if prepare > 0 {
            let payload = Data(repeating: UInt8(ascii: "x"), count: eventSize)
            let run = UUID().uuidString.prefix(8)
            var left = prepare
            var index = 0
            while left > 0 {
                let n = min(1000, left)
                _ = try await client.append(to: "read-bench-\(run)-\(index % 100)", events: (0..<n).map { _ in .init(type: "BenchEvent", data: payload) })
                left -= n
                index += 1
            }
            print("prepared \(prepare) events")
        }
        for pass in 1...max(1, passes) {
            let start = ContinuousClock.now
            var count = 0
            var bytes = 0
            for try await event in client.read(stream, timeout: .seconds(600)) {
                count += 1
                bytes &+= event.data.count
            }
            let elapsed = (ContinuousClock.now - start).seconds
            print(String(format: "read pass %d: %d events (%.1f MiB of data) in %.2f s: %.0f events/s", pass, count,
                         Double(bytes) / 1048576, elapsed, Double(count) / elapsed))
        }
    }
}
