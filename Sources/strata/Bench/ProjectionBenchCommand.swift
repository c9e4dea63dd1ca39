import ArgumentParser
import Foundation
import StrataProjections
import StrataStorage
import StrataSupport

/// `strata bench projection`: a count-by-type Lua projection over a fresh
/// tenant of N events, in process, once per checkpoint interval, to show the
/// engine's throughput and what checkpointing costs.
struct ProjectionBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projection",
        abstract: "Benchmark a count-by-type Lua projection catching up over N events, at several checkpoint intervals."
    )

    @Option(help: "Events in the tenant.") var events = 1_000_000
    @Option(help: "Distinct event types.") var types = 10
    @Option(help: "Bytes of JSON data per event.") var eventSize = 64
    @Option(help: "Checkpoint intervals to compare (handled events per commit), comma-separated.")
    var checkpointEvents = "1000,10000,100000"
    @Option(help: "Events read per batch.") var batchSize = ProjectionOptions().batchSize
    @Option(help: "Durability: sync or relaxed.") var durability = "sync"

    static let script = """
    return {
      source = { all = true },
      init = function() return { total = 0, types = {} } end,
      when = {
        ["$any"] = function(s, e)
          s.total = s.total + 1
          s.types[e.type] = (s.types[e.type] or 0) + 1
        end,
      },
    }
    """

    func run() throws {
        guard let durability = Durability(rawValue: durability) else { throw ValidationError("--durability must be 'sync' or 'relaxed'") }
        let intervals = checkpointEvents.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard events > 0, types > 0, !intervals.isEmpty, intervals.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("events, types and checkpoint intervals must be positive")
        }
        let directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-bench-projection-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = EventStoreOptions()
        options.durability = durability
        options.mapSize = 16 << 30
        let store = try EventStore(path: directory, tenant: "bench", options: options)
        defer { store.close() }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory >> 30
        print("strata bench projection: \(cores) cores, \(memory) GiB, \(events) events of \(types) types, \(eventSize)-byte data, durability \(durability.rawValue)")

        let filler = String(repeating: "x", count: max(0, eventSize - 12))
        let data = Data(#"{"p":"\#(filler)"}"#.utf8)
        let started = ContinuousClock.now
        var written = 0
        while written < events {
            let count = min(1000, events - written)
            let batch = (0 ..< count).map { i in
                ProposedEvent(id: UUID.timeOrdered(), type: "Type\((written + i) % types)", data: data)
            }
            _ = try store.append(to: "bench-\(written / 1000 % 100)", expected: .any, events: batch)
            written += count
        }
        print(String(format: "  wrote %d events in %.2f s", events, (ContinuousClock.now - started).seconds))
        let head = try store.headPosition()

        for interval in intervals {
            var projectionOptions = ProjectionOptions()
            projectionOptions.checkpointEvents = interval
            projectionOptions.checkpointInterval = .seconds(3600)  // count-driven, to isolate the interval's cost
            projectionOptions.batchSize = batchSize
            let engine = ProjectionEngine(store: store, options: projectionOptions)
            let name = "counts-\(interval)"
            let before = store.commitStatistics
            let start = ContinuousClock.now
            try engine.create(name: name, script: Self.script)
            let status = try engine.waitForCheckpoint(name, position: head, timeout: .seconds(3600))
            let elapsed = (ContinuousClock.now - start).seconds
            engine.stopAll()
            guard status.state == .running, status.checkpoint >= head else {
                throw ValidationError("the projection stopped: \(status.state.rawValue) \(status.fault ?? "")")
            }
            let after = store.commitStatistics
            let commits = after.batches - before.batches
            let commitTime = (after.commitTime - before.commitTime).seconds + (after.buildTime - before.buildTime).seconds
            let state = try engine.state(name).json.map { String(decoding: $0, as: UTF8.self) } ?? "?"
            print(String(format: "  checkpoint every %7d events: %9.0f events/s (%.2f s), %5d commits, %.1f ms per commit (%.1f%% of the run)",
                         interval, Double(status.eventsHandled) / elapsed, elapsed, commits,
                         commits > 0 ? commitTime * 1000 / Double(commits) : 0, commitTime / elapsed * 100))
            if interval == intervals.first { print("    state: \(state.prefix(120))") }
            try engine.delete(name)
        }
    }
}
