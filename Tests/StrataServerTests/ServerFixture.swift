import Foundation
import Logging
import StrataClient
import StrataProjections
import StrataProto
@testable import StrataServer
import StrataStorage
import StrataWire
import SwiftProtobuf
import StrataTestSupport

/// A real server on an ephemeral loopback port with its own data directory:
/// the same `StrataApplication` `strata serve` runs, every service with real
/// authorization. Tenant "acme" exists; clients use the server admin key
/// unless a test passes another key.
final class ServerFixture: Sendable {
    /// The server admin key of every fixture.
    static let adminKey = "test-server-admin-key-0123456789"

    let directory: String
    let application: StrataApplication
    var engine: StorageEngine { application.engine }
    var system: SystemStore { application.system }
    var tenants: TenantDirectory { application.tenants }
    var server: RPCServer { application.server }
    var metrics: ServerMetrics { application.metrics }
    /// The projection engines.
    var projections: ProjectionManager { application.projections }
    let port: UInt16
    /// The metrics endpoint's port (every fixture serves one, on an ephemeral port).
    let metricsPort: UInt16
    /// Whether `deinit` removes `directory` (not when a restart reuses it).
    private let ownsDirectory: Bool

    /// A fresh data directory and an ephemeral port; or, to restart a server,
    /// an existing `directory` (kept afterwards) and a fixed `port`.
    init(directory: String? = nil, port: UInt16 = 0, projections: ProjectionOptions = ProjectionOptions(),
         configure: (inout ServerConfiguration) -> Void = { _ in },
         extraRoutes: (inout Router) -> Void = { _ in },
         storage: (inout StorageEngineOptions) -> Void = { _ in },
         logger: Logger = Logger(label: "strata", factory: { _ in SwiftLogNoOpLogHandler() })) throws {
        self.directory = directory ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-server-test-\(UUID().uuidString)")
        ownsDirectory = directory == nil
        var configuration = StrataConfiguration()
        configuration.storage = StorageEngineOptions(dataDirectory: self.directory)
        configuration.storage.store.mapSize = 256 << 20
        storage(&configuration.storage)
        configuration.server.port = port
        configuration.server.metricsPort = 0
        // The fixture creates its tenant itself and uses a fixed admin key.
        configuration.server.developmentMode = false
        configuration.adminKey = Self.adminKey
        configure(&configuration.server)
        configuration.projections = projections
        configuration.drainTimeout = .seconds(5)
        application = try StrataApplication(configuration: configuration, logger: logger, extraRoutes: extraRoutes)
        if try application.system.tenant("acme") == nil { _ = try application.tenants.createTenant("acme", maxSizeBytes: nil) }
        let started = try application.start()
        self.port = started.port
        metricsPort = started.metricsPort ?? 0
    }

    /// A client of `tenant` with `apiKey` (default: the server admin key).
    func client(tenant: String = "acme", apiKey: String = ServerFixture.adminKey) async throws -> StrataClient {
        try await StrataClient.connect(host: "127.0.0.1", port: port, tenant: tenant, apiKey: apiKey)
    }

    /// Creates a key of `role` for `tenant` directly in the registry.
    func key(_ role: Role, tenant: String = "acme") throws -> String {
        try tenants.createKey(tenant, role: role, label: "test").1.text
    }

    /// Shuts the application down (idempotent).
    func stop() {
        application.shutdown()
    }

    deinit {
        stop()
        if ownsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }
}

/// A connection that speaks raw frames, for protocol-level tests.
final class RawConnection {
    let fd: Int32
    private var decoder = FrameDecoder(maxPayloadSize: 64 << 20, expectPreface: true)

    init(port: UInt16, receiveTimeout: Duration = .seconds(5)) throws {
        // HEADERS and MESSAGE go out as two sends: without TCP_NODELAY, Nagle
        // holds the second until the server's delayed ACK (~40 ms a call).
        fd = try LoopbackSocket.connect(port: port, receiveTimeout: receiveTimeout, noDelay: true)
    }

    /// Wraps a descriptor accepted by a test's fake server (it reads the client's preface).
    init(acceptedFD: Int32, receiveTimeout: Duration = .seconds(5)) {
        fd = acceptedFD
        LoopbackSocket.setTimeout(fd, SO_RCVTIMEO, receiveTimeout)
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func send(_ frame: Frame) { send(frame.encoded) }

    func send(_ type: FrameType, flags: FrameFlags = [], callID: UInt32 = 0, _ message: some SwiftProtobuf.Message) throws {
        send(Frame(type: type, flags: flags, callID: callID, payload: try message.serializedBytes()))
    }

    /// Preface, SETTINGS; then reads the server's preface and SETTINGS (and our ACK).
    func handshake() throws {
        send(Preface.bytes)
        try send(.settings, Strata_V1_Settings())
        guard let settings = try readFrame(), settings.type == .settings else { throw RPCError(.internal, "no SETTINGS") }
    }

    /// The next frame, or nil when the server closed the connection (or the
    /// receive timeout passed).
    func readFrame() throws -> Frame? {
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
    func readFrame(where accept: (Frame) -> Bool) throws -> Frame? {
        while let frame = try readFrame() {
            if accept(frame) { return frame }
        }
        return nil
    }

    /// Frames until one for `callID` of `type` (skipping SETTINGS ACKs etc).
    func read(until type: FrameType, callID: UInt32) throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try readFrame() {
            frames.append(frame)
            if frame.type == type && frame.callID == callID { return frames }
        }
        return frames
    }

    func openCall(_ id: UInt32, method: String, tenant: String? = "acme", apiKey: String? = ServerFixture.adminKey,
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

func trailers(_ frames: [Frame]) throws -> Strata_V1_Trailers? {
    guard let last = frames.last, last.type == .trailers else { return nil }
    return try Strata_V1_Trailers(serializedBytes: last.payload)
}

func events(_ count: Int, type: String = "Happened") -> [StrataClient.EventData] {
    (0..<count).map { StrataClient.EventData(type: type, data: Data("{\"n\":\($0)}".utf8)) }
}
