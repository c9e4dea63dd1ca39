import StrataLMDB
import Foundation
import StrataSupport
import Logging

/// The one writer of a tenant. Appends from any number of threads queue here;
/// a dedicated thread takes everything queued (up to `maxBatchEvents`),
/// commits it in one LMDB write transaction — one fsync for all of it — and
/// then answers each caller with its own outcome.
///
/// Ownership: `queue` and `state` are guarded by `condition`. `counters` and
/// the LMDB write transaction belong to the writer thread alone (an LMDB write
/// transaction must stay on one thread from begin to commit).
final class GroupCommitWriter: @unchecked Sendable {
    private enum State { case running, draining, stopped }

    private let env: Environment
    private let dbs: TenantDatabases
    private let tenant: String
    private let indexTail: StreamIndexTail
    /// Told after each commit (subscriptions wake on it).
    private let commits: CommitNotifier
    private let maxBatchEvents: Int
    private let flushInterval: Duration
    private let readerCheckInterval: Duration
    private let indexFlushEvents: Int
    private let indexFlushInterval: Duration
    private let commitObserver: (@Sendable (CommitReport) -> Void)?
    /// Writer thread only: keeps written space ahead of the data (nil when
    /// `preallocationStep` is 0 or the file cannot be opened).
    private let preallocator: DataFilePreallocator?

    private let condition = NSCondition()
    private var queue: [PendingWrite] = []
    private var state = State.running
    private var flushIndexOnStop = true
    /// With `.relaxed` durability, flushes run here, off the writer thread, so
    /// a flush never stalls commits. `mdb_env_sync` is thread-safe.
    private let flushQueue = DispatchQueue(label: "strata.storage.flush")
    private nonisolated(unsafe) let flushTimer: DispatchSourceTimer?  // set once in init; thread-safe API

    // Writer thread only.
    private var counters: WriterCounters
    /// When the oldest entry now in the index tail was committed.
    private var oldestUnflushed: ContinuousClock.Instant?

    /// Committed batches and the events in them, for benchmarks and metrics.
    private let stats = Locked(CommitStatistics())
    /// Where failures the writer recovers from are reported.
    private let logger: Logger

    init(env: Environment, dbs: TenantDatabases, tenant: String, indexTail: StreamIndexTail,
         options: EventStoreOptions, commits: CommitNotifier) throws {
        self.commits = commits
        self.logger = options.logger
        self.env = env
        self.dbs = dbs
        self.tenant = tenant
        self.indexTail = indexTail
        self.maxBatchEvents = options.maxBatchEvents
        self.flushInterval = options.flushInterval
        self.readerCheckInterval = options.readerCheckInterval
        self.indexFlushEvents = options.indexFlushEvents
        self.indexFlushInterval = options.indexFlushInterval
        self.commitObserver = options.commitObserver
        self.counters = try Self.recoverCounters(env: env, dbs: dbs)
        // Only synced commits gain from it (DataFilePreallocator).
        self.preallocator = DataFilePreallocator(path: (env.path as NSString).appendingPathComponent("data.mdb"),
                                                 step: env.options.syncsCommits ? options.preallocationStep : 0,
                                                 limit: env.options.mapSize)
        if !env.options.syncsCommits {
            let timer = DispatchSource.makeTimerSource(queue: flushQueue)
            timer.schedule(deadline: .now() + flushInterval.seconds, repeating: flushInterval.seconds)
            timer.setEventHandler { [env] in try? env.sync(force: true) }
            timer.resume()
            flushTimer = timer
        } else {
            flushTimer = nil
        }
        let thread = Thread { [self] in self.run() }
        thread.name = "strata-writer-\(tenant)"
        thread.start()
    }

    /// Reads where the log, the stream numbers and the clock stand.
    private static func recoverCounters(env: Environment, dbs: TenantDatabases) throws -> WriterCounters {
        try env.read { txn in
            let head = try txn.withCursor(dbs.log) { try $0.last().map { Keys.decodeIntegerKey($0.key) } } ?? 0
            let lastTime = try txn.withCursor(dbs.timeIndex) { try $0.last().map { Keys.decodeIntegerKey($0.key) } } ?? 0
            let nextStream = try TenantDatabases.nextStreamNumberKey.withUnsafeBytes {
                try txn.borrowValue(dbs.meta, key: $0).map { Keys.decodeUInt64LE($0) }
            } ?? 1
            return WriterCounters(nextPosition: head + 1, nextStreamNumber: nextStream,
                                  clock: CommitClock(last: Int64(lastTime)))
        }
    }

