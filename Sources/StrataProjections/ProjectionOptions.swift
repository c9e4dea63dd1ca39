/// How projections run; every value is configurable (`projections.*` in
/// config/strata.yaml).
public struct ProjectionOptions: Sendable, Hashable {
    /// Commit state, checkpoint and emitted events after this many handled events…
    public var checkpointEvents: Int = 1_000
    /// …or once the oldest uncommitted change is this old, whichever comes
    /// first. A projection that catches up commits at once.
    public var checkpointInterval: Duration = .milliseconds(500)
    /// Events read from the store per batch.
    public var batchSize: Int = 512
    /// Keep a snapshot of an unpartitioned state every this many handled
    /// events, for state-as-of-T queries (0: never).
    public var snapshotEvents: Int = 100_000
    /// Snapshots kept per projection (the newest).
    public var keepSnapshots: Int = 100
    /// Emitted events per commit, at most (a script that emits more faults).
    public var maxEmittedPerCommit: Int = 10_000
    /// Projections one tenant may have; each costs a thread while it runs,
    /// up to the sandbox's memory, and a few metric series.
    public var maxPerTenant: Int = 100
    public var sandbox = SandboxLimits()

    public init() {}
}
