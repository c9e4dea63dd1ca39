import StrataLMDB
import Foundation
import StrataSupport

/// The writer's counters that survive between batches. Owned by the writer
/// thread; a batch works on a copy and the copy replaces this only after its
/// transaction has committed, so a failed commit consumes no position.
struct WriterCounters {
    var nextPosition: UInt64
    var nextStreamNumber: UInt64
    var clock: CommitClock
}

/// Applies one batch of queued operations inside one write transaction.
///
/// Every operation is checked completely (expectations, idempotency) before it
/// writes anything, and the transaction sees its own earlier writes, so each
/// operation is checked against the state the operations before it left. An
/// operation that fails its checks is answered with its error and writes
/// nothing; the others in the batch still commit. Only an LMDB failure
/// (map full, I/O) aborts the whole transaction.
struct WriteBatch {
    let dbs: TenantDatabases
    /// Receives this batch's stream-index entries; the writer commits or
    /// rolls them back with the transaction.
    let indexTail: StreamIndexTail
    let commitTime: Int64
    var counters: WriterCounters
    var outcomes: [Result<WriteOutcome, StorageError>] = []
    /// The first position written by this batch, if it wrote any event.
    var firstPosition: UInt64?
    /// Bytes of the log records this batch wrote (for metrics).
    var bytesWritten = 0
    /// The operation being run, for `IDCollision`.
    private var currentIndex = 0

    init(dbs: TenantDatabases, indexTail: StreamIndexTail, counters: WriterCounters, commitTime: Int64) {
        self.dbs = dbs
        self.indexTail = indexTail
        self.counters = counters
        self.commitTime = commitTime
    }

    /// An event id of operation `index` turned out to be stored already (found
    /// while inserting it, so the index is searched once per event, not
    /// twice). The transaction is aborted and the writer runs the batch again
    /// without that operation; the operation then runs alone and gets its
    /// precise answer.
    struct IDCollision: Error {
        let index: Int
        let id: UUID
    }

    /// Runs every operation; throws LMDB errors and `IDCollision`, which abort
    /// the batch.
    mutating func run(_ operations: [PendingWrite], in txn: borrowing WriteTransaction) throws {
        for (index, pending) in operations.enumerated() {
            currentIndex = index
            do {
                switch pending.operation {
                case .append(let writes):
                    outcomes.append(.success(.appended(try append(writes, in: txn))))
                case let .delete(stream, expected):
                    try delete(stream, expected: expected, in: txn)
                    outcomes.append(.success(.deleted))
                case let .saveSnapshot(record, stream, streamNumber, keep):
                    let saved = try saveSnapshot(record, stream: stream, streamNumber: streamNumber, keep: keep, in: txn)
                    outcomes.append(.success(.snapshotSaved(saved)))
                case .projection(let change):
                    outcomes.append(.success(.projectionChanged(try changeProjection(change, in: txn))))
                case .projectionCommit(let commit):
                    try commitProjection(commit, in: txn)
                    outcomes.append(.success(.projectionCommitted))
                }
            } catch let error as StorageError {
                outcomes.append(.failure(error))
            }
        }
        if let firstPosition {
            try Keys.withTime(commitTime) { key in
                try Keys.withPositionValue(firstPosition) { try txn.put(dbs.timeIndex, key: key, value: $0, flags: .append) }
            }
        }
    }

    // MARK: - Append

    /// A projection's emitted events: an append like any other.
    mutating func appendForProjection(_ writes: [StreamWrite], in txn: borrowing WriteTransaction) throws -> [AppendResult] {
        try append(writes, in: txn)
    }

    /// The plan for one stream of an append, made before anything is written.
    private enum Plan {
        case write(record: StreamRecord, isNew: Bool)
        case replay(AppendResult)
    }

    private mutating func append(_ writes: [StreamWrite], in txn: borrowing WriteTransaction) throws -> [AppendResult] {
        var plans: [Plan] = []
        plans.reserveCapacity(writes.count)
        for write in writes {
            plans.append(try plan(write, in: txn))
        }
        var results: [AppendResult] = []
        results.reserveCapacity(writes.count)
        for (write, plan) in zip(writes, plans) {
            switch plan {
            case .replay(let result):
                results.append(result)
            case let .write(record, isNew):
                results.append(try apply(write, to: record, isNew: isNew, in: txn))
            }
        }
        return results
    }

    /// A stream's record with its next revision, which counts this batch's
    /// earlier appends (held in the index tail until the commit).
    private func loadStream(_ name: String, in txn: borrowing WriteTransaction) throws -> StreamRecord? {
        guard var record = try dbs.loadStoredStream(name, in: txn, path: "streams") else { return nil }
        record.nextRevision = try indexTail.writerNextRevision(stream: record.number)
            ?? dbs.storedNextRevision(ofStream: record.number, in: txn)
        return record
    }

