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
import StrataProtocolTestSupport

/// A real server on an ephemeral loopback port with its own data directory:
/// the same `StrataApplication` `strata serve` runs, every service with real
/// authorization. Tenant "acme" exists; clients use the server admin key
/// unless a test passes another key.
final class ServerFixture: Sendable {
    /// The server admin key of every fixture.
    static let adminKey = TestKeys.serverAdmin

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

func events(_ count: Int, type: String = "Happened") -> [StrataClient.EventData] {
    (0..<count).map { StrataClient.EventData(type: type, data: Data("{\"n\":\($0)}".utf8)) }
}
