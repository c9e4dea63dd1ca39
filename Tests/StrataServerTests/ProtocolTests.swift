import Foundation
import StrataProtocolTestSupport
import StrataClient
import StrataProto
import StrataServer
import StrataWire
import SwiftProtobuf
import Testing

/// A method for tests that answers after `delay` (or never, with nil).
func slowRoute(_ router: inout Router, delay: Duration?) {
    router.register("/test.Slow/Wait", .tenant(.read), .unary { _, _, respond in
        guard let delay else { return }
        DispatchQueue.global().asyncAfter(deadline: .now() + Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18) {
            respond(.success([]))
        }
    })
}

@Suite("Protocol over TCP")
struct ProtocolTests {
    @Test("an unknown method is UNIMPLEMENTED and a call without a tenant is INVALID_ARGUMENT; the connection goes on")
    func refusedCalls() throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        try raw.openCall(1, method: "/strata.v1.Nope/Nothing", request: Strata_V1_Empty())
        #expect(try trailers(raw.read(until: .trailers, callID: 1))?.code == StatusCode.unimplemented.rawValue)
        try raw.openCall(3, method: StreamsMethod.getStreamInfo, tenant: nil, request: Strata_V1_GetStreamInfoRequest())
        let missingTenant = try trailers(raw.read(until: .trailers, callID: 3))
        #expect(missingTenant?.code == StatusCode.invalidArgument.rawValue)
        #expect(missingTenant?.detail.invalidArgument.field == "metadata.tenant")
        var info = Strata_V1_GetStreamInfoRequest()
        info.stream = "nothing-here"
        try raw.openCall(4, method: StreamsMethod.getStreamInfo, request: info)
        let notFound = try trailers(raw.read(until: .trailers, callID: 4))
        #expect(notFound?.code == StatusCode.notFound.rawValue)
        #expect(notFound?.detail.streamNotFound.stream == "nothing-here")
    }

    @Test("PING is answered with an ACK carrying the same 8 bytes")
    func ping() throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        raw.send(Frame(type: .ping, payload: [1, 2, 3, 4, 5, 6, 7, 8]))
        var pong: Frame?
        while let frame = try raw.readFrame() {
            if frame.type == .ping { pong = frame; break }
        }
        #expect(pong?.flags == .ack && pong?.payload == [1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test("a call past its deadline ends with DEADLINE_EXCEEDED")
    func deadline() async throws {
        let fixture = try ServerFixture(extraRoutes: { slowRoute(&$0, delay: nil) })
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        let started = ContinuousClock.now
        try raw.openCall(1, method: "/test.Slow/Wait", timeoutMs: 100, request: Strata_V1_Empty())
        let status = try trailers(raw.read(until: .trailers, callID: 1))
        #expect(status?.code == StatusCode.deadlineExceeded.rawValue)
        #expect(ContinuousClock.now - started >= .milliseconds(100))
    }

    @Test("an absurd deadline (timeout_ms = UInt64.max) is served as a long one, not a crash")
    func hugeDeadline() throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var info = Strata_V1_GetStreamInfoRequest()
        info.stream = "x"
        try raw.openCall(1, method: StreamsMethod.getStreamInfo, timeoutMs: .max, request: info)
        #expect(try trailers(raw.read(until: .trailers, callID: 1))?.code == StatusCode.notFound.rawValue)
    }

    @Test("a streaming read sends only its credit, continues on WINDOW_UPDATE, and stops at CANCEL")
    func creditAndCancel() async throws {
        let fixture = try ServerFixture { $0.initialWindowMessages = 10; $0.readPageSize = 4 }
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0..<10 { _ = try await client.append(to: "s-\(i)", events: events(10)) }
        let raw = try RawConnection(port: fixture.port, receiveTimeout: .milliseconds(300))
        try raw.handshake()
        var read = Strata_V1_ReadRequest()
        read.stream = "$all"
        try raw.openCall(1, method: StreamsMethod.read, request: read)
        var messages = 0
        while let frame = try raw.readFrame() {
            if frame.type == .message && frame.callID == 1 { messages += 1 }
        }
        #expect(messages == 10, "exactly the initial window, then silence")
        var update = Strata_V1_WindowUpdate()
        update.messages = 5
        try raw.send(.windowUpdate, callID: 1, update)
        messages = 0
        while let frame = try raw.readFrame() {
            if frame.type == .message && frame.callID == 1 { messages += 1 }
        }
        #expect(messages == 5)
        raw.send(Frame(type: .cancel, callID: 1))
        update.messages = 100
        try raw.send(.windowUpdate, callID: 1, update)
        var afterCancel = 0
        while let frame = try raw.readFrame() {
            if frame.callID == 1 { afterCancel += 1 }
        }
        #expect(afterCancel == 0)
        // The connection still serves new calls.
        var info = Strata_V1_GetStreamInfoRequest()
        info.stream = "s-1"
        try raw.openCall(3, method: StreamsMethod.getStreamInfo, request: info)
        #expect(try trailers(raw.read(until: .trailers, callID: 3))?.code == 0)
    }

    @Test("a client's SETTINGS can lower the initial window, not raise it")
    func clientInitialWindow() async throws {
        let fixture = try ServerFixture { $0.initialWindowMessages = 8; $0.readPageSize = 1 }
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "w", events: events(50))
        for (asked, expected) in [(3, 3), (20, 8)] {
            let raw = try RawConnection(port: fixture.port, receiveTimeout: .milliseconds(300))
            raw.send(Preface.bytes)
            var settings = Strata_V1_Settings()
            settings.initialWindowMessages = UInt32(asked)
            try raw.send(.settings, settings)
            var read = Strata_V1_ReadRequest()
            read.stream = "w"
            try raw.openCall(1, method: StreamsMethod.read, request: read)
            var messages = 0
            while let frame = try raw.readFrame() {
                if frame.type == .message && frame.callID == 1 { messages += 1 }
            }
            #expect(messages == expected, "asked for \(asked)")
        }
    }

    @Test("an oversized frame or garbage gets GOAWAY and a close; other connections are unaffected")
    func badInput() async throws {
        let fixture = try ServerFixture { $0.maxFrameSize = 1024 }
        let client = try await fixture.client()
        defer { client.close() }

        let oversized = try RawConnection(port: fixture.port)
        try oversized.handshake()
        oversized.send(Frame(type: .message, flags: .endStream, callID: 1, payload: [UInt8](repeating: 0, count: 2048)))
        let goAway = try oversized.read(until: .goAway, callID: 0).last
        #expect(goAway?.type == .goAway)
        let reason = try goAway.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(reason?.code == StatusCode.resourceExhausted.rawValue)
        #expect(try oversized.readFrame() == nil, "closed after GOAWAY")

        // A large oversized frame arrives in many reads: still one GOAWAY.
        let large = try RawConnection(port: fixture.port)
        try large.handshake()
        large.send(Frame(type: .message, flags: .endStream, callID: 1, payload: [UInt8](repeating: 7, count: 600_000)))
        var goAways = 0
        while let frame = try large.readFrame() { if frame.type == .goAway { goAways += 1 } }
        #expect(goAways == 1, "the GOAWAY is sent once, however many reads the frame takes")

        let garbage = try RawConnection(port: fixture.port)
        garbage.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        let frames = try garbage.read(until: .goAway, callID: 0)
        let garbageReason = try frames.last.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(garbageReason?.code == StatusCode.invalidArgument.rawValue)
        #expect(try garbage.readFrame() == nil)

        let wrongOrder = try RawConnection(port: fixture.port)
        wrongOrder.send(Preface.bytes)
        try wrongOrder.send(.headers, callID: 1, Strata_V1_CallHeaders())
        #expect(try wrongOrder.read(until: .goAway, callID: 0).last?.type == .goAway)

        _ = try await client.append(to: "still-fine", events: events(1))
        #expect(try await client.streamInfo("still-fine").lastRevision == 0)
    }

    /// Each malformed sequence (after a good handshake) and the GOAWAY code
    /// PROTOCOL.md section 6 promises for it.
    static let connectionErrors: [(String, [Frame])] = [
        ("call id not increasing", [
            Frame(type: .headers, callID: 5, payload: (try? { var h = Strata_V1_CallHeaders(); h.method = "/x/y"; return h }().serializedBytes()) ?? []),
            Frame(type: .headers, callID: 3, payload: []),
        ]),
        ("call id 0", [Frame(type: .headers, callID: 0, payload: [])]),
        ("MESSAGE for a call never opened", [Frame(type: .message, flags: .endStream, callID: 9, payload: [])]),
        ("WINDOW_UPDATE for a call never opened", [Frame(type: .windowUpdate, callID: 9, payload: [8, 1])]),
        ("TRAILERS from a client", [Frame(type: .trailers, callID: 1, payload: [])]),
        ("PING without 8 bytes", [Frame(type: .ping, payload: [1, 2, 3])]),
        ("PING on a call", [Frame(type: .ping, callID: 1, payload: [0, 0, 0, 0, 0, 0, 0, 0])]),
        ("SETTINGS on a call", [Frame(type: .settings, callID: 1, payload: [])]),
        ("undecodable SETTINGS", [Frame(type: .settings, payload: [0xFF, 0xFF, 0xFF])]),
    ]

    @Test("protocol violations get GOAWAY INVALID_ARGUMENT and a close", arguments: connectionErrors)
    func connectionError(name: String, frames: [Frame]) throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        for frame in frames { raw.send(frame) }
        let last = try raw.read(until: .goAway, callID: 0).last
        let goAway = try last.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(goAway?.code == StatusCode.invalidArgument.rawValue, "\(name)")
        #expect(try raw.readFrame() == nil, "closed after GOAWAY: \(name)")
    }

    @Test("a request without END_STREAM, and a preface of another version, are refused as promised")
    func otherRefusals() throws {
        let fixture = try ServerFixture()
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var headers = Strata_V1_CallHeaders()
        headers.method = StreamsMethod.getStreamInfo
        headers.metadata = ["tenant": "acme", MetadataKey.authorization: "Bearer \(ServerFixture.adminKey)"]
        try raw.send(.headers, callID: 1, headers)
        try raw.send(.message, callID: 1, Strata_V1_GetStreamInfoRequest())
        #expect(try trailers(raw.read(until: .trailers, callID: 1))?.code == StatusCode.invalidArgument.rawValue)

        let version2 = try RawConnection(port: fixture.port)
        version2.send(Preface.magic + [0, 2])
        let goAway = try version2.read(until: .goAway, callID: 0).last.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(goAway?.code == StatusCode.invalidArgument.rawValue)
        #expect(goAway?.reason.contains("version 2") == true)
    }

    @Test("undecodable HEADERS or request, and too many concurrent calls, end that call only")
    func callLevelRefusals() throws {
        let gate = DispatchSemaphore(value: 0)
        defer { gate.signal() }
        let fixture = try ServerFixture(configure: { $0.maxConcurrentCallsPerConnection = 1 }, extraRoutes: { router in
            router.register("/test.Gate/Wait", .tenant(.read), .unary { _, _, respond in
                DispatchQueue.global().async { gate.wait(); respond(.success([])) }
            })
        })
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        raw.send(Frame(type: .headers, callID: 1, payload: [0xFF, 0xFF, 0xFF]))
        #expect(try trailers(raw.read(until: .trailers, callID: 1))?.code == StatusCode.invalidArgument.rawValue)
        var headers = Strata_V1_CallHeaders()
        headers.method = StreamsMethod.append
        headers.metadata = [MetadataKey.tenant: "acme", MetadataKey.authorization: "Bearer \(ServerFixture.adminKey)"]
        try raw.send(.headers, callID: 3, headers)
        raw.send(Frame(type: .message, flags: .endStream, callID: 3, payload: [0xFF, 0xFF, 0xFF]))
        #expect(try trailers(raw.read(until: .trailers, callID: 3))?.code == StatusCode.invalidArgument.rawValue)
        try raw.openCall(5, method: "/test.Gate/Wait", request: Strata_V1_Empty())
        try raw.openCall(7, method: "/test.Gate/Wait", request: Strata_V1_Empty())
        #expect(try trailers(raw.read(until: .trailers, callID: 7))?.code == StatusCode.resourceExhausted.rawValue)
        gate.signal()
        #expect(try trailers(raw.read(until: .trailers, callID: 5))?.code == StatusCode.ok.rawValue)
    }

    @Test("an idle connection gets GOAWAY with code 0 and is closed")
    func idleClose() throws {
        let fixture = try ServerFixture { $0.idleTimeout = .milliseconds(200) }
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        let goAway = try raw.read(until: .goAway, callID: 0).last.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(goAway?.code == StatusCode.ok.rawValue)
        #expect(goAway?.reason.hasPrefix("idle") == true)
        #expect(try raw.readFrame() == nil)
    }

    @Test("a connection that never completes the handshake is closed after the handshake timeout")
    func handshakeTimeout() throws {
        let fixture = try ServerFixture { $0.handshakeTimeout = .milliseconds(200) }
        let silent = try RawConnection(port: fixture.port)
        let started = ContinuousClock.now
        let frames = try silent.read(until: .goAway, callID: 0)
        #expect(frames.last?.type == .goAway)
        #expect(try silent.readFrame() == nil)
        // Not before the timeout, give or take the timer's leeway: Dispatch
        // timers run on CLOCK_MONOTONIC and may fire a little early, while
        // ContinuousClock reads CLOCK_BOOTTIME (seen: 199.9 ms).
        #expect(ContinuousClock.now - started >= .milliseconds(190))
    }

    @Test("shutdown lets in-flight calls finish, refuses new calls with UNAVAILABLE, then closes")
    func gracefulShutdown() async throws {
        let gate = DispatchSemaphore(value: 0)
        let fixture = try ServerFixture(extraRoutes: { router in
            router.register("/test.Gate/Wait", .tenant(.read), .unary { _, _, respond in
                DispatchQueue.global().async {
                    gate.wait()
                    respond(.success([]))
                }
            })
        })
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        try raw.openCall(1, method: "/test.Gate/Wait", request: Strata_V1_Empty())
        // A second call's answer proves the first reached the server.
        var info = Strata_V1_GetStreamInfoRequest()
        info.stream = "x"
        try raw.openCall(3, method: StreamsMethod.getStreamInfo, request: info)
        _ = try raw.read(until: .trailers, callID: 3)
        // shutdown() blocks until connections close, and this test blocks on
        // socket reads: run it on a Dispatch thread, not the cooperative pool,
        // which on a 2-core machine other blocking tests may be holding.
        let shutdownDone = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            fixture.server.shutdown()
            shutdownDone.signal()
        }
        let goAway = try raw.read(until: .goAway, callID: 0).last
        #expect(goAway?.type == .goAway)
        #expect(try goAway.map { try Strata_V1_GoAway(serializedBytes: $0.payload).lastCallID } == 3)
        try raw.openCall(5, method: StreamsMethod.getStreamInfo, request: info)
        let refused = try trailers(raw.read(until: .trailers, callID: 5))
        #expect(refused?.code == StatusCode.unavailable.rawValue, "a new call was refused")
        gate.signal()
        let finished = try trailers(raw.read(until: .trailers, callID: 1))
        #expect(finished?.code == StatusCode.ok.rawValue, "the in-flight call finished")
        #expect(try raw.readFrame() == nil, "then the server closed the connection")
        #expect(shutdownDone.wait(timeout: .now() + 10) == .success, "shutdown returned")
        #expect(fixture.server.connectionCount == 0)
    }

    @Test("a client reconnects on demand after its connection is lost")
    func reconnect() async throws {
        let fixture = try ServerFixture { $0.idleTimeout = .milliseconds(200) }
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "r", events: events(1))
        // The idle timeout closes the connection; wait until the server has dropped it.
        while fixture.server.connectionCount > 0 { try await Task.sleep(for: .milliseconds(20)) }
        var result: StrataClient.AppendResult?
        for _ in 0..<3 where result == nil {
            result = try? await client.append(to: "r", expected: .exact(0), events: events(1))
        }
        #expect(result?.lastRevision == 1)
    }

    @Test("connections beyond the limit get GOAWAY RESOURCE_EXHAUSTED; the others keep working")
    func connectionLimit() async throws {
        let fixture = try ServerFixture { $0.maxConnections = 2 }
        let first = try RawConnection(port: fixture.port)
        try first.handshake()
        let second = try RawConnection(port: fixture.port)
        try second.handshake()
        let third = try RawConnection(port: fixture.port)
        let frames = try third.read(until: .goAway, callID: 0)
        let reason = try frames.last.map { try Strata_V1_GoAway(serializedBytes: $0.payload) }
        #expect(reason?.code == StatusCode.resourceExhausted.rawValue)
        #expect(try third.readFrame() == nil)
        var info = Strata_V1_GetStreamInfoRequest()
        info.stream = "nothing"
        try first.openCall(1, method: StreamsMethod.getStreamInfo, request: info)
        #expect(try trailers(first.read(until: .trailers, callID: 1))?.code == StatusCode.notFound.rawValue)
    }

    @Test("a client that grants credit but never reads costs the server a bounded buffer")
    func slowReaderIsBounded() async throws {
        let limit = 256 * 1024
        let fixture = try ServerFixture { $0.maxWriteBufferBytes = limit; $0.readPageSize = 64 }
        let client = try await fixture.client()
        defer { client.close() }
        let big = Data(repeating: 0x61, count: 4000)
        for i in 0..<40 {
            _ = try await client.append(to: "big-\(i)", events: (0..<100).map { _ in .init(type: "Big", data: big) })
        }
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var read = Strata_V1_ReadRequest()
        read.stream = "$all"
        try raw.openCall(1, method: StreamsMethod.read, request: read)
        var update = Strata_V1_WindowUpdate()
        update.messages = 1_000_000
        try raw.send(.windowUpdate, callID: 1, update)
        // 4,000 events of ~4 KB (16 MB) are now allowed by credit, but the
        // client reads nothing: the server must stop at its buffer limit.
        var samples: [Int] = []
        for _ in 0..<20 {
            try await Task.sleep(for: .milliseconds(25))  // sampling over time is the point here
            samples.append(fixture.server.queuedBytesPerConnection.max() ?? 0)
        }
        let peak = samples.max() ?? 0
        #expect(peak > 0, "the server did queue responses")
        // One pull may overshoot the limit by at most one message (one page of 64 events).
        #expect(peak <= limit + 64 * 4200, "peak queued \(peak) bytes")
        // Reading everything still works afterwards.
        var total = 0
        var ended = false
        while let frame = try raw.readFrame() {
            if frame.type == .message {
                let page = try Strata_V1_ReadResponse(serializedBytes: frame.payload)
                total += page.events.count
                ended = ended || page.endOfStream
            }
            if frame.type == .trailers { break }
        }
        #expect(total == 4000)
        #expect(ended)
    }
}

@Suite("OK trailers")
struct OKTrailersTests {
    /// The server sends OK trailers as an empty payload without encoding.
    @Test("an OK Trailers message encodes to zero bytes, and zero bytes decode to OK")
    func okTrailersAreEmpty() throws {
        #expect(try Strata_V1_Trailers().serializedBytes() as [UInt8] == [])
        let decoded = try Strata_V1_Trailers(serializedBytes: [UInt8]())
        #expect(decoded.code == StatusCode.ok.rawValue)
        #expect(decoded.message.isEmpty && !decoded.hasDetail)
    }
}
