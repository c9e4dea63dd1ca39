import Foundation
import StrataClient
import Synchronization
import Testing

/// `strata serve` stopped by SIGTERM in the middle of a workload.
@Suite("strata serve: graceful shutdown under load", .serialized)
struct LifecycleTests {
    /// An acknowledged append: where the server said the event went.
    struct Acknowledged: Sendable { let stream: String; let revision: UInt64; let id: UUID }

    /// Appends one event at a time to `stream` with optimistic concurrency
    /// until a call fails (the server is going away). Returns what was
    /// acknowledged, and the id of a last append whose outcome is unknown.
    /// Appends acknowledged by all writers (a class: captured by the tasks).
    final class Progress: Sendable {
        let count = Atomic<Int>(0)
    }

    static func writer(_ client: StrataClient, stream: String, acknowledgedSoFar: Progress,
                       underWay: AsyncStream<Void>.Continuation) async -> (acknowledged: [Acknowledged], unknown: UUID?) {
        var acknowledged: [Acknowledged] = []
        var next: UInt64 = 0
        while true {
            let event = StrataClient.EventData(type: "Counted", data: Data("{\"n\":\(next)}".utf8))
            do {
                let result = try await client.append(to: stream, expected: next == 0 ? .noStream : .exact(next - 1), events: [event])
                acknowledged.append(Acknowledged(stream: stream, revision: result.firstRevision, id: event.id))
                if acknowledgedSoFar.count.add(1, ordering: .relaxed).newValue == 400 { underWay.finish() }
                next += 1
            } catch {
                // UNAVAILABLE before the call ran, or the connection closed
                // with the call in flight: it may or may not have been stored.
                return (acknowledged, event.id)
            }
        }
    }

    @Test("SIGTERM during concurrent appends: the server drains and exits 0, and every acknowledged append is there after a restart, exactly once")
    func sigtermLosesNoAcknowledgedAppend() async throws {
        let server = try ServerProcess(durability: "sync")
        let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
        let acknowledgedSoFar = Progress()
        let writers = 8
        let (underWay, underWayContinuation) = AsyncStream<Void>.makeStream()
        let pid = server.process.processIdentifier

        let results = await withTaskGroup(of: (acknowledged: [Acknowledged], unknown: UUID?).self) { group in
            for writer in 0 ..< writers {
                group.addTask {
                    await Self.writer(client, stream: "counter-\(writer)", acknowledgedSoFar: acknowledgedSoFar, underWay: underWayContinuation)
                }
            }
            // SIGTERM once the workload is well under way.
            group.addTask {
                for await _ in underWay {}  // ends once 400 appends are acknowledged
                kill(pid, SIGTERM)
                return ([], nil)
            }
            var all: [(acknowledged: [Acknowledged], unknown: UUID?)] = []
            for await result in group { all.append(result) }
            return all
        }
        client.close()
        // The server is already exiting: this only collects its status and output.
        let (status, output) = server.terminate()
        #expect(status == 0, "\(output)")
        #expect(output.contains("shutting down: finishing in-flight calls"))
        #expect(output.contains("stopped"))
        let acknowledged = results.flatMap { $0.acknowledged }
        #expect(acknowledged.count >= 400)

        // Restart on the same data and read every stream back.
        let restarted = try ServerProcess(directory: server.directory, durability: "sync")
        let reader = try await StrataClient.connect(host: "127.0.0.1", port: restarted.port, tenant: "default", apiKey: testAdminKey)
        defer { reader.close() }
        var stored: [String: [StrataClient.RecordedEvent]] = [:]
        for writer in 0 ..< writers {
            let stream = "counter-\(writer)"
            for try await event in reader.read(stream) { stored[stream, default: []].append(event) }
        }
        for ack in acknowledged {
            let events = stored[ack.stream] ?? []
            let atRevision = events.first { $0.revision == ack.revision }
            #expect(atRevision?.id == ack.id, "acknowledged \(ack.stream)@\(ack.revision) is missing or different")
        }
        // Nothing twice, nothing unexplained: each stream holds its
        // acknowledged events plus at most the one append whose answer was lost.
        let unknown = Set(results.compactMap { $0.unknown })
        let acknowledgedIDs = Set(acknowledged.map(\.id))
        for (stream, events) in stored.sorted(by: { $0.key < $1.key }) {
            #expect(Set(events.map(\.id)).count == events.count, "\(stream) holds an event twice")
            #expect(events.map(\.revision) == Array(0 ..< UInt64(events.count)), "\(stream) has a gap")
            for event in events where !acknowledgedIDs.contains(event.id) {
                #expect(unknown.contains(event.id), "\(stream)@\(event.revision) was never appended")
            }
        }
        withExtendedLifetime(server) {}  // owns the data directory until here
    }
}
