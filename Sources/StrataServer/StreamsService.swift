import Foundation
import StrataProto
import StrataStorage
import StrataWire
import StrataSupport

/// The Streams service on the storage engine. Appends go through the
/// tenant's group commit without blocking a thread; reads run synchronously
/// (they are short, bounded pages) on the caller's queue.
public struct StreamsService: RPCService {
    let engine: StorageEngine
    let readPageSize: Int
    /// Bytes of events per streamed message: half the frame limit, so a
    /// message plus its protobuf overhead always fits in one frame.
    let byteBudget: Int
    let subscriptions: SubscriptionLimits
    /// Where subscriptions are counted for the metrics (nil: not counted).
    let metrics: ServerMetrics?

    public init(engine: StorageEngine, readPageSize: Int = 512, maxFrameSize: UInt32 = ProtocolDefaults.maxFrameSize,
                subscriptions: SubscriptionLimits = SubscriptionLimits(), metrics: ServerMetrics? = nil) {
        self.engine = engine
        self.metrics = metrics
        self.readPageSize = readPageSize
        self.byteBudget = Int(maxFrameSize) / 2
        self.subscriptions = subscriptions
    }

    public func register(in router: inout Router) {
        // Append and AppendMulti take bytes: their hand-written codecs
        // (AppendRequestDecoder, AppendResponseEncoder) are the hot path.
        router.register(StreamsMethod.append, .tenant(.write), .unary { request, context, respond in
            self.append(request, context, respond)
        })
        router.register(StreamsMethod.appendMulti, .tenant(.write), .unary { request, context, respond in
            self.appendMulti(request, context, respond)
        })
        router.unary(StreamsMethod.getStreamInfo, .tenant(.read), Strata_V1_GetStreamInfoRequest.self) { request, context in
            try self.streamInfo(request, context)
        }
        router.unary(StreamsMethod.deleteStream, .tenant(.write), Strata_V1_DeleteStreamRequest.self,
                     answering: Strata_V1_DeleteStreamResponse.self) { request, context, responder in
            try self.deleteStream(request, context, responder)
        }
        router.serverStreaming(StreamsMethod.read, .tenant(.read), Strata_V1_ReadRequest.self) { request, context throws(RPCError) in
            try self.read(request, context)
        }
        router.serverStreaming(StreamsMethod.subscribe, .tenant(.read), Strata_V1_SubscribeRequest.self) { request, context throws(RPCError) in
            try self.subscribe(request, context)
        }
        router.unary(StreamsMethod.getPositionAt, .tenant(.read), Strata_V1_GetPositionAtRequest.self) { request, context in
            try self.positionAt(request, context)
        }
    }

    func lease(_ context: CallContext) throws(RPCError) -> TenantLease {
        try engine.lease(for: context)
    }

    static func proto(_ event: RecordedEvent) -> Strata_V1_RecordedEvent {
        var out = Strata_V1_RecordedEvent()
        out.id = withUnsafeBytes(of: event.id.uuid) { Data($0) }
        out.stream = event.stream
        out.revision = event.revision
        out.position = event.position
        out.type = event.type
        out.contentType = event.contentType
        out.data = event.data
        out.metadata = event.metadata
        out.recordedAt = event.recordedAt
        return out
    }

    // MARK: - Methods

    func append(_ bytes: [UInt8], _ context: CallContext, _ respond: @escaping @Sendable (Result<[UInt8], RPCError>) -> Void) {
        do throws(RPCError) {
            let write = try AppendRequestDecoder.decode(bytes)
            let lease = try lease(context)
            lease.store.submitAppend([write]) { result in
                lease.release()
                switch result {
                case .success(let results):
                    respond(.success(AppendResponseEncoder.encode(results[0])))
                case .failure(let error):
                    respond(.failure(RPCError(error)))
                }
            }
        } catch {
            respond(.failure(error))
        }
    }

