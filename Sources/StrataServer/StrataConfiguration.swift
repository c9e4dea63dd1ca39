import Foundation
import Logging
import StrataProjections
import StrataStorage
import Yams

/// A configuration problem, naming the key and where its value came from.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    public let message: String
    public var description: String { key.isEmpty ? message : "configuration key '\(key)': \(message)" }
}

/// Everything `strata serve` runs with, built from layers: defaults < the
/// YAML file < environment variables < flags. Keys are `section.name` as in
/// `config/strata.yaml`; the environment uses `STRATA_SECTION_NAME` (and the
/// short aliases in `environmentAliases`).
public struct StrataConfiguration: Sendable {
    public var server = ServerConfiguration()
    public var storage: StorageEngineOptions
    public var developmentTenant = "default"
    public var projections = ProjectionOptions()
    /// The server admin key (`auth.admin_key`, env STRATA_ADMIN_KEY). Nil:
    /// development mode makes one up at each start; production mode refuses
    /// to start.
    public var adminKey: String?
    /// Where backups are written (`storage.backup_directory`); nil:
    /// `<data directory>/backups`.
    public var backupDirectory: String?
    /// How long deleting or compacting a tenant waits for its calls to finish.
    public var drainTimeout: Duration = .seconds(10)
    /// Long admin operations (backup, restore, verify, compact) running at
    /// once; each holds a thread, so more are refused, not queued.
    public var maxAdminOperations = 2
    /// The whole of a graceful shutdown (drain, projections, stores) takes at
    /// most this long; past it the process exits at once (status 2), which
    /// loses nothing committed (`server.shutdown_timeout_seconds`).
    public var shutdownTimeout: Duration = .seconds(30)
    /// Lowest level logged (`logging.level`).
    public var logLevel: Logger.Level = .info
    /// `text` or `json` lines (`logging.format`).
    public var logFormat: LogFormat = .text

    /// The backup directory in effect.
    public var effectiveBackupDirectory: String {
        backupDirectory ?? (storage.dataDirectory as NSString).appendingPathComponent("backups")
    }

    /// Shortest server admin key accepted.
    public static let minimumAdminKeyLength = 24

    /// Whether `/metrics`, `/health` and `/ready` are served (`metrics.enabled`).
    public var metricsEnabled = true
    /// Their port (`metrics.port`; 0 picks a free one).
    public var metricsPort: UInt16 = 7071

    public init() {
        storage = StorageEngineOptions(dataDirectory: "./data")
    }

    /// The keys that exist, with how to apply a value (as text) to the configuration.
    private typealias Setter = @Sendable (inout StrataConfiguration, String) throws(ConfigurationError) -> Void

