import ArgumentParser
import Dispatch
import Foundation
import Logging
import StrataProjections
import StrataServer
import StrataStorage

/// `strata serve`: the server with every service on the storage engine.
/// Settings are layered: defaults < `config/strata.yaml` (or `--config`) <
/// `STRATA_*` environment variables < these flags.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the Strata server.",
        discussion: """
        Reads config/strata.yaml when it exists (every key is documented there). Environment variables \
        override it (STRATA_HOST, STRATA_PORT, STRATA_DATA, STRATA_DURABILITY, STRATA_MAP_SIZE_MIB, \
        STRATA_DEV_TENANT, STRATA_ADMIN_KEY, STRATA_LOG_LEVEL, or STRATA_<SECTION>_<KEY> for any key); \
        flags override both. SIGTERM or SIGINT stops it gracefully.
        """
    )

    @Option(help: "Configuration file (env STRATA_CONFIG; default config/strata.yaml when present).") var config: String?
    @Option(help: "Address to listen on.") var host: String?
    @Option(help: "Port to listen on; 0 picks a free one.") var port: String?
    @Option(help: "Data directory.") var data: String?
    @Option(help: "sync (fsync every commit) or relaxed (periodic flush).") var durability: String?
    @Option(help: "Per-tenant map size, the size quota, in MiB.") var mapSizeMib: String?
    @Option(help: "Tenant created on first start in development mode.") var devTenant: String?
    @Option(help: "Port of /metrics, /health and /ready; 0 picks a free one.") var metricsPort: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Option(help: "text or json.") var logFormat: String?

    func run() throws {
        let settings = try loadSettings()
        // Logs go to standard output, one line per record (journald, docker
        // and friends collect it). Bootstrapped once, before anything logs.
        LoggingSystem.bootstrap { _ in StrataLogHandler(level: settings.logLevel, format: settings.logFormat) }
        let logger = Logger(label: "strata")

        // Signals are taken over before anything starts, so a SIGTERM that
        // arrives during start-up (or right after "listening") is never lost:
        // the server then stops as soon as it has started.
        // A second signal, or a shutdown outlasting shutdown_timeout_seconds,
        // exits at once: nothing committed is lost (LMDB, as after a crash).
        let stop = DispatchSemaphore(value: 0)
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let signalQueue = DispatchQueue(label: "strata.signals")  // owns `signalled`
        nonisolated(unsafe) var signalled = false
        let shutdownTimeout = settings.shutdownTimeout
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler {
                if signalled {
                    logger.critical("second signal during shutdown: exiting now")
                    _exit(2)
                }
                signalled = true
                stop.signal()
                signalQueue.asyncAfter(deadline: .now() + .seconds(Int(shutdownTimeout.components.seconds))) {
                    logger.critical("shutdown did not finish within \(shutdownTimeout): exiting now")
                    _exit(2)
                }
            }
            source.resume()
            return source
        }
        let development = settings.server.developmentMode
        var adminKey = settings.adminKey
        if adminKey == nil {
            guard development else {
                throw StartupError("production mode needs a server admin key: set auth.admin_key or STRATA_ADMIN_KEY (at least \(StrataConfiguration.minimumAdminKeyLength) characters)")
            }
            adminKey = APIKey.generate().text
        }

        // Before anything is opened: one server per data directory.
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(dataDirectory: settings.storage.dataDirectory)
        } catch {
            throw StartupError("\(error)")
        }
        let metrics = ServerMetrics()
        var storageOptions = settings.storage
        storageOptions.store.commitObserver = { metrics.committed($0) }
        let engine = try StorageEngine(options: storageOptions)
        let system = try SystemStore(dataDirectory: settings.storage.dataDirectory)
        let projections = ProjectionManager(storage: engine, options: settings.projections)
        let server = StrataServer(configuration: settings.server, engine: engine, system: system, adminKey: adminKey ?? "",
                                  projections: projections, backupDirectory: settings.effectiveBackupDirectory,
                                  drainTimeout: settings.drainTimeout, maxAdminOperations: settings.maxAdminOperations,
                                  metrics: metrics, logger: logger)
        // The registry matches the disk and quotas are known before any call.
        for note in try server.tenants?.reconcile() ?? [] { logger.notice("\(note)") }
        let bound: UInt16
        do {
            bound = try server.start()
        } catch {
            engine.close()
            throw StartupError("\(error)")
        }
        // Changed only once the port is ours, so a failed start leaves nothing behind.
        guard let tenants = server.tenants else { throw StartupError("server built without tenant administration") }
        if development {
            let devTenant = settings.developmentTenant
            if try system.tenant(devTenant) == nil {
                _ = try tenants.createTenant(devTenant, maxSizeBytes: nil)
                let (_, key) = try tenants.createKey(devTenant, role: .admin, label: "development")
                // Credentials go to standard output, never through the logger,
                // and only in development mode, only this once.
                printCredentials("DEVELOPMENT MODE: created tenant '\(devTenant)' and an admin key for it, shown only now:",
                                 "  export STRATA_TENANT=\(devTenant) STRATA_API_KEY=\(key.text)")
            }
        }
        projections.startAll { logger.notice("\($0)") }
        let names = ((try? system.tenants()) ?? []).map(\.name)
        logger.notice("listening on \(settings.server.host):\(bound); data in \(settings.storage.dataDirectory) (durability \(settings.storage.store.durability.rawValue)); tenants: \(names.joined(separator: ", "))")
        if let metricsPort = server.metricsPort {
            logger.notice("metrics on http://\(settings.server.metricsHost):\(metricsPort)/metrics (also /health and /ready)")
        }
        if development {
            if settings.adminKey == nil {
                printCredentials("DEVELOPMENT MODE: server admin key for this run: \(adminKey ?? "")")
            } else {
                logger.notice("DEVELOPMENT MODE: server admin key from configuration")
            }
            logger.notice("try `strata append demo-1 Greeted '{\"hello\":\"world\"}'` then `strata read demo-1`")
        }
        server.markReady()

        stop.wait()
        logger.notice("shutting down: finishing in-flight calls")
        server.shutdown()
        // Projections commit what they have handled before the stores close.
        projections.stopAll()
        engine.close()
        withExtendedLifetime(lock) {}  // held until the stores are closed
        // The system store stays open until the process exits: an admin
        // call still finishing on a Dispatch queue may use it, and every
        // change to it is already committed.
        logger.notice("stopped")
        withExtendedLifetime(sources) {}  // a second signal still exits at once until here
    }

    /// Defaults < file < environment < flags.
    private func loadSettings() throws -> StrataConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let explicitPath = config ?? environment["STRATA_CONFIG"]
        let path = explicitPath ?? "config/strata.yaml"
        var yaml: String?
        // stat(2), not fileExists: a file the server may not read (or in a
        // directory it may not search) must not pass for a missing one.
        var info = stat()
        if stat(path, &info) == 0 {
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw StartupError("cannot read configuration file \(path): \(String(cString: strerror(access(path, R_OK) == 0 ? EIO : errno)))")
            }
            guard let text = String(data: bytes, encoding: .utf8) else {
                throw StartupError("configuration file \(path) is not UTF-8 text")
            }
            yaml = text
        } else if errno != ENOENT {
            throw StartupError("cannot read configuration file \(path): \(String(cString: strerror(errno)))")
        } else if explicitPath != nil {
            throw StartupError("configuration file \(path) does not exist")
        }
        var overrides: [String: String] = [:]
        overrides["server.host"] = host
        overrides["server.port"] = port
        overrides["storage.data_directory"] = data
        overrides["storage.durability"] = durability
        overrides["storage.map_size_mib"] = mapSizeMib
        overrides["development.tenant"] = devTenant
        overrides["metrics.port"] = metricsPort
        overrides["logging.level"] = logLevel
        overrides["logging.format"] = logFormat
        do {
            return try StrataConfiguration.load(yaml: yaml, source: path, environment: environment, overrides: overrides)
        } catch {
            throw StartupError("\(error)")
        }
    }

    /// Development credentials: printed plainly to standard output.
    private func printCredentials(_ lines: String...) {
        for line in lines { print("strata: " + line) }
        fflush(nil)
    }
}

/// A start-up failure: printed as one line ("Error: …"), exit status 1.
struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
