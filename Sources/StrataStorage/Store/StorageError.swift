import Foundation
import StrataLMDB
import StrataSupport

/// Everything the storage layer can refuse or fail with, carrying what a
/// caller (and later a status code's details) needs.
public enum StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stream was not in the expected state. Nothing was written.
    case wrongExpectedRevision(stream: String, expected: ExpectedRevision, actual: ActualRevision)
    case streamNotFound(stream: String)
    /// The stream was soft-deleted; its events remain in `$all`.
    case streamDeleted(stream: String)
    case invalidStreamName(stream: String, reason: String)
    /// A snapshot that cannot be stored (revision beyond the stream, too large).
    case invalidSnapshot(stream: String, reason: String)
    case invalidEvent(stream: String, index: Int, reason: String)
    /// An append (or one stream of a multi-stream append) carried no events.
    case noEvents(stream: String)
    /// An event's data plus metadata exceed the configured size.
    case eventTooLarge(stream: String, index: Int, size: Int, limit: Int)
    /// One append carried more events than the configured limit.
    case tooManyEvents(count: Int, limit: Int)
    /// The same event id appears twice in one append.
    case duplicateEventID(id: UUID)
    /// The event id is already stored, under a different stream or revision
    /// than this append would give it.
    case eventIDConflict(id: UUID, storedStream: String, storedRevision: UInt64)
    /// A retry carried an event id already stored, at the place the retry
    /// names, but with another type, data or metadata: not the same event.
    case eventIDContentConflict(id: UUID, storedStream: String, storedRevision: UInt64)
    /// A multi-stream append named the same stream twice.
    case duplicateStream(stream: String)
    /// The tenant's map is full (its size quota). Reads keep working.
    case quotaExceeded(tenant: String, mapSize: Int)
    /// The file system holding the tenant ran out of space (or of the
    /// owner's disk quota) before its map did. Nothing of the write was
    /// stored; reads keep working, and writes succeed again once space is
    /// freed.
    case diskFull(tenant: String, path: String, operation: String)
    case invalidTenantName(name: String, reason: String)
    case tenantNotFound(name: String)
    case tenantExists(name: String)
    /// The data was written by a newer Strata; reading it could misread it.
    case newerSchema(path: String, found: UInt32, supported: UInt32)
    /// Stored bytes do not decode: a damaged file or a bug; never guessed at.
    case corrupt(path: String, detail: String)
    /// The store was closed while the call was queued or running.
    case closed(tenant: String)
    /// An LMDB call failed in a way no other case describes.
    case lmdb(LMDBError)
    case projectionNotFound(name: String)
    case projectionExists(name: String)
    /// A projection name, partition key or request the store refuses.
    case invalidProjection(name: String, reason: String)
    /// A projection commit or state change lost a race (a reset, an update,
    /// another runner); nothing was written.
    case projectionConflict(name: String, reason: String)
    case keyNotFound(id: String)
    case keyExists(id: String)
    /// The tenant is closed for maintenance (compaction, deletion, restore);
    /// retry later.
    case tenantBusy(name: String, reason: String)
    case backupExists(name: String)
    /// No complete backup of that name (a backup is complete once its
    /// `backup.json` is written).
    case backupNotFound(name: String)
    /// A file or directory could not be created, read or written (a
    /// backup, a restore, a compaction, a tenant's directory).
    case fileOperation(path: String, reason: String)
    /// Something the storage layer relies on did not hold (a writer that
    /// answered with the wrong kind of result, an error of a type no layer
    /// below should throw): a bug, reported with what was seen.
    case invariantViolated(String)

    public var description: String {
        switch self {
        case let .wrongExpectedRevision(stream, expected, actual):
            "wrong expected revision on stream '\(stream)': expected \(expected), actual \(actual)"
        case let .streamNotFound(stream): "stream '\(stream)' not found"
        case let .streamDeleted(stream): "stream '\(stream)' is deleted"
        case let .invalidStreamName(stream, reason): "invalid stream name '\(stream)': \(reason)"
        case let .invalidSnapshot(stream, reason): "invalid snapshot of stream '\(stream)': \(reason)"
        case let .invalidEvent(stream, index, reason): "invalid event \(index) for stream '\(stream)': \(reason)"
        case let .noEvents(stream): "an append to stream '\(stream)' needs at least one event"
        case let .eventTooLarge(stream, index, size, limit):
            "event \(index) for stream '\(stream)' is \(size) bytes; the limit is \(limit)"
        case let .tooManyEvents(count, limit): "\(count) events in one append; the limit is \(limit)"
        case let .duplicateEventID(id): "event id \(id) appears more than once in the append"
        case let .eventIDConflict(id, stream, revision):
            "event id \(id) is already stored as revision \(revision) of stream '\(stream)'"
        case let .eventIDContentConflict(id, stream, revision):
            "event id \(id) is already stored as revision \(revision) of stream '\(stream)' with other content (type, data or metadata differ); a retry must resend the same event, a new event needs a new id"
        case let .duplicateStream(stream): "stream '\(stream)' appears more than once in a multi-stream append"
        case let .quotaExceeded(tenant, mapSize): "tenant '\(tenant)' is full (map size \(mapSize) bytes)"
        case let .diskFull(tenant, path, operation):
            "tenant '\(tenant)': no space left on the disk holding \(path) (\(operation)); nothing of this write was stored, and writes succeed again once space is freed"
        case let .invalidTenantName(name, reason): "invalid tenant name '\(name)': \(reason)"
        case let .tenantNotFound(name): "tenant '\(name)' not found"
        case let .tenantExists(name): "tenant '\(name)' already exists"
        case let .newerSchema(path, found, supported):
            "\(path) has schema version \(found); this build reads up to \(supported)"
        case let .corrupt(path, detail): "corrupt data in \(path): \(detail)"
        case let .closed(tenant): "tenant '\(tenant)' store is closed"
        case let .lmdb(error): "storage error: \(error)"
        case let .projectionNotFound(name): "projection '\(name)' not found"
        case let .projectionExists(name): "projection '\(name)' already exists"
        case let .invalidProjection(name, reason): "projection '\(name)': \(reason)"
        case let .projectionConflict(name, reason): "projection '\(name)' changed meanwhile: \(reason)"
        case let .keyNotFound(id): "API key '\(id)' not found"
        case let .keyExists(id): "API key '\(id)' already exists"
        case let .tenantBusy(name, reason): "tenant '\(name)' is unavailable: \(reason); retry later"
        case let .fileOperation(path, reason): "\(path): \(reason)"
        case let .backupExists(name): "backup '\(name)' already exists; choose a new name"
        case let .backupNotFound(name): "no complete backup '\(name)'"
        case let .invariantViolated(what): "storage invariant violated: \(what)"
        }
    }
}
