import Foundation
import Logging
import StrataProjections
import StrataStorage
import StrataSupport
import StrataWire

/// The tenants and keys of a server, and the operations that cross layers:
/// the registry (system store), the tenants' environments (storage engine),
/// their projections and the calls running on them.
///
/// Thread-safe: it owns no mutable state; the system store, the storage
/// engine (which serializes maintenance per tenant through exclusions) and
/// the projection manager each guard their own.
public final class TenantDirectory: Sendable {
    public let system: SystemStore
    public let engine: StorageEngine
    let projections: ProjectionManager
    let calls: CallTerminator
    public let backupDirectory: String
    let logger: Logger
    /// Told when a tenant is deleted, to drop its series.
    let metrics: ServerMetrics?
    /// How long deletion and compaction wait for a tenant's calls to finish.
    let drainTimeout: Duration

    /// Smallest and largest per-tenant quotas accepted.
    public static let quotaRange = (1 << 20)...(1 << 44)

    public init(system: SystemStore, engine: StorageEngine, projections: ProjectionManager, calls: CallTerminator,
                backupDirectory: String, drainTimeout: Duration = .seconds(10), metrics: ServerMetrics? = nil,
                logger: Logger = Logger(label: "strata")) {
        self.system = system
        self.engine = engine
        self.projections = projections
        self.calls = calls
        self.backupDirectory = backupDirectory
        self.drainTimeout = drainTimeout
        self.logger = logger
        self.metrics = metrics
    }

    static var now: Int64 { UnixNanoseconds.now }

    // MARK: - Start-up

    /// Reconciles the registry with the disk before serving: tenant
    /// directories from before the registry existed are registered, leftovers
    /// of an interrupted deletion or compaction are removed, and quotas are
    /// handed to the storage engine. Returns one line per change made.
    public func reconcile() throws(StorageError) -> [String] {
        var notes = engine.removeLeftovers()
        let registered = try system.tenants()
        let names = Set(registered.map(\.name))
        for name in engine.listTenants() where !names.contains(name) {
            try system.insertTenant(TenantRecord(name: name, createdAt: Self.now, maxSizeBytes: nil))
            notes.append("registered tenant '\(name)' found on disk")
        }
        for record in registered {
            if !engine.tenantExists(record.name) {
                try system.removeTenant(record.name)
                notes.append("unregistered tenant '\(record.name)': its directory is gone")
                continue
            }
            engine.setQuota(record.name, bytes: record.maxSizeBytes)
        }
        return notes
    }

    // MARK: - Tenants

    public func tenants() throws(StorageError) -> [TenantRecord] {
        try system.tenants()
    }

    public func quota(of record: TenantRecord) -> Int {
        record.maxSizeBytes ?? engine.options.store.mapSize
    }

    static func validateQuota(_ bytes: Int?) throws(RPCError) {
        guard let bytes else { return }
        guard quotaRange.contains(bytes) else {
            throw .invalidArgument(field: "max_size_bytes", reason: "must be between \(quotaRange.lowerBound) (1 MiB) and \(quotaRange.upperBound) (16 TiB) bytes, not \(bytes)")
        }
    }

    public func createTenant(_ name: String, maxSizeBytes: Int?) throws -> TenantRecord {
        try TenantName.validate(name)
        try Self.validateQuota(maxSizeBytes)
        let record = TenantRecord(name: name, createdAt: Self.now, maxSizeBytes: maxSizeBytes)
        try system.insertTenant(record)
        engine.setQuota(name, bytes: maxSizeBytes)
        do {
            try engine.createTenant(name).release()
        } catch {
            _ = try? system.removeTenant(name)
            throw error
        }
        logger.notice("tenant created", metadata: ["tenant": "\(name)"])
        return record
    }

    public struct Deletion: Sendable {
        public var callsEnded: Int
        public var projectionsStopped: Int
        public var keysRemoved: Int
    }

