import Foundation
import StrataProto
import StrataSupport
import StrataWire
import SwiftProtobuf
import Synchronization

/// A Strata client: one multiplexed connection (reopened on demand after it
/// fails), safe to share between tasks.
///
///     let client = try await StrataClient.connect(host: "127.0.0.1", port: 7070, tenant: "default", apiKey: "strata_…")
///     let result = try await client.append(to: "order-1", expected: .noStream, events: [
///         .init(type: "OrderPlaced", data: Data(#"{"total":12}"#.utf8)),
///     ])
///     for try await event in client.read("order-1") { print(event.revision, event.type) }
public final class StrataClient: Sendable {
    public let host: String
    public let port: UInt16
    public let tenant: String
    private let apiKey: String
    /// The deadline of calls that do not give one (nil: none).
    public let defaultTimeout: Duration?
    private let current: Locked<ClientConnection?>
    /// The tenant and authorization entries of every call's metadata, encoded once.
    private let fixedMetadata: [UInt8]
    /// Request ids are this client's random prefix and a counter: unique
    /// enough to find a call in the server's log, and free of the system
    /// calls a random UUID per call would cost.
    private let requestIDPrefix: String
    private let requestCounter = Atomic<UInt64>(0)

    private init(host: String, port: UInt16, tenant: String, apiKey: String, defaultTimeout: Duration?, connection: ClientConnection) {
        self.host = host
        self.port = port
        self.tenant = tenant
        self.apiKey = apiKey
        self.defaultTimeout = defaultTimeout
        self.current = Locked(connection)
        var fixed: [UInt8] = []
        CallHeadersCodec.encodeMetadataEntry(key: MetadataKey.tenant, value: tenant, into: &fixed)
        CallHeadersCodec.encodeMetadataEntry(key: MetadataKey.authorization, value: "Bearer \(apiKey)", into: &fixed)
        self.fixedMetadata = fixed
        self.requestIDPrefix = String(UUID().uuidString.lowercased().prefix(13))
    }

    /// Connects to a server. Every call carries `tenant` and `apiKey`.
    public static func connect(host: String, port: UInt16, tenant: String, apiKey: String,
                               defaultTimeout: Duration? = .seconds(30)) async throws(StrataClient.Error) -> StrataClient {
        do {
            let connection = try ClientConnection.connect(host: host, port: port)
            return StrataClient(host: host, port: port, tenant: tenant, apiKey: apiKey, defaultTimeout: defaultTimeout, connection: connection)
        } catch {
            throw StrataClient.Error(error)
        }
    }

    /// Closes the connection; calls in flight fail with UNAVAILABLE.
    public func close() {
        current.withLock { connection in
            connection?.close()
            connection = nil
        }
    }

    /// The live connection, reconnecting if the last one failed or is going away.
    private func connection() throws(RPCError) -> ClientConnection {
        try current.withLock { (connection) throws(RPCError) -> ClientConnection in
            if let live = connection, live.isUsable { return live }
            let fresh = try ClientConnection.connect(host: host, port: port)
            connection = fresh
            return fresh
        }
    }

    /// The per-call metadata besides the fixed entries: a fresh request id.
    private func callMetadata() -> [(key: String, value: String)] {
        let n = requestCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return [(MetadataKey.requestID, "\(requestIDPrefix)-\(n)")]
    }

