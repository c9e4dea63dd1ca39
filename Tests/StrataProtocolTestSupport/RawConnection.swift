import Glibc
import StrataProto
import StrataTestSupport
import StrataWire
import SwiftProtobuf

/// Keys the end-to-end tests share.
public enum TestKeys {
    /// The server admin key every test server is started with.
    public static let serverAdmin = "test-server-admin-key-0123456789"
}

/// A connection that speaks raw frames, for protocol-level tests.
public final class RawConnection {
    public let fd: Int32
    private var decoder = FrameDecoder(maxPayloadSize: 64 << 20, expectPreface: true)

    public init(port: UInt16, receiveTimeout: Duration = .seconds(5)) throws {
        // HEADERS and MESSAGE go out as two sends: without TCP_NODELAY, Nagle
        // holds the second until the server's delayed ACK (~40 ms a call).
        fd = try LoopbackSocket.connect(port: port, receiveTimeout: receiveTimeout, noDelay: true)
    }

    /// Wraps a descriptor accepted by a test's fake server (it reads the client's preface).
    public init(acceptedFD: Int32, receiveTimeout: Duration = .seconds(5)) {
        fd = acceptedFD
        LoopbackSocket.setTimeout(fd, SO_RCVTIMEO, receiveTimeout)
    }

    deinit { close(fd) }

    public func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    public func send(_ frame: Frame) { send(frame.encoded) }

    public func send(_ type: FrameType, flags: FrameFlags = [], callID: UInt32 = 0, _ message: some SwiftProtobuf.Message) throws {
        send(Frame(type: type, flags: flags, callID: callID, payload: try message.serializedBytes()))
    }

    /// Preface, SETTINGS; then reads the server's preface and SETTINGS (and our ACK).
    public func handshake() throws {
        send(Preface.bytes)
        try send(.settings, Strata_V1_Settings())
        guard let settings = try readFrame(), settings.type == .settings else { throw RPCError(.internal, "no SETTINGS") }
    }

    /// The next frame, or nil when the server closed the connection (or the
    /// receive timeout passed).
    public func readFrame() throws -> Frame? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let frame = try decoder.next() { return frame }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            // EINTR: a signal (SIGCHLD from the CLI tests' child processes)
            // interrupted the wait; that is not the peer closing.
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return nil }
            decoder.append(buffer[0 ..< count])
        }
    }

    /// The first frame matching `accept`, skipping others (nil on close).
    public func readFrame(where accept: (Frame) -> Bool) throws -> Frame? {
        while let frame = try readFrame() {
            if accept(frame) { return frame }
        }
        return nil
    }

    /// Frames until one for `callID` of `type` (skipping SETTINGS ACKs etc).
    public func read(until type: FrameType, callID: UInt32) throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try readFrame() {
            frames.append(frame)
            if frame.type == type && frame.callID == callID { return frames }
        }
        return frames
    }

    public func openCall(_ id: UInt32, method: String, tenant: String? = "acme", apiKey: String? = TestKeys.serverAdmin,
                  timeoutMs: UInt64 = 0, request: some SwiftProtobuf.Message) throws {
        var headers = Strata_V1_CallHeaders()
        headers.method = method
        if let tenant { headers.metadata[MetadataKey.tenant] = tenant }
        if let apiKey { headers.metadata[MetadataKey.authorization] = "Bearer \(apiKey)" }
        headers.timeoutMs = timeoutMs
        try send(.headers, callID: id, headers)
        try send(.message, flags: .endStream, callID: id, request)
    }
}

public func trailers(_ frames: [Frame]) throws -> Strata_V1_Trailers? {
    guard let last = frames.last, last.type == .trailers else { return nil }
    return try Strata_V1_Trailers(serializedBytes: last.payload)
}