    private static let setters: [String: Setter] = [
        "server.host": { c, v throws(ConfigurationError) in c.server.host = try nonEmpty("server.host", v) },
        "server.port": { c, v throws(ConfigurationError) in c.server.port = try integer("server.port", v, UInt16.self) },
        "server.max_connections": { c, v throws(ConfigurationError) in c.server.maxConnections = try positive("server.max_connections", v) },
        "server.max_concurrent_calls_per_connection": { c, v throws(ConfigurationError) in
            c.server.maxConcurrentCallsPerConnection = UInt32(try positive("server.max_concurrent_calls_per_connection", v)) },
        "server.max_frame_size": { c, v throws(ConfigurationError) in
            let size = try positive("server.max_frame_size", v)
            guard size >= 1024 else { throw ConfigurationError(key: "server.max_frame_size", message: "must be at least 1024 bytes, not \(size)") }
            c.server.maxFrameSize = UInt32(clamping: size) },
        "server.initial_window_messages": { c, v throws(ConfigurationError) in
            c.server.initialWindowMessages = UInt32(clamping: try positive("server.initial_window_messages", v)) },
        "server.idle_timeout_seconds": { c, v throws(ConfigurationError) in c.server.idleTimeout = .seconds(try positive("server.idle_timeout_seconds", v)) },
        "server.handshake_timeout_seconds": { c, v throws(ConfigurationError) in
            c.server.handshakeTimeout = .seconds(try positive("server.handshake_timeout_seconds", v)) },
        "server.max_write_buffer_bytes": { c, v throws(ConfigurationError) in c.server.maxWriteBufferBytes = try positive("server.max_write_buffer_bytes", v) },
        "server.shutdown_grace_seconds": { c, v throws(ConfigurationError) in
            c.server.shutdownGracePeriod = .seconds(try positive("server.shutdown_grace_seconds", v)) },
        "server.shutdown_timeout_seconds": { c, v throws(ConfigurationError) in
            c.shutdownTimeout = .seconds(try positive("server.shutdown_timeout_seconds", v)) },
        "server.read_page_size": { c, v throws(ConfigurationError) in c.server.readPageSize = try positive("server.read_page_size", v) },
        "server.development_mode": { c, v throws(ConfigurationError) in c.server.developmentMode = try boolean("server.development_mode", v) },
        "storage.data_directory": { c, v throws(ConfigurationError) in c.storage.dataDirectory = try nonEmpty("storage.data_directory", v) },
        "storage.durability": { c, v throws(ConfigurationError) in
            guard let durability = Durability(rawValue: v) else {
                throw ConfigurationError(key: "storage.durability", message: "must be 'sync' or 'relaxed', not '\(v)'")
            }
            c.storage.store.durability = durability },
        "storage.flush_interval_ms": { c, v throws(ConfigurationError) in
            c.storage.store.flushInterval = .milliseconds(try positive("storage.flush_interval_ms", v)) },
        "storage.map_size_mib": { c, v throws(ConfigurationError) in c.storage.store.mapSize = try positive("storage.map_size_mib", v) << 20 },
        "storage.max_open_tenants": { c, v throws(ConfigurationError) in c.storage.maxOpenTenants = try positive("storage.max_open_tenants", v) },
        "storage.idle_tenant_seconds": { c, v throws(ConfigurationError) in c.storage.idleTimeout = .seconds(try positive("storage.idle_tenant_seconds", v)) },
        "storage.preallocate_mib": { c, v throws(ConfigurationError) in
            // Bounded: one step is written, and then synced, in one go on the writer thread.
            let mib = try integer("storage.preallocate_mib", v, UInt16.self)
            guard mib <= 1024 else {
                throw ConfigurationError(key: "storage.preallocate_mib", message: "must be from 0 to 1024, not \(mib)")
            }
            c.storage.store.preallocationStep = Int(mib) << 20 },
        "storage.max_batch_events": { c, v throws(ConfigurationError) in c.storage.store.maxBatchEvents = try positive("storage.max_batch_events", v) },
        "storage.index_flush_events": { c, v throws(ConfigurationError) in
            c.storage.store.indexFlushEvents = try positive("storage.index_flush_events", v) },
        "storage.index_flush_interval_ms": { c, v throws(ConfigurationError) in
            c.storage.store.indexFlushInterval = .milliseconds(try positive("storage.index_flush_interval_ms", v)) },
        "storage.snapshots_per_stream": { c, v throws(ConfigurationError) in
            c.storage.store.snapshotsPerStream = try positive("storage.snapshots_per_stream", v) },
        "limits.max_snapshot_bytes": { c, v throws(ConfigurationError) in
            c.storage.store.limits.maxSnapshotBytes = try positive("limits.max_snapshot_bytes", v) },
        "limits.max_admin_operations": { c, v throws(ConfigurationError) in
            c.maxAdminOperations = try positive("limits.max_admin_operations", v) },
        "limits.max_event_bytes": { c, v throws(ConfigurationError) in c.storage.store.limits.maxEventBytes = try positive("limits.max_event_bytes", v) },
        "limits.max_events_per_append": { c, v throws(ConfigurationError) in
            c.storage.store.limits.maxEventsPerAppend = try positive("limits.max_events_per_append", v) },
        "subscription.checkpoint_interval": { c, v throws(ConfigurationError) in
            c.server.subscriptions.checkpointInterval = try positive("subscription.checkpoint_interval", v) },
        "subscription.max_lag_events": { c, v throws(ConfigurationError) in
            c.server.subscriptions.maxLagEvents = UInt64(try positive("subscription.max_lag_events", v)) },
        "subscription.max_lag_seconds": { c, v throws(ConfigurationError) in
            c.server.subscriptions.maxLagDuration = .seconds(try integer("subscription.max_lag_seconds", v, UInt32.self)) },
        "projections.checkpoint_events": { c, v throws(ConfigurationError) in
            c.projections.checkpointEvents = try positive("projections.checkpoint_events", v) },
        "projections.checkpoint_interval_ms": { c, v throws(ConfigurationError) in
            c.projections.checkpointInterval = .milliseconds(try positive("projections.checkpoint_interval_ms", v)) },
        "projections.batch_size": { c, v throws(ConfigurationError) in
            c.projections.batchSize = try positive("projections.batch_size", v) },
        "projections.snapshot_events": { c, v throws(ConfigurationError) in
            c.projections.snapshotEvents = Int(try integer("projections.snapshot_events", v, UInt32.self)) },
        "projections.keep_snapshots": { c, v throws(ConfigurationError) in
            c.projections.keepSnapshots = try positive("projections.keep_snapshots", v) },
        "projections.max_emitted_per_commit": { c, v throws(ConfigurationError) in
            c.projections.maxEmittedPerCommit = try positive("projections.max_emitted_per_commit", v) },
        "projections.max_per_tenant": { c, v throws(ConfigurationError) in
            c.projections.maxPerTenant = try positive("projections.max_per_tenant", v) },
        "projections.max_memory_mib": { c, v throws(ConfigurationError) in
            c.projections.sandbox.memoryBytes = try positive("projections.max_memory_mib", v) << 20 },
        "projections.max_instructions_per_event": { c, v throws(ConfigurationError) in
            let count = try positive("projections.max_instructions_per_event", v)
            guard count >= 1000 else {
                throw ConfigurationError(key: "projections.max_instructions_per_event", message: "must be at least 1000, not \(count)")
            }
            c.projections.sandbox.instructionsPerCall = count },
        "auth.admin_key": { c, v throws(ConfigurationError) in
            guard v.count >= minimumAdminKeyLength else {
                throw ConfigurationError(key: "auth.admin_key", message: "must be at least \(minimumAdminKeyLength) characters (try `openssl rand -base64 32`)")
            }
            c.adminKey = v },
        "auth.drain_timeout_seconds": { c, v throws(ConfigurationError) in
            c.drainTimeout = .seconds(try positive("auth.drain_timeout_seconds", v)) },
        "storage.backup_directory": { c, v throws(ConfigurationError) in c.backupDirectory = try nonEmpty("storage.backup_directory", v) },
        "metrics.enabled": { c, v throws(ConfigurationError) in c.metricsEnabled = try boolean("metrics.enabled", v) },
        "metrics.host": { c, v throws(ConfigurationError) in c.server.metricsHost = try nonEmpty("metrics.host", v) },
        "metrics.port": { c, v throws(ConfigurationError) in c.metricsPort = try integer("metrics.port", v, UInt16.self) },
        "logging.level": { c, v throws(ConfigurationError) in
            guard let level = Logger.Level(rawValue: v.lowercased()) else {
                throw ConfigurationError(key: "logging.level", message: "must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), not '\(v)'")
            }
            c.logLevel = level },
        "logging.format": { c, v throws(ConfigurationError) in
            guard let format = LogFormat(rawValue: v.lowercased()) else {
                throw ConfigurationError(key: "logging.format", message: "must be text or json, not '\(v)'")
            }
            c.logFormat = format },
        "development.tenant": { c, v throws(ConfigurationError) in
            do {
                try TenantName.validate(v)
            } catch {
                throw ConfigurationError(key: "development.tenant", message: "\(error)")
            }
            c.developmentTenant = v },
    ]