    /// Runs a unary call; cancelling the task sends CANCEL.
    func unary<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message,
                                                 timeout: Duration?) async throws(StrataClient.Error) -> Response {
        let requestBytes: [UInt8]
        do {
            requestBytes = try request.serializedBytes()
        } catch {
            throw StrataClient.Error(.internal, "cannot encode the \(method) request: \(error)")
        }
        let response = try await unary(method, requestBytes: requestBytes, timeout: timeout)
        do {
            return try Response(serializedBytes: response)
        } catch {
            throw StrataClient.Error(.internal, "undecodable \(method) response: \(error)")
        }
    }

    /// Runs a unary call on an encoded request; returns the encoded response.
    func unary(_ method: String, requestBytes: [UInt8], timeout: Duration?) async throws(StrataClient.Error) -> [UInt8] {
        do {
            let connection = try connection()
            await connection.reserveSlot()
            let (id, call) = try connection.open(method: method, kind: .unary, encodedMetadata: fixedMetadata,
                                                 metadata: callMetadata(), timeout: timeout ?? defaultTimeout,
                                                 request: requestBytes)
            let response = try await withTaskCancellationHandler {
                try await call.next()
            } onCancel: {
                connection.cancel(id)
            }
            guard let response else { throw RPCError(.internal, "the server ended \(method) without a response") }
            while try await call.next() != nil {}  // wait for the trailers
            return response
        } catch let error as RPCError {
            throw StrataClient.Error(error)
        } catch {
            throw StrataClient.Error(.internal, "\(error)")
        }
    }

    // MARK: - Streams

    /// Appends `events` to `stream` if it is in the `expected` state; all or nothing.
    public func append(to stream: String, expected: ExpectedRevision = .any, events: [EventData],
                       timeout: Duration? = nil) async throws(StrataClient.Error) -> AppendResult {
        // Encoded by hand: the hottest call (AppendCodec).
        let request = AppendCodec.encodeRequest(stream: stream, expected: expected, events: events)
        let response = try await unary(StreamsMethod.append, requestBytes: request, timeout: timeout)
        do {
            return try AppendCodec.decodeResponse(response)
        } catch {
            throw StrataClient.Error(.internal, "undecodable \(StreamsMethod.append) response: \(error)")
        }
    }

    /// Appends to several streams atomically.
    public func appendMulti(_ writes: [(stream: String, expected: ExpectedRevision, events: [EventData])],
                            timeout: Duration? = nil) async throws(StrataClient.Error) -> [AppendResult] {
        var request = Strata_V1_AppendMultiRequest()
        request.writes = writes.map { write in
            var w = Strata_V1_AppendRequest()
            w.stream = write.stream
            w.expected = write.expected.proto
            w.events = write.events.map(\.proto)
            return w
        }
        let response: Strata_V1_AppendMultiResponse = try await unary(StreamsMethod.appendMulti, request, timeout: timeout)
        return response.results.map(AppendResult.init)
    }

    /// A stream's state now, or as it was at `asOf` (nanoseconds since the Unix epoch).
    public func streamInfo(_ stream: String, asOf: Int64? = nil, timeout: Duration? = nil) async throws(StrataClient.Error) -> StreamInfo {
        var request = Strata_V1_GetStreamInfoRequest()
        request.stream = stream
        // 0 on the wire means "now"; the epoch itself (no events can be that
        // old) is sent as -1 so it keeps its meaning.
        request.asOf = asOf.map { $0 == 0 ? -1 : $0 } ?? 0
        let r: Strata_V1_GetStreamInfoResponse = try await unary(StreamsMethod.getStreamInfo, request, timeout: timeout)
        return StreamInfo(stream: r.stream, lastRevision: r.lastRevision, firstVisibleRevision: r.firstVisibleRevision,
                          isDeleted: r.deleted, createdAt: r.createdAt, lastRecordedAt: r.lastRecordedAt,
                          deletedAt: r.deletedAt == 0 ? nil : r.deletedAt)
    }

    /// Soft-deletes a stream.
    public func deleteStream(_ stream: String, expected: ExpectedRevision = .any, timeout: Duration? = nil) async throws(StrataClient.Error) {
        var request = Strata_V1_DeleteStreamRequest()
        request.stream = stream
        request.expected = expected.proto
        let _: Strata_V1_DeleteStreamResponse = try await unary(StreamsMethod.deleteStream, request, timeout: timeout)
    }

    /// Reads a stream (or `"$all"`) as an async sequence. Events flow only as
    /// fast as they are consumed: the sequence grants the server credit as it
    /// hands events out.
    ///
    /// `recorded` keeps only events committed in that closed range of times
    /// (nanoseconds since the Unix epoch; forwards, without `start`): a
    /// stream as of T is `recorded: Int64.min...T`.
    public func read(_ stream: String, from start: ReadStart? = nil, direction: ReadDirection = .forwards,
                     maxCount: UInt64 = 0, streamPrefixes: [String] = [], eventTypes: [String] = [],
                     recorded: ClosedRange<Int64>? = nil, timeout: Duration? = nil) -> ReadSequence {
        var request = Strata_V1_ReadRequest()
        if let recorded {
            request.recorded.from = recorded.lowerBound
            request.recorded.to = recorded.upperBound
        }
        request.stream = stream
        request.backwards = direction == .backwards
        switch start {
        case .none: break
        case .start: request.start = Strata_V1_Empty()
        case .end: request.end = Strata_V1_Empty()
        case .revision(let r): request.revision = r
        case .position(let p): request.position = p
        }
        request.maxCount = maxCount
        request.streamPrefixes = streamPrefixes
        request.eventTypes = eventTypes
        return ReadSequence(client: self, request: request, timeout: timeout)
    }

    /// Opens a server-streaming call (used by `ReadSequence`).
    func openStream(_ method: String, _ request: some SwiftProtobuf.Message, timeout: Duration?) async throws(RPCError) -> (ClientConnection, UInt32, PendingCall) {
        let connection = try connection()
        await connection.reserveSlot()
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw RPCError(.internal, "cannot encode the request: \(error)")
        }
        let (id, call) = try connection.open(method: method, kind: .serverStreaming, encodedMetadata: fixedMetadata,
                                             metadata: callMetadata(), timeout: timeout, request: bytes)
        return (connection, id, call)
    }
}

