import Foundation
@testable import StrataClient
import StrataProto
import StrataWire
import StrataProtocolTestSupport
import StrataTestSupport
import Testing

/// A one-connection fake server on an ephemeral loopback port whose behaviour
/// the test scripts frame by frame, to check how the client treats a server
/// that breaks the protocol.
final class FakeServer: Sendable {
    let port: UInt16
    private let listener: Int32
    private let outcome = ScriptOutcome()

    /// Written by the script's thread before `done` is signalled, read only
    /// after waiting on it: the semaphore orders the two.
    private final class ScriptOutcome: @unchecked Sendable {
        var frames: [Frame] = []
        let done = DispatchSemaphore(value: 0)
    }

    /// `script` runs on its own thread with the accepted connection; what it
    /// returns (frames it read) becomes `result()`.
    init(script: @escaping @Sendable (RawConnection) throws -> [Frame]) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        guard bound, listen(listener, 1) == 0 else { throw RPCError(.internal, "fake server cannot listen") }
        port = UInt16(bigEndian: address.sin_port)
        let outcome = self.outcome
        Thread {
            var fd = accept(listener, nil, nil)
            while fd < 0 && errno == EINTR { fd = accept(listener, nil, nil) }  // a signal is not a failure
            let connection = RawConnection(acceptedFD: fd)
            outcome.frames = (try? script(connection)) ?? []
            outcome.done.signal()
        }.start()
    }

    /// The frames the script collected, once it has returned.
    func result() -> [Frame] {
        outcome.done.wait()
        defer { outcome.done.signal() }  // so a second call does not block
        return outcome.frames
    }

    deinit { close(listener) }
}

/// Reads the client's preface and SETTINGS, answers with the server's, and
/// returns the first call's id once its HEADERS and request have arrived.
private func acceptCall(_ connection: RawConnection) throws -> UInt32 {
    connection.send(Preface.bytes)
    try connection.send(.settings, Strata_V1_Settings())
    while let frame = try connection.readFrame() {
        if frame.type == .message && frame.flags.contains(.endStream) { return frame.callID }
    }
    throw RPCError(.internal, "the client sent no request")
}

/// Frames until the connection closes.
private func drain(_ connection: RawConnection) throws -> [Frame] {
    var frames: [Frame] = []
    while let frame = try connection.readFrame() { frames.append(frame) }
    return frames
}

@Suite("Client side of the call state machine")
struct ClientProtocolTests {
    @Test("a second response MESSAGE on a unary call is a protocol error: GOAWAY INVALID_ARGUMENT, the call fails INTERNAL")
    func secondUnaryResponse() async throws {
        let server = try FakeServer { connection in
            let id = try acceptCall(connection)
            let response: [UInt8] = try Strata_V1_GetStreamInfoResponse().serializedBytes()
            connection.send(Frame(type: .message, callID: id, payload: response).encoded
                + Frame(type: .message, callID: id, payload: response).encoded)
            return try drain(connection)
        }
        let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "acme", apiKey: "k")
        await #expect {
            _ = try await client.streamInfo("s")
        } throws: { error in
            guard let error = error as? StrataClient.Error else { return false }
            return error.code == .internal && error.message.contains("second response")
        }
        let goAway = server.result().first { $0.type == FrameType.goAway }
        let decoded = try Strata_V1_GoAway(serializedBytes: #require(goAway).payload)
        #expect(decoded.code == StatusCode.invalidArgument.rawValue)
        #expect(decoded.reason.contains("second response"))
    }

    @Test("a streaming response beyond the granted credit is a protocol error for the client")
    func beyondCredit() async throws {
        let window = Int(ProtocolDefaults.initialWindowMessages)
        let server = try FakeServer { connection in
            let id = try acceptCall(connection)
            let page: [UInt8] = try Strata_V1_ReadResponse().serializedBytes()
            var bytes: [UInt8] = []
            for _ in 0 ... window { Frame(type: .message, callID: id, payload: page).encode(into: &bytes) }
            connection.send(bytes)
            return try drain(connection)
        }
        // The raw connection, so nothing is consumed and no credit is granted back.
        let connection = try ClientConnection.connect(host: "127.0.0.1", port: server.port)
        let request: [UInt8] = try Strata_V1_ReadRequest().serializedBytes()
        let (_, call) = try connection.open(method: StreamsMethod.read, kind: CallLifecycle.Kind.serverStreaming,
                                            metadata: [(MetadataKey.tenant, "acme")], timeout: nil, request: request)
        var received = 0
        await #expect {
            while try await call.next() != nil { received += 1 }
        } throws: { error in
            guard let error = error as? RPCError else { return false }
            return error.code == .internal && error.message.contains("beyond the granted credit")
        }
        #expect(received == window)
        #expect(server.result().contains { $0.type == FrameType.goAway })
    }
}
