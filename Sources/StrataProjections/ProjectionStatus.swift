
/// What a projection is doing, as reported to operators.
public struct ProjectionStatus: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, CaseIterable {
        /// Catching up or following live.
        case running
        /// Paused by an operator; resumes where it stopped.
        case paused
        /// Its script failed; `fault` says why and `faultPosition` where.
        case faulted
        /// Not running: the server or tenant is shutting down.
        case stopped
    }

    public var name: String
    public var state: State
    public var fault: String?
    public var faultPosition: UInt64?
    /// The last position taken into account and committed.
    public var checkpoint: UInt64
    /// The last position taken into account (committed or not).
    public var position: UInt64
    /// The log's head when last looked at.
    public var headPosition: UInt64
    /// Events behind the head.
    public var lag: UInt64 { headPosition > position ? headPosition - position : 0 }
    public var eventsHandled: UInt64
    public var eventsEmitted: UInt64
    /// Handled events per second over the last few seconds.
    public var eventsPerSecond: Double
    public var partitioned: Bool
    public var generation: UInt64
    public var lastCommitAt: Int64

    /// Progress of a catch-up (after a reset): the share of the log scanned.
    public var progress: Double {
        headPosition == 0 ? 1 : min(1, Double(position) / Double(headPosition))
    }
}
