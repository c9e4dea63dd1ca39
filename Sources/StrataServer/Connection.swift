import Dispatch
import Foundation
import Logging
import StrataProto
import StrataSupport
import StrataWire
import SwiftProtobuf

/// What every connection of a server shares.
struct ConnectionEnvironment: Sendable {
    let configuration: ServerConfiguration
    let router: Router
    let authorizer: any CallAuthorizer
    let logger: Logger
    let metrics: ServerMetrics
}

/// One client connection's I/O: a non-blocking socket driven by a read and
/// a write DispatchSource, the frame decoder, the outbound buffer, and the
/// calls multiplexed on it. What the connection is doing (handshake, going
/// away, closing, reads suspended) is `ServerConnectionStateMachine`'s; this
/// class feeds it events and carries out the actions it returns.
///
/// `@unchecked Sendable`: every mutable property is confined to `queue` (all
/// source handlers, timers and response hops run there) except `answered`,
/// which its lock guards; only `init` and `start` touch them from outside,
/// before any handler can run.
final class Connection: @unchecked Sendable {
    let id: UInt64
    let peer: String
    let queue: DispatchQueue
    private let fd: Int32
    private let env: ConnectionEnvironment
    /// The server's logger with this connection's id and peer.
    private let logger: Logger
    private let onClose: @Sendable (UInt64) -> Void

    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    /// Dispatch's own state of the write source (it runs only while bytes wait).
    private var writeSourceSuspended = true
    private var cancelledSources = 0
    private var machine: ServerConnectionStateMachine

    private var decoder: FrameDecoder
    /// Where `recv` writes; allocated once (a fresh zeroed 64 KiB array per
    /// read event was a visible share of the server's CPU).
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var calls: [UInt32: ServerCall] = [:]
    private var lastCallID: UInt32 = 0
    private var peerInitialWindow: Int
    private var lastActivity = ContinuousClock.now
    private var timers: [DispatchSourceTimer] = []
    private lazy var deadlines = CallDeadlines(queue: queue) { [unowned self] callID in
        guard let call = calls[callID] else { return }
        finish(callID, RPCError(.deadlineExceeded, "the deadline of \(call.context.method) passed"))
    }
    /// A flush is queued behind the blocks already on `queue`, so that the
    /// responses they produce leave in one write.
    private var flushScheduled = false
    /// Guards `pump` against re-entry.
    private var pumping = false
    /// Tenant and key checks of new calls, with this connection's cache.
    private var admission: CallAdmission
    /// Unary answers handed over by other threads, waiting for one queue
    /// turn. The tenant's writer answers every call of a commit in a row:
    /// collecting them here costs one hop to `queue` per connection and
    /// commit instead of one per call (each hop can wake a thread). Owned by
    /// its lock; the only state here not confined to `queue`.
    private let answered = Locked<[(callID: UInt32, result: Result<[UInt8], RPCError>)]>([])

    init(id: UInt64, fd: Int32, env: ConnectionEnvironment, onClose: @escaping @Sendable (UInt64) -> Void) {
        self.id = id
        self.fd = fd
        self.env = env
        self.onClose = onClose
        self.peer = Socket.peerName(fd)
        var logger = env.logger
        logger[metadataKey: "connection"] = "\(id)"
        logger[metadataKey: "peer"] = "\(peer)"
        self.logger = logger
        self.queue = DispatchQueue(label: "strata.connection.\(id)")
        self.decoder = FrameDecoder(maxPayloadSize: env.configuration.maxFrameSize, expectPreface: true)
        self.peerInitialWindow = Int(env.configuration.initialWindowMessages)
        self.machine = ServerConnectionStateMachine(limits: .init(
            maxConcurrentCalls: Int(env.configuration.maxConcurrentCallsPerConnection),
            maxWriteBufferBytes: env.configuration.maxWriteBufferBytes))
        self.admission = CallAdmission(authorizer: env.authorizer)
    }

