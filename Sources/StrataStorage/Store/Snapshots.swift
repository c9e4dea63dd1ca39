import Foundation
import StrataLMDB

/// A stored aggregate snapshot: the state an application computed from a
/// stream up to and including `revision`.
public struct Snapshot: Sendable, Hashable {
    public let stream: String
    public let revision: UInt64
    /// When the event at `revision` was recorded: the snapshot describes the
    /// stream as of that time.
    public let recordedAt: Int64
    /// When the snapshot was saved (the commit time of the save).
    public let savedAt: Int64
    public let contentType: String
    public let payload: Data
}

/// The stored form, in `snapshots` under (stream number, revision):
/// recordedAt i64 LE, savedAt i64 LE, content-type length u16 LE, content
/// type, payload.
struct SnapshotRecord: Sendable {
    var revision: UInt64
    var recordedAt: Int64
    var savedAt: Int64
    var contentType: String
    var payload: Data

    var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(18 + contentType.utf8.count + payload.count)
        withUnsafeBytes(of: recordedAt.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: savedAt.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(contentType.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: contentType.utf8)
        out.append(contentsOf: payload)
        return out
    }

    init(revision: UInt64, recordedAt: Int64, savedAt: Int64, contentType: String, payload: Data) {
        self.revision = revision
        self.recordedAt = recordedAt
        self.savedAt = savedAt
        self.contentType = contentType
        self.payload = payload
    }

    init?(revision: UInt64, stored: UnsafeRawBufferPointer) {
        guard stored.count >= 18 else { return nil }
        let typeLength = Int(UInt16(littleEndian: stored.loadUnaligned(fromByteOffset: 16, as: UInt16.self)))
        guard stored.count >= 18 + typeLength,
              let type = String(validating: UnsafeRawBufferPointer(rebasing: stored[18 ..< 18 + typeLength]), as: UTF8.self)
        else { return nil }
        self.revision = revision
        recordedAt = Int64(littleEndian: stored.loadUnaligned(fromByteOffset: 0, as: Int64.self))
        savedAt = Int64(littleEndian: stored.loadUnaligned(fromByteOffset: 8, as: Int64.self))
        contentType = type
        payload = Data(UnsafeRawBufferPointer(rebasing: stored[(18 + typeLength)...]))
    }

    func snapshot(of stream: String) -> Snapshot {
        Snapshot(stream: stream, revision: revision, recordedAt: recordedAt, savedAt: savedAt,
                 contentType: contentType, payload: payload)
    }
}

/// Where to look at an aggregate from: now, a revision, or a time.
public enum AggregatePoint: Sendable, Hashable {
    case latest
    /// As of this revision (inclusive).
    case revision(UInt64)
    /// As of this time (events recorded at or before it), nanoseconds since the Unix epoch.
    case time(Int64)
}

/// An aggregate's inputs as of some point: the newest snapshot at or before
/// it, then the events after the snapshot up to it.
public struct AggregateSlice: Sendable {
    public let snapshot: Snapshot?
    /// Events after the snapshot (or from the stream's first visible
    /// revision), in revision order, at most the requested count.
    public let events: [RecordedEvent]
    /// The stream's revision at the point (nil: it had no events then).
    public let revision: UInt64?
    /// Where to continue when `events` was cut at the requested count.
    public let nextRevision: UInt64?
}

extension EventStore {
    /// Saves a snapshot of `stream` as of `revision` (which must exist), then
    /// keeps only the newest `options.snapshotsPerStream`. Saving the same
    /// revision again replaces it.
    public func saveSnapshot(of stream: String, revision: UInt64, contentType: String = "application/json",
                             payload: Data) async throws -> Snapshot {
        try await withCheckedThrowingContinuation { continuation in
            submitSnapshot(of: stream, revision: revision, contentType: contentType, payload: payload) {
                continuation.resume(with: $0)
            }
        }
    }

