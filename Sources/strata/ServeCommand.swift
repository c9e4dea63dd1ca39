import ArgumentParser
import Dispatch
import Foundation
import StrataProjections
import StrataServer
import StrataStorage

/// `strata serve`: the server with the Streams service on the storage
/// engine. Settings are layered: defaults < `config/strata.yaml` (or
/// `--config`) < `STRATA_*` environment variables < these flags.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the Strata server.",
        discussion: """
        Reads config/strata.yaml when it exists (every key is documented there). Environment variables \
        override it (STRATA_HOST, STRATA_PORT, STRATA_DATA, STRATA_DURABILITY, STRATA_MAP_SIZE_MIB, \
        STRATA_DEV_TENANT, STRATA_ADMIN_KEY, or STRATA_<SECTION>_<KEY> for any key); flags override both.
        """
    )

    @Option(help: "Configuration file (env STRATA_CONFIG; default config/strata.yaml when present).") var config: String?
    @Option(help: "Address to listen on.") var host: String?
    @Option(help: "Port to listen on; 0 picks a free one.") var port: String?
    @Option(help: "Data directory.") var data: String?
    @Option(help: "sync (fsync every commit) or relaxed (periodic flush).") var durability: String?
    @Option(help: "Per-tenant map size, the size quota, in MiB.") var mapSizeMib: String?
    @Option(help: "Tenant created on first start in development mode.") var devTenant: String?

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let explicitPath = config ?? environment["STRATA_CONFIG"]
        let path = explicitPath ?? "config/strata.yaml"
        var yaml: String?
        if FileManager.default.fileExists(atPath: path) {
            do {
                yaml = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw StartupError("cannot read \(path): \(error.localizedDescription)")
            }
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
        let settings: StrataConfiguration
        do {
            settings = try StrataConfiguration.load(yaml: yaml, source: path, environment: environment, overrides: overrides)
        } catch {
            throw StartupError("\(error)")
        }
        // Signals are taken over before anything starts, so a SIGTERM that
        // arrives during start-up (or right after "listening") is never lost:
        // the server then stops as soon as it has started.
        let stop = DispatchSemaphore(value: 0)
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let signalQueue = DispatchQueue(label: "strata.signals")
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler { stop.signal() }
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
        let engine = try StorageEngine(options: settings.storage)
        let system = try SystemStore(dataDirectory: settings.storage.dataDirectory)
        let projections = ProjectionManager(storage: engine, options: settings.projections)
        let log: @Sendable (String) -> Void = { print("strata: " + $0); fflush(nil) }
        let server = StrataServer(configuration: settings.server, engine: engine, system: system, adminKey: adminKey ?? "",
                                  projections: projections, backupDirectory: settings.effectiveBackupDirectory,
                                  drainTimeout: settings.drainTimeout, maxAdminOperations: settings.maxAdminOperations, log: log)
        // The registry matches the disk and quotas are known before any call.
        for note in try server.tenants?.reconcile() ?? [] { log(note) }
        let bound: UInt16
        do {
            bound = try server.start()
        } catch {
            engine.close()
            throw StartupError("cannot listen on \(settings.server.host):\(settings.server.port): \(error)")
        }
        // Changed only once the port is ours, so a failed start leaves nothing behind.
        guard let tenants = server.tenants else { throw StartupError("server built without tenant administration") }
        if development {
            let devTenant = settings.developmentTenant
            if try system.tenant(devTenant) == nil {
                _ = try tenants.createTenant(devTenant, maxSizeBytes: nil)
                let (_, key) = try tenants.createKey(devTenant, role: .admin, label: "development")
                print("strata: DEVELOPMENT MODE: created tenant '\(devTenant)' and an admin key for it, shown only now:")
                print("strata:   export STRATA_TENANT=\(devTenant) STRATA_API_KEY=\(key.text)")
            }
        }
        projections.startAll { print("strata: \($0)") }
        let names = ((try? system.tenants()) ?? []).map(\.name)
        print("strata: listening on \(settings.server.host):\(bound); data in \(settings.storage.dataDirectory) (durability \(settings.storage.store.durability.rawValue)); tenants: \(names.joined(separator: ", "))")
        if development {
            if settings.adminKey == nil {
                print("strata: DEVELOPMENT MODE: server admin key for this run: \(adminKey ?? "")")
            } else {
                print("strata: DEVELOPMENT MODE: server admin key from configuration")
            }
            print("strata: try `strata append demo-1 Greeted '{\"hello\":\"world\"}'` then `strata read demo-1`")
        }
        fflush(nil)

        stop.wait()
        print("strata: shutting down: finishing in-flight calls")
        fflush(nil)
        sources.forEach { $0.cancel() }
        server.shutdown()
        // Projections commit what they have handled before the stores close.
        projections.stopAll()
        engine.close()
        withExtendedLifetime(lock) {}  // held until the stores are closed
        // The system store stays open until the process exits: an admin
        // call still finishing on a Dispatch queue may use it, and every
        // change to it is already committed.
        print("strata: stopped")
    }
}

/// A start-up failure: printed as one line ("Error: …"), exit status 1.
struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
