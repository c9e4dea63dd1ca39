/// How commits reach the disk.
public enum Durability: String, Sendable, CaseIterable {
    /// fsync before a commit returns (LMDB's default). An acknowledged write
    /// survives a power loss.
    case sync
    /// Commits are written to the OS page cache without fsync (`MDB_NOSYNC`)
    /// and flushed periodically by the owner. A process crash loses nothing;
    /// an OS crash or power loss can lose the commits since the last flush.
    /// Opt-in only.
    case relaxed
}