    /// Sends the server's preface and SETTINGS and starts reading.
    func start() {
        queue.async { [self] in
            let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            read.setEventHandler { [self] in readAvailable() }
            read.setCancelHandler { [self] in sourceCancelled() }
            let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            write.setEventHandler { [self] in
                flush()
                // The socket took bytes: streaming calls may have room again.
                if pendingBytes <= env.configuration.maxWriteBufferBytes / 2 { pumpAll() }
            }
            write.setCancelHandler { [self] in sourceCancelled() }
            readSource = read
            writeSource = write
            read.resume()

            var settings = Strata_V1_Settings()
            settings.maxFrameSize = env.configuration.maxFrameSize
            settings.maxConcurrentCalls = env.configuration.maxConcurrentCallsPerConnection
            settings.initialWindowMessages = env.configuration.initialWindowMessages
            settings.agent = "strata-swift/1"
            outbound.append(contentsOf: Preface.bytes)
            send(.settings, payload: settings)

            schedule(after: env.configuration.handshakeTimeout) { [self] in
                perform(machine.handshakeTimerFired(limit: env.configuration.handshakeTimeout))
            }
            let idle = env.configuration.idleTimeout
            schedule(after: idle / 2, repeating: idle / 2) { [self] in
                perform(machine.idleTimerFired(openCalls: calls.count, idleFor: ContinuousClock.now - lastActivity, limit: idle))
            }
        }
    }

    /// Bytes queued for this client's socket now (reads the queue's state synchronously).
    var queuedBytes: Int { queue.sync { pendingBytes } }

    // MARK: - Shutdown

    /// Graceful shutdown: GOAWAY, refuse new calls, close when in-flight
    /// calls have finished.
    func shutdown() {
        queue.async { [self] in
            perform(machine.shutdownRequested())
            perform(machine.callsChanged(openCalls: calls.count, pendingBytes: pendingBytes))
        }
    }

    /// Closes at once, abandoning calls.
    /// Ends the calls `match` selects with `error`, on the connection's
    /// queue; `onlyStreaming` spares unary calls (they finish on their own,
    /// and ending one could hide whether its write happened). Calls
    /// `done(count)` with how many were ended.
    func endCalls(onlyStreaming: Bool, error: RPCError, where match: @escaping @Sendable (CallContext) -> Bool,
                  done: @escaping @Sendable (Int) -> Void) {
        queue.async { [self] in
            let ids = calls.values.filter { call in
                (!onlyStreaming || call.source != nil) && match(call.context)
            }.map(\.id)
            for id in ids { finish(id, error) }
            done(ids.count)
        }
    }

    func forceClose() {
        queue.async { [self] in perform(machine.close(reason: "forced close", isError: false)) }
    }

    // MARK: - Reading

    private func readAvailable() {
        while machine.mayRead {
            let count = recv(fd, readBuffer.baseAddress, readBuffer.count, 0)
            if count > 0 {
                lastActivity = .now
                decoder.append(UnsafeRawBufferPointer(rebasing: readBuffer[0 ..< count]))
                drainFrames()
                if count < readBuffer.count { return }
            } else if count == 0 {
                perform(machine.close(reason: "peer closed the connection", isError: false))
                return
            } else {
                let code = errno
                if code == EAGAIN || code == EWOULDBLOCK || code == EINTR { return }
                perform(machine.close(reason: "recv: \(String(cString: strerror(code)))", isError: true))
                return
            }
        }
    }

    private func drainFrames() {
        while !machine.isClosed {
            let frame: Frame?
            do {
                frame = try decoder.next()
            } catch {
                let code: StatusCode = if case .frameTooLarge = error { .resourceExhausted } else { .invalidArgument }
                perform(machine.connectionError(code, error.description))
                return
            }
            guard let frame else { return }
            handle(frame)
        }
    }

    // MARK: - Frames

    private func handle(_ frame: Frame) {
        let verdict = FrameRules.check(frame, role: .server, handshakeComplete: machine.settingsReceived,
                                       callIsOpen: calls[frame.callID] != nil, lastCallID: lastCallID)
        switch verdict {
        case .accept: break
        case .ignore: return
        case let .connectionError(code, reason):
            perform(machine.connectionError(code, reason))
            return
        }
        switch frame.type {
        case .settings: handleSettings(frame)
        case .headers: handleHeaders(frame)
        case .message: handleMessage(frame)
        case .windowUpdate: handleWindowUpdate(frame)
        case .cancel: handleCancel(frame)
        case .ping: handlePing(frame)
        case .goAway:
            // Decoded only to check it: the client's reason is not acted on.
            guard decodeControl(Strata_V1_GoAway.self, frame) != nil else { return }
            perform(machine.receivedGoAway())
            perform(machine.callsChanged(openCalls: calls.count, pendingBytes: pendingBytes))
        case .trailers:
            break  // refused by FrameRules
        }
    }