    func appendMulti(_ bytes: [UInt8], _ context: CallContext, _ respond: @escaping @Sendable (Result<[UInt8], RPCError>) -> Void) {
        do throws(RPCError) {
            let writes = try AppendRequestDecoder.decodeMulti(bytes)
            let lease = try lease(context)
            lease.store.submitAppend(writes) { result in
                lease.release()
                switch result {
                case .success(let results):
                    var response = Strata_V1_AppendMultiResponse()
                    response.results = results.map(\.proto)
                    respond(MessageCodec.encode(response))
                case .failure(let error):
                    respond(.failure(RPCError(error)))
                }
            }
        } catch {
            respond(.failure(error))
        }
    }

    func streamInfo(_ request: Strata_V1_GetStreamInfoRequest, _ context: CallContext) throws -> Strata_V1_GetStreamInfoResponse {
        let lease = try lease(context)
        defer { lease.release() }
        let info = request.asOf == 0 ? try lease.store.streamInfo(request.stream)
            : try lease.store.streamInfo(request.stream, at: request.asOf)
        var response = Strata_V1_GetStreamInfoResponse()
        response.stream = info.stream
        response.lastRevision = info.lastRevision
        response.firstVisibleRevision = info.firstVisibleRevision
        response.deleted = info.isDeleted
        response.createdAt = info.createdAt
        response.lastRecordedAt = info.lastRecordedAt
        response.deletedAt = info.deletedAt ?? 0
        return response
    }

    func deleteStream(_ request: Strata_V1_DeleteStreamRequest, _ context: CallContext,
                      _ responder: UnaryResponder<Strata_V1_DeleteStreamResponse>) throws(RPCError) {
        let lease = try lease(context)
        let expected = ExpectedRevision(proto: request.hasExpected ? request.expected : nil)
        // The writer's callback answers: no task (see SnapshotsService.save).
        lease.store.submitDelete(request.stream, expected: expected) { result in
            lease.release()
            responder(result.map { _ in Strata_V1_DeleteStreamResponse() })
        }
    }

    func read(_ request: Strata_V1_ReadRequest, _ context: CallContext) throws(RPCError) -> any ServerStreamSource {
        if request.hasRecorded { return try timeRangeRead(request, context) }
        let lease = try lease(context)
        let limit = request.maxCount == 0 ? UInt64.max : request.maxCount
        if request.stream == "$all" {
            let start: AllReadStart
            switch request.from {
            case .none: start = request.backwards ? .end : .start
            case .start: start = .start
            case .end: start = .end
            case .position(let p): start = .position(p)
            case .revision:
                lease.release()
                throw RPCError.invalidArgument(field: "from", reason: "$all reads start from a position, not a revision")
            }
            return allSource(lease: lease, start: start, backwards: request.backwards, limit: limit,
                             filter: EventFilter(streamPrefixes: request.streamPrefixes, eventTypes: request.eventTypes))
        }
        guard request.streamPrefixes.isEmpty && request.eventTypes.isEmpty else {
            lease.release()
            throw RPCError.invalidArgument(field: "stream_prefixes", reason: "filters apply to $all reads only")
        }
        let start: StreamReadStart
        switch request.from {
        case .none: start = request.backwards ? .end : .start
        case .start: start = .start
        case .end: start = .end
        case .revision(let r): start = .revision(r)
        case .position:
            lease.release()
            throw RPCError.invalidArgument(field: "from", reason: "stream reads start from a revision, not a position")
        }
        // Check the stream now, so a missing or deleted stream fails the call
        // before any message is sent.
        do {
            _ = try lease.store.readStream(request.stream, from: start, direction: request.backwards ? .backwards : .forwards, maxCount: 0)
        } catch {
            lease.release()
            throw RPCError(error)
        }
        return streamSource(lease: lease, stream: request.stream, start: start, backwards: request.backwards, limit: limit)
    }
}

