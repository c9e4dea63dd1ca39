import Foundation
import StrataClient
import StrataServer
import Testing

/// The Swift client against the real server, where the server's settings matter.
@Suite("The client against a real server's settings")
struct ClientServerSettingsTests {
    @Test("a server with a small initial window: reads, subscriptions and aggregate loads still flow on a fresh connection")
    func smallServerWindow() async throws {
        let fixture = try ServerFixture {
            $0.initialWindowMessages = 3
            $0.readPageSize = 1  // one event per message, so credit runs out quickly
        }
        let client = try await fixture.client()
        defer { client.close() }
        #expect(client.host == "127.0.0.1")
        _ = try await client.append(to: "w", events: events(40))
        var read = 0
        for try await _ in client.read("w") { read += 1 }
        #expect(read == 40)
        let messages = try await collect(client.subscribe(to: .stream("w"))) { $0.events.count == 40 }
        #expect(messages.events.count == 40)
        let aggregate = try await client.loadAggregate("w")
        #expect(aggregate.events.count == 40)
    }
}
