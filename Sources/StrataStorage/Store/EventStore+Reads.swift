import Foundation
import StrataLMDB

extension EventStore {
    /// The position of the last committed event (0 when the log is empty).
    public func headPosition() throws(StorageError) -> UInt64 {
        try withRead { txn in try lastPosition(in: txn) }
    }

    func lastPosition(in txn: borrowing ReadTransaction) throws -> UInt64 {
        try txn.withCursor(dbs.log) { try $0.last().map { Keys.decodeIntegerKey($0.key) } } ?? 0
    }

    /// Where a read transaction's view of the stream index ends: its last
    /// log position, and the position up to which `stream-index` is
    /// complete in it (later entries are in `indexTail`).
    struct IndexView {
        let head: UInt64
        let watermark: UInt64
    }

    func indexView(in txn: borrowing ReadTransaction) throws -> IndexView {
        let head = try lastPosition(in: txn)
        return IndexView(head: head, watermark: try dbs.indexWatermark(in: txn) ?? head)
    }

    /// A stream's record as of the transaction, its revision derived from
    /// the in-memory index tail or, when the tail holds none of its visible
    /// entries, from `stream-index`.
    func loadStream(_ name: String, in txn: borrowing ReadTransaction, view: IndexView) throws -> StreamRecord? {
        guard var record = try dbs.loadStoredStream(name, in: txn, path: path) else { return nil }
        if let next = try indexTail.nextRevision(stream: record.number, head: view.head, watermark: view.watermark) {
            record.nextRevision = next
        } else {
            record.nextRevision = try dbs.storedNextRevision(ofStream: record.number, in: txn)
        }
        return record
    }

    /// Copies the event at `position` out of the map.
    func event(at position: UInt64, in txn: borrowing ReadTransaction) throws -> RecordedEvent {
        let stored = try Keys.withPosition(position) { try txn.borrowValue(dbs.log, key: $0) }
        guard let stored, EventRecord.isValid(stored) else {
            throw StorageError.corrupt(path: path, detail: "no valid event at position \(position)")
        }
        return RecordedEvent(position: position, borrowing: stored)
    }

    /// The position of (stream number, revision) as of the transaction.
    func position(ofStream number: UInt64, revision: UInt64, in txn: borrowing ReadTransaction, view: IndexView) throws -> UInt64? {
        if let position = try indexTail.position(stream: number, revision: revision, head: view.head, watermark: view.watermark) {
            return position
        }
        return try dbs.storedPosition(ofStream: number, revision: revision, in: txn)
    }