    /// Ends the tenant's streaming calls, stops its projections, waits for
    /// its other calls, closes its environment, then removes its keys, its
    /// registration and its files. If the tenant stays busy past the drain
    /// timeout nothing is removed and it goes back into service.
    public func deleteTenant(_ name: String) throws -> Deletion {
        try TenantName.validate(name)
        guard try system.tenant(name) != nil else { throw StorageError.tenantNotFound(name: name) }
        let exclusion = try engine.exclude(name, refusal: .tenantNotFound(name: name))
        let ended = calls.endCalls(onlyStreaming: true, error: RPCError(.notFound, "tenant '\(name)' was deleted")) { $0.tenant == name }
        let stopped = projections.stop(tenant: name)
        do {
            try exclusion.closeWhenIdle(timeout: drainTimeout)
        } catch {
            exclusion.end()
            try? projections.restart(tenant: name)
            throw error
        }
        // Renamed first (atomic), so a crash from here on leaves a hidden
        // directory that start-up removes, never half a tenant.
        let retired: RetiredTenantFiles
        do {
            retired = try engine.retireFiles(of: exclusion)
        } catch {
            exclusion.end()
            try? projections.restart(tenant: name)
            throw error
        }
        // Keys and registration go in one transaction. Should it fail, the
        // files are already out of the way: the next start-up unregisters a
        // tenant whose directory is gone.
        let keys: Int
        do {
            keys = try system.removeTenant(name)
        } catch {
            projections.forget(tenant: name)
            exclusion.end()
            throw error
        }
        engine.setQuota(name, bytes: nil)
        projections.forget(tenant: name)
        exclusion.end()
        retired.remove()
        metrics?.forgetTenant(name)
        logger.notice("tenant deleted: \(ended) streaming call(s) ended, \(stopped) projection(s) stopped, \(keys) key(s) removed",
                      metadata: ["tenant": "\(name)"])
        return Deletion(callsEnded: ended, projectionsStopped: stopped, keysRemoved: keys)
    }

    // MARK: - Maintenance

    public func statistics(_ tenant: String) throws -> (TenantStatistics, [ProjectionStatus]) {
        let lease = try engine.lease(tenant)
        defer { lease.release() }
        let statistics = try lease.store.statistics()
        let running = try projections.runningEngine(for: tenant)?.list() ?? []
        return (statistics, running)
    }

