import StrataLMDB

/// Time queries. Every event carries its commit time (`recordedAt`,
/// nanoseconds since the Unix epoch from the server's clock); times are
/// strictly increasing from commit to commit within a tenant and shared by the
/// events of one commit. The time index maps each commit time to the first
/// position of that commit, so a time becomes a position with one seek.
extension EventStore {
    /// The position of the last event recorded at or before `time` (0 if none).
    public func position(at time: Int64) throws(StorageError) -> UInt64 {
        try withRead { txn in try position(at: time, in: txn) }
    }

    /// The position range recorded in `[from, to]` (empty when lower > upper).
    public func positions(recordedFrom from: Int64, to: Int64) throws(StorageError) -> (lower: UInt64, upper: UInt64) {
        try withRead { txn in (try firstPosition(recordedAtOrAfter: from, in: txn), try position(at: to, in: txn)) }
    }

    func position(at time: Int64, in txn: borrowing ReadTransaction) throws -> UInt64 {
        if time < 0 { return 0 }
        // The first commit after `time` starts right after the answer.
        let nextCommit = try txn.withCursor(dbs.timeIndex) { cursor in
            try Keys.withTime(time == .max ? time : time + 1) { try cursor.seek(atOrAfter: $0) }
                .map { Keys.decodeUInt64LE($0.value) }
        }
        if let nextCommit { return nextCommit - 1 }
        return try lastPosition(in: txn)
    }

    /// The first position recorded at or after `time` (head + 1 when none was).
    func firstPosition(recordedAtOrAfter time: Int64, in txn: borrowing ReadTransaction) throws -> UInt64 {
        time == .min ? 1 : try position(at: time - 1, in: txn) + 1
    }

    /// Events recorded in `[from, to]` (inclusive, nanoseconds), in `$all`
    /// order, at most `maxCount`; `nextPosition` continues the range when the
    /// page was full.
    public func readAll(recordedFrom from: Int64, to: Int64, maxCount: Int = 1000,
                        filter: EventFilter = .none) throws(StorageError) -> AllSlice {
        let range: (UInt64, UInt64) = try withRead { txn in
            (try firstPosition(recordedAtOrAfter: from, in: txn), try position(at: to, in: txn))
        }
        guard range.0 <= range.1 else {
            return AllSlice(events: [], nextPosition: nil, headPosition: try headPosition())
        }
        return try readAll(positions: range.0 ... range.1, maxCount: maxCount, filter: filter)
    }

    /// `$all` between two positions (inclusive).
    /// At most `scanLimit` stored events are examined; `nextPosition` continues.
    public func readAll(positions: ClosedRange<UInt64>, maxCount: Int = 1000,
                        filter: EventFilter = .none, scanLimit: Int = .max) throws(StorageError) -> AllSlice {
        let span = positions.upperBound - positions.lowerBound + 1
        let slice = try readAll(from: .position(positions.lowerBound), direction: .forwards,
                                maxCount: maxCount, filter: filter,
                                scanLimit: min(scanLimit, span > UInt64(Int.max) ? .max : Int(span)))
        let next = slice.nextPosition.flatMap { $0 <= positions.upperBound ? $0 : nil }
        return AllSlice(events: slice.events, nextPosition: next, headPosition: slice.headPosition)
    }

    /// The events of `stream` recorded in `[from, to]` (inclusive), in revision
    /// order, at most `maxCount`. History is history: events of a stream that
    /// was deleted later are included. Fails with `.streamNotFound` for a
    /// stream that never existed. Costs two seeks in the time index and a
    /// binary search over the stream's revisions, whatever the range.
    public func readStream(_ stream: String, recordedFrom from: Int64, to: Int64,
                           maxCount: Int = 1000, startingAt startRevision: UInt64 = 0) throws(StorageError) -> StreamSlice {
        // An empty or oversized name would reach LMDB as a bad key (MDB_BAD_VALSIZE).
        try options.limits.validateStreamName(stream)
        return try withRead { txn in
            let view = try indexView(in: txn)
            guard let record = try loadStream(stream, in: txn, view: view), record.nextRevision > 0 else {
                throw StorageError.streamNotFound(stream: stream)
            }
            let low = try firstPosition(recordedAtOrAfter: from, in: txn)
            let high = try position(at: to, in: txn)
            let last = record.nextRevision - 1
            // The first revision whose position is >= low (positions grow with revisions).
            var lo: UInt64 = 0
            var hi: UInt64 = record.nextRevision
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                guard let p = try position(ofStream: record.number, revision: mid, in: txn, view: view) else {
                    throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(mid)")
                }
                if p < low { lo = mid + 1 } else { hi = mid }
            }
            var events: [RecordedEvent] = []
            var revision = max(lo, startRevision)
            while revision <= last && events.count < maxCount {
                guard let p = try position(ofStream: record.number, revision: revision, in: txn, view: view) else {
                    throw StorageError.corrupt(path: path, detail: "stream '\(stream)' has no index entry for revision \(revision)")
                }
                if p > high { break }
                events.append(try event(at: p, in: txn))
                revision += 1
            }
            var next: UInt64? = nil
            if revision <= last, events.count == maxCount,
               let p = try position(ofStream: record.number, revision: revision, in: txn, view: view), p <= high {
                next = revision
            }
            return StreamSlice(events: events, nextRevision: next, lastRevision: last)
        }
    }
}