    /// The state of a stream, including a deleted one.
    public func streamInfo(_ stream: String) throws(StorageError) -> StreamInfo {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            guard let lastPosition = try position(ofStream: record.number, revision: record.nextRevision - 1, in: txn, view: view) else {
                throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for its last revision")
            }
            return record.info(name: stream, lastRecordedAt: try event(at: lastPosition, in: txn).recordedAt)
        }
    }

    /// Reads up to `maxCount` events of a stream from `start` in `direction`.
    /// Fails with `.streamNotFound` or `.streamDeleted`.
    public func readStream(_ stream: String, from start: StreamReadStart = .start,
                           direction: ReadDirection = .forwards, maxCount: Int = 1000) throws(StorageError) -> StreamSlice {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            if record.isDeleted { throw StorageError.streamDeleted(stream: stream) }
            let first = record.firstVisibleRevision
            let last = record.nextRevision - 1
            var events: [RecordedEvent] = []
            var revision: UInt64
            switch direction {
            case .forwards:
                switch start {
                case .start: revision = first
                case .end: revision = last + 1
                case .revision(let r): revision = max(r, first)
                }
                events.reserveCapacity(Int(min(UInt64(maxCount), last &+ 1 &- min(revision, last + 1))))
                while revision <= last && events.count < maxCount {
                    guard let position = try position(ofStream: record.number, revision: revision, in: txn, view: view) else {
                        throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(revision)")
                    }
                    events.append(try event(at: position, in: txn))
                    revision += 1
                }
                return StreamSlice(events: events, nextRevision: revision <= last ? revision : nil, lastRevision: last)
            case .backwards:
                switch start {
                case .start: revision = first
                case .end: revision = last
                case .revision(let r): revision = min(r, last)
                }
                var next: UInt64? = revision >= first ? revision : nil
                while let current = next, events.count < maxCount {
                    guard let position = try position(ofStream: record.number, revision: current, in: txn, view: view) else {
                        throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(current)")
                    }
                    events.append(try event(at: position, in: txn))
                    next = current > first ? current - 1 : nil
                }
                return StreamSlice(events: events, nextRevision: next, lastRevision: last)
            }
        }
    }

    /// Reads up to `maxCount` events of `$all` from `start` in `direction`,
    /// keeping those that pass `filter`. `scanLimit` bounds how many stored
    /// events one call examines, so a filter that matches little cannot make
    /// one read walk the whole log; `nextPosition` then continues the scan.
    public func readAll(from start: AllReadStart = .start, direction: ReadDirection = .forwards,
                        maxCount: Int = 1000, filter: EventFilter = .none,
                        scanLimit: Int = .max) throws(StorageError) -> AllSlice {
        let matcher = FilterMatcher(filter)
        return try withRead { txn in
            let head = try lastPosition(in: txn)
            var events: [RecordedEvent] = []
            if filter.isEmpty { events.reserveCapacity(min(maxCount, 65_536)) }
            var scanned = 0
            var lastScanned: UInt64?
            var exhausted = false
            try txn.withCursor(dbs.log) { cursor in
                var entry: BorrowedEntry?
                switch (direction, start) {
                case (.forwards, .start): entry = try cursor.first()
                case (.forwards, .end): entry = nil
                case (.forwards, .position(let p)): entry = try Keys.withPosition(p) { try cursor.seek(atOrAfter: $0) }
                case (.backwards, .start): entry = try cursor.first()
                case (.backwards, .end): entry = try cursor.last()
                case (.backwards, .position(let p)): entry = try Keys.withPosition(p) { try cursor.seek(atOrBefore: $0) }
                }
                if direction == .backwards, case .start = start {
                    // Backwards from the start is the first event alone.
                    if let first = entry, maxCount > 0, matcher.matches(first.value) {
                        events.append(RecordedEvent(position: Keys.decodeIntegerKey(first.key), borrowing: first.value))
                    }
                    exhausted = true
                    return
                }
                while let current = entry, events.count < maxCount, scanned < scanLimit {
                    let position = Keys.decodeIntegerKey(current.key)
                    guard EventRecord.isValid(current.value) else {
                        throw StorageError.corrupt(path: path, detail: "event at position \(position) does not decode")
                    }
                    if matcher.matches(current.value) {
                        events.append(RecordedEvent(position: position, borrowing: current.value))
                    }
                    scanned += 1
                    lastScanned = position
                    entry = direction == .forwards ? try cursor.next() : try cursor.previous()
                }
                if entry == nil { exhausted = true }
            }
            var next: UInt64? = nil
            if !exhausted, let lastScanned {
                next = direction == .forwards ? lastScanned + 1 : (lastScanned > 1 ? lastScanned - 1 : nil)
            } else if !exhausted, lastScanned == nil {
                // Nothing scanned (maxCount or scanLimit of 0): continue where asked.
                switch start {
                case .position(let p): next = p
                case .start: next = head > 0 ? 1 : nil
                case .end: next = direction == .backwards && head > 0 ? head : nil
                }
            }
            return AllSlice(events: events, nextPosition: next, headPosition: head)
        }
    }
}

/// Matches stored records against an `EventFilter` on raw bytes, without
/// decoding names into strings.
struct FilterMatcher {
    let prefixes: [[UInt8]]
    let types: [[UInt8]]

    init(_ filter: EventFilter) {
        prefixes = filter.streamPrefixes.map { Array($0.utf8) }
        types = filter.eventTypes.map { Array($0.utf8) }
    }

    @inline(__always)
    func matches(_ record: UnsafeRawBufferPointer) -> Bool {
        if !prefixes.isEmpty {
            let stream = EventRecord.streamName(record)
            guard prefixes.contains(where: { prefix in
                prefix.count <= stream.count && prefix.withUnsafeBytes { memcmp($0.baseAddress!, stream.baseAddress!, prefix.count) == 0 }
            }) else { return false }
        }
        if !types.isEmpty {
            let type = EventRecord.eventType(record)
            guard types.contains(where: { $0.count == type.count && $0.elementsEqual(type) }) else { return false }
        }
        return true
    }
}
