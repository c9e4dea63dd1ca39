import Foundation
import StrataClient
import Synchronization
import Testing
import StrataTestSupport

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
        let (status, output) = server.waitForExit()
        #expect(status == 0, "\(output)")
        #expect(output.contains("shutting down: finishing in-flight calls"))
        #expect(output.contains(" notice stopped"))
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

    /// A server that serves one event per message with a one-message window,
    /// and a client read of a 20-event stream that stops consuming after the
    /// first event: the server's Read call stays in flight, waiting for credit.
    static func stalledRead(environment: [String: String]) async throws -> (ServerProcess, StrataClient, Any) {
        let server = try ServerProcess(environment: environment.merging([
            "STRATA_SERVER_INITIAL_WINDOW_MESSAGES": "1", "STRATA_SERVER_READ_PAGE_SIZE": "1",
        ]) { $1 })
        let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
        _ = try await client.append(to: "long", events: (0 ..< 20).map { _ in .init(type: "E", data: Data("{}".utf8)) })
        let iterator = client.read("long").makeAsyncIterator()
        _ = try await iterator.next()
        return (server, client, iterator)
    }

    @Test("shutdown is bounded: a call that never finishes is cut off after shutdown_grace_seconds and the server still exits 0")
    func graceBound() async throws {
        let (server, client, iterator) = try await Self.stalledRead(environment: [
            "STRATA_SERVER_SHUTDOWN_GRACE_SECONDS": "1", "STRATA_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "20",
        ])
        defer { client.close() }
        let started = ContinuousClock.now
        let (status, output) = server.terminate()
        let took = ContinuousClock.now - started
        #expect(status == 0, "\(output)")
        #expect(output.contains("shutdown: closing 1 connection(s) still busy after 1"), "\(output)")
        #expect(took < .seconds(10), "shutdown took \(took)")
        withExtendedLifetime(iterator) {}
    }

    @Test("a second SIGTERM while draining exits at once with status 2")
    func secondSignal() async throws {
        let (server, client, iterator) = try await Self.stalledRead(environment: [
            "STRATA_SERVER_SHUTDOWN_GRACE_SECONDS": "60", "STRATA_SERVER_SHUTDOWN_TIMEOUT_SECONDS": "120",
        ])
        defer { client.close() }
        let pid = server.process.processIdentifier
        kill(pid, SIGTERM)
        // Wait (on the server's own word) until it is draining, so the two
        // signals cannot be coalesced into one.
        var draining = false
        for _ in 0 ..< 500 where !draining {
            draining = (try? httpStatus(port: server.metricsPort, "/ready")) == 503
            if !draining { try await Task.sleep(for: .milliseconds(10)) }  // polling the server's readiness
        }
        #expect(draining)
        let started = ContinuousClock.now
        kill(pid, SIGTERM)
        let (status, output) = server.waitForExit()
        #expect(status == 2, "\(output)")
        #expect(output.contains("second signal during shutdown: exiting now"), "\(output)")
        #expect(ContinuousClock.now - started < .seconds(10))
        withExtendedLifetime(iterator) {}
    }
}

/// The status line's code of `GET path` on the server's metrics port.
func httpStatus(port: UInt16, _ path: String) throws -> Int {
    let fd = try LoopbackSocket.connect(port: port)
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    guard count > 12 else { throw CLIError("no HTTP answer") }
    return Int(String(decoding: buffer[9 ..< 12], as: UTF8.self)) ?? 0
}