    /// Every key, sorted.
    public static var keys: [String] { setters.keys.sorted() }

    /// Short environment names for the most used keys.
    public static let environmentAliases: [String: String] = [
        "STRATA_HOST": "server.host",
        "STRATA_PORT": "server.port",
        "STRATA_DATA": "storage.data_directory",
        "STRATA_DURABILITY": "storage.durability",
        "STRATA_MAP_SIZE_MIB": "storage.map_size_mib",
        "STRATA_DEV_TENANT": "development.tenant",
        "STRATA_ADMIN_KEY": "auth.admin_key",
        "STRATA_LOG_LEVEL": "logging.level",
    ]

    /// Builds the configuration: defaults, then `yaml` (the file's text, if
    /// any), then `environment`, then `overrides` (flags, by key).
    public static func load(yaml: String?, source: String = "config/strata.yaml", environment: [String: String],
                            overrides: [String: String]) throws(ConfigurationError) -> StrataConfiguration {
        var configuration = StrataConfiguration()
        if let yaml {
            for (key, value) in try flatten(yaml: yaml, source: source) {
                try apply(key, value, to: &configuration, from: source)
            }
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("STRATA_") {
            if name == "STRATA_CONFIG" || name == "STRATA_TENANT" || name == "STRATA_API_KEY" { continue }
            let key = environmentAliases[name] ?? environmentKey(name)
            guard let key, setters[key] != nil else {
                throw ConfigurationError(key: name, message: "unknown environment variable (keys: \(keys.joined(separator: ", ")))")
            }
            try apply(key, value, to: &configuration, from: "environment variable \(name)")
        }
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            try apply(key, value, to: &configuration, from: "the command line")
        }
        try checkTogether(configuration)
        configuration.server.metricsPort = configuration.metricsEnabled ? configuration.metricsPort : nil
        return configuration
    }