    /// Backup names: a directory under the backup directory, nothing else.
    static func validateBackupName(_ name: String) throws(RPCError) {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x2d || byte == 0x5f || byte == 0x2e
        }
        guard !name.isEmpty, name.utf8.count <= 128, allowed, !name.hasPrefix(".") else {
            throw .invalidArgument(field: "name", reason: "a backup name has 1 to 128 letters, digits, '-', '_' or '.', and does not start with '.'")
        }
    }

    /// Backups live under `<backup directory>/<tenant>/<name>/`, so one
    /// tenant can neither take nor read another's backup names.
    public func backupPath(tenant: String, name: String) -> String {
        ((backupDirectory as NSString).appendingPathComponent(tenant) as NSString).appendingPathComponent(name)
    }

    public func backup(_ tenant: String, name: String, progress: ProgressHandler) throws -> BackupManifest {
        try Self.validateBackupName(name)
        let lease = try engine.lease(tenant)
        defer { lease.release() }
        let path = backupPath(tenant: tenant, name: name)
        let manifest = try lease.store.backup(to: path, progress: progress)
        logger.notice("tenant backed up to \(path) (\(manifest.bytes) bytes)", metadata: ["tenant": "\(tenant)"])
        return manifest
    }

    /// Creates tenant `name` from backup `source` ("<tenant>/<backup name>",
    /// as BackupTenant reported it). Everything happens while the new name
    /// is excluded, so no call can open it before it is complete and
    /// registered: the files are copied, opened once directly (checking
    /// the schema and rebuilding in-memory index state), then registered.
    public func restore(_ name: String, from source: String, maxSizeBytes: Int?, progress: ProgressHandler) throws -> (TenantRecord, UInt64) {
        try TenantName.validate(name)
        let parts = source.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2, (try? TenantName.validate(parts[0])) != nil else {
            throw RPCError.invalidArgument(field: "backup", reason: "name a backup as '<tenant>/<backup name>', as `tenant backup` printed it")
        }
        try Self.validateBackupName(parts[1])
        try Self.validateQuota(maxSizeBytes)
        let directory = backupPath(tenant: parts[0], name: parts[1])
        guard BackupManifest.isComplete(directory) else { throw StorageError.backupNotFound(name: source) }
        if try system.tenant(name) != nil || engine.tenantExists(name) { throw StorageError.tenantExists(name: name) }
        let exclusion = try engine.exclude(name, refusal: .tenantNotFound(name: name))
        defer { exclusion.end() }
        let file = BackupManifest.dataFile(in: directory)
        try engine.restore(exclusion, from: file, progress: progress)
        engine.setQuota(name, bytes: maxSizeBytes)
        let record = TenantRecord(name: name, createdAt: Self.now, maxSizeBytes: maxSizeBytes)
        do {
            try engine.checkRestored(exclusion)
            try system.insertTenant(record)
        } catch {
            // Nothing opened the tenant through the engine (it is excluded).
            try? engine.removeFiles(of: exclusion)
            engine.setQuota(name, bytes: nil)
            throw error
        }
        exclusion.end()
        try? projections.restart(tenant: name)
        logger.notice("tenant restored from \(directory)", metadata: ["tenant": "\(name)"])
        return (record, UInt64(StorageEngine.fileSize(file)))
    }

    public func verify(_ tenant: String, maxIssues: Int, progress: ProgressHandler) throws -> VerifyReport {
        let lease = try engine.lease(tenant)
        defer { lease.release() }
        return try lease.store.verify(maxIssues: maxIssues, progress: progress)
    }

    /// Takes the tenant out of service for `body`: new calls get
    /// UNAVAILABLE (`reason`), its streaming calls but `ownMethod`'s are
    /// ended, its projections stopped, and its environment closed once its
    /// other calls finish; afterwards it goes back into service (reopening on
    /// its next call) and its projections restart.
    private func outOfService<R>(_ tenant: String, reason: String, ownMethod: String,
                                 _ body: (TenantExclusion) throws -> R) throws -> R {
        try TenantName.validate(tenant)
        guard engine.tenantExists(tenant) else { throw StorageError.tenantNotFound(name: tenant) }
        let exclusion = try engine.exclude(tenant, refusal: .tenantBusy(name: tenant, reason: reason))
        defer {
            exclusion.end()
            try? projections.restart(tenant: tenant)
        }
        calls.endCalls(onlyStreaming: true, error: RPCError(.unavailable, "tenant '\(tenant)' is unavailable: \(reason); resubscribe after your last position")) {
            $0.tenant == tenant && $0.method != ownMethod
        }
        projections.stop(tenant: tenant)
        try exclusion.closeWhenIdle(timeout: drainTimeout)
        return try body(exclusion)
    }

    /// Compacts the tenant's file while it is out of service.
    public func compact(_ tenant: String, progress: ProgressHandler) throws -> (before: Int, after: Int) {
        let sizes = try outOfService(tenant, reason: "it is being compacted", ownMethod: AdminMethod.compactTenant) { exclusion in
            try engine.compact(exclusion, progress: progress)
        }
        logger.notice("tenant compacted: \(sizes.before) → \(sizes.after) bytes", metadata: ["tenant": "\(tenant)"])
        return sizes
    }

    /// Changes a tenant's quota: recorded in the registry, applied by
    /// reopening its environment (briefly out of service).
    public func setQuota(_ tenant: String, maxSizeBytes: Int?) throws -> TenantRecord {
        try TenantName.validate(tenant)
        try Self.validateQuota(maxSizeBytes)
        guard var record = try system.tenant(tenant) else { throw StorageError.tenantNotFound(name: tenant) }
        let wanted = maxSizeBytes ?? engine.options.store.mapSize
        let used = try engine.withTenant(tenant) { try $0.usage().usedBytes }
        guard wanted >= used else {
            throw RPCError.invalidArgument(field: "max_size_bytes",
                                           reason: "\(wanted) bytes is below the \(used) bytes tenant '\(tenant)' uses; compact it or choose more")
        }
        record.maxSizeBytes = maxSizeBytes
        try outOfService(tenant, reason: "its quota is being changed", ownMethod: AdminMethod.setTenantQuota) { _ in
            try system.updateTenant(record)
            engine.setQuota(tenant, bytes: maxSizeBytes)
        }
        logger.notice("tenant quota set to \(wanted) bytes", metadata: ["tenant": "\(tenant)"])
        return record
    }

    // MARK: - Keys

    public func createKey(_ tenant: String, role: Role, label: String) throws -> (KeyRecord, APIKey) {
        guard label.utf8.count <= 200 else {
            throw RPCError.invalidArgument(field: "label", reason: "at most 200 bytes")
        }
        let key = APIKey.generate()
        let record = KeyRecord(id: key.id, tenant: tenant, role: role, label: label, secretHash: key.secretHash, createdAt: Self.now)
        try system.insertKey(record)
        logger.notice("key created", metadata: ["tenant": "\(tenant)", "key_id": "\(key.id)", "role": "\(role.rawValue)"])
        return (record, key)
    }

    public func keys(_ tenant: String) throws -> [KeyRecord] {
        try system.keys(tenant: tenant)
    }

    /// Revokes a key: new calls fail at once, and its streaming calls on
    /// every connection are ended with UNAUTHENTICATED before this returns.
    public func revokeKey(_ tenant: String, id: String) throws -> KeyRecord {
        let record = try system.revokeKey(id: id, tenant: tenant, at: Self.now)
        let ended = calls.endCalls(onlyStreaming: true, error: RPCError(.unauthenticated, "API key \(id) was revoked")) {
            $0.principal.keyID == id
        }
        logger.notice("key revoked: \(ended) streaming call(s) ended", metadata: ["tenant": "\(tenant)", "key_id": "\(id)"])
        return record
    }
}
