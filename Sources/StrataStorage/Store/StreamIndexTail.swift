import StrataSupport

/// The newest part of the stream index, kept in memory and written to the
/// `stream-index` database in bulk.
///
/// Why: the stream index is keyed by (stream number, revision), so single
/// appends to many streams each dirty a different B-tree page, and the fsync
/// of ~60 scattered pages per commit was most of a commit's cost. The log
/// (written in the same transaction) holds every event's stream and revision,
/// so the index is derived data: entries for positions after the stored
/// watermark (`indexed-through` in `meta`) live here, are flushed sorted by
/// stream in one transaction every `indexFlushEvents` events or
/// `indexFlushInterval`, and are rebuilt from the log when a tenant opens
/// after a crash (`StreamIndexRecovery`).
///
/// Ownership: all state is behind `state`'s mutex. The writer thread is the
/// only one that adds, rolls back, flushes and trims; readers only look up.
///
/// Visibility: the writer adds a commit's entries *before* the commit, so a
/// reader that sees position p in the log also finds p's entry here or on
/// disk. Readers ignore entries above their snapshot's last position (those
/// are uncommitted or newer than the snapshot). Entries at or below `floor`
/// have been dropped; a reader whose snapshot's watermark is below `floor`
/// could miss entries and must start over with a new snapshot (`Stale`).
/// Dropping is delayed by one flush, so only a snapshot that spans two
/// flushes ever sees `Stale`.
final class StreamIndexTail: Sendable {
    /// One stream's entries: consecutive revisions from `firstRevision`, with
    /// increasing positions.
    struct Run {
        var firstRevision: UInt64
        var positions: [UInt64]

        var nextRevision: UInt64 { firstRevision + UInt64(positions.count) }
    }

    struct State {
        var runs: [UInt64: Run] = [:]
        /// Entries at or below this position have been dropped.
        var floor: UInt64
        /// Entries at or below this position are also in `stream-index`.
        var watermark: UInt64
        /// Entries above `watermark`.
        var unflushed = 0
        /// Streams that received entries since the last `commitBatch`, for rollback.
        var touched: Set<UInt64> = []
    }

    /// Entries of one stream to write: consecutive revisions from `firstRevision`.
    struct FlushRun {
        let stream: UInt64
        let firstRevision: UInt64
        let positions: ArraySlice<UInt64>
    }

    /// A reader's snapshot is older than the entries kept here; it must
    /// retry with a new read transaction.
    struct Stale: Error {}

    private let state: Locked<State>

    init(watermark: UInt64) {
        state = Locked(State(floor: watermark, watermark: watermark))
    }

    var watermark: UInt64 { state.withLock { $0.watermark } }
    var unflushedCount: Int { state.withLock { $0.unflushed } }

    // MARK: - Writer

    /// Adds (stream, revision) → position. Revisions of a stream arrive in
    /// order and without gaps; positions grow.
    func add(stream: UInt64, revision: UInt64, position: UInt64) {
        state.withLock { s in
            if s.runs[stream] == nil {
                s.runs[stream] = Run(firstRevision: revision, positions: [])
            }
            s.runs[stream]!.positions.append(position)
            s.unflushed += 1
            s.touched.insert(stream)
        }
    }

    /// The batch's entries are committed.
    func commitBatch() {
        state.withLock { $0.touched.removeAll(keepingCapacity: true) }
    }

    /// The batch's transaction failed: drops its entries (positions from `firstPosition` on).
    func rollbackBatch(from firstPosition: UInt64) {
        state.withLock { s in
            for stream in s.touched {
                guard var run = s.runs[stream] else { continue }
                let keep = run.positions.partitioningIndex { $0 >= firstPosition }
                s.unflushed -= run.positions.count - keep
                run.positions.removeSubrange(keep...)
                s.runs[stream] = run.positions.isEmpty ? nil : run
            }
            s.touched.removeAll(keepingCapacity: true)
        }
    }

    /// For the writer, whose transaction sees its own batch: the next
    /// revision of `stream` if its newest entry is not yet on disk.
    func writerNextRevision(stream: UInt64) -> UInt64? {
        state.withLock { s in
            guard let run = s.runs[stream], let last = run.positions.last, last > s.watermark else { return nil }
            return run.nextRevision
        }
    }

    /// The entries to flush: every entry above the watermark, sorted by
    /// stream number (so the flush walks the B-tree in key order), and the
    /// position they reach.
    func unflushedEntries(upTo head: UInt64) -> [FlushRun] {
        state.withLock { s in
            var out: [FlushRun] = []
            for (stream, run) in s.runs {
                let from = run.positions.partitioningIndex { $0 > s.watermark }
                let to = run.positions.partitioningIndex { $0 > head }
                if from < to {
                    out.append(FlushRun(stream: stream, firstRevision: run.firstRevision + UInt64(from),
                                        positions: run.positions[from..<to]))
                }
            }
            out.sort { $0.stream < $1.stream }
            return out
        }
    }

    /// Entries up to `newWatermark` are on disk now. Drops what the previous
    /// flush wrote (readers that began before this flush may still need the
    /// entries between the old and the new watermark).
    func flushed(through newWatermark: UInt64, entries: Int) {
        state.withLock { s in
            let drop = s.watermark
            if drop > s.floor {
                for (stream, var run) in s.runs {
                    let cut = run.positions.partitioningIndex { $0 > drop }
                    guard cut > 0 else { continue }
                    if cut == run.positions.count {
                        s.runs[stream] = nil
                    } else {
                        run.positions.removeFirst(cut)
                        run.firstRevision += UInt64(cut)
                        s.runs[stream] = run
                    }
                }
                s.floor = drop
            }
            s.watermark = newWatermark
            s.unflushed -= entries
        }
    }

    // MARK: - Readers

    /// What a reader's snapshot sees of `stream` here: its next revision if
    /// this holds the stream's newest visible entry. `head` is the snapshot's
    /// last position, `watermark` its stored watermark.
    func nextRevision(stream: UInt64, head: UInt64, watermark: UInt64) throws(Stale) -> UInt64? {
        try state.withLock { s throws(Stale) in
            if s.floor > watermark { throw Stale() }
            guard let run = s.runs[stream] else { return nil }
            let visible = run.positions.partitioningIndex { $0 > head }
            return visible == 0 ? nil : run.firstRevision + UInt64(visible)
        }
    }

    /// The position of (stream, revision) if held here and visible at `head`.
    func position(stream: UInt64, revision: UInt64, head: UInt64, watermark: UInt64) throws(Stale) -> UInt64? {
        try state.withLock { s throws(Stale) in
            if s.floor > watermark { throw Stale() }
            guard let run = s.runs[stream], revision >= run.firstRevision,
                  revision < run.nextRevision else { return nil }
            let position = run.positions[Int(revision - run.firstRevision)]
            return position <= head ? position : nil
        }
    }
}

extension Array where Element == UInt64 {
    /// The first index whose element satisfies `belongs`, for a predicate
    /// that is false and then true along the array (binary search).
    func partitioningIndex(where belongs: (UInt64) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if belongs(self[mid]) { high = mid } else { low = mid + 1 }
        }
        return low
    }
}
