import ArgumentParser
import Dispatch
import Foundation
import Logging
import StrataProjections
import StrataServer
import StrataStorage

/// `strata serve`: loads the configuration, takes over the signals, runs a
/// `StrataApplication` and prints what an operator needs.
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
        let application: StrataApplication
        let started: StrataApplication.Started
        do {
            application = try StrataApplication(configuration: settings, logger: logger)
            for note in application.reconciliationNotes { logger.notice("\(note)") }
            started = try application.start()
        } catch {
            throw StartupError("\(error)")
        }
        if let credentials = started.developmentCredentials {
            // Credentials go to standard output, never through the logger,
            // and only in development mode, only this once.
            printCredentials("DEVELOPMENT MODE: created tenant '\(credentials.tenant)' and an admin key for it, shown only now:",
                             "  export STRATA_TENANT=\(credentials.tenant) STRATA_API_KEY=\(credentials.key)")
        }
        let names = ((try? application.system.tenants()) ?? []).map(\.name)
        logger.notice("listening on \(settings.server.host):\(started.port); data in \(settings.storage.dataDirectory) (durability \(settings.storage.store.durability.rawValue)); tenants: \(names.joined(separator: ", "))")
        if let metricsPort = started.metricsPort {
            logger.notice("metrics on http://\(settings.server.metricsHost):\(metricsPort)/metrics (also /health and /ready)")
        }
        if settings.server.developmentMode {
            if application.adminKeyWasGenerated {
                printCredentials("DEVELOPMENT MODE: server admin key for this run: \(application.adminKey)")
            } else {
                logger.notice("DEVELOPMENT MODE: server admin key from configuration")
            }
            logger.notice("try `strata append demo-1 Greeted '{\"hello\":\"world\"}'` then `strata read demo-1`")
        }

        stop.wait()
        logger.notice("shutting down: finishing in-flight calls")
        application.shutdown()
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
