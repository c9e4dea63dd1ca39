import StrataLMDB
import Foundation
import StrataSupport

/// What a tenant holds, for `strata tenant stats`.
public struct TenantStatistics: Sendable, Equatable {
    public var events: UInt64
    public var streams: UInt64
    public var headPosition: UInt64
    /// Nanoseconds since the epoch of the last commit; nil for an empty tenant.
    public var lastWriteAt: Int64?
    /// Bytes of the map in use (the highest page written, times the page size).
    public var usedBytes: UInt64
    /// The map size: the tenant's size quota.
    public var mapSize: UInt64
    /// The data file's size on disk.
    public var fileBytes: UInt64
}

extension BackupManifest {
    /// Whether `directory` holds a complete backup: its `backup.json` is
    /// written last, so without it the backup is partial.
    public static func isComplete(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("backup.json"))
    }

    /// The data file of the backup in `directory`.
    public static func dataFile(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("data.mdb")
    }
}

/// Describes a backup; written as `backup.json` beside its `data.mdb`.
public struct BackupManifest: Codable, Sendable, Equatable {
    public var tenant: String
    /// Nanoseconds since the epoch.
    public var createdAt: Int64
    /// The copy holds at least the events up to this position (it was read
    /// just before the copy's snapshot was taken).
    public var headPositionAtLeast: UInt64
    public var schemaVersion: UInt32
    public var bytes: UInt64
}

extension EventStore {
    public func statistics() throws(StorageError) -> TenantStatistics {
        let (events, streams, head, last) = try withRead { txn in
            let events = UInt64(try txn.statistics(dbs.log).entries)
            let streams = UInt64(try txn.statistics(dbs.streams).entries)
            let lastEntry = try txn.withCursor(dbs.log) { cursor in
                try cursor.last().map { (Keys.decodeIntegerKey($0.key), EventRecord.isValid($0.value) ? EventRecord.recordedAt($0.value) : 0) }
            }
            return (events, streams, lastEntry?.0 ?? 0, lastEntry?.1)
        }
        let usage = try usage()
        return TenantStatistics(events: events, streams: streams, headPosition: head, lastWriteAt: last,
                                usedBytes: UInt64(usage.usedBytes), mapSize: UInt64(usage.mapSize),
                                fileBytes: UInt64(StorageEngine.fileSize((path as NSString).appendingPathComponent("data.mdb"))))
    }

    /// Writes a consistent, compacted copy of the tenant into `directory`
    /// (created here; it must not exist): `data.mdb`, which a tenant
    /// directory can open as is, then `backup.json`, which marks the backup
    /// complete. Appends go on meanwhile; the copy is the log as of one
    /// moment. On failure or cancellation (progress returning false) the
    /// directory is removed.
    public func backup(to directory: String, progress: ProgressHandler) throws(StorageError) -> BackupManifest {
        let name = (directory as NSString).lastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: (directory as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
        } catch {
            throw .fileOperation(path: "backup '\(name)'", reason: "cannot create its directory: \(error.localizedDescription)")
        }
        // mkdir(2) claims the name atomically: of two backups with the same
        // name, one fails here and removes nothing of the other's.
        if mkdir(directory, 0o750) != 0 {
            if errno == EEXIST { throw .backupExists(name: name) }
            throw .fileOperation(path: "backup '\(name)'", reason: "cannot create: \(String(cString: strerror(errno)))")
        }
        let head = try headPosition()
        let estimate = UInt64(try usage().usedBytes)
        let dataFile = (directory as NSString).appendingPathComponent("data.mdb")
        do {
            try gate.enter(orThrow: StorageError.closed(tenant: tenant)) {
                try env.copy(toFile: dataFile, compact: true) { written in
                    progress(OperationProgress(phase: "copying", done: UInt64(written), total: max(estimate, UInt64(written)), unit: "bytes"))
                }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            if error is CancellationError { throw .fileOperation(path: "backup '\(name)'", reason: "backup cancelled; nothing was kept") }
            throw .fileOperation(path: "backup '\(name)'", reason: "backup failed, nothing was kept: \(error)")
        }
        let manifest = BackupManifest(tenant: tenant, createdAt: UnixNanoseconds.now,
                                      headPositionAtLeast: head, schemaVersion: TenantDatabases.schemaVersion,
                                      bytes: UInt64(StorageEngine.fileSize(dataFile)))
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(manifest).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("backup.json")), options: .atomic)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw .fileOperation(path: "backup '\(name)'", reason: "cannot write backup.json: \(error.localizedDescription)")
        }
        return manifest
    }
}
