import Foundation
import StrataSupport
import StrataProto
import StrataWire

extension StrataClient {
    /// What the caller believes about a stream before appending (shared with the server).
    public typealias ExpectedRevision = StrataSupport.ExpectedRevision
    /// What a stream actually was when an expectation failed.
    public typealias ActualRevision = StrataSupport.ActualRevision

    /// An event to append (shared with the server). `id` defaults to a
    /// time-ordered UUID (v7); keep it to retry an append idempotently.
    public typealias EventData = StrataSupport.ProposedEvent

    /// An event as stored.
    public struct RecordedEvent: Sendable, Hashable {
        public let id: UUID
        public let stream: String
        public let revision: UInt64
        public let position: UInt64
        public let type: String
        public let contentType: String
        public let data: Data
        public let metadata: Data
        /// Commit time, nanoseconds since the Unix epoch (server clock).
        public let recordedAt: Int64

        init(id: UUID, stream: String, revision: UInt64, position: UInt64, type: String, contentType: String,
             data: Data, metadata: Data, recordedAt: Int64) {
            self.id = id
            self.stream = stream
            self.revision = revision
            self.position = position
            self.type = type
            self.contentType = contentType
            self.data = data
            self.metadata = metadata
            self.recordedAt = recordedAt
        }
    }

    /// The outcome of a successful append to one stream (shared with the server).
    public typealias AppendResult = StrataSupport.AppendResult

    public struct StreamInfo: Sendable, Hashable {
        public let stream: String
        public let lastRevision: UInt64
        public let firstVisibleRevision: UInt64
        public let isDeleted: Bool
        public let createdAt: Int64
        public let lastRecordedAt: Int64
        public let deletedAt: Int64?
    }

    public enum ReadDirection: Sendable { case forwards, backwards }

    /// Where a read starts: for a stream a revision, for `$all` a position.
    public enum ReadStart: Sendable, Hashable {
        case start, end
        case revision(UInt64)
        case position(UInt64)
    }

    /// A failed call: the status code, the server's message, and the details
    /// that matter to a program.
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let code: StatusCode
        public let message: String
        public let reason: Reason

        public enum Reason: Sendable, Equatable {
            case wrongExpectedRevision(stream: String, expected: ExpectedRevision, actual: ActualRevision)
            case streamNotFound(stream: String)
            case streamDeleted(stream: String)
            case invalidArgument(field: String, reason: String)
            case eventIDConflict(id: String, storedStream: String, storedRevision: UInt64)
            case quotaExceeded(limit: String, value: UInt64)
            /// No structured detail: the code and message say it all.
            case other
        }

        public var description: String { "\(code): \(message)" }

        init(_ code: StatusCode, _ message: String, reason: Reason = .other) {
            self.code = code
            self.message = message
            self.reason = reason
        }

        init(_ rpc: RPCError) {
            var reason = Reason.other
            switch rpc.detail?.kind {
            case .wrongExpectedRevision(let d):
                reason = .wrongExpectedRevision(stream: d.stream, expected: ExpectedRevision(proto: d.expected),
                                                actual: ActualRevision(proto: d.actual))
            case .streamNotFound(let d): reason = .streamNotFound(stream: d.stream)
            case .streamDeleted(let d): reason = .streamDeleted(stream: d.stream)
            case .invalidArgument(let d): reason = .invalidArgument(field: d.field, reason: d.reason)
            case .eventIDConflict(let d): reason = .eventIDConflict(id: d.eventID, storedStream: d.storedStream, storedRevision: d.storedRevision)
            case .quotaExceeded(let d): reason = .quotaExceeded(limit: d.limit, value: d.value)
            case .none: break
            }
            self.init(rpc.code, rpc.message, reason: reason)
        }
    }

    /// A time-ordered (version 7) UUID for a new event (`UUID.timeOrdered()`).
    public static func makeEventID() -> UUID { UUID.timeOrdered() }
}
