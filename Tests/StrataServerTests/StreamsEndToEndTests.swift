import Foundation
import StrataProtocolTestSupport
import StrataClient
import StrataWire
import Testing

@Suite("Streams over TCP")
struct StreamsEndToEndTests {
    @Test("append, read forwards and backwards, info and delete round-trip through the client")
    func roundTrip() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        let proposed = events(3)
        let result = try await client.append(to: "order-1", expected: .noStream, events: proposed)
        #expect(result.firstRevision == 0 && result.lastRevision == 2 && result.firstPosition == 1 && !result.replayed)
        var read: [StrataClient.RecordedEvent] = []
        for try await event in client.read("order-1") { read.append(event) }
        #expect(read.map(\.id) == proposed.map(\.id))
        #expect(read.map(\.data) == proposed.map(\.data))
        #expect(read.allSatisfy { $0.recordedAt == result.recordedAt && $0.stream == "order-1" })
        var backwards: [UInt64] = []
        for try await event in client.read("order-1", direction: .backwards, maxCount: 2) { backwards.append(event.revision) }
        #expect(backwards == [2, 1])
        let info = try await client.streamInfo("order-1")
        #expect(info.lastRevision == 2 && !info.isDeleted)
        try await client.deleteStream("order-1", expected: .exact(2))
        await #expect(throws: StrataClient.Error.self) { try await client.streamInfo("missing") }
        do {
            for try await _ in client.read("order-1") {}
            Issue.record("reading a deleted stream succeeded")
        } catch {
            #expect(error.code == .notFound && error.reason == .streamDeleted(stream: "order-1"))
        }
        // The retry of the first append is answered from storage.
        let retried = try await client.append(to: "order-1", expected: .noStream, events: proposed)
        #expect(retried.replayed && retried.firstPosition == 1)
    }

    @Test("a conflict comes back as FAILED_PRECONDITION with the expected and actual revision")
    func conflict() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "a", events: events(2))
        do {
            _ = try await client.append(to: "a", expected: .exact(0), events: events(1))
            Issue.record("the append succeeded")
        } catch {
            #expect(error.code == .failedPrecondition)
            #expect(error.reason == .wrongExpectedRevision(stream: "a", expected: .exact(0), actual: .revision(1)))
        }
        do {
            _ = try await client.append(to: "$system", events: events(1))
            Issue.record("the append succeeded")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("many concurrent calls on one connection and across connections all land once")
    func concurrency() async throws {
        let fixture = try ServerFixture()
        let shared = try await fixture.client()
        defer { shared.close() }
        let clients = try await withThrowingTaskGroup(of: StrataClient.self) { group in
            for _ in 0..<8 { group.addTask { try await fixture.client() } }
            return try await group.reduce(into: [StrataClient]()) { $0.append($1) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask { _ = try await shared.append(to: "s-\(i % 10)", events: events(1)) }
            }
            for (n, client) in clients.enumerated() {
                group.addTask {
                    for j in 0..<25 { _ = try await client.append(to: "c-\(n)", expected: j == 0 ? .noStream : .exact(UInt64(j - 1)), events: events(1)) }
                }
            }
            try await group.waitForAll()
        }
        var positions: [UInt64] = []
        for try await event in shared.read("$all") { positions.append(event.position) }
        #expect(positions == Array(1...400))
        for client in clients { client.close() }
    }

    @Test("reading $all streams every event in order, with filters, across many credit grants")
    func readAllWithCredit() async throws {
        let fixture = try ServerFixture { $0.initialWindowMessages = 16; $0.readPageSize = 7 }
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0..<10 {
            _ = try await client.appendMulti([
                (stream: "order-\(i)", expected: .noStream, events: events(30, type: "Placed")),
                (stream: "invoice-\(i)", expected: .noStream, events: events(10, type: "Billed")),
            ])
        }
        var all: [UInt64] = []
        for try await event in client.read("$all") { all.append(event.position) }
        #expect(all == Array(1...400))
        var invoices = 0
        for try await event in client.read("$all", streamPrefixes: ["invoice-"]) {
            #expect(event.type == "Billed")
            invoices += 1
        }
        #expect(invoices == 100)
        var fromPosition: [UInt64] = []
        for try await event in client.read("$all", from: .position(395)) { fromPosition.append(event.position) }
        #expect(fromPosition == [395, 396, 397, 398, 399, 400])
    }
}
