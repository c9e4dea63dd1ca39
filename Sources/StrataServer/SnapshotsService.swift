import StrataProto
import StrataStorage
import StrataWire

/// The Snapshots service: save and load aggregate snapshots, and load an
/// aggregate (snapshot plus later events) as of a revision or a time.
public struct SnapshotsService: RPCService {
    let engine: StorageEngine
    let readPageSize: Int
    let byteBudget: Int

    public init(engine: StorageEngine, readPageSize: Int = 512, maxFrameSize: UInt32 = ProtocolDefaults.maxFrameSize) {
        self.engine = engine
        self.readPageSize = readPageSize
        self.byteBudget = Int(maxFrameSize) / 2
    }

    public func register(in router: inout Router) {
        router.unary(SnapshotsMethod.save, .tenant(.write), Strata_V1_SaveSnapshotRequest.self,
                     answering: Strata_V1_SaveSnapshotResponse.self) { request, context, responder in
            try self.save(request, context, responder)
        }
        router.unary(SnapshotsMethod.load, .tenant(.read), Strata_V1_LoadSnapshotRequest.self) { request, context in
            try self.load(request, context)
        }
        router.serverStreaming(SnapshotsMethod.loadAggregate, .tenant(.read), Strata_V1_LoadAggregateRequest.self) { request, context throws(RPCError) in
            try self.loadAggregate(request, context)
        }
    }

    static func point(_ proto: Strata_V1_AggregatePoint?) -> AggregatePoint {
        switch proto?.at {
        case .none, .latest: .latest
        case .revision(let revision): .revision(revision)
        case .time(let time): .time(time)
        }
    }

    static func proto(_ snapshot: Snapshot, withPayload: Bool) -> Strata_V1_Snapshot {
        var out = Strata_V1_Snapshot()
        out.stream = snapshot.stream
        out.revision = snapshot.revision
        out.recordedAt = snapshot.recordedAt
        out.savedAt = snapshot.savedAt
        out.contentType = snapshot.contentType
        if withPayload { out.payload = snapshot.payload }
        return out
    }

    func save(_ request: Strata_V1_SaveSnapshotRequest, _ context: CallContext,
              _ responder: UnaryResponder<Strata_V1_SaveSnapshotResponse>) throws(RPCError) {
        let lease = try engine.lease(for: context)
        // The writer's callback answers: no task, so a busy Swift
        // concurrency pool in the host process cannot hold the reply.
        lease.store.submitSnapshot(of: request.stream, revision: request.revision,
                                   contentType: request.contentType.isEmpty ? "application/json" : request.contentType,
                                   payload: request.payload) { result in
            lease.release()
            responder(result.map { snapshot in
                var response = Strata_V1_SaveSnapshotResponse()
                response.snapshot = Self.proto(snapshot, withPayload: false)
                return response
            })
        }
    }

    func load(_ request: Strata_V1_LoadSnapshotRequest, _ context: CallContext) throws -> Strata_V1_LoadSnapshotResponse {
        let lease = try engine.lease(for: context)
        defer { lease.release() }
        var response = Strata_V1_LoadSnapshotResponse()
        if let snapshot = try lease.store.snapshot(of: request.stream, atOrBefore: Self.point(request.hasAt ? request.at : nil)) {
            response.snapshot = Self.proto(snapshot, withPayload: true)
        }
        return response
    }

    func loadAggregate(_ request: Strata_V1_LoadAggregateRequest, _ context: CallContext) throws(RPCError) -> any ServerStreamSource {
        let lease = try engine.lease(for: context)
        let first: AggregateSlice
        do {
            first = try lease.store.loadAggregate(request.stream, at: Self.point(request.hasAt ? request.at : nil), maxEvents: readPageSize)
        } catch {
            lease.release()
            throw RPCError(error)
        }
        return AggregateSource(lease: lease, stream: request.stream, first: first, pageSize: readPageSize, byteBudget: byteBudget)
    }
}

/// Streams an aggregate: the first message holds the snapshot and the
/// revision, then pages of events; the last has end_of_stream. Later pages
/// read `.revision(target)`: the events up to it are immutable, so pages
/// from separate transactions still form one consistent answer.
final class AggregateSource: ServerStreamSource {
    private let lease: TenantLease
    private let stream: String
    private let pageSize: Int
    private let byteBudget: Int
    private let target: UInt64?
    private var header: [UInt8]?
    private var buffered: [RecordedEvent]
    private var bufferedIndex = 0
    private var next: UInt64?
    private var finished = false

    init(lease: TenantLease, stream: String, first: AggregateSlice, pageSize: Int, byteBudget: Int) {
        self.lease = lease
        self.stream = stream
        self.pageSize = pageSize
        self.byteBudget = byteBudget
        self.target = first.revision
        var head = Strata_V1_LoadAggregateResponse()
        if let snapshot = first.snapshot { head.snapshot = SnapshotsService.proto(snapshot, withPayload: true) }
        if let revision = first.revision { head.revision = revision }
        self.header = (try? head.serializedBytes()) ?? []
        self.buffered = first.events
        self.next = first.nextRevision
    }

    deinit { lease.release() }

    func next(max: Int) throws(RPCError) -> (messages: [[UInt8]], finished: Bool) {
        var messages: [[UInt8]] = []
        while messages.count < max && !finished {
            if bufferedIndex == buffered.count, let from = next, let target {
                do {
                    let slice = try lease.store.loadAggregate(stream, at: .revision(target), from: from, maxEvents: pageSize)
                    buffered = slice.events
                    bufferedIndex = 0
                    next = slice.nextRevision
                } catch {
                    throw RPCError(error)
                }
            }
            var message = header ?? []
            header = nil
            RecordedEventEncoder.appendPage(of: buffered, from: &bufferedIndex, maxEvents: pageSize, byteBudget: byteBudget, to: &message)
            if bufferedIndex == buffered.count && next == nil {
                RecordedEventEncoder.appendEndOfStream(to: &message)
                finished = true
            }
            messages.append(message)
        }
        return (messages, finished)
    }
}
