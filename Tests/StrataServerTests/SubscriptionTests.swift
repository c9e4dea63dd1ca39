import Foundation
import StrataProtocolTestSupport
@testable import StrataClient
import StrataProto
import StrataServer
import StrataStorage
import StrataWire
import Testing

/// Collects a subscription's messages until `done` says so.
func collect(_ subscription: Subscription, until done: ([StrataClient.SubscriptionMessage]) -> Bool) async throws
    -> [StrataClient.SubscriptionMessage] {
    var messages: [StrataClient.SubscriptionMessage] = []
    for try await message in subscription {
        messages.append(message)
        if done(messages) { break }
    }
    return messages
}

extension Array where Element == StrataClient.SubscriptionMessage {
    var events: [StrataClient.RecordedEvent] {
        compactMap { if case .event(let event) = $0 { event } else { nil } }
    }
    var caughtUpCount: Int { filter { if case .caughtUp = $0 { true } else { false } }.count }
    var checkpoints: [UInt64] { compactMap { if case .checkpoint(let p) = $0 { p } else { nil } } }
}

@Suite("Subscriptions over TCP")
struct SubscriptionTests {
    @Test("$all from the start while writers race: every event once, in position order, one caught-up marker", arguments: [1, 7])
    func catchUpToLive(pageSize: Int) async throws {
        let fixture = try ServerFixture { $0.readPageSize = pageSize }
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0..<20 { _ = try await client.append(to: "before-\(i % 3)", events: events(5)) }
        let total = 100 + 4 * 50 * 2
        let subscriber = Task {
            try await collect(client.subscribe(to: .all)) { $0.events.count >= total }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    let own = try await fixture.client()
                    defer { own.close() }
                    for i in 0..<50 { _ = try await own.append(to: "live-\(writer)-\(i % 5)", events: events(2)) }
                }
            }
            try await group.waitForAll()
        }
        let messages = try await subscriber.value
        let positions = messages.events.map(\.position)
        #expect(positions == Array(1...UInt64(total)))
        #expect(messages.caughtUpCount == 1)
        // What was delivered is exactly what $all holds.
        var stored: [StrataClient.RecordedEvent] = []
        for try await event in client.read("$all") { stored.append(event) }
        #expect(stored == messages.events)
    }

    @Test("a stream subscription delivers that stream only, in revision order, from after a revision, live included")
    func streamSubscription() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "account-1", events: events(3))
        _ = try await client.append(to: "account-2", events: events(3))
        let subscriber = Task {
            try await collect(client.subscribe(to: .stream("account-1"), from: .afterRevision(0))) { $0.events.count >= 6 }
        }
        for _ in 0..<4 {
            _ = try await client.append(to: "account-2", events: events(1))
            _ = try await client.append(to: "account-1", events: events(1))
        }
        let messages = try await subscriber.value
        #expect(messages.events.map(\.revision) == Array(1...6))
        #expect(messages.events.allSatisfy { $0.stream == "account-1" })
        #expect(messages.caughtUpCount == 1)
    }

    @Test("a subscription to a stream that does not exist yet waits for its first event")
    func streamNotYetCreated() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        let subscriber = Task {
            try await collect(client.subscribe(to: .stream("later-1"))) { $0.events.count >= 2 }
        }
        _ = try await client.append(to: "other", events: events(1))
        _ = try await client.append(to: "later-1", events: events(2))
        let messages = try await subscriber.value
        #expect(messages.events.map(\.revision) == [0, 1])
    }

    @Test("deleting a followed stream ends its subscription with NOT_FOUND")
    func deletedStream() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "doomed", events: events(2))
        let (live, liveContinuation) = AsyncStream<Void>.makeStream()
        let subscriber = Task { () -> StrataClient.Error? in
            do {
                for try await message in client.subscribe(to: .stream("doomed")) {
                    if case .caughtUp = message { liveContinuation.yield() }
                }
                return nil
            } catch let error as StrataClient.Error {
                return error
            } catch {
                return nil
            }
        }
        for await _ in live { break }
        try await client.deleteStream("doomed")
        let error = await subscriber.value
        #expect(error?.code == .notFound)
        #expect(error?.reason == .streamDeleted(stream: "doomed"))
    }

    @Test("a client's GOAWAY ends its subscriptions (CANCELLED) and the connection closes instead of waiting for them")
    func clientGoAway() throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var request = Strata_V1_SubscribeRequest()
        request.all = Strata_V1_Empty()
        try raw.openCall(1, method: StreamsMethod.subscribe, request: request)
        let first = try #require(try raw.readFrame(where: { $0.type == .message && $0.callID == 1 }))
        #expect(try Strata_V1_SubscribeResponse(serializedBytes: first.payload).hasCaughtUp)
        try raw.send(.goAway, Strata_V1_GoAway())
        let frames = try raw.read(until: .trailers, callID: 1)
        #expect(try trailers(frames)?.code == StatusCode.cancelled.rawValue)
        let started = ContinuousClock.now
        #expect(try raw.readFrame() == nil)  // closed, not left waiting
        #expect(ContinuousClock.now - started < .seconds(4))
    }

    @Test("from the end: only events committed after the subscription began")
    func fromEnd() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "old", events: events(4))
        let iterator = client.subscribe(to: .all, from: .end).makeAsyncIterator()
        // The caught-up marker comes first: the subscription is live from here.
        #expect(try await iterator.next() == .caughtUp(position: 4))
        _ = try await client.append(to: "new", events: events(2))
        let first = try await iterator.next()
        let second = try await iterator.next()
        guard case .event(let a) = first, case .event(let b) = second else {
            Issue.record("expected two events, got \(String(describing: first)), \(String(describing: second))")
            return
        }
        #expect([a.position, b.position] == [5, 6])
    }

    @Test("a category with an event-type filter delivers matches only, with checkpoints while it skips")
    func filteredCategoryWithCheckpoints() async throws {
        let fixture = try ServerFixture { $0.readPageSize = 16 }
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0..<10 {
            _ = try await client.append(to: "order-\(i)", events: events(30, type: "Noise"))
            _ = try await client.append(to: "order-\(i)", events: events(1, type: "Placed"))
            _ = try await client.append(to: "orderly-\(i)", events: events(1, type: "Placed"))  // another category
            if i == 4 {
                // A stretch longer than one scan (16 × 16 events) with no match.
                for _ in 0..<6 { _ = try await client.append(to: "order-noise", events: events(100, type: "Noise")) }
            }
        }
        let messages = try await collect(client.subscribe(to: .category("order"), eventTypes: ["Placed"], checkpointInterval: 20)) {
            $0.caughtUpCount == 1
        }
        #expect(messages.events.count == 10)
        #expect(messages.events.allSatisfy { $0.type == "Placed" && $0.stream.hasPrefix("order-") })
        let checkpoints = messages.checkpoints
        #expect(!checkpoints.isEmpty)
        #expect(checkpoints == checkpoints.sorted())
        // Each checkpoint lies after the event delivered before it.
        var lastEvent: UInt64 = 0
        for message in messages {
            switch message {
            case .event(let event): lastEvent = event.position
            case .checkpoint(let position): #expect(position > lastEvent)
            case .caughtUp: break
            }
        }
    }

    @Test("invalid subscriptions are refused with INVALID_ARGUMENT naming the field")
    func invalidRequests() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        let cases: [(Subscription, String)] = [
            (client.subscribe(to: .category("a-b")), "target.category"),
            (client.subscribe(to: .category("")), "target.category"),
            (client.subscribe(to: .stream("s"), eventTypes: ["X"]), "stream_prefixes"),
            (client.subscribe(to: .stream("s"), from: .afterPosition(3)), "from"),
            (client.subscribe(to: .all, from: .afterRevision(3)), "from"),
            (client.subscribe(to: .stream("")), "target.stream"),
        ]
        for (subscription, field) in cases {
            do {
                for try await _ in subscription {}
                Issue.record("subscription accepted; expected a refusal on \(field)")
            } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains(field), "\(error.message)")
            }
        }
    }

    @Test("cancelling the subscribing task ends the call on the server and releases its commit observer")
    func cancellation() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        let store = try fixture.engine.lease("acme")
        defer { store.release() }
        let started = AsyncStream<Void>.makeStream()
        let subscriber = Task {
            for try await message in client.subscribe(to: .all) {
                if case .caughtUp = message { started.continuation.yield() }
            }
        }
        for await _ in started.stream { break }
        #expect(store.store.commits.count == 1)
        subscriber.cancel()
        _ = try? await subscriber.value
        // The CANCEL reaches the server asynchronously: wait for its effect.
        let deadline = ContinuousClock.now + .seconds(10)
        while store.store.commits.count > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(store.store.commits.count == 0)
        // The connection still serves other calls.
        _ = try await client.append(to: "after", events: events(1))
    }

    @Test("a subscription resumes after the server restarts, with no gap and no repeat")
    func resumeAfterRestart() async throws {
        // A fixed port below the kernel's ephemeral range (32768–60999): the
        // restarted server needs the same port, and a port from that range
        // could be handed to another test's listener in between (and the
        // reconnecting client would then talk to it).
        var first: ServerFixture?
        for _ in 0..<20 where first == nil {
            let candidate = UInt16.random(in: 20_000...29_999)
            first = try? ServerFixture(port: candidate) { $0.shutdownGracePeriod = .seconds(5) }
        }
        let firstServer = try #require(first)
        let directory = firstServer.directory, port = firstServer.port
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let client = try await firstServer.client()
        defer { client.close() }
        _ = try await client.append(to: "r", events: events(10))
        let (seen, seenContinuation) = AsyncStream<Int>.makeStream()
        let subscriber = Task {
            var delivered: [StrataClient.RecordedEvent] = []
            for try await message in client.subscribe(to: .all, reconnect: .init(maxAttempts: 100, initialDelay: .milliseconds(20),
                                                                                   maxDelay: .milliseconds(100))) {
                if case .event(let event) = message {
                    delivered.append(event)
                    seenContinuation.yield(delivered.count)
                    if delivered.count == 20 { break }
                }
            }
            return delivered
        }
        // A stream subscriber that started at the end: after the restart it
        // must resume after what it had seen, not at the new end.
        let (streamLive, streamLiveContinuation) = AsyncStream<Void>.makeStream()
        let fromEnd = Task {
            var revisions: [UInt64] = []
            for try await message in client.subscribe(to: .stream("r"), from: .end,
                                                      reconnect: .init(maxAttempts: 100, initialDelay: .milliseconds(20), maxDelay: .milliseconds(100))) {
                switch message {
                case .caughtUp: streamLiveContinuation.yield()
                case .event(let event):
                    revisions.append(event.revision)
                    if revisions.count == 10 { return revisions }
                case .checkpoint: break
                }
            }
            return revisions
        }
        for await count in seen where count == 10 { break }
        for await _ in streamLive { break }
        firstServer.stop()
        let second = try ServerFixture(directory: directory, port: port)
        let writer = try await second.client()
        defer { writer.close() }
        _ = try await writer.append(to: "r", events: events(10))
        let delivered = try await subscriber.value
        #expect(delivered.map(\.position) == Array(1...20))
        #expect(try await fromEnd.value == Array(10...19))
        withExtendedLifetime(second) {}
    }

    @Test("a subscriber that stops granting credit is ended with RESOURCE_EXHAUSTED once it is too far behind")
    func slowSubscriberEnded() async throws {
        let fixture = try ServerFixture {
            $0.readPageSize = 1
            $0.subscriptions.maxLagEvents = 50
            $0.subscriptions.maxLagDuration = .zero
        }
        // A raw connection whose call is never consumed: no credit is granted back.
        let connection = try ClientConnection.connect(host: "127.0.0.1", port: fixture.port)
        defer { connection.close() }
        var request = Strata_V1_SubscribeRequest()
        request.all = Strata_V1_Empty()
        let (_, call) = try connection.open(method: StreamsMethod.subscribe, kind: .serverStreaming,
                                            metadata: [(MetadataKey.tenant, "acme"), (MetadataKey.authorization, "Bearer \(ServerFixture.adminKey)")], timeout: nil,
                                            request: try request.serializedBytes())
        let writer = try await fixture.client()
        defer { writer.close() }
        let window = Int(ProtocolDefaults.initialWindowMessages)
        // Past the window (one event per message), then far enough behind.
        for _ in 0..<(window + 100) / 10 { _ = try await writer.append(to: "flood", events: events(10)) }
        var received = 0
        do {
            while try await call.next() != nil { received += 1 }
            Issue.record("the subscription ended without an error")
        } catch {
            #expect(error.code == .resourceExhausted)
            #expect(error.message.contains("behind"), "\(error.message)")
        }
        #expect(received == window)
        // The server goes on serving.
        _ = try await writer.append(to: "flood", events: events(1))
    }
}
