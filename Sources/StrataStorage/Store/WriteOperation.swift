import StrataSupport
/// A unit of work queued to a tenant's writer.
enum WriteOperation: Sendable {
    /// Appends to one or more streams, atomically (all or nothing).
    case append([StreamWrite])
    /// Soft-deletes a stream.
    case delete(stream: String, expected: ExpectedRevision)
    /// Stores a snapshot and drops the stream's oldest beyond `keep`.
    case saveSnapshot(SnapshotRecord, stream: String, streamNumber: UInt64, keep: Int)
    /// Creates, updates, pauses, resets or deletes a projection.
    case projection(ProjectionChange)
    /// A projection's state, checkpoint and emitted events, atomically.
    case projectionCommit(ProjectionCommit)

    var eventCount: Int {
        switch self {
        case .append(let writes): writes.reduce(0) { $0 + $1.events.count }
        case .projectionCommit(let commit): commit.emitted.reduce(0) { $0 + $1.events.count }
        case .delete, .saveSnapshot, .projection: 0
        }
    }
}

/// What a successful write operation returns.
enum WriteOutcome: Sendable {
    case appended([AppendResult])
    case deleted
    /// The snapshot as stored, with the commit time it was saved at.
    case snapshotSaved(Snapshot)
    case projectionChanged(ProjectionRecord?)
    case projectionCommitted
}

/// A queued operation and the callback that receives its outcome. The callback
/// runs on the writer thread right after the commit: it must be quick and must
/// not block (resume a continuation, signal a semaphore, enqueue a response).
struct PendingWrite: Sendable {
    let operation: WriteOperation
    let complete: @Sendable (Result<WriteOutcome, StorageError>) -> Void
}
