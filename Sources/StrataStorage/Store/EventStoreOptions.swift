/// Settings of one tenant's event store.
public struct EventStoreOptions: Sendable {
    /// The LMDB map size: the tenant's size quota. LMDB reserves address
    /// space, not disk, so a generous value costs nothing until used.
    public var mapSize: Int = 8 << 30
    public var durability: Durability = .sync
    public var limits = StoreLimits()
    /// The most events one group commit takes from the queue.
    public var maxBatchEvents: Int = 50_000
    /// Concurrent read transactions on this tenant.
    public var maxReaders: UInt32 = 512
    /// With `.relaxed` durability: how often commits are flushed to disk.
    public var flushInterval: Duration = .milliseconds(100)
    /// How often slots of dead readers are cleared (`mdb_reader_check`).
    public var readerCheckInterval: Duration = .seconds(30)

    public init() {}
}