    /// Queues an operation. `complete` is called exactly once, on the writer
    /// thread, after the commit (or with `.closed` if the writer has stopped).
    func submit(_ write: PendingWrite) {
        condition.lock()
        guard state == .running else {
            condition.unlock()
            write.complete(.failure(.closed(tenant: tenant)))
            return
        }
        queue.append(write)
        condition.broadcast()  // the writer and `stop()` callers share the condition
        condition.unlock()
    }

    /// Finishes everything queued, writes the in-memory stream-index entries
    /// (unless `flushingIndex` is false, which leaves them to the recovery at
    /// the next open, as a crash would), then stops the thread. Blocks until
    /// the writer has stopped (also when several threads call it at once), so
    /// the caller may close the environment afterwards.
    func stop(flushingIndex: Bool = true) {
        condition.lock()
        if state == .running {
            state = .draining
            flushIndexOnStop = flushingIndex
            condition.broadcast()
        }
        while state != .stopped { condition.wait() }
        condition.unlock()
    }

    var statistics: CommitStatistics { stats.withLock { $0 } }

    // MARK: - Writer thread

    private func run() {
        var lastReaderCheck = ContinuousClock.now
        while true {
            condition.lock()
            if queue.isEmpty && state == .running {
                // Wake at least often enough for the periodic chores below.
                let chores = indexTail.unflushedCount > 0 ? min(readerCheckInterval, indexFlushInterval) : readerCheckInterval
                _ = condition.wait(until: Date(timeIntervalSinceNow: chores.seconds))
            }
            let batch = takeBatch()
            let draining = state == .draining
            let flushIndexOnStop = self.flushIndexOnStop
            condition.unlock()

            if !batch.isEmpty { commit(batch) }

            let now = ContinuousClock.now
            let unflushed = indexTail.unflushedCount
            if unflushed > 0 && oldestUnflushed == nil { oldestUnflushed = now }
            var flushedIndex = false
            if unflushed >= indexFlushEvents
                || (unflushed > 0 && now - (oldestUnflushed ?? now) >= indexFlushInterval)
                || (unflushed > 0 && draining && batch.isEmpty && flushIndexOnStop) {
                flushIndex()
                flushedIndex = true
            }
            // After the answers: a new step of zeros delays only the next commit.
            if let preallocator, !batch.isEmpty || flushedIndex {
                let failedBefore = preallocator.failedWrites
                preallocator.ensureHeadroom(usedBytes: env.usage().usedBytes)
                if preallocator.failedWrites > failedBefore {
                    logger.warning("could not write zeros ahead of the data file (a full disk?); preallocation pauses until LMDB grows the file",
                                   metadata: ["tenant": "\(tenant)", "failed_writes": "\(preallocator.failedWrites)"])
                }
            }
            if now - lastReaderCheck >= readerCheckInterval {
                env.checkReaders()
                lastReaderCheck = now
            }
            if draining && batch.isEmpty {
                if let flushTimer {
                    flushTimer.cancel()
                    flushQueue.sync {}  // a flush that had started has finished
                    try? env.sync(force: true)
                }
                preallocator?.close()
                condition.lock()
                state = .stopped
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    /// Takes queued operations up to `maxBatchEvents` events (always at least
    /// one). Called with `condition` held.
    private func takeBatch() -> [PendingWrite] {
        guard !queue.isEmpty else { return [] }
        var events = 0
        var count = 0
        for write in queue {
            events += write.operation.eventCount
            if count > 0 && events > maxBatchEvents { break }
            count += 1
        }
        let batch = Array(queue.prefix(count))
        queue.removeFirst(count)
        return batch
    }

    /// Commits `batch` in one transaction and answers every caller. If LMDB
    /// refuses the transaction because the map (or the transaction) is full,
    /// the batch is retried one operation per transaction so that only the
    /// operations that do not fit fail.
    private func commit(_ batch: [PendingWrite]) {
        let commitTime = counters.clock.next()
        var work = WriteBatch(dbs: dbs, indexTail: indexTail, counters: counters, commitTime: commitTime)
        let started = ContinuousClock.now
        var built = started
        do {
            do {
                try env.write { txn in
                    try work.run(batch, in: txn)
                    built = ContinuousClock.now
                }
                indexTail.commitBatch()
            } catch {
                // Nothing of the batch is stored: neither may its index entries be.
                indexTail.rollbackBatch(from: counters.nextPosition)
                throw error
            }
        } catch let collision as WriteBatch.IDCollision {
            var rest = batch
            let colliding = rest.remove(at: collision.index)
            if !rest.isEmpty { commit(rest) }
            if batch.count > 1 {
                // Run it alone: its ids may have collided with another
                // operation of this batch, which is committed now.
                commit([colliding])
            } else {
                colliding.complete(.failure(storedIDConflict(collision.id)))
            }
            return
        } catch let error as LMDBError where error.code == .mapFull || error.code == .transactionFull {
            if batch.count > 1 {
                for write in batch { commit([write]) }
            } else {
                let failure: StorageError = error.code == .mapFull
                    ? .quotaExceeded(tenant: tenant, mapSize: env.options.mapSize) : .lmdb(error)
                batch[0].complete(.failure(failure))
            }
            return
        } catch let error as LMDBError where DiskSpace.isFull(after: error.code, at: env.path) {
            let free = DiskSpace.availableBytes(at: env.path).map { "\($0) bytes free" } ?? "free space unknown"
            let failure = StorageError.diskFull(tenant: tenant, path: env.path, operation: "\(error); \(free)")
            for write in batch { write.complete(.failure(failure)) }
            return
        } catch let error as LMDBError {
            for write in batch { write.complete(.failure(.lmdb(error))) }
            return
        } catch {
            let failure = (error as? StorageError) ?? .invariantViolated("unexpected error while committing: \(error)")
            for write in batch { write.complete(.failure(failure)) }
            return
        }
        let eventsWritten = Int(work.counters.nextPosition - counters.nextPosition)
        counters = work.counters
        counters.clock.advance(to: commitTime)
        let finished = ContinuousClock.now
        stats.withLock { stats in
            stats.batches += 1
            stats.operations += batch.count
            stats.buildTime += built - started
            stats.commitTime += finished - built
        }
        for (write, outcome) in zip(batch, work.outcomes) {
            write.complete(outcome)
        }
        // After the answers. Every commit wakes subscribers, not only those
        // that added events: a deletion ends stream subscriptions at once.
        commits.notify(head: counters.nextPosition - 1)
        commitObserver?(CommitReport(tenant: tenant, operations: batch.count, events: eventsWritten,
                                     bytes: work.bytesWritten, duration: finished - started))
    }
}

extension GroupCommitWriter {
    /// Writes the in-memory stream-index entries to `stream-index` in one
    /// transaction, sorted by key, and moves the watermark to the last
    /// committed position. On failure (a full map, an I/O error) the entries
    /// stay in memory and the next flush tries again; reads are unaffected.
    /// Writer thread only.
    fileprivate func flushIndex() {
        let started = ContinuousClock.now
        let head = counters.nextPosition - 1
        let runs = indexTail.unflushedEntries(upTo: head)
        var count = 0
        do {
            try env.write { txn in
                try dbs.storeIndexRuns(runs, in: txn, path: env.path)
                count = runs.reduce(0) { $0 + $1.positions.count }
                try dbs.setIndexWatermark(head, in: txn)
            }
            indexTail.flushed(through: head, entries: count)
            oldestUnflushed = nil
            stats.withLock { stats in
                stats.indexFlushes += 1
                stats.indexFlushTime += ContinuousClock.now - started
                stats.indexEntriesFlushed += count
            }
        } catch {
            oldestUnflushed = ContinuousClock.now  // try again after an interval, not after every commit
            logger.error("writing the stream index failed; its entries stay in memory and are retried",
                         metadata: ["tenant": "\(tenant)", "error": "\(error)"])
        }
    }
}

/// What the writer has done so far: commits, the operations in them, and the
/// time spent building transactions versus committing them (the commit
/// includes writing pages and fsync).
public struct CommitStatistics: Sendable {
    public internal(set) var batches = 0
    public internal(set) var operations = 0
    public internal(set) var buildTime = Duration.zero
    public internal(set) var commitTime = Duration.zero
    /// Bulk writes of the in-memory stream-index entries, their time and size.
    public internal(set) var indexFlushes = 0
    public internal(set) var indexFlushTime = Duration.zero
    public internal(set) var indexEntriesFlushed = 0
}

extension GroupCommitWriter {
    /// The conflict error for an id found stored while running an operation alone.
    fileprivate func storedIDConflict(_ id: UUID) -> StorageError {
        do {
            return try env.read { txn in
                guard let position = try dbs.position(ofEventID: id, in: txn) else {
                    return StorageError.corrupt(path: env.path, detail: "event id \(id) collided but is not stored")
                }
                let stored = try dbs.identity(at: position, in: txn, path: env.path)
                return .eventIDConflict(id: id, storedStream: stored.stream, storedRevision: stored.revision)
            }
        } catch {
            return EventStore.storageError(error, tenant: tenant, mapSize: env.options.mapSize)
        }
    }
}

