import Foundation
import StrataProto
import StrataSupport
import StrataWire

extension StrataClient {
    /// A stored snapshot of an aggregate.
    public struct Snapshot: Sendable, Hashable {
        public let stream: String
        /// The state includes every event up to and including this revision.
        public let revision: UInt64
        /// When the event at `revision` was recorded (the time the state describes).
        public let recordedAt: Int64
        public let savedAt: Int64
        public let contentType: String
        /// Empty in the answer to `saveSnapshot` (it is not echoed).
        public let payload: Data

        init(_ p: Strata_V1_Snapshot) {
            stream = p.stream
            revision = p.revision
            recordedAt = p.recordedAt
            savedAt = p.savedAt
            contentType = p.contentType
            payload = p.payload
        }
    }

    /// A point in a stream's history.
    public enum AggregatePoint: Sendable, Hashable {
        case latest
        case revision(UInt64)
        /// Nanoseconds since the Unix epoch.
        case time(Int64)

        var proto: Strata_V1_AggregatePoint {
            var out = Strata_V1_AggregatePoint()
            switch self {
            case .latest: out.latest = Strata_V1_Empty()
            case .revision(let revision): out.revision = revision
            case .time(let time): out.time = time
            }
            return out
        }
    }

    /// An aggregate's inputs as of a point.
    public struct AggregateHistory: Sendable {
        /// The newest snapshot at or before the point.
        public let snapshot: Snapshot?
        /// The events after the snapshot up to the point, in revision order.
        public let events: [RecordedEvent]
        /// The stream's revision at the point; nil when it had no events then.
        public let revision: UInt64?
    }

    /// Nanoseconds since the Unix epoch, the unit of every time in the protocol.
    public static func nanoseconds(_ date: Date) -> Int64 {
        UnixNanoseconds.from(date)
    }

    /// The global position of the last event recorded at or before `time`
    /// (0 when none was), and that event's recorded time.
    public func position(at time: Int64, timeout: Duration? = nil) async throws(StrataClient.Error) -> (position: UInt64, recordedAt: Int64) {
        var request = Strata_V1_GetPositionAtRequest()
        request.time = time
        let response: Strata_V1_GetPositionAtResponse = try await unary(StreamsMethod.getPositionAt, request, timeout: timeout)
        return (response.position, response.recordedAt)
    }

    /// Saves a snapshot of `stream` as of `revision`.
    public func saveSnapshot(of stream: String, revision: UInt64, payload: Data, contentType: String = "application/json",
                             timeout: Duration? = nil) async throws(StrataClient.Error) -> Snapshot {
        var request = Strata_V1_SaveSnapshotRequest()
        request.stream = stream
        request.revision = revision
        request.contentType = contentType
        request.payload = payload
        let response: Strata_V1_SaveSnapshotResponse = try await unary(SnapshotsMethod.save, request, timeout: timeout)
        return Snapshot(response.snapshot)
    }

    /// The newest snapshot of `stream` at or before `point`, or nil.
    public func loadSnapshot(of stream: String, at point: AggregatePoint = .latest,
                             timeout: Duration? = nil) async throws(StrataClient.Error) -> Snapshot? {
        var request = Strata_V1_LoadSnapshotRequest()
        request.stream = stream
        request.at = point.proto
        let response: Strata_V1_LoadSnapshotResponse = try await unary(SnapshotsMethod.load, request, timeout: timeout)
        return response.hasSnapshot ? Snapshot(response.snapshot) : nil
    }

    /// The newest snapshot at or before `point` and the events after it up
    /// to `point`, in one call.
    public func loadAggregate(_ stream: String, at point: AggregatePoint = .latest,
                              timeout: Duration? = nil) async throws(StrataClient.Error) -> AggregateHistory {
        var request = Strata_V1_LoadAggregateRequest()
        request.stream = stream
        request.at = point.proto
        do {
            let (connection, id, call) = try await openStream(SnapshotsMethod.loadAggregate, request, timeout: timeout ?? defaultTimeout)
            return try await withTaskCancellationHandler { () async throws -> AggregateHistory in
                var snapshot: Snapshot?
                var revision: UInt64?
                var events: [RecordedEvent] = []
                var first = true
                while let message = try await call.next() {
                    if first {
                        let head = try Strata_V1_LoadAggregateResponse(serializedBytes: message)
                        snapshot = head.hasSnapshot ? Snapshot(head.snapshot) : nil
                        revision = head.hasRevision ? head.revision : nil
                        first = false
                    }
                    events += try ReadResponseDecoder.decode(message).events
                    connection.consumed(id, call)
                }
                return AggregateHistory(snapshot: snapshot, events: events, revision: revision)
            } onCancel: {
                connection.cancel(id)
            }
        } catch let error as RPCError {
            throw StrataClient.Error(error)
        } catch let error as StrataClient.Error {
            throw error
        } catch {
            throw StrataClient.Error(.internal, "\(error)")
        }
    }
}
