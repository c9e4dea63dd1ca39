/// The outcome of a successful append to one stream, as storage records it,
/// the server sends it and the client returns it.
public struct AppendResult: Sendable, Hashable {
    public let stream: String
    public let firstRevision: UInt64
    /// The stream's current revision after the append.
    public let lastRevision: UInt64
    public let firstPosition: UInt64
    public let lastPosition: UInt64
    /// The commit time, nanoseconds since the Unix epoch (server clock).
    public let recordedAt: Int64
    /// True when the events were already stored by an earlier identical
    /// append: nothing was written and this is the original result.
    public let replayed: Bool

    public init(stream: String, firstRevision: UInt64, lastRevision: UInt64, firstPosition: UInt64,
                lastPosition: UInt64, recordedAt: Int64, replayed: Bool) {
        self.stream = stream
        self.firstRevision = firstRevision
        self.lastRevision = lastRevision
        self.firstPosition = firstPosition
        self.lastPosition = lastPosition
        self.recordedAt = recordedAt
        self.replayed = replayed
    }
}
