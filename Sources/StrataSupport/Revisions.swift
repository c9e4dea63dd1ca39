// The revision vocabulary shared by storage, the server and the client
// (protobuf conversions live in StrataWire).

/// What the caller believes about a stream before appending to it: the same
/// four kinds EventStoreDB offers.
public enum ExpectedRevision: Sendable, Hashable, CustomStringConvertible {
    /// Append whatever the stream's state (creates it, or recreates a deleted one).
    case any
    /// The stream must not exist (never written, or soft-deleted).
    case noStream
    /// The stream must exist and not be deleted.
    case streamExists
    /// The stream's current (last) revision must be exactly this.
    case exact(UInt64)

    public var description: String {
        switch self {
        case .any: "any"
        case .noStream: "no stream"
        case .streamExists: "stream exists"
        case .exact(let revision): "revision \(revision)"
        }
    }
}

/// What a stream actually was when an expectation failed.
public enum ActualRevision: Sendable, Hashable, CustomStringConvertible {
    /// Never written.
    case noStream
    /// Soft-deleted; `lastRevision` is the revision of its last event.
    case deleted(lastRevision: UInt64)
    /// Exists with this current revision.
    case revision(UInt64)

    public var description: String {
        switch self {
        case .noStream: "no stream"
        case .deleted(let last): "deleted (last revision \(last))"
        case .revision(let revision): "revision \(revision)"
        }
    }
}
