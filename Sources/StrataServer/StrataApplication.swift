import Foundation
import Logging
import StrataProjections
import StrataStorage
import StrataSupport

/// Strata, whole: the data-directory lock, the storage engine, the system
/// store (tenants and keys), the projection engines, the tenant directory,
/// the router with every service, the RPC server and its metrics endpoint.
///
/// It is the one place where these are built and wired. `strata serve` only
/// loads the configuration, handles signals and prints; tests start the same
/// type on ephemeral ports.
///
/// Order (each step needs the ones before it):
///
/// `init` — nothing listens yet:
/// 1. lock the data directory (one server per directory);
/// 2. open the storage engine, the system store and the projection manager;
/// 3. build the tenant directory, the router with every service, and the RPC server;
/// 4. reconcile the tenant registry with the disk (leftovers removed, quotas known).
///
/// `start()`:
/// 5. bind the RPC port and the metrics port;
/// 6. in development mode, create the development tenant and its key on first start;
/// 7. start the projections of every tenant that has some;
/// 8. mark the server ready (`/ready` answers 200).
///
/// `shutdown(grace:)` — the reverse:
/// 1. stop accepting, GOAWAY every connection, let in-flight calls finish
///    within `grace`, then close what is left and the metrics endpoint;
/// 2. stop the projections (each commits what it has handled);
/// 3. close every tenant's environment, then the system store (an admin
///    operation still finishing on a Dispatch queue gets an error, never a
///    closed environment);
/// 4. release the data-directory lock.
///
/// Thread-safe: the components guard their own state; `phase` and `lock` are
/// owned by `state`, whose lock is held for the whole of `start()` and of
/// `shutdown(grace:)`, so the two never interleave and a second `shutdown`
/// returns only once the first has finished.
public final class StrataApplication: Sendable {
    public let configuration: StrataConfiguration
    /// The server admin key in effect: the configured one, or one made up for
    /// this run in development mode (`adminKeyWasGenerated`).
    public let adminKey: String
    public var adminKeyWasGenerated: Bool { configuration.adminKey == nil }
    public let metrics: ServerMetrics
    public let engine: StorageEngine
    public let system: SystemStore
    public let projections: ProjectionManager
    public let tenants: TenantDirectory
    public let server: RPCServer
    /// One line per change start-up reconciliation made to the registry.
    public let reconciliationNotes: [String]
    private let logger: Logger

    private enum Phase { case built, started, stopped }
    private struct State: ~Copyable {
        var phase = Phase.built
        var lock: DataDirectoryLock?
    }
    private let state: Locked<State>