/// A read served on demand: each pull returns at most `max` messages, each
/// one page of events (at most `eventsPerMessage`, and under `byteBudget`
/// bytes so a message always fits in a frame). The last message of a read
/// that reached the end carries `end_of_stream`. Used only on its
/// connection's queue.
final class PagedReadSource: ServerStreamSource {
    /// Reads up to `count` more events; returns them and whether the read is
    /// exhausted.
    typealias ReadPage = (_ count: Int) throws(RPCError) -> (events: [RecordedEvent], exhausted: Bool)

    private let lease: TenantLease
    private let readPage: ReadPage
    private let eventsPerMessage: Int
    private let byteBudget: Int
    private var remaining: UInt64
    private var buffered: [RecordedEvent] = []
    private var bufferedIndex = 0
    private var exhausted = false
    private var finished = false

    init(lease: TenantLease, limit: UInt64, eventsPerMessage: Int, byteBudget: Int, readPage: @escaping ReadPage) {
        self.lease = lease
        self.remaining = limit
        self.eventsPerMessage = eventsPerMessage
        self.byteBudget = byteBudget
        self.readPage = readPage
    }

    deinit { lease.release() }

    func next(max: Int) throws(RPCError) -> (messages: [[UInt8]], finished: Bool) {
        var messages: [[UInt8]] = []
        while messages.count < max && !finished {
            if bufferedIndex == buffered.count && !exhausted && remaining > 0 {
                let page = try readPage(Int(min(UInt64(eventsPerMessage), remaining)))
                buffered = page.events
                bufferedIndex = 0
                remaining -= UInt64(page.events.count)
                exhausted = page.exhausted
                // A filtered page may be empty without the read being over: read on.
                if buffered.isEmpty && !exhausted && remaining > 0 { continue }
            }
            var message: [UInt8] = []
            let count = RecordedEventEncoder.appendPage(of: buffered, from: &bufferedIndex, maxEvents: eventsPerMessage,
                                                        byteBudget: byteBudget, to: &message)
            let drained = bufferedIndex == buffered.count
            var endOfStream = false
            if drained && exhausted {
                endOfStream = true
                finished = true
            } else if drained && remaining == 0 {
                finished = true  // max_count reached: no end-of-stream marker
            }
            if endOfStream { RecordedEventEncoder.appendEndOfStream(to: &message) }
            if count == 0 && !endOfStream { break }
            messages.append(message)
        }
        return (messages, finished)
    }
}

extension StreamsService {
    func allSource(lease: TenantLease, start: AllReadStart, backwards: Bool, limit: UInt64, filter: EventFilter) -> PagedReadSource {
        var next: AllReadStart? = start
        let store = lease.store
        let pageSize = readPageSize
        return PagedReadSource(lease: lease, limit: limit, eventsPerMessage: pageSize, byteBudget: byteBudget) { count throws(RPCError) in
            guard let from = next else { return ([], true) }
            do {
                // The scan limit keeps one pull's work bounded when a filter skips a lot.
                let slice = try store.readAll(from: from, direction: backwards ? .backwards : .forwards,
                                              maxCount: count, filter: filter, scanLimit: pageSize * 16)
                next = slice.nextPosition.map { .position($0) }
                return (slice.events, next == nil)
            } catch {
                throw RPCError(any: error)
            }
        }
    }

    func streamSource(lease: TenantLease, stream: String, start: StreamReadStart, backwards: Bool, limit: UInt64) -> PagedReadSource {
        var next: StreamReadStart? = start
        let store = lease.store
        return PagedReadSource(lease: lease, limit: limit, eventsPerMessage: readPageSize, byteBudget: byteBudget) { count throws(RPCError) in
            guard let from = next else { return ([], true) }
            do {
                let slice = try store.readStream(stream, from: from, direction: backwards ? .backwards : .forwards, maxCount: count)
                next = slice.nextRevision.map { .revision($0) }
                return (slice.events, next == nil)
            } catch {
                throw RPCError(any: error)
            }
        }
    }
}
