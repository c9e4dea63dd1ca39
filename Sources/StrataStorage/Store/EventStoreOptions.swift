import Logging

/// Settings of one tenant's event store.
public struct EventStoreOptions: Sendable {
    /// Where the store reports what it recovers from (a failed index
    /// flush, a preallocation that could not be written).
    public var logger = Logger(label: "strata.storage")
    /// The LMDB map size: the tenant's size quota. LMDB reserves address
    /// space, not disk, so a generous value costs nothing until used.
    public var mapSize: Int = 8 << 30
    public var durability: Durability = .sync
    public var limits = StoreLimits()
    /// Snapshots kept per stream: saving one more removes the oldest.
    public var snapshotsPerStream: Int = 3
    /// The most events one group commit takes from the queue.
    public var maxBatchEvents: Int = 50_000
    /// Concurrent read transactions on this tenant.
    public var maxReaders: UInt32 = 512
    /// With `.relaxed` durability: how often commits are flushed to disk.
    public var flushInterval: Duration = .milliseconds(100)
    /// The stream index's newest entries are kept in memory and written in
    /// bulk once this many have accumulated (one sorted pass instead of a
    /// scattered page per event per commit). Bounds that memory and the log
    /// replayed when a tenant opens after a crash.
    public var indexFlushEvents: Int = 65_536
    /// ... or once the oldest unwritten entry is this old.
    public var indexFlushInterval: Duration = .seconds(2)
    /// Zero-filled bytes the writer keeps written ahead of the data file's
    /// last used page (a new step once less than half of one is left), so a
    /// commit's fsync need not also persist a new file size. With `.sync`
    /// durability only (relaxed commits are not synced one by one). 0 turns
    /// it off; the file is then grown by each commit. See `DataFilePreallocator`.
    public var preallocationStep: Int = 4 << 20
    /// How often slots of dead readers are cleared (`mdb_reader_check`).
    public var readerCheckInterval: Duration = .seconds(30)
    /// Told after every committed write transaction (the server's metrics).
    /// Runs on the tenant's writer thread after the callers are answered:
    /// it must be quick and must not block.
    public var commitObserver: (@Sendable (CommitReport) -> Void)?

    public init() {}
}

/// One committed write transaction of a tenant's writer (one group commit).
public struct CommitReport: Sendable {
    public let tenant: String
    /// Write operations (appends, deletions, projection commits, …) in the transaction.
    public let operations: Int
    /// Events it wrote to the log (idempotent retries write none).
    public let events: Int
    /// Bytes of the log records it wrote.
    public let bytes: Int
    /// From the start of the transaction to the end of its commit (and fsync
    /// with sync durability).
    public let duration: Duration
}
