import Dispatch
import Foundation
import StrataProtocolTestSupport
import StrataTestSupport
import Logging
import StrataProto
import StrataSupport
import SwiftProtobuf
import StrataClient
@testable import StrataServer
import StrataStorage
import StrataWire
import Testing

/// `StrataApplication`: what `strata serve` and every end-to-end test run.
@Suite("The application")
struct ApplicationTests {
    private static func configuration(directory: String, development: Bool = false) -> StrataConfiguration {
        var configuration = StrataConfiguration()
        configuration.storage = StorageEngineOptions(dataDirectory: directory)
        configuration.storage.store.mapSize = 64 << 20
        configuration.server.port = 0
        configuration.server.metricsPort = nil
        configuration.server.developmentMode = development
        configuration.adminKey = development ? nil : ServerFixture.adminKey
        return configuration
    }

    private static let quiet = Logger(label: "strata", factory: { _ in SwiftLogNoOpLogHandler() })

    private static func temporaryDirectory() -> String {
        (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-app-test-\(UUID().uuidString)")
    }

    @Test("a second application on the same data directory is refused until the first shuts down")
    func dataDirectoryLockIsHeldUntilShutdown() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try StrataApplication(configuration: Self.configuration(directory: directory), logger: Self.quiet)
        try first.start()
        #expect {
            _ = try StrataApplication(configuration: Self.configuration(directory: directory), logger: Self.quiet)
        } throws: { error in
            guard case .dataDirectory(.inUse) = error as? ApplicationError else { return false }
            return true
        }
        first.shutdown()
        first.shutdown()  // idempotent
        // Every store closed before the lock went: a late admin call gets an error.
        #expect(throws: StorageError.closed(tenant: "(system)")) { _ = try first.system.tenants() }
        #expect {
            try first.start()
        } throws: { error in
            guard case .configuration(let message) = error as? ApplicationError else { return false }
            return message.contains("shut down")
        }
        let second = try StrataApplication(configuration: Self.configuration(directory: directory), logger: Self.quiet)
        try second.start()
        second.shutdown()
    }

    @Test("production mode without a server admin key does not start and leaves the directory unlocked")
    func productionNeedsAnAdminKey() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = Self.configuration(directory: directory)
        configuration.adminKey = nil
        #expect {
            _ = try StrataApplication(configuration: configuration, logger: Self.quiet)
        } throws: { error in
            guard case .configuration(let message) = error as? ApplicationError else { return false }
            return message.contains("admin key")
        }
        _ = try DataDirectoryLock(dataDirectory: directory)
    }

    @Test("development mode creates its tenant and key once, and the key works over TCP")
    func developmentBootstrapRunsOnce() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try StrataApplication(configuration: Self.configuration(directory: directory, development: true), logger: Self.quiet)
        #expect(first.adminKeyWasGenerated)
        let started = try first.start()
        let credentials = try #require(started.developmentCredentials)
        #expect(credentials.tenant == "default")
        let client = try await StrataClient.connect(host: "127.0.0.1", port: started.port, tenant: credentials.tenant,
                                                    apiKey: credentials.key)
        let result = try await client.append(to: "greeting-1", expected: .noStream,
                                             events: [.init(type: "Greeted", data: Data("{}".utf8))])
        #expect(result.lastPosition == 1)
        client.close()
        first.shutdown()

        let second = try StrataApplication(configuration: Self.configuration(directory: directory, development: true), logger: Self.quiet)
        let again = try second.start()
        #expect(again.developmentCredentials == nil)
        second.shutdown()
    }

    @Test("a failed bind shuts down what init opened")
    func failedBindReleasesEverything() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let holder = try StrataApplication(configuration: Self.configuration(directory: Self.temporaryDirectory()), logger: Self.quiet)
        let taken = try holder.start().port
        defer { holder.shutdown() }
        var configuration = Self.configuration(directory: directory)
        configuration.server.port = taken
        let application = try StrataApplication(configuration: configuration, logger: Self.quiet)
        #expect {
            try application.start()
        } throws: { error in
            guard case .listen = error as? ApplicationError else { return false }
            return true
        }
        // The lock went with the failed start: the directory is free again.
        _ = try DataDirectoryLock(dataDirectory: directory)
    }

    @Test("typed unary methods decode the request, encode the response and skip work for a call that timed out while queued")
    func typedUnaryHelpers() throws {
        let queue = DispatchQueue(label: "test.typed-unary")
        let ran = Locked(0)
        let fixture = try ServerFixture(extraRoutes: { router in
            router.unary("/test.Typed/Echo", .tenant(.read), Strata_V1_GetPositionAtRequest.self, on: queue) { request, context in
                ran.withLock { $0 += 1 }
                var response = Strata_V1_GetPositionAtResponse()
                response.position = UInt64(request.time) + 1
                #expect(context.tenant == "acme")
                return response
            }
        })
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var request = Strata_V1_GetPositionAtRequest()
        request.time = 41
        try raw.openCall(1, method: "/test.Typed/Echo", request: request)
        let frames = try raw.read(until: .trailers, callID: 1)
        let message = try #require(frames.first { $0.type == .message && $0.callID == 1 })
        #expect(try Strata_V1_GetPositionAtResponse(serializedBytes: message.payload).position == 42)
        #expect(try trailers(frames)?.code == StatusCode.ok.rawValue)

        // A request that is not the declared message: INVALID_ARGUMENT naming the type.
        raw.send(Frame(type: .headers, callID: 3, payload: try {
            var headers = Strata_V1_CallHeaders()
            headers.method = "/test.Typed/Echo"
            headers.metadata = [MetadataKey.tenant: "acme", MetadataKey.authorization: "Bearer \(ServerFixture.adminKey)"]
            return try headers.serializedBytes()
        }()))
        raw.send(Frame(type: .message, flags: .endStream, callID: 3, payload: [0xFF, 0xFF, 0xFF]))
        let refused = try #require(try trailers(raw.read(until: .trailers, callID: 3)))
        #expect(refused.code == StatusCode.invalidArgument.rawValue)
        #expect(refused.message.contains("GetPositionAtRequest"))

        // The handler's queue is busy past the call's deadline: the call ends
        // with DEADLINE_EXCEEDED and its handler never runs.
        let gate = DispatchSemaphore(value: 0)
        queue.async { gate.wait() }
        try raw.openCall(5, method: "/test.Typed/Echo", timeoutMs: 50, request: request)
        #expect(try trailers(raw.read(until: .trailers, callID: 5))?.code == StatusCode.deadlineExceeded.rawValue)
        gate.signal()
        queue.sync {}
        #expect(ran.withLock { $0 } == 1)
    }
}