    /// Steps 1–4. `extraRoutes` adds methods beside the services (tests use
    /// it for methods with controlled behaviour). Throws, having released
    /// whatever it had opened, when a step fails.
    public init(configuration: StrataConfiguration, logger: Logger = Logger(label: "strata"),
                extraRoutes: (inout Router) -> Void = { _ in }) throws(ApplicationError) {
        var adminKey = configuration.adminKey
        if adminKey == nil {
            guard configuration.server.developmentMode else {
                throw .configuration("production mode needs a server admin key: set auth.admin_key or STRATA_ADMIN_KEY (at least \(StrataConfiguration.minimumAdminKeyLength) characters)")
            }
            adminKey = APIKey.generate().text
        }
        self.configuration = configuration
        self.adminKey = adminKey ?? ""
        self.logger = logger

        // 1. Before anything is opened: one server per data directory.
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(dataDirectory: configuration.storage.dataDirectory)
        } catch {
            throw .dataDirectory(error)
        }
        // 2.
        let metrics = ServerMetrics()
        var storageOptions = configuration.storage
        storageOptions.store.logger = logger
        let observer = storageOptions.store.commitObserver
        storageOptions.store.commitObserver = { batch in
            metrics.committed(batch)
            observer?(batch)
        }
        let engine: StorageEngine
        let system: SystemStore
        do {
            engine = try StorageEngine(options: storageOptions)
        } catch {
            throw .storage(error)
        }
        do {
            system = try SystemStore(dataDirectory: configuration.storage.dataDirectory)
        } catch {
            engine.close()
            throw .storage(error)
        }
        let projections = ProjectionManager(storage: engine, options: configuration.projections)
        // 3.
        let calls = CallTerminator()
        let tenants = TenantDirectory(system: system, engine: engine, projections: projections, calls: calls,
                                      backupDirectory: configuration.effectiveBackupDirectory,
                                      drainTimeout: configuration.drainTimeout, metrics: metrics, logger: logger)
        var router = Router()
        let services: [any RPCService] = [
            StreamsService(engine: engine, readPageSize: configuration.server.readPageSize,
                           maxFrameSize: configuration.server.maxFrameSize,
                           subscriptions: configuration.server.subscriptions, metrics: metrics),
            SnapshotsService(engine: engine, readPageSize: configuration.server.readPageSize,
                             maxFrameSize: configuration.server.maxFrameSize),
            ProjectionsService(manager: projections),
            AdminService(tenants: tenants, maxOperations: configuration.maxAdminOperations),
        ]
        for service in services { service.register(in: &router) }
        extraRoutes(&router)
        let server = RPCServer(configuration: configuration.server, router: router,
                               authorizer: KeyAuthorizer(system: system, adminKey: self.adminKey),
                               calls: calls, tenants: tenants, metrics: metrics, logger: logger)
        // 4. The registry matches the disk and quotas are known before any call.
        do {
            reconciliationNotes = try tenants.reconcile()
        } catch {
            engine.close()
            system.close()
            throw .storage(error)
        }
        self.metrics = metrics
        self.engine = engine
        self.system = system
        self.projections = projections
        self.tenants = tenants
        self.server = server
        self.state = Locked(State(lock: lock))
    }

    /// What `start()` did: the bound ports and, on a development server's
    /// first start, the development tenant's new admin key.
    public struct Started: Sendable {
        public let port: UInt16
        public let metricsPort: UInt16?
        /// Set once, when development mode created the development tenant:
        /// (tenant, admin key). Shown to the operator only then.
        public let developmentCredentials: (tenant: String, key: String)?
    }

    /// Steps 5–8. Listens, bootstraps development mode, starts projections,
    /// and marks the server ready. A failed bind closes the storage.
    @discardableResult
    public func start() throws(ApplicationError) -> Started {
        let outcome = state.withLock { state -> Result<Started, ApplicationError> in
            switch state.phase {
            case .started: return .failure(.configuration("the application was already started"))
            case .stopped: return .failure(.configuration("the application was shut down; build a new one to start again"))
            case .built: break
            }
            state.phase = .started
            do throws(ApplicationError) {
                return .success(try startLocked())
            } catch {
                stopLocked(&state, grace: nil)
                return .failure(error)
            }
        }
        return try outcome.get()
    }

    /// Steps 5–8, with `state`'s lock held.
    private func startLocked() throws(ApplicationError) -> Started {
        // 5.
        let port: UInt16
        do {
            port = try server.start()
        } catch {
            throw .listen(error)
        }
        // 6. Changed only once the port is ours, so a failed start leaves nothing behind.
        var credentials: (tenant: String, key: String)?
        if configuration.server.developmentMode {
            let tenant = configuration.developmentTenant
            do {
                if try system.tenant(tenant) == nil {
                    _ = try tenants.createTenant(tenant, maxSizeBytes: nil)
                    let (_, key) = try tenants.createKey(tenant, role: .admin, label: "development")
                    credentials = (tenant, key.text)
                }
            } catch {
                throw .developmentBootstrap(tenant: tenant, cause: error)
            }
        }
        // 7.
        projections.startAll { [logger] in logger.notice("\($0)") }
        // 8.
        server.markReady()
        return Started(port: port, metricsPort: server.metricsPort, developmentCredentials: credentials)
    }

    /// The reverse of `init` and `start()`; blocks until done. Idempotent.
    /// `grace` bounds how long in-flight calls may take to finish
    /// (default: `server.shutdown_grace_seconds`).
    public func shutdown(grace: Duration? = nil) {
        state.withLock { state in stopLocked(&state, grace: grace) }
    }

    /// The shutdown sequence, with `state`'s lock held.
    private func stopLocked(_ state: inout State, grace: Duration?) {
        guard state.phase != .stopped else { return }
        state.phase = .stopped
        server.shutdown(grace: grace ?? configuration.server.shutdownGracePeriod)
        projections.stopAll()
        engine.close()
        system.close()
        state.lock?.release()  // only once every store is closed
        state.lock = nil
    }

    deinit { shutdown() }
}

/// Why the application could not be built or started.
public enum ApplicationError: Error, Sendable, CustomStringConvertible {
    /// The configuration cannot run (a production server without an admin key).
    case configuration(String)
    /// The data directory is locked by another process or cannot be locked.
    case dataDirectory(DataDirectoryLock.Failure)
    /// The storage engine, the system store or reconciliation failed.
    case storage(StorageError)
    /// A port could not be bound.
    case listen(StartError)
    /// Development mode could not create its tenant or key.
    case developmentBootstrap(tenant: String, cause: any Error)

    public var description: String {
        switch self {
        case .configuration(let message): message
        case .dataDirectory(let failure): "\(failure)"
        case .storage(let error): "\(error)"
        case .listen(let error): "\(error)"
        case .developmentBootstrap(let tenant, let cause): "cannot create the development tenant '\(tenant)': \(cause)"
        }
    }
}