    /// Validates and queues a snapshot save without blocking or needing a
    /// task: the entry point for servers, whose calls must not wait for the
    /// Swift concurrency pool (a busy pool once held a save for over ten
    /// seconds). `completion` runs once, on the writer thread after the
    /// commit or at once on a validation error; it must not block.
    public func submitSnapshot(of stream: String, revision: UInt64, contentType: String = "application/json",
                               payload: Data, completion: @escaping @Sendable (Result<Snapshot, StorageError>) -> Void) {
        let record: SnapshotRecord
        let number: UInt64
        do {
            (record, number) = try prepareSnapshot(of: stream, revision: revision, contentType: contentType, payload: payload)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(.saveSnapshot(record, stream: stream, streamNumber: number, keep: options.snapshotsPerStream)) { result in
            completion(result.flatMap { outcome in
                if case .snapshotSaved(let saved) = outcome { return .success(saved) }
                return .failure(.invariantViolated("the writer answered a snapshot save with \(outcome)"))
            })
        }
    }

    /// Checks a snapshot and finds what it needs, in a read transaction: the
    /// stream's number and the time of the event at `revision`. Events are
    /// immutable and revisions only grow, so what is found stays true until
    /// the writer stores it.
    func prepareSnapshot(of stream: String, revision: UInt64, contentType: String,
                         payload: Data) throws(StorageError) -> (SnapshotRecord, UInt64) {
        try options.limits.validateStreamName(stream)
        guard payload.count <= options.limits.maxSnapshotBytes else {
            throw .invalidSnapshot(stream: stream, reason: "payload of \(payload.count) bytes exceeds the limit of \(options.limits.maxSnapshotBytes)")
        }
        guard contentType.utf8.count <= options.limits.maxContentTypeBytes else {
            throw .invalidSnapshot(stream: stream, reason: "content type longer than \(options.limits.maxContentTypeBytes) bytes")
        }
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            if record.isDeleted { throw StorageError.streamDeleted(stream: stream) }
            guard revision >= record.firstVisibleRevision else {
                throw StorageError.invalidSnapshot(stream: stream,
                                                   reason: "revision \(revision) precedes the stream's re-creation at revision \(record.firstVisibleRevision)")
            }
            guard revision < record.nextRevision else {
                throw StorageError.invalidSnapshot(stream: stream,
                                                   reason: "revision \(revision) is beyond the stream's last revision \(record.nextRevision - 1)")
            }
            guard let position = try position(ofStream: record.number, revision: revision, in: txn, view: view) else {
                throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(revision)")
            }
            let event = try event(at: position, in: txn)
            return (SnapshotRecord(revision: revision, recordedAt: event.recordedAt, savedAt: 0,
                                   contentType: contentType, payload: payload), record.number)
        }
    }