    private mutating func plan(_ write: StreamWrite, in txn: borrowing WriteTransaction) throws -> Plan {
        let existing = try loadStream(write.stream, in: txn)
        // Idempotency: an append whose first id is stored is a retry, and is
        // answered from what is stored, or refused if it does not match.
        // The other ids are checked as they are inserted (see `IDCollision`).
        if let firstID = write.events.first?.id, let position = try dbs.position(ofEventID: firstID, in: txn) {
            return .replay(try replayResult(write, firstPosition: position, record: existing, in: txn))
        }
        let actual = existing?.actual ?? .noStream
        let satisfied: Bool = switch (write.expected, actual) {
        case (.any, _): true
        case (.noStream, .noStream), (.noStream, .deleted): true
        case (.streamExists, .revision): true
        case let (.exact(expected), .revision(current)): expected == current
        default: false
        }
        guard satisfied else {
            throw StorageError.wrongExpectedRevision(stream: write.stream, expected: write.expected, actual: actual)
        }
        if let existing { return .write(record: existing, isNew: false) }
        let record = StreamRecord(number: counters.nextStreamNumber, createdAt: commitTime)
        counters.nextStreamNumber += 1
        return .write(record: record, isNew: true)
    }

    /// Checks that every event of `write` is stored, in order, at consecutive
    /// revisions of the same stream, consistently with the expectation; then
    /// returns the original result.
    private func replayResult(_ write: StreamWrite, firstPosition: UInt64, record: StreamRecord?,
                              in txn: borrowing WriteTransaction) throws -> AppendResult {
        let first = try dbs.identity(at: firstPosition, in: txn, path: "log")
        guard first.stream == write.stream else {
            throw StorageError.eventIDConflict(id: write.events[0].id, storedStream: first.stream, storedRevision: first.revision)
        }
        var positions = [firstPosition]
        for (index, event) in write.events.enumerated().dropFirst() {
            guard let position = try dbs.position(ofEventID: event.id, in: txn) else {
                // Some ids stored, some not: not a retry of one append.
                throw StorageError.eventIDConflict(id: write.events[0].id, storedStream: first.stream, storedRevision: first.revision)
            }
            let stored = try dbs.identity(at: position, in: txn, path: "log")
            guard stored.stream == write.stream, stored.revision == first.revision + UInt64(index) else {
                throw StorageError.eventIDConflict(id: event.id, storedStream: stored.stream, storedRevision: stored.revision)
            }
            positions.append(position)
        }
        let firstRevision = first.revision
        let consistent: Bool = switch write.expected {
        case .any, .streamExists: true
        case .noStream: firstRevision == 0 || firstRevision == record?.firstVisibleRevision
        case .exact(let expected): expected &+ 1 == firstRevision
        }
        guard consistent else {
            throw StorageError.eventIDConflict(id: write.events[0].id, storedStream: write.stream, storedRevision: firstRevision)
        }
        // The same ids at the same places: a retry only if the content is
        // the same too (checked here, on the replay path only).
        for (index, (event, position)) in zip(write.events, positions).enumerated() {
            guard try dbs.storedContent(at: position, matches: event, in: txn, path: "log") else {
                throw StorageError.eventIDContentConflict(id: event.id, storedStream: write.stream,
                                                          storedRevision: firstRevision + UInt64(index))
            }
        }
        return AppendResult(stream: write.stream, firstRevision: firstRevision,
                            lastRevision: firstRevision + UInt64(write.events.count - 1),
                            firstPosition: firstPosition, lastPosition: positions[positions.count - 1],
                            recordedAt: first.recordedAt, replayed: true)
    }