    private func handleSettings(_ frame: Frame) {
        if frame.flags.contains(.ack) { return }
        guard let settings = decodeControl(Strata_V1_Settings.self, frame) else { return }
        if settings.initialWindowMessages != 0 {
            // The client may ask for a smaller initial window, never a larger one.
            peerInitialWindow = min(Int(settings.initialWindowMessages), Int(env.configuration.initialWindowMessages))
        }
        perform(machine.receivedSettings())
    }

    private func handleHeaders(_ frame: Frame) {
        let callID = frame.callID
        lastCallID = callID  // FrameRules checked that it increases
        if case .refused(let error) = machine.callSlot(openCalls: calls.count) {
            reject(callID, error)
            return
        }
        let headers: Strata_V1_CallHeaders
        do {
            headers = try CallHeadersCodec.decode(frame.payload)
        } catch {
            reject(callID, RPCError(.invalidArgument, "HEADERS payload is not a valid CallHeaders message"))
            return
        }
        let requestID = headers.metadata[MetadataKey.requestID]
        guard let route = env.router.route(for: headers.method) else {
            reject(callID, RPCError(.unimplemented, "unknown method '\(headers.method)'"), requestID: requestID)
            return
        }
        let handler = route.handler
        let admitted: CallAdmission.Admitted
        do {
            admitted = try admission.admit(method: headers.method, permission: route.permission, metadata: headers.metadata)
        } catch {
            // The tenant is logged only if the key belongs to it: a caller
            // must not be able to write arbitrary names into the logs.
            reject(callID, error, method: headers.method, requestID: requestID)
            return
        }
        // Deadlines beyond 30 days are treated as 30 days: any client value is
        // safe to turn into a timer (Dispatch's nanosecond arithmetic would
        // overflow on values near UInt64.max).
        let timeoutMs = min(headers.timeoutMs, 30 * 24 * 3_600_000)
        let deadline = timeoutMs > 0 ? ContinuousClock.now + .milliseconds(Int64(timeoutMs)) : nil
        let context = CallContext(method: headers.method, tenant: admitted.tenant, metadata: headers.metadata,
                                  requestID: headers.metadata[MetadataKey.requestID], deadline: deadline, peer: peer,
                                  principal: admitted.principal, cancellation: CallCancellation())
        let call = ServerCall(id: callID, handler: handler, context: context, permission: route.permission,
                              authorizedAt: admitted.authorizedAt, initialWindow: peerInitialWindow)
        calls[callID] = call
        env.metrics.callOpened()
        if timeoutMs > 0 {
            deadlines.add(callID, deadline: .now() + .milliseconds(Int(timeoutMs)))
        }
    }

    private func handleMessage(_ frame: Frame) {
        guard let call = calls[frame.callID] else { return }  // FrameRules: the call is open
        call.requestArrivedAt = .now
        do {
            try call.lifecycle.request(endStream: frame.flags.contains(.endStream))
        } catch {
            finish(call.id, RPCError(.invalidArgument, error.description))
            return
        }
        // A key revoked (or whose tenant was deleted) after the HEADERS
        // arrived must not run the call: check again, but only if anything
        // was revoked since.
        if env.authorizer.revocationCount != call.authorizedAt {  // the common case skips the call below
            do {
                try admission.recheck(method: call.context.method, permission: call.permission, tenant: call.context.tenant,
                                      metadata: call.context.metadata, authorizedAt: call.authorizedAt)
            } catch {
                finish(call.id, error)
                return
            }
        }
        switch call.handler {
        case .unary(let handler):
            let callID = call.id
            handler(frame.payload, call.context) { [self] result in
                let first = answered.withLock { answers in
                    answers.append((callID, result))
                    return answers.count == 1
                }
                if first { queue.async { [self] in deliverAnswers() } }
            }
        case .serverStreaming(let makeSource):
            do {
                let source = try makeSource(frame.payload, call.context)
                call.source = source
                let callID = call.id
                source.start { [weak self] in
                    guard let self else { return }
                    queue.async { self.wake(callID) }
                }
                pump(call)
            } catch {
                finish(call.id, error)
            }
        }
    }

