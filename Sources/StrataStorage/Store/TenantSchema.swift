import Foundation
import StrataLMDB

/// The named databases of one tenant's environment and the schema version
/// check. Everything a tenant stores lives in these databases:
///
/// | database       | key                                  | value                              |
/// |----------------|--------------------------------------|------------------------------------|
/// | `meta`         | setting name (ASCII)                 | setting value                      |
/// | `log`          | global position (u64, integer key)   | event record (`EventRecord`)       |
/// | `streams`      | stream name (UTF-8)                  | stream record (`StreamRecord`; the |
/// |                |                                      | revision comes from `stream-index`)|
/// | `stream-index` | stream number, first revision of a   | positions of up to 64 consecutive  |
/// |                | chunk (u64 BE ×2)                    | revisions (u64 LE each); complete  |
/// |                |                                      | up to `meta`'s `indexed-through`   |
/// | `event-ids`    | event id (16 bytes)                  | global position (u64 LE)           |
/// | `time-index`   | commit time, ns (u64, integer key)   | first position of that commit (LE) |
/// | `snapshots`    | stream number, revision (u64 BE ×2)  | snapshot record (`SnapshotRecord`) |
/// | `projections`  | projection name                      | `ProjectionRecord` (JSON)          |
/// | `projection-checkpoints` | projection name            | `ProjectionCheckpoint` (40 bytes)  |
/// | `projection-states` | name, NUL, partition key        | the partition's state (JSON)       |
/// | `projection-snapshots` | name, NUL, position (u64 BE) | the whole state then (JSON)        |
struct TenantDatabases: Sendable {
    /// Version 1: the layout above.
    static let schemaVersion: UInt32 = 1
    static let schemaVersionKey = Array("schema-version".utf8)
    static let nextStreamNumberKey = Array("next-stream-number".utf8)
    /// `stream-index` holds every entry up to this position; later ones are
    /// in memory (`StreamIndexTail`) and rebuilt from the log after a crash.
    static let indexedThroughKey = Array("indexed-through".utf8)

    let meta: Database
    let log: Database
    let streams: Database
    let streamIndex: Database
    let eventIDs: Database
    let timeIndex: Database
    /// (stream number BE, revision BE) → snapshot record (`SnapshotRecord`).
    let snapshots: Database
    let projections: Database
    let projectionCheckpoints: Database
    let projectionStates: Database
    let projectionSnapshots: Database

    /// Opens (creating on first use) every database and checks the schema
    /// version: a newer version than this build knows is refused before
    /// anything is read or written.
    static func open(in env: Environment) throws -> TenantDatabases {
        try env.write { txn in
            let meta = try txn.openDatabase("meta", flags: .create)
            if let stored = try schemaVersionKey.withUnsafeBytes({ try txn.borrowValue(meta, key: $0) }) {
                guard stored.count == 4 else {
                    throw StorageError.corrupt(path: env.path, detail: "schema version has \(stored.count) bytes")
                }
                let version = UInt32(littleEndian: stored.loadUnaligned(as: UInt32.self))
                if version > schemaVersion {
                    throw StorageError.newerSchema(path: env.path, found: version, supported: schemaVersion)
                }
            } else {
                try schemaVersionKey.withUnsafeBytes { key in
                    try withUnsafeBytes(of: schemaVersion.littleEndian) { try txn.put(meta, key: key, value: $0) }
                }
            }
            return TenantDatabases(
                meta: meta,
                log: try txn.openDatabase("log", flags: [.create, .integerKey]),
                streams: try txn.openDatabase("streams", flags: .create),
                streamIndex: try txn.openDatabase("stream-index", flags: .create),
                eventIDs: try txn.openDatabase("event-ids", flags: .create),
                timeIndex: try txn.openDatabase("time-index", flags: [.create, .integerKey]),
                snapshots: try txn.openDatabase("snapshots", flags: .create),
                // Added after version 1 shipped; additive, so no version bump:
                // an older build never opens them.
                projections: try txn.openDatabase("projections", flags: .create),
                projectionCheckpoints: try txn.openDatabase("projection-checkpoints", flags: .create),
                projectionStates: try txn.openDatabase("projection-states", flags: .create),
                projectionSnapshots: try txn.openDatabase("projection-snapshots", flags: .create)
            )
        }
    }
}
