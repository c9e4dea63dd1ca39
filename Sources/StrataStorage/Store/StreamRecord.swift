import Foundation
import StrataLMDB
import StrataSupport

/// The state of one stream. Stored in the `streams` database under its name
/// are only the fields that change on create, delete and re-create; the
/// current revision is derived from the stream index when the record is
/// loaded, so a plain append never rewrites the record (one random page less
/// per stream per commit).
///
/// Stored layout (format 1, little-endian, 40 bytes):
///
///     0 u8 format   1 u8 flags (bit 0: deleted)   2..7 reserved
///     8 u64 stream number
///    16 u64 first visible revision (reads start here after a re-creation)
///    24 i64 created at   32 i64 deleted at (0: never)
struct StreamRecord: Equatable {
    static let format: UInt8 = 1
    static let size = 40

    var number: UInt64
    var firstVisibleRevision: UInt64
    var isDeleted: Bool
    var createdAt: Int64
    var deletedAt: Int64
    /// Derived, not stored: events ever appended (the next revision), from
    /// the stream index.
    var nextRevision: UInt64 = 0

    /// What an expectation is checked against.
    var actual: ActualRevision {
        if nextRevision == 0 { return .noStream }
        if isDeleted { return .deleted(lastRevision: nextRevision - 1) }
        return .revision(nextRevision - 1)
    }

    init(number: UInt64, createdAt: Int64) {
        self.number = number
        self.firstVisibleRevision = 0
        self.isDeleted = false
        self.createdAt = createdAt
        self.deletedAt = 0
    }

    /// Decodes the stored fields; the caller fills `nextRevision`.
    init?(decoding buffer: UnsafeRawBufferPointer) {
        guard buffer.count == Self.size, buffer[0] == Self.format else { return nil }
        isDeleted = buffer[1] & 1 != 0
        number = Keys.decodeUInt64LE(buffer, at: 8)
        firstVisibleRevision = Keys.decodeUInt64LE(buffer, at: 16)
        createdAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 24))
        deletedAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 32))
    }

    func withEncoded<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.withUnsafeMutableBytes { out in
            out[0] = Self.format
            out[1] = isDeleted ? 1 : 0
            out.storeBytes(of: number.littleEndian, toByteOffset: 8, as: UInt64.self)
            out.storeBytes(of: firstVisibleRevision.littleEndian, toByteOffset: 16, as: UInt64.self)
            out.storeBytes(of: createdAt.littleEndian, toByteOffset: 24, as: Int64.self)
            out.storeBytes(of: deletedAt.littleEndian, toByteOffset: 32, as: Int64.self)
        }
        return try bytes.withUnsafeBytes(body)
    }

    func info(name: String, lastRecordedAt: Int64) -> StreamInfo {
        StreamInfo(stream: name, lastRevision: nextRevision - 1, firstVisibleRevision: firstVisibleRevision,
                   isDeleted: isDeleted, createdAt: createdAt, lastRecordedAt: lastRecordedAt,
                   deletedAt: deletedAt == 0 ? nil : deletedAt)
    }
}

extension TenantDatabases {
    /// Loads a stream's stored record; `nextRevision` is left 0 for the
    /// caller to derive (the newest index entries may still be in memory,
    /// see `StreamIndexTail`).
    func loadStoredStream<T: TransactionReads & ~Copyable>(_ name: String, in txn: borrowing T, path: String) throws -> StreamRecord? {
        var name = name
        let stored = try name.withUTF8 { try txn.borrowValue(streams, key: UnsafeRawBufferPointer($0)) }
        guard let stored else { return nil }
        guard let record = StreamRecord(decoding: stored) else {
            throw StorageError.corrupt(path: path, detail: "stream record of '\(name)' does not decode")
        }
        return record
    }

    /// The next revision of stream `number` according to the `stream-index`
    /// database alone: one past its last stored entry.
    func storedNextRevision<T: TransactionReads & ~Copyable>(ofStream number: UInt64, in txn: borrowing T) throws -> UInt64 {
        // The stream's last chunk: at (number, UInt64.max) or before.
        let last = try txn.withCursor(streamIndex) { cursor in
            try Keys.withStreamRevision(number, .max) { try cursor.seek(atOrBefore: $0) }
        }
        if let last, Keys.decodeUInt64BE(last.key, at: 0) == number {
            return Keys.decodeUInt64BE(last.key, at: 8) + UInt64(last.value.count / 8)
        }
        return 0
    }

    /// The position stored for (stream number, revision) in `stream-index`.
    func storedPosition<T: TransactionReads & ~Copyable>(ofStream number: UInt64, revision: UInt64, in txn: borrowing T) throws -> UInt64? {
        let offset = Int(revision % StreamIndexChunk.revisions)
        return try Keys.withStreamRevision(number, revision - UInt64(offset)) { key in
            try txn.borrowValue(streamIndex, key: key).flatMap { chunk in
                offset * 8 < chunk.count ? Keys.decodeUInt64LE(chunk, at: offset * 8) : nil
            }
        }
    }

