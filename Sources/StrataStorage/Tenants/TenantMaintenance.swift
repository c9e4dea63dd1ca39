import Dispatch
import Foundation
import StrataLMDB

/// Progress of a long tenant operation (backup, restore, verify, compact).
public struct OperationProgress: Sendable, Equatable {
    /// What is being done now ("copying", "checking the log", …).
    public var phase: String
    public var done: UInt64
    /// 0 when unknown.
    public var total: UInt64
    /// What `done` and `total` count ("bytes", "events", "streams").
    public var unit: String

    public init(phase: String, done: UInt64, total: UInt64, unit: String) {
        self.phase = phase
        self.done = done
        self.total = total
        self.unit = unit
    }
}

/// Receives progress; returning false cancels the operation.
public typealias ProgressHandler = (OperationProgress) -> Bool

/// A tenant taken out of service: no new lease is granted while it lives.
/// Created by `StorageEngine.exclude`; `end()` puts the tenant back.
public final class TenantExclusion: Sendable {
    public let tenant: String
    private let engine: StorageEngine

    fileprivate init(tenant: String, engine: StorageEngine) {
        self.tenant = tenant
        self.engine = engine
    }

    /// Waits until every lease of the tenant is released, then closes its
    /// environment. Throws `.tenantBusy` if leases remain after `timeout`
    /// (the exclusion stays in force; call `end()`).
    public func closeWhenIdle(timeout: Duration) throws(StorageError) {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (store, drained): (EventStore?, DispatchSemaphore?) = engine.state.withLock { state in
                guard let exclusion = state.excluded[tenant] else { return (nil, nil) }
                guard let entry = state.open[tenant] else { return (nil, nil) }
                if entry.leases == 0 {
                    state.open[tenant] = nil
                    return (entry.store, nil)
                }
                return (nil, exclusion.drained)
            }
            if let store {
                store.close()
                return
            }
            guard let drained else { return }  // not open
            let left = deadline - .now
            if left <= .zero { throw .tenantBusy(name: tenant, reason: "still in use after \(timeout)") }
            _ = drained.wait(timeout: .now() + left.seconds)
        }
    }

    /// Puts the tenant back in service (idempotent).
    public func end() {
        engine.state.withLock { _ = $0.excluded.removeValue(forKey: tenant) }
    }
}

extension StorageEngine {
    /// Takes a tenant out of service: from now on leases fail with
    /// `refusal` (callers see it as the call's status). Existing leases
    /// stay valid; `closeWhenIdle` waits for them. Fails with `.tenantBusy`
    /// if another maintenance operation holds the tenant.
    public func exclude(_ tenant: String, refusal: StorageError) throws(StorageError) -> TenantExclusion {
        try TenantName.validate(tenant)
        try state.withLock { state throws(StorageError) in
            if state.excluded[tenant] != nil {
                throw .tenantBusy(name: tenant, reason: "another maintenance operation is running on it")
            }
            state.excluded[tenant] = Exclusion(refusal: refusal, drained: DispatchSemaphore(value: 0))
        }
        return TenantExclusion(tenant: tenant, engine: self)
    }

    /// Sets a tenant's size quota (its map size); nil restores the default.
    /// Applies when the tenant's environment next opens.
    public func setQuota(_ tenant: String, bytes: Int?) {
        state.withLock { $0.mapSizes[tenant] = bytes }
    }

    /// The map size a tenant opens with.
    public func quota(of tenant: String) -> Int {
        state.withLock { $0.mapSizes[tenant] } ?? options.store.mapSize
    }

    /// Removes a tenant's files. The tenant must be excluded and closed.
    public func removeFiles(of exclusion: TenantExclusion) throws(StorageError) {
        let path = directory(of: exclusion.tenant)
        do {
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        } catch {
            throw .fileOperation(path: path, reason: "cannot remove: \(error.localizedDescription)")
        }
    }

    /// The first step of deleting a tenant: its directory is renamed (an
    /// atomic step, made durable) to a hidden name, so a crash from here on
    /// leaves a leftover that `removeLeftovers()` deletes at start-up, never
    /// half a tenant. The tenant must be excluded and closed. Removing the
    /// renamed files is the caller's last step (`RetiredTenantFiles.remove()`).
    public func retireFiles(of exclusion: TenantExclusion) throws(StorageError) -> RetiredTenantFiles {
        let path = directory(of: exclusion.tenant)
        let parent = Self.tenantsDirectory(options.dataDirectory)
        let hidden = (parent as NSString).appendingPathComponent(".deleted-\(exclusion.tenant)-\(UUID().uuidString)")
        if rename(path, hidden) != 0 {
            throw .fileOperation(path: path, reason: "cannot remove: \(String(cString: strerror(errno)))")
        }
        Self.syncDirectory(parent)
        return RetiredTenantFiles(path: hidden)
    }

    /// Deletes what interrupted work left in the tenants directory (hidden
    /// `.deleted-`, `.compact-` and `.restore-` entries). Run at start-up,
    /// before any tenant opens. Returns one line per entry removed.
    public func removeLeftovers() -> [String] {
        let parent = Self.tenantsDirectory(options.dataDirectory)
        var notes: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(".") {
            do {
                try FileManager.default.removeItem(atPath: (parent as NSString).appendingPathComponent(entry))
                notes.append("removed \(entry), left by an interrupted deletion, compaction or restore")
            } catch {
                notes.append("could not remove \(entry), left by an interrupted deletion, compaction or restore: \(error.localizedDescription)")
            }
        }
        return notes
    }