    /// Limits that must agree: a response carrying a snapshot and one event
    /// (an aggregate's first message) must fit in one frame.
    private static func checkTogether(_ c: StrataConfiguration) throws(ConfigurationError) {
        // The drain takes up to the grace period, then up to 5 s to close the
        // connections still busy, then projections and stores need a moment.
        let shortest = c.server.shutdownGracePeriod + .seconds(10)
        if c.shutdownTimeout < shortest {
            throw ConfigurationError(key: "server.shutdown_timeout_seconds",
                                     message: "must be at least server.shutdown_grace_seconds + 10 (\(shortest.components.seconds)), not \(c.shutdownTimeout.components.seconds)")
        }
        if c.metricsEnabled && c.metricsPort != 0 && c.metricsPort == c.server.port {
            throw ConfigurationError(key: "metrics.port", message: "must differ from server.port (both are \(c.metricsPort))")
        }
        let limits = c.storage.store.limits
        let needed = limits.maxSnapshotBytes + limits.maxEventBytes + 64 * 1024
        guard needed <= Int(c.server.maxFrameSize) else {
            throw ConfigurationError(key: "limits.max_snapshot_bytes",
                                     message: "max_snapshot_bytes (\(limits.maxSnapshotBytes)) plus max_event_bytes (\(limits.maxEventBytes)) plus 64 KiB must fit in server.max_frame_size (\(c.server.maxFrameSize))")
        }
    }

    /// `STRATA_SERVER_MAX_CONNECTIONS` → `server.max_connections`.
    private static func environmentKey(_ name: String) -> String? {
        let rest = name.dropFirst("STRATA_".count).lowercased()
        for section in ["server", "storage", "limits", "subscription", "projections", "auth", "metrics", "logging", "development"] where rest.hasPrefix(section + "_") {
            return section + "." + rest.dropFirst(section.count + 1)
        }
        return nil
    }

    /// Applies one value; an error says where the value came from.
    private static func apply(_ key: String, _ value: String, to configuration: inout StrataConfiguration,
                              from source: String) throws(ConfigurationError) {
        guard let setter = setters[key] else {
            throw ConfigurationError(key: key, message: "unknown key, in \(source) (known keys: \(keys.joined(separator: ", ")))")
        }
        do {
            try setter(&configuration, value)
        } catch {
            throw ConfigurationError(key: error.key, message: "\(error.message) (from \(source))")
        }
    }

    /// The file's `section: {name: scalar}` pairs as `section.name` → text.
    private static func flatten(yaml: String, source: String) throws(ConfigurationError) -> [(String, String)] {
        let root: Any?
        do {
            root = try Yams.load(yaml: yaml)
        } catch {
            throw ConfigurationError(key: "", message: "\(source) is not valid YAML: \(error)")
        }
        guard let root else { return [] }
        guard let sections = root as? [String: Any] else {
            throw ConfigurationError(key: "", message: "\(source) must be a mapping of sections (server, storage, limits, subscription, projections, auth, metrics, logging, development)")
        }
        var out: [(String, String)] = []
        for (section, body) in sections.sorted(by: { $0.key < $1.key }) {
            if body is NSNull { continue }
            guard let entries = body as? [String: Any] else {
                throw ConfigurationError(key: section, message: "must be a mapping of settings")
            }
            for (name, value) in entries.sorted(by: { $0.key < $1.key }) {
                let key = "\(section).\(name)"
                switch value {
                case let text as String: out.append((key, text))
                case let flag as Bool: out.append((key, flag ? "true" : "false"))
                case let number as Int: out.append((key, String(number)))
                case let number as Double: out.append((key, String(number)))
                default: throw ConfigurationError(key: key, message: "must be a single value, not \(type(of: value))")
                }
            }
        }
        return out
    }

    private static func nonEmpty(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        guard !value.isEmpty else { throw ConfigurationError(key: key, message: "must not be empty") }
        return value
    }

    private static func integer<T: FixedWidthInteger>(_ key: String, _ value: String, _ type: T.Type) throws(ConfigurationError) -> T {
        guard let number = T(value) else {
            throw ConfigurationError(key: key, message: "must be a whole number from \(T.min) to \(T.max), not '\(value)'")
        }
        return number
    }

    private static func positive(_ key: String, _ value: String) throws(ConfigurationError) -> Int {
        guard let number = Int(value), number > 0 else {
            throw ConfigurationError(key: key, message: "must be a positive whole number, not '\(value)'")
        }
        return number
    }

    private static func boolean(_ key: String, _ value: String) throws(ConfigurationError) -> Bool {
        switch value.lowercased() {
        case "true", "yes", "1": return true
        case "false", "no", "0": return false
        default: throw ConfigurationError(key: key, message: "must be true or false, not '\(value)'")
        }
    }
}