    /// Sends the unary answers collected in `answered`, in the order given.
    private func deliverAnswers() {
        let answers = answered.withLock { answers in
            defer { answers.removeAll(keepingCapacity: true) }
            return answers
        }
        for (callID, result) in answers {
            guard let call = calls[callID] else { continue }  // deadline passed or cancelled
            switch result {
            case .success(let response):
                do {
                    try call.lifecycle.respond()
                } catch {
                    finish(callID, RPCError(.internal, "server bug: \(error)"))
                    continue
                }
                enqueue(Frame(type: .message, callID: callID, payload: response))
                finish(callID, nil)
            case .failure(let error):
                finish(callID, error)
            }
        }
    }

    private func handleWindowUpdate(_ frame: Frame) {
        guard let update = decodeControl(Strata_V1_WindowUpdate.self, frame) else { return }
        guard let call = calls[frame.callID] else { return }  // FrameRules: the call is open
        call.lifecycle.grant(update.messages)
        pump(call)
    }

    private func handleCancel(_ frame: Frame) {
        guard let call = calls.removeValue(forKey: frame.callID) else { return }
        call.end(.cancelled)
        deadlines.remove(call.id)
        env.metrics.callEnded(method: call.context.method, code: .cancelled, duration: nil, wasOpen: true)
        logger.debug("call cancelled by the client", metadata: callMetadata(call))
        afterCallEnded()
    }

    private func handlePing(_ frame: Frame) {
        if !frame.flags.contains(.ack) {
            send(Frame(type: .ping, flags: .ack, payload: frame.payload))
        }
    }

    private func decodeControl<M: SwiftProtobuf.Message>(_ type: M.Type, _ frame: Frame) -> M? {
        do {
            return try M(serializedBytes: frame.payload)
        } catch {
            perform(machine.connectionError(.invalidArgument, "\(frame.type) payload is not a valid \(M.protoMessageName)"))
            return nil
        }
    }

    // MARK: - Streaming

    /// Sends what the call's credit and the write buffer allow. When the
    /// buffer reaches its limit it is flushed; if the socket takes it the pump
    /// goes on, otherwise the write source's handler resumes it once the
    /// client has read enough.
    private func pump(_ call: ServerCall) {
        guard let source = call.source, !pumping else { return }
        pumping = true
        defer { pumping = false }
        let limit = env.configuration.maxWriteBufferBytes
        while call.lifecycle.mayRespond && !machine.isClosed {
            if pendingBytes >= limit {
                flush()
                if pendingBytes >= limit { return }
            }
            let batch: (messages: [[UInt8]], finished: Bool)
            do {
                // One message per pull: it needs one unit of credit, and the
                // buffer limit is overshot by at most one message (itself
                // bounded by half the frame size).
                batch = try source.next(max: 1)
            } catch {
                finish(call.id, error)
                return
            }
            for message in batch.messages {
                do {
                    try call.lifecycle.respond()
                } catch {
                    finish(call.id, RPCError(.internal, "server bug: \(error)"))
                    return
                }
                enqueue(Frame(type: .message, callID: call.id, payload: message))
            }
            if batch.finished {
                finish(call.id, nil)
                return
            }
            if batch.messages.isEmpty { break }
        }
        flush()  // one write for the whole batch, not one per message
    }

    /// A streaming source asked to be pulled again (a subscription saw a commit).
    private func wake(_ callID: UInt32) {
        guard let call = calls[callID], let source = call.source else { return }
        do {
            try source.checkHealth()
        } catch {
            finish(callID, error)
            return
        }
        pump(call)
    }

    private func pumpAll() {
        for call in calls.values.sorted(by: { $0.id < $1.id }) {
            guard pendingBytes < env.configuration.maxWriteBufferBytes else { return }
            pump(call)
        }
    }

    // MARK: - Ending calls

    /// Ends a call with OK (nil) or an error, and forgets it.
    private func finish(_ callID: UInt32, _ error: RPCError?) {
        guard let call = calls.removeValue(forKey: callID) else { return }
        call.end(error?.code ?? .ok)
        deadlines.remove(callID)
        sendTrailers(callID, error)
        let code = error?.code ?? .ok
        let unary: Bool = if case .unary = call.handler { true } else { false }
        let elapsed = call.requestArrivedAt.map { ContinuousClock.now - $0 }
        env.metrics.callEnded(method: call.context.method, code: code, duration: unary ? elapsed : nil, wasOpen: true)
        if code == .ok, let elapsed,
           call.context.method == StreamsMethod.append || call.context.method == StreamsMethod.appendMulti {
            env.metrics.appendAcknowledged(after: elapsed)
        }
        if let error, code != .ok {
            logFailure(error, metadata: callMetadata(call))
        }
        afterCallEnded()
    }