    /// Opens a restored tenant once, directly (it is excluded, so no call
    /// can reach it), which checks its schema and rebuilds its in-memory
    /// index state, then closes it.
    public func checkRestored(_ exclusion: TenantExclusion) throws(StorageError) {
        let store = try EventStore(path: directory(of: exclusion.tenant), tenant: exclusion.tenant,
                                   options: storeOptions(for: exclusion.tenant))
        store.close()
    }

    /// Rewrites an excluded, closed tenant's data file without free pages
    /// (LMDB's compacting copy), replacing the file atomically by rename.
    /// Returns the file sizes before and after.
    public func compact(_ exclusion: TenantExclusion, progress: ProgressHandler) throws(StorageError) -> (before: Int, after: Int) {
        let tenant = exclusion.tenant
        let path = directory(of: tenant)
        let dataFile = (path as NSString).appendingPathComponent("data.mdb")
        let scratch = (Self.tenantsDirectory(options.dataDirectory) as NSString).appendingPathComponent(".compact-\(tenant)")
        let copyFile = (scratch as NSString).appendingPathComponent("data.mdb")
        let before = Self.fileSize(dataFile)
        do {
            try? FileManager.default.removeItem(atPath: scratch)
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            let env = try Environment(path: path, options: EnvironmentOptions(mapSize: quota(of: tenant), maxDatabases: 16))
            let used = env.usage().usedBytes
            defer { env.close() }
            try env.copy(toFile: copyFile, compact: true) { written in
                progress(OperationProgress(phase: "compacting", done: UInt64(written), total: UInt64(used), unit: "bytes"))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            if error is CancellationError { throw .fileOperation(path: path, reason: "compaction cancelled; the tenant is unchanged") }
            throw .fileOperation(path: path, reason: "compaction failed, the tenant is unchanged: \(error)")
        }
        // rename(2) replaces the file atomically: a crash leaves either the
        // old file or the compacted one, never a mix.
        if rename(copyFile, dataFile) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: scratch)
            throw .fileOperation(path: dataFile, reason: "cannot replace with the compacted copy: \(reason); the tenant is unchanged")
        }
        let directoryFD = Glibc.open(path, O_RDONLY | O_DIRECTORY)
        if directoryFD >= 0 {
            fsync(directoryFD)
            Glibc.close(directoryFD)
        }
        try? FileManager.default.removeItem(atPath: scratch)
        return (before, Self.fileSize(dataFile))
    }

    /// Creates tenant `tenant` from a backup's data file. The tenant must be
    /// excluded and must not exist on disk.
    public func restore(_ exclusion: TenantExclusion, from backupFile: String, progress: ProgressHandler) throws(StorageError) {
        let path = directory(of: exclusion.tenant)
        if FileManager.default.fileExists(atPath: path) { throw .tenantExists(name: exclusion.tenant) }
        guard FileManager.default.fileExists(atPath: backupFile) else {
            throw .fileOperation(path: backupFile, reason: "no such backup file")
        }
        let total = UInt64(Self.fileSize(backupFile))
        let scratch = (Self.tenantsDirectory(options.dataDirectory) as NSString).appendingPathComponent(".restore-\(exclusion.tenant)")
        do {
            try? FileManager.default.removeItem(atPath: scratch)
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try Self.copyFile(backupFile, to: (scratch as NSString).appendingPathComponent("data.mdb")) { done in
                progress(OperationProgress(phase: "copying", done: done, total: total, unit: "bytes"))
            }
            // The directory appears under its name only once complete.
            try FileManager.default.moveItem(atPath: scratch, toPath: path)
            Self.syncDirectory((path as NSString).deletingLastPathComponent)
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw .fileOperation(path: backupFile, reason: "restore failed, nothing was created: \(error)")
        }
    }

    /// fsyncs a directory, so a rename or creation inside it survives a
    /// power loss (the file's own fsync does not cover its name).
    public static func syncDirectory(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        Glibc.close(fd)
    }

    /// The options a tenant's store opens with (its quota as map size).
    public func storeOptions(for tenant: String) -> EventStoreOptions {
        var store = options.store
        store.mapSize = quota(of: tenant)
        return store
    }

    public static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Copies a file in 1 MiB chunks, fsyncs the copy, reports bytes copied.
    static func copyFile(_ source: String, to destination: String, progress: (UInt64) -> Bool) throws {
        let input = Glibc.open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw StorageError.fileOperation(path: source, reason: String(cString: strerror(errno))) }
        defer { Glibc.close(input) }
        let output = Glibc.open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard output >= 0 else { throw StorageError.fileOperation(path: destination, reason: String(cString: strerror(errno))) }
        defer { Glibc.close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while true {
            let count = Glibc.read(input, buffer.baseAddress, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { throw StorageError.fileOperation(path: source, reason: String(cString: strerror(errno))) }
            if count == 0 { break }
            var offset = 0
            while offset < count {
                let n = Glibc.write(output, buffer.baseAddress! + offset, count - offset)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw StorageError.fileOperation(path: destination, reason: String(cString: strerror(errno))) }
                offset += n
            }
            done += UInt64(count)
            if !progress(done) { throw CancellationError() }
        }
        guard fsync(output) == 0 else { throw StorageError.fileOperation(path: destination, reason: String(cString: strerror(errno))) }
    }
}

/// A deleted tenant's files under their hidden name, until removed.
public struct RetiredTenantFiles: Sendable {
    public let path: String

    /// Removes the files; what fails to go is removed at the next start-up.
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
