import StrataLMDB
import Foundation
import StrataSupport

/// The event store of one tenant: one LMDB environment, one writer thread
/// with group commit, and lock-free concurrent readers.
///
/// Thread-safe. Appends may come from any thread or task; they meet in the
/// writer's queue. Reads run in their own read-only transactions and never
/// wait for the writer. `close()` finishes queued appends, waits for running
/// reads, and closes the environment.
public final class EventStore: Sendable {
    public let tenant: String
    public let path: String
    public let options: EventStoreOptions
    let env: Environment
    let dbs: TenantDatabases
    let gate = ReadGate()
    /// The stream-index entries not yet written to `stream-index`; shared by
    /// the writer (which adds and flushes) and readers.
    let indexTail: StreamIndexTail
    private let writer: GroupCommitWriter
    /// Observers of the log's head (subscriptions): told after each commit.
    public let commits = CommitNotifier()

    /// Opens (creating if needed) the store in directory `path`.
    public init(path: String, tenant: String, options: EventStoreOptions = EventStoreOptions()) throws(StorageError) {
        self.tenant = tenant
        self.path = path
        self.options = options
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw .fileOperation(path: path, reason: "cannot create the tenant's directory: \(error.localizedDescription)")
        }
        do {
            env = try Environment(path: path, options: EnvironmentOptions(
                mapSize: options.mapSize, maxDatabases: 16, maxReaders: options.maxReaders,
                syncsCommits: options.durability == .sync))
        } catch {
            throw Self.storageError(error, tenant: tenant, mapSize: options.mapSize)
        }
        do {
            dbs = try TenantDatabases.open(in: env)
            let watermark = try StreamIndexRecovery.recover(env: env, dbs: dbs, path: path)
            indexTail = StreamIndexTail(watermark: watermark)
            writer = try GroupCommitWriter(env: env, dbs: dbs, tenant: tenant, indexTail: indexTail, options: options,
                                           commits: commits)
        } catch {
            env.close()
            throw Self.storageError(error, tenant: tenant, mapSize: options.mapSize)
        }
    }

    /// Finishes queued writes, waits for running reads, closes the
    /// environment. Later calls fail with `.closed`. Idempotent.
    public func close() {
        close(flushingIndex: true)
    }

    /// `flushingIndex: false` leaves the in-memory index entries unwritten,
    /// as a crash would; tests use it to check the recovery at open.
    func close(flushingIndex: Bool) {
        writer.stop(flushingIndex: flushingIndex)
        gate.close { env.close() }
    }

    /// Group-commit counters: transactions committed, operations in them, and
    /// where the writer's time went.
    public var commitStatistics: CommitStatistics { writer.statistics }

    /// Map size and bytes in use.
    public func usage() throws(StorageError) -> (mapSize: Int, usedBytes: Int) {
        do {
            return try gate.enter(orThrow: .closed(tenant: tenant)) { env.usage() }
        } catch {
            throw Self.storageError(error, tenant: tenant, mapSize: options.mapSize)
        }
    }

    static func storageError(_ error: any Error, tenant: String, mapSize: Int) -> StorageError {
        switch error {
        case let error as StorageError: error
        case let error as LMDBError where error.isMapFull: .quotaExceeded(tenant: tenant, mapSize: mapSize)
        case let error as LMDBError where error.isCorruption: .corrupt(path: "tenant '\(tenant)'", detail: error.description)
        case let error as LMDBError: .lmdb(error)
        default: .invariantViolated("unexpected error from tenant '\(tenant)': \(error)")
        }
    }

    /// Runs a read transaction behind the gate, mapping errors to `StorageError`.
    /// A snapshot that turns out older than the index entries kept in memory
    /// (it spans two index flushes) is retried with a new transaction.
    func withRead<R>(_ body: (borrowing ReadTransaction) throws -> R) throws(StorageError) -> R {
        while true {
            do {
                return try gate.enter(orThrow: .closed(tenant: tenant)) { try env.read(body) }
            } catch is StreamIndexTail.Stale {
                continue
            } catch {
                throw Self.storageError(error, tenant: tenant, mapSize: options.mapSize)
            }
        }
    }

    // MARK: - Writing

    /// Checks an append before it is queued, on the caller's thread, so the
    /// writer only sees well-formed work.
    func validate(_ writes: [StreamWrite]) throws(StorageError) {
        let limits = options.limits
        var total = 0
        var streams = Set<String>()
        var ids = Set<UUID>()
        for write in writes {
            try limits.validateStreamName(write.stream)
            if !streams.insert(write.stream).inserted { throw .duplicateStream(stream: write.stream) }
            if write.events.isEmpty { throw .noEvents(stream: write.stream) }
            total += write.events.count
            if total > limits.maxEventsPerAppend { throw .tooManyEvents(count: writes.reduce(0) { $0 + $1.events.count }, limit: limits.maxEventsPerAppend) }
            for (index, event) in write.events.enumerated() {
                try limits.validate(event, index: index, stream: write.stream)
                if !ids.insert(event.id).inserted { throw .duplicateEventID(id: event.id) }
            }
        }
        if writes.isEmpty { throw .invalidStreamName(stream: "", reason: "a multi-stream append needs at least one stream") }
    }

    /// Queues an operation; `completion` runs once, on the writer thread.
    func enqueue(_ operation: WriteOperation, completion: @escaping @Sendable (Result<WriteOutcome, StorageError>) -> Void) {
        writer.submit(PendingWrite(operation: operation, complete: completion))
    }

    /// Validates and queues a (multi-stream) append without blocking: the
    /// entry point for servers. `completion` runs on the writer thread right
    /// after the commit; it must not block.
    public func submitAppend(_ writes: [StreamWrite],
                             completion: @escaping @Sendable (Result<[AppendResult], StorageError>) -> Void) {
        do {
            try validate(writes)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(.append(writes)) { result in
            completion(result.map { outcome in
                if case .appended(let results) = outcome { return results }
                return []
            })
        }
    }

    /// Appends `events` to `stream` if it is in the `expected` state; all or
    /// nothing. Blocks the calling thread until the commit is durable.
    @available(*, noasync, message: "use the async overload")
    public func append(to stream: String, expected: ExpectedRevision, events: [ProposedEvent]) throws(StorageError) -> AppendResult {
        let results = try appendMulti([StreamWrite(stream: stream, expected: expected, events: events)])
        return results[0]
    }

    /// Appends to several streams atomically: every expectation must hold or
    /// nothing is written. Blocks until the commit is durable.
    @available(*, noasync, message: "use the async overload")
    public func appendMulti(_ writes: [StreamWrite]) throws(StorageError) -> [AppendResult] {
        let box = ResultBox<[AppendResult]>()
        submitAppend(writes) { box.fill($0) }
        return try box.wait().get()
    }

    public func append(to stream: String, expected: ExpectedRevision, events: [ProposedEvent]) async throws -> AppendResult {
        try await appendMulti([StreamWrite(stream: stream, expected: expected, events: events)])[0]
    }

    public func appendMulti(_ writes: [StreamWrite]) async throws -> [AppendResult] {
        try await withCheckedThrowingContinuation { continuation in
            submitAppend(writes) { continuation.resume(with: $0) }
        }
    }

    /// Soft-deletes a stream: reads of it then fail with `.streamDeleted`; its
    /// events stay in `$all` and in time queries. Appending with `.any` or
    /// `.noStream` re-creates it, continuing its revisions. Deleting a deleted
    /// stream with `.any` succeeds and changes nothing.
    @available(*, noasync, message: "use the async overload")
    public func deleteStream(_ stream: String, expected: ExpectedRevision = .any) throws(StorageError) {
        try options.limits.validateStreamName(stream)
        let box = ResultBox<WriteOutcome>()
        enqueue(.delete(stream: stream, expected: expected)) { box.fill($0) }
        _ = try box.wait().get()
    }

    public func deleteStream(_ stream: String, expected: ExpectedRevision = .any) async throws {
        try await withCheckedThrowingContinuation { continuation in
            submitDelete(stream, expected: expected) { continuation.resume(with: $0) }
        }
    }

    /// Validates and queues a stream deletion without blocking: the entry
    /// point for servers. `completion` runs once, on the writer thread after
    /// the commit or at once on a validation error; it must not block.
    public func submitDelete(_ stream: String, expected: ExpectedRevision = .any,
                             completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        do {
            try options.limits.validateStreamName(stream)
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(.delete(stream: stream, expected: expected)) { completion($0.map { _ in () }) }
    }
}

/// Carries one result from the writer thread to a blocked caller. The
/// semaphore orders the write of `result` before its read.
final class ResultBox<Value: Sendable>: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var result: Result<Value, StorageError>?

    func fill(_ result: Result<Value, StorageError>) {
        self.result = result
        ready.signal()
    }

    func wait() -> Result<Value, StorageError> {
        ready.wait()
        return result ?? .failure(.invariantViolated("the writer signalled without a result"))
    }
}