/// Events of a read, as they arrive. Iterate once.
public struct ReadSequence: AsyncSequence, Sendable {
    public typealias Element = StrataClient.RecordedEvent
    let client: StrataClient
    let request: Strata_V1_ReadRequest
    let timeout: Duration?

    public func makeAsyncIterator() -> Iterator {
        Iterator(client: client, request: request, timeout: timeout)
    }

    public final class Iterator: AsyncIteratorProtocol {
        private let client: StrataClient
        private let request: Strata_V1_ReadRequest
        private let timeout: Duration?
        private var call: (connection: ClientConnection, id: UInt32, pending: PendingCall)?
        private var done = false
        /// Events of the last message not yet handed out.
        private var page: [StrataClient.RecordedEvent] = []
        private var pageIndex = 0

        init(client: StrataClient, request: Strata_V1_ReadRequest, timeout: Duration?) {
            self.client = client
            self.request = request
            self.timeout = timeout
        }

        deinit {
            if !done, let call { call.connection.cancel(call.id) }
        }

        public func next() async throws(StrataClient.Error) -> StrataClient.RecordedEvent? {
            if pageIndex < page.count {
                pageIndex += 1
                return page[pageIndex - 1]
            }
            guard !done else { return nil }
            do {
                let call: (connection: ClientConnection, id: UInt32, pending: PendingCall)
                if let open = self.call {
                    call = open
                } else {
                    call = try await client.openStream(StreamsMethod.read, request, timeout: timeout)
                    self.call = call
                }
                while true {
                    let message = try await withTaskCancellationHandler {
                        try await call.pending.next()
                    } onCancel: {
                        call.connection.cancel(call.id)
                    }
                    guard let message else {
                        done = true
                        return nil
                    }
                    call.connection.consumed(call.id, call.pending)
                    let response = try ReadResponseDecoder.decode(message)
                    guard let first = response.events.first else { continue }
                    page = response.events
                    pageIndex = 1
                    return first
                }
            } catch let error as RPCError {
                done = true
                throw StrataClient.Error(error)
            } catch {
                done = true
                throw StrataClient.Error(.internal, "\(error)")
            }
        }
    }
}
