import Foundation
import StrataSupport

/// Events to append to one stream under one expectation.
public struct StreamWrite: Sendable, Hashable {
    public var stream: String
    public var expected: ExpectedRevision
    public var events: [ProposedEvent]

    public init(stream: String, expected: ExpectedRevision, events: [ProposedEvent]) {
        self.stream = stream
        self.expected = expected
        self.events = events
    }
}

/// What a stream looks like now.
public struct StreamInfo: Sendable, Hashable {
    public let stream: String
    /// The revision of the stream's last event (also when deleted).
    public let lastRevision: UInt64
    /// The first revision reads return (after a soft delete and re-creation
    /// this is where the new incarnation starts).
    public let firstVisibleRevision: UInt64
    public let isDeleted: Bool
    /// Nanoseconds since the Unix epoch.
    public let createdAt: Int64
    public let lastRecordedAt: Int64
    /// When the stream was last soft-deleted, if ever.
    public let deletedAt: Int64?
}

public enum ReadDirection: Sendable, Hashable {
    case forwards
    case backwards
}

/// Where a stream read starts.
public enum StreamReadStart: Sendable, Hashable {
    case start
    case end
    case revision(UInt64)
}

/// Where a `$all` read starts.
public enum AllReadStart: Sendable, Hashable {
    case start
    case end
    case position(UInt64)
}

/// Filters for `$all` reads. Matching is on exact bytes: a stream matches when
/// its name starts with any of `streamPrefixes`; an event matches when its
/// type is one of `eventTypes`. Empty means no filter of that kind.
public struct EventFilter: Sendable, Hashable {
    public var streamPrefixes: [String]
    public var eventTypes: [String]

    public init(streamPrefixes: [String] = [], eventTypes: [String] = []) {
        self.streamPrefixes = streamPrefixes
        self.eventTypes = eventTypes
    }

    public static let none = EventFilter()
    public var isEmpty: Bool { streamPrefixes.isEmpty && eventTypes.isEmpty }
}

/// A page of a stream.
public struct StreamSlice: Sendable {
    public let events: [RecordedEvent]
    /// The revision to continue from, or nil when the read reached the end
    /// (in its direction).
    public let nextRevision: UInt64?
    /// The stream's current revision at the time of the read.
    public let lastRevision: UInt64
}

/// A page of `$all`.
public struct AllSlice: Sendable {
    public let events: [RecordedEvent]
    /// The position to continue from, or nil when the read reached the end.
    /// With a filter this moves past skipped events too, so a caller never
    /// rescans them.
    public let nextPosition: UInt64?
    /// The log's head position at the time of the read.
    public let headPosition: UInt64
}