    /// The newest snapshot of `stream` at or before `point` (nil if none).
    public func snapshot(of stream: String, atOrBefore point: AggregatePoint) throws(StorageError) -> Snapshot? {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            guard let limit = try revision(of: record, at: point, in: txn, view: view) else { return nil }
            return try newestSnapshot(ofStream: record.number, atOrBefore: limit, notBefore: Self.firstRevision(of: record, asOf: limit),
                                      in: txn)?.snapshot(of: stream)
        }
    }

    /// The first revision of the stream's life that `revision` belongs to.
    /// A deleted then re-created stream starts its new life at
    /// `firstVisibleRevision`; revisions before it belong to an earlier life,
    /// which (the record keeping only the latest re-creation) starts at 0.
    static func firstRevision(of record: StreamRecord, asOf revision: UInt64) -> UInt64 {
        revision >= record.firstVisibleRevision ? record.firstVisibleRevision : 0
    }

    /// The snapshot with the highest revision in `notBefore ... revision`:
    /// one of an earlier life of the stream does not describe this one.
    func newestSnapshot(ofStream number: UInt64, atOrBefore revision: UInt64, notBefore first: UInt64 = 0,
                        in txn: borrowing ReadTransaction) throws -> SnapshotRecord? {
        try txn.withCursor(dbs.snapshots) { cursor in
            guard let entry = try Keys.withStreamRevision(number, revision, { try cursor.seek(atOrBefore: $0) }),
                  entry.key.count == 16, Keys.decodeUInt64BE(entry.key) == number else { return nil }
            let stored = Keys.decodeUInt64BE(entry.key, at: 8)
            guard stored >= first else { return nil }
            guard let record = SnapshotRecord(revision: stored, stored: entry.value) else {
                throw StorageError.corrupt(path: path, detail: "undecodable snapshot of stream \(number) at revision \(stored)")
            }
            return record
        }
    }

    /// The stream's last revision at `point` (nil: it had no events then).
    /// A time becomes a position with one seek, then a binary search over
    /// the stream's revisions finds the last one at or before it.
    func revision(of record: StreamRecord, at point: AggregatePoint, in txn: borrowing ReadTransaction,
                  view: IndexView) throws -> UInt64? {
        guard record.nextRevision > 0 else { return nil }
        let last = record.nextRevision - 1
        switch point {
        case .latest: return last
        case .revision(let revision): return min(revision, last)
        case .time(let time):
            let position = try position(at: time, in: txn)
            var lo: UInt64 = 0, hi: UInt64 = record.nextRevision  // first revision whose position > `position`
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                guard let p = try self.position(ofStream: record.number, revision: mid, in: txn, view: view) else {
                    throw StorageError.corrupt(path: path, detail: "stream \(record.number) has no index entry for revision \(mid)")
                }
                if p <= position { lo = mid + 1 } else { hi = mid }
            }
            return lo == 0 ? nil : lo - 1
        }
    }

    /// The inputs to rebuild `stream` as of `point`, in one read transaction:
    /// the newest snapshot at or before it and up to `maxEvents` events after
    /// that snapshot. Continue with `from` = `nextRevision` when cut.
    /// History is history: a stream deleted later is still loaded as it was.
    public func loadAggregate(_ stream: String, at point: AggregatePoint = .latest, from: UInt64? = nil,
                              maxEvents: Int = 1000) throws(StorageError) -> AggregateSlice {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            if case .latest = point, record.isDeleted { throw StorageError.streamDeleted(stream: stream) }
            guard let target = try revision(of: record, at: point, in: txn, view: view) else {
                return AggregateSlice(snapshot: nil, events: [], revision: nil, nextRevision: nil)
            }
            var snapshot: Snapshot?
            var revision: UInt64
            if let from {
                revision = from
            } else {
                let first = Self.firstRevision(of: record, asOf: target)
                let found = try newestSnapshot(ofStream: record.number, atOrBefore: target, notBefore: first, in: txn)
                snapshot = found?.snapshot(of: stream)
                revision = found.map { $0.revision + 1 } ?? first
            }
            var events: [RecordedEvent] = []
            while revision <= target && events.count < maxEvents {
                guard let p = try position(ofStream: record.number, revision: revision, in: txn, view: view) else {
                    throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(revision)")
                }
                events.append(try event(at: p, in: txn))
                revision += 1
            }
            return AggregateSlice(snapshot: snapshot, events: events, revision: target,
                                  nextRevision: revision <= target ? revision : nil)
        }
    }

    /// A stream's state as it was at `time`: its last revision then, and
    /// whether it was deleted then. Fails with `.streamNotFound` if it had no
    /// events at that time.
    public func streamInfo(_ stream: String, at time: Int64) throws(StorageError) -> StreamInfo {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view),
                  let revision = try revision(of: record, at: .time(time), in: txn, view: view),
                  let position = try position(ofStream: record.number, revision: revision, in: txn, view: view)
            else {
                throw StorageError.streamNotFound(stream: stream)
            }
            let lastEvent = try event(at: position, in: txn)
            // The record keeps only the latest deletion and re-creation: a
            // stream deleted after `time` was not deleted at `time`, and a
            // first visible revision beyond `revision` came later.
            let deletedThen = record.isDeleted && record.deletedAt <= time
            return StreamInfo(stream: stream, lastRevision: revision,
                              firstVisibleRevision: record.firstVisibleRevision <= revision ? record.firstVisibleRevision : 0,
                              isDeleted: deletedThen, createdAt: record.createdAt, lastRecordedAt: lastEvent.recordedAt,
                              deletedAt: deletedThen ? record.deletedAt : nil)
        }
    }
}