    /// Writes runs of consecutive revisions (sorted by stream, for a walk in
    /// key order) into `stream-index`, extending each stream's last chunk.
    /// Each run must start at its stream's stored next revision.
    func storeIndexRuns(_ runs: [StreamIndexTail.FlushRun], in txn: borrowing WriteTransaction, path: String) throws {
        for run in runs {
            var revision = run.firstRevision
            var rest = run.positions[...]
            while !rest.isEmpty {
                let offset = Int(revision % StreamIndexChunk.revisions)
                let chunkStart = revision - UInt64(offset)
                let take = min(rest.count, Int(StreamIndexChunk.revisions) - offset)
                try Keys.withStreamRevision(run.stream, chunkStart) { key in
                    let stored = try txn.borrowValue(streamIndex, key: key)
                    guard (stored?.count ?? 0) == offset * 8 else {
                        throw StorageError.corrupt(path: path, detail: "stream-index chunk \(chunkStart) of stream number \(run.stream) holds \((stored?.count ?? 0) / 8) entries; revision \(revision) was to follow them")
                    }
                    var chunk = [UInt8]()
                    chunk.reserveCapacity((offset + take) * 8)
                    if let stored { chunk.append(contentsOf: stored) }
                    for position in rest.prefix(take) {
                        withUnsafeBytes(of: position.littleEndian) { chunk.append(contentsOf: $0) }
                    }
                    try chunk.withUnsafeBytes { try txn.put(streamIndex, key: key, value: $0) }
                }
                rest = rest.dropFirst(take)
                revision += UInt64(take)
            }
        }
    }

    /// The position up to which `stream-index` is complete.
    func indexWatermark<T: TransactionReads & ~Copyable>(in txn: borrowing T) throws -> UInt64? {
        try TenantDatabases.indexedThroughKey.withUnsafeBytes {
            try txn.borrowValue(meta, key: $0).map { Keys.decodeUInt64LE($0) }
        }
    }

    func setIndexWatermark(_ position: UInt64, in txn: borrowing WriteTransaction) throws {
        try TenantDatabases.indexedThroughKey.withUnsafeBytes { key in
            try withUnsafeBytes(of: position.littleEndian) { try txn.put(meta, key: key, value: $0) }
        }
    }
}

/// The stream index stores a stream's positions in chunks: the key is
/// (stream number, first revision of the chunk), the value the positions of
/// up to `revisions` consecutive revisions (u64 LE each). A chunk per
/// `revisions` events instead of a B-tree entry per event makes the index a
/// quarter of the size and the bulk flush one put per chunk.
enum StreamIndexChunk {
    static let revisions: UInt64 = 64
}

/// Where an event is stored and as what: the event-id index and the log,
/// read the same way by the writer and by its error answers.
struct StoredIdentity {
    let position: UInt64
    let stream: String
    let revision: UInt64
    let recordedAt: Int64
}

extension TenantDatabases {
    /// The position stored for an event id, if any.
    func position<T: TransactionReads & ~Copyable>(ofEventID id: UUID, in txn: borrowing T) throws -> UInt64? {
        try withUnsafeBytes(of: id.uuid) { key in
            try txn.borrowValue(eventIDs, key: key).map { Keys.decodeUInt64LE($0) }
        }
    }

    /// Whether the event stored at `position` has `event`'s type, data and
    /// metadata (what makes a retry the same event; its id already matched).
    func storedContent<T: TransactionReads & ~Copyable>(at position: UInt64, matches event: ProposedEvent,
                                                         in txn: borrowing T, path: String) throws -> Bool {
        let record = try Keys.withPosition(position) { try txn.borrowValue(log, key: $0) }
        guard let record, EventRecord.isValid(record) else {
            throw StorageError.corrupt(path: path, detail: "event-id index points at position \(position), which does not decode")
        }
        return EventRecord.hasContent(of: event, record)
    }

    /// The stream, revision and time of the event at `position`.
    func identity<T: TransactionReads & ~Copyable>(at position: UInt64, in txn: borrowing T, path: String) throws -> StoredIdentity {
        let record = try Keys.withPosition(position) { try txn.borrowValue(log, key: $0) }
        guard let record, EventRecord.isValid(record) else {
            throw StorageError.corrupt(path: path, detail: "event-id index points at position \(position), which does not decode")
        }
        return StoredIdentity(position: position, stream: String(decoding: EventRecord.streamName(record), as: UTF8.self),
                              revision: EventRecord.revision(record), recordedAt: EventRecord.recordedAt(record))
    }
}