    private mutating func apply(_ write: StreamWrite, to record: StreamRecord, isNew: Bool,
                                in txn: borrowing WriteTransaction) throws -> AppendResult {
        var record = record
        let recreated = record.isDeleted
        if record.isDeleted {
            // Re-creation after a soft delete: revisions continue (they are
            // never reused), reads start at the new incarnation.
            record.isDeleted = false
            record.firstVisibleRevision = record.nextRevision
        }
        let firstRevision = record.nextRevision
        let firstPosition = counters.nextPosition
        for event in write.events {
            let position = counters.nextPosition
            let revision = record.nextRevision
            let size = EventRecord.encodedSize(streamBytes: write.stream.utf8.count, event: event)
            bytesWritten += size
            try Keys.withPosition(position) { key in
                try txn.put(dbs.log, key: key, reserving: size, flags: .append) { out in
                    EventRecord.encode(into: out, stream: write.stream, revision: revision, recordedAt: commitTime, event: event)
                }
            }
            indexTail.add(stream: record.number, revision: revision, position: position)
            do {
                try withUnsafeBytes(of: event.id.uuid) { key in
                    try Keys.withPositionValue(position) { try txn.put(dbs.eventIDs, key: key, value: $0, flags: .noOverwrite) }
                }
            } catch let error as LMDBError where error.code == .keyExists {
                throw IDCollision(index: currentIndex, id: event.id)
            }
            counters.nextPosition += 1
            record.nextRevision += 1
        }
        if isNew || recreated {
            // Only creation and re-creation change the stored record; a plain
            // append changes only the index the revision is derived from.
            var name = write.stream
            try name.withUTF8 { key in
                try record.withEncoded { try txn.put(dbs.streams, key: UnsafeRawBufferPointer(key), value: $0) }
            }
        }
        if isNew {
            try TenantDatabases.nextStreamNumberKey.withUnsafeBytes { key in
                try withUnsafeBytes(of: counters.nextStreamNumber.littleEndian) { try txn.put(dbs.meta, key: key, value: $0) }
            }
        }
        if self.firstPosition == nil { self.firstPosition = firstPosition }
        return AppendResult(stream: write.stream, firstRevision: firstRevision, lastRevision: record.nextRevision - 1,
                            firstPosition: firstPosition, lastPosition: counters.nextPosition - 1,
                            recordedAt: commitTime, replayed: false)
    }

    // MARK: - Delete

    private func delete(_ stream: String, expected: ExpectedRevision, in txn: borrowing WriteTransaction) throws {
        guard var record = try loadStream(stream, in: txn), record.nextRevision > 0 else {
            throw StorageError.streamNotFound(stream: stream)
        }
        let actual = record.actual
        switch (expected, actual) {
        case (.any, .deleted):
            return  // already deleted: a retried delete succeeds and changes nothing
        case (.any, .revision), (.streamExists, .revision):
            break
        case let (.exact(revision), .revision(current)) where revision == current:
            break
        case (_, .deleted):
            throw StorageError.streamDeleted(stream: stream)
        default:
            throw StorageError.wrongExpectedRevision(stream: stream, expected: expected, actual: actual)
        }
        record.isDeleted = true
        record.deletedAt = commitTime
        var name = stream
        try name.withUTF8 { key in
            try record.withEncoded { try txn.put(dbs.streams, key: UnsafeRawBufferPointer(key), value: $0) }
        }
    }

    // MARK: - Snapshots

    private func saveSnapshot(_ record: SnapshotRecord, stream: String, streamNumber: UInt64, keep: Int,
                              in txn: borrowing WriteTransaction) throws -> Snapshot {
        // Checked again here: the stream may have been deleted since the
        // snapshot was prepared.
        guard let current = try loadStream(stream, in: txn), current.number == streamNumber else {
            throw StorageError.streamNotFound(stream: stream)
        }
        if current.isDeleted { throw StorageError.streamDeleted(stream: stream) }
        // This stream's snapshot revisions, oldest first.
        var revisions: [UInt64] = []
        try txn.withCursor(dbs.snapshots) { cursor in
            var entry = try Keys.withStreamRevision(streamNumber, 0) { try cursor.seek(atOrAfter: $0) }
            while let found = entry, found.key.count == 16, Keys.decodeUInt64BE(found.key) == streamNumber {
                revisions.append(Keys.decodeUInt64BE(found.key, at: 8))
                entry = try cursor.next()
            }
        }
        let keep = max(1, keep)
        if !revisions.contains(record.revision) && revisions.count >= keep && record.revision < revisions[revisions.count - keep] {
            // It would be pruned at once: say so rather than report it saved.
            throw StorageError.invalidSnapshot(stream: stream, reason: "revision \(record.revision) is older than the \(keep) snapshot(s) kept (lowest kept: revision \(revisions[revisions.count - keep]))")
        }
        var stored = record
        stored.savedAt = commitTime
        let value = stored.encoded
        try Keys.withStreamRevision(streamNumber, record.revision) { key in
            try value.withUnsafeBytes { try txn.put(dbs.snapshots, key: key, value: $0) }
        }
        if !revisions.contains(record.revision) { revisions.append(record.revision) }
        revisions.sort()
        for revision in revisions.dropLast(keep) {
            _ = try Keys.withStreamRevision(streamNumber, revision) { try txn.delete(dbs.snapshots, key: $0) }
        }
        return stored.snapshot(of: stream)
    }
}