    /// Refuses a call before it exists (its HEADERS were not acceptable):
    /// trailers, the calls metric and a log line. `method` is given only
    /// once it is known to be one the router serves.
    private func reject(_ callID: UInt32, _ error: RPCError, method: String? = nil, requestID: String? = nil) {
        sendTrailers(callID, error)
        env.metrics.callEnded(method: method ?? "unknown", code: error.code, duration: nil, wasOpen: false)
        var metadata: Logger.Metadata = ["call": "\(callID)", "method": "\(method ?? "unknown")", "code": "\(error.code)"]
        if let requestID { metadata["request_id"] = "\(requestID.prefix(128))" }
        // Not authorized yet: the message may quote what the caller sent
        // (a method or tenant name), so only its start is logged.
        logFailure(error, metadata: metadata, messageLimit: 160)
    }

    /// One line per failed call: server faults and a full disk (which an
    /// operator must act on) as errors, the rest (the caller's mistakes,
    /// conflicts, limits) as info.
    private func logFailure(_ error: RPCError, metadata: Logger.Metadata, messageLimit: Int = 1024) {
        var metadata = metadata
        metadata["code"] = "\(error.code)"
        let message = error.message.count > messageLimit ? error.message.prefix(messageLimit) + "…" : error.message
        let serverFault = error.code == .internal || error.code == .dataLoss || error.code == .unknown
        let diskFull = error.detail?.quotaExceeded.limit == "disk-space"
        if serverFault || diskFull {
            logger.error("call failed: \(message)", metadata: metadata)
        } else {
            logger.info("call failed: \(message)", metadata: metadata)
        }
    }

    private func callMetadata(_ call: ServerCall) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["call": "\(call.id)", "method": "\(call.context.method)"]
        if !call.context.tenant.isEmpty { metadata["tenant"] = "\(call.context.tenant)" }
        if let requestID = call.context.requestID { metadata["request_id"] = "\(requestID.prefix(128))" }
        return metadata
    }

    /// Subscriptions never finish by themselves: when the connection is
    /// going away they are ended at once, so it can close instead of waiting
    /// for them (the client resumes elsewhere after its last event).
    private func endOpenEndedCalls(_ error: RPCError) {
        for call in calls.values.sorted(by: { $0.id < $1.id }) where call.source?.endsOnItsOwn == false {
            finish(call.id, error)
        }
    }

    private func afterCallEnded() {
        // Only a connection going away reacts to its calls ending (every
        // call ends here: the common case stays a read).
        guard machine.isGoingAway else { return }
        perform(machine.callsChanged(openCalls: calls.count, pendingBytes: pendingBytes))
    }

    private func sendTrailers(_ callID: UInt32, _ error: RPCError?) {
        guard let error else {
            // OK trailers are an all-default message: zero bytes in proto3,
            // so the common case skips swift-protobuf's encoder.
            send(Frame(type: .trailers, callID: callID, payload: []))
            return
        }
        send(.trailers, callID: callID, payload: error.trailers)
    }

    // MARK: - Carrying out the state machine's actions

    private func perform(_ actions: [ServerConnectionStateMachine.Action]) {
        for action in actions {
            switch action {
            case .sendSettingsAck:
                send(Frame(type: .settings, flags: .ack))
            case let .sendGoAway(code, reason):
                var goAway = Strata_V1_GoAway()
                goAway.lastCallID = lastCallID
                goAway.code = code.rawValue
                goAway.reason = reason
                send(.goAway, payload: goAway)
                if code != .ok { logger.info("connection error: GOAWAY \(code): \(reason)", metadata: ["code": "\(code)"]) }
            case .endOpenEndedCalls(let error):
                endOpenEndedCalls(error)
            case .abandonCalls:
                abandonCalls()
            case .suspendReads:
                readSource?.suspend()
            case .resumeReads:
                readSource?.resume()
            case let .close(reason, isError, resumeReadsFirst):
                close(reason: reason, isError: isError, resumeReadsFirst: resumeReadsFirst)
            }
        }
    }

    // MARK: - Writing

    private var pendingBytes: Int { outbound.count - outboundOffset }

    private func send(_ type: FrameType, callID: UInt32 = 0, payload: some SwiftProtobuf.Message) {
        let bytes: [UInt8] = (try? payload.serializedBytes()) ?? []
        send(Frame(type: type, callID: callID, payload: bytes))
    }

    /// Queues a frame and a flush behind the blocks already on the queue:
    /// when a group commit answers many calls of this connection at once,
    /// their responses leave in one `send` instead of one each.
    private func send(_ frame: Frame) {
        enqueue(frame)
        guard !flushScheduled else { return }
        flushScheduled = true
        queue.async { [self] in
            flushScheduled = false
            flush()
        }
    }

    /// Queues a frame without writing yet (the caller flushes).
    private func enqueue(_ frame: Frame) {
        guard !machine.isClosed else { return }
        frame.encode(into: &outbound)
    }

    /// Writes as much as the socket takes; waits for writability otherwise.
    private func flush() {
        guard !machine.isClosed else { return }
        while pendingBytes > 0 {
            let written = outbound.withUnsafeBytes { bytes in
                Glibc.send(fd, bytes.baseAddress! + outboundOffset, pendingBytes, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                outboundOffset += written
            } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                break
            } else {
                perform(machine.close(reason: "send: \(String(cString: strerror(errno)))", isError: true))
                return
            }
        }
        if pendingBytes == 0 {
            // Keep the buffer for the next burst unless it grew past the
            // write-buffer limit (plus one message): regrowing it from empty
            // after every flush was a quarter of a streaming read's CPU.
            outbound.removeAll(keepingCapacity: outbound.capacity <= env.configuration.maxWriteBufferBytes + Int(env.configuration.maxFrameSize))
            outboundOffset = 0
            if !writeSourceSuspended {
                writeSource?.suspend()
                writeSourceSuspended = true
            }
        } else {
            // Compact only when more has been sent than is left, so each byte
            // is moved at most about once.
            if outboundOffset > 1 << 16 && outboundOffset > pendingBytes {
                outbound.removeFirst(outboundOffset)
                outboundOffset = 0
            }
            if writeSourceSuspended {
                writeSource?.resume()
                writeSourceSuspended = false
            }
        }
        // Closes a connection whose GOAWAY is now written; otherwise stops
        // reading requests while the client is not reading responses, and
        // resumes once the buffer drains to half. (Streaming calls are
        // refilled by the write source's handler, never from inside a send.)
        perform(machine.flushed(pendingBytes: pendingBytes))
    }

    // MARK: - Closing

    /// Carries out the state machine's close. `isError`: a socket error,
    /// logged as a connection error (ordinary closes are logged at debug level).
    private func close(reason: String, isError: Bool, resumeReadsFirst: Bool) {
        if isError || !calls.isEmpty {
            logger.info("connection error: \(reason)", metadata: ["open_calls": "\(calls.count)"])
        } else {
            logger.debug("connection closed: \(reason)")
        }
        abandonCalls()
        for timer in timers { timer.cancel() }
        timers.removeAll()
        deadlines.cancel()
        // Cancelled sources must be resumed for their cancel handlers to run;
        // the descriptor is closed only after both have been cancelled.
        if resumeReadsFirst { readSource?.resume() }
        if writeSourceSuspended { writeSource?.resume(); writeSourceSuspended = false }
        readSource?.cancel()
        writeSource?.cancel()
        if readSource == nil && writeSource == nil { finishClose() }
    }

    /// Ends every open call without trailers (the connection is going):
    /// they count as CANCELLED.
    private func abandonCalls() {
        for call in calls.values {
            call.end(.cancelled)
            env.metrics.callEnded(method: call.context.method, code: .cancelled, duration: nil, wasOpen: true)
        }
        calls.removeAll()
    }

    private func sourceCancelled() {
        cancelledSources += 1
        if cancelledSources == 2 {
            readSource?.setEventHandler(handler: nil)
            writeSource?.setEventHandler(handler: nil)
            readSource = nil
            writeSource = nil
            finishClose()
        }
    }

    private func finishClose() {
        Glibc.close(fd)
        onClose(id)
    }

    deinit { readBuffer.deallocate() }

    private func schedule(after delay: Duration, repeating: Duration? = nil, _ body: @escaping @Sendable () -> Void) {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        if let repeating {
            timer.schedule(deadline: .now() + delay.seconds, repeating: repeating.seconds)
        } else {
            timer.schedule(deadline: .now() + delay.seconds)
        }
        timer.setEventHandler(handler: body)
        timer.resume()
        timers.append(timer)
    }
}

