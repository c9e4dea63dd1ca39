import Foundation
import StrataProto
import StrataSupport
import StrataWire
import SwiftProtobuf

/// A call waiting for its response, fed by the connection's reader thread.
/// Thread-safe: its state is owned by a `Locked`; a waiting caller is
/// resumed outside it.
final class PendingCall: Sendable {
    private struct State {
        /// The protocol state shared with the server's implementation; it
        /// decides whether a response MESSAGE from the server is legal.
        var lifecycle: CallLifecycle
        var messages: [[UInt8]] = []
        var head = 0  // messages before `head` were taken
        var outcome: Result<Void, RPCError>?
        var waiter: CheckedContinuation<Void, Never>?
        /// Messages consumed since credit was last returned.
        var consumedSinceGrant = 0
    }

    /// The window the call started with.
    private let initialWindow: Int
    private let state: Locked<State>

    init(kind: CallLifecycle.Kind, initialWindow: Int) {
        self.initialWindow = initialWindow
        var lifecycle = CallLifecycle(kind: kind, initialWindow: initialWindow)
        // The request goes out with the HEADERS, END_STREAM set.
        try? lifecycle.request(endStream: true)
        state = Locked(State(lifecycle: lifecycle))
    }

    /// Called by the reader thread. Throws when the server sent a message the
    /// protocol does not allow (beyond credit, a second unary response).
    func received(message: [UInt8]) throws(CallViolation) {
        let waiter = try state.withLock { (state) throws(CallViolation) -> CheckedContinuation<Void, Never>? in
            try state.lifecycle.respond()
            state.messages.append(message)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Counts one message the caller has consumed; once half the initial
    /// window is consumed, returns that many messages of credit to give back.
    func consumedMessage() -> Int? {
        let half = Swift.max(1, initialWindow / 2)
        return state.withLock { state in
            state.consumedSinceGrant += 1
            guard state.consumedSinceGrant >= half else { return nil }
            defer { state.consumedSinceGrant = 0 }
            return state.consumedSinceGrant
        }
    }

    /// Records credit granted to the server (before the WINDOW_UPDATE is sent).
    func granted(_ messages: UInt32) {
        state.withLock { $0.lifecycle.grant(messages) }
    }

    /// Called by the reader thread (trailers) or on cancellation/close; the first outcome wins.
    func finished(_ result: Result<Void, RPCError>) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.lifecycle.end()
            if state.outcome == nil { state.outcome = result }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    private enum Poll {
        case message([UInt8])
        case ended(Result<Void, RPCError>)
        case empty
    }

    private func poll() -> Poll {
        state.withLock { state in
            if state.head < state.messages.count {
                let message = state.messages[state.head]
                state.head += 1
                if state.head == state.messages.count {
                    state.messages.removeAll(keepingCapacity: true)
                    state.head = 0
                }
                return .message(message)
            }
            if let outcome = state.outcome { return .ended(outcome) }
            return .empty
        }
    }

    /// Parks `continuation` until a message or the outcome arrives.
    private func wait(_ continuation: CheckedContinuation<Void, Never>) {
        let ready: Bool = state.withLock { state in
            if state.head == state.messages.count && state.outcome == nil {
                state.waiter = continuation
                return false
            }
            return true
        }
        if ready { continuation.resume() }
    }

    /// The next message, or nil once the call ended with OK; throws its error.
    func next() async throws(RPCError) -> [UInt8]? {
        while true {
            switch poll() {
            case .message(let message): return message
            case .ended(let outcome):
                try outcome.get()
                return nil
            case .empty:
                await withCheckedContinuation { wait($0) }
            }
        }
    }
}

/// One TCP connection to a server: writes combined into as few `send` calls
/// as the callers' concurrency allows, and a reader thread that decodes
/// frames and hands them to their calls.
final class ClientConnection: @unchecked Sendable {
    // @unchecked: `fd` is immutable; `outbound` (a `ClientOutboundQueue`)
    // is owned by `outboundCondition` (a condition: callers wait on it
    // while too much is queued); `descriptorClosed` is a
    // `Locked`; the protocol state (`state`, a
    // `ClientConnectionStateMachine`) by its `Locked`; the decoder belongs
    // to the reader thread.
    private let fd: Int32
    /// Bytes queued for the socket and who sends them.
    private let outboundCondition = NSCondition()
    private var outbound = ClientOutboundQueue(maxQueuedBytes: 4 << 20)
    /// Whether the reader thread closed `fd`. Its lock is held by the
    /// flusher around `send` and by the reader thread to close `fd`, so no
    /// write can reach a descriptor number the OS has handed out again.
    private let descriptorClosed = Locked(false)
    private typealias StateMachine = ClientConnectionStateMachine<PendingCall, CheckedContinuation<Void, Never>>
    private let state = Locked(StateMachine())
    let maxFrameSize: UInt32
    /// Signalled once the server's SETTINGS arrived, or the connection failed.
    private let handshakeDone = DispatchSemaphore(value: 0)

    private init(fd: Int32, maxFrameSize: UInt32) {
        self.fd = fd
        self.maxFrameSize = maxFrameSize
    }

    /// Connects, sends the preface and SETTINGS, and starts the reader.
    static func connect(host: String, port: UInt16, maxFrameSize: UInt32 = ProtocolDefaults.maxFrameSize,
                        handshakeTimeout: Duration = .seconds(10)) throws(RPCError) -> ClientConnection {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let first = info else {
            throw RPCError(.unavailable, "cannot resolve \(host)")
        }
        defer { freeaddrinfo(info) }
        var lastError: Int32 = 0
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let address = candidate {
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            if fd >= 0 {
                if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 {
                    var yes: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
                    let connection = ClientConnection(fd: fd, maxFrameSize: maxFrameSize)
                    var settings = Strata_V1_Settings()
                    settings.maxFrameSize = maxFrameSize
                    settings.initialWindowMessages = ProtocolDefaults.initialWindowMessages
                    settings.agent = "strata-swift-client/1"
                    do {
                        try connection.write(Preface.bytes + Frame(type: .settings, payload: (try? settings.serializedBytes()) ?? []).encoded)
                    } catch {
                        Glibc.close(fd)  // no reader thread owns it yet
                        throw error
                    }
                    let thread = Thread { connection.readLoop() }
                    thread.name = "strata-client-reader"
                    thread.start()
                    // Calls are opened only once the server's SETTINGS are
                    // known: its initial window decides when to grant credit.
                    let (seconds, attoseconds) = handshakeTimeout.components
                    let wait = Double(seconds) + Double(attoseconds) / 1e18
                    if connection.handshakeDone.wait(timeout: .now() + wait) == .timedOut {
                        connection.close()
                        throw RPCError(.unavailable, "\(host):\(port) sent no SETTINGS within \(handshakeTimeout)")
                    }
                    if let failure = connection.state.withLock({ $0.failure }) { throw failure }
                    return connection
                }
                lastError = errno
                Glibc.close(fd)
            } else {
                lastError = errno
            }
            candidate = address.pointee.ai_next
        }
        throw RPCError(.unavailable, "cannot connect to \(host):\(port): \(String(cString: strerror(lastError)))")
    }

    var isUsable: Bool { state.withLock { $0.isUsable } }

    var initialWindow: Int { state.withLock { $0.initialWindow } }

    /// Waits until the server's concurrent-call limit leaves room, and
    /// reserves that room for the next `open`.
    func reserveSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if state.withLock({ $0.reserveSlot(continuation) }) { continuation.resume() }
        }
    }

    /// Removes a finished call and lets waiting calls in.
    private func removeCall(_ id: UInt32) -> PendingCall? {
        let (call, ready) = state.withLock { $0.remove(id) }
        for waiter in ready { waiter.resume() }
        return call
    }

    /// Opens a call and sends its request. The returned call receives the
    /// response messages and the trailers. `encodedMetadata` holds entries
    /// encoded once by the caller (`CallHeadersCodec.encodeMetadataEntry`).
    func open(method: String, kind: CallLifecycle.Kind, encodedMetadata: [UInt8] = [],
              metadata: [(key: String, value: String)] = [], timeout: Duration?,
              request: [UInt8]) throws(RPCError) -> (UInt32, PendingCall) {
        let call = PendingCall(kind: kind, initialWindow: initialWindow)
        var timeoutMs: UInt64 = 0
        if let timeout {
            let (seconds, attoseconds) = timeout.components
            // Clamped: a negative timeout means "already due", a huge one "none to speak of".
            let (millis, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            timeoutMs = overflow ? UInt64.max : UInt64(Swift.max(1, millis + attoseconds / 1_000_000_000_000_000))
        }
        var headers: [UInt8] = []
        CallHeadersCodec.encode(method: method, encodedMetadata: encodedMetadata, metadata: metadata,
                                timeoutMs: timeoutMs, into: &headers)
        // Call ids must reach the server in increasing order: the id is
        // allocated and its frames queued under the same lock.
        let (id, othersInFlight) = try enqueue { (out) throws(RPCError) -> (UInt32, Bool) in
            let (id, others) = try state.withLock { (state) throws(RPCError) -> (UInt32, Bool) in try state.open(call) }
            Frame(type: .headers, callID: id, payload: headers).encode(into: &out)
            Frame(type: .message, flags: .endStream, callID: id, payload: request).encode(into: &out)
            return (id, others)
        }
        // A failed send fails every open call, this one included, with the
        // connection's first failure (which may be a protocol error the
        // reader found, not this send's broken pipe): the call reports it.
        if othersInFlight {
            deferSend()
        } else {
            try? flush()
        }
        return (id, call)
    }

    /// Tells the server the client no longer wants the call.
    func cancel(_ id: UInt32) {
        guard let call = removeCall(id) else { return }
        call.finished(.failure(RPCError(.cancelled, "cancelled by the client")))
        try? write(Frame(type: .cancel, callID: id).encoded)
    }

    /// Tells the connection the caller consumed a message of a streaming
    /// call: credit flows back as it is consumed (half a window at a time).
    func consumed(_ id: UInt32, _ call: PendingCall) {
        if let credit = call.consumedMessage() { grant(id, messages: credit) }
    }

    /// Grants a streaming call more messages.
    func grant(_ id: UInt32, messages: Int) {
        guard let call = state.withLock({ $0.call(id) }) else { return }  // ended meanwhile
        call.granted(UInt32(messages))
        var update = Strata_V1_WindowUpdate()
        update.messages = UInt32(messages)
        try? write(Frame(type: .windowUpdate, callID: id, payload: (try? update.serializedBytes()) ?? []).encoded)
    }

    func write(_ bytes: [UInt8]) throws(RPCError) {
        enqueue { $0.append(contentsOf: bytes) }
        try flush()
    }

    /// Appends to the outbound bytes under their lock, first waiting while
    /// the queue is over its limit and someone is sending.
    private func enqueue<T>(_ body: (inout [UInt8]) throws(RPCError) -> T) throws(RPCError) -> T {
        outboundCondition.lock()
        defer { outboundCondition.unlock() }
        while outbound.mustWait { outboundCondition.wait() }
        return try outbound.enqueue(body)
    }

    private func enqueue(_ body: (inout [UInt8]) -> Void) {
        outboundCondition.lock()
        defer { outboundCondition.unlock() }
        while outbound.mustWait { outboundCondition.wait() }
        outbound.enqueue(body)
    }

    /// Sends the queued bytes unless another thread is already doing so (it
    /// will send ours too). Throws only to the thread that did the sending.
    private func flush() throws(RPCError) {
        var batch: [UInt8] = []
        outboundCondition.lock()
        let started = outbound.startFlush(into: &batch)
        outboundCondition.unlock()
        guard started else { return }
        while true {
            do {
                try sendAll(batch)
            } catch {
                outboundCondition.lock()
                outbound.abandonFlush()
                outboundCondition.broadcast()
                outboundCondition.unlock()
                fail(error)
                throw error
            }
            outboundCondition.lock()
            let more = outbound.continueFlush(into: &batch)
            outboundCondition.broadcast()  // room again for callers waiting on the limit
            outboundCondition.unlock()
            if !more { return }
        }
    }

    /// Sends the requests of calls opened while others are in flight a
    /// moment later and together: callers woken by one burst of responses
    /// each open their next call, and one `send` for all of them costs the
    /// client (and, through loopback or the network, the server) far less
    /// than one each. A lone call is sent at once, without this.
    ///
    /// The send runs as a task, not on a Dispatch queue of its own: it then
    /// queues behind the callers the same burst of responses resumed, so it
    /// carries their requests too, and it runs on a concurrency-pool thread
    /// that is already awake. A Dispatch queue woke a thread of its own for
    /// each send, which went out early with few requests: at 64 callers that
    /// was 0.25 sends and 0.5 context switches per call against 0.14 and 0.26
    /// now, and up to a third more appends/s (docs/benchmarks.md). The
    /// callers need the pool to see their responses anyway, so this adds no
    /// new dependency on it. It runs at the priority of the caller that
    /// deferred it (callers arriving meanwhile ride along, as they did on the
    /// queue, whose QoS was the first submitter's): it neither jumps ahead of
    /// the callers it waits for nor waits behind lower work.
    private func deferSend() {
        outboundCondition.lock()
        let first = outbound.requestDeferredSend()
        outboundCondition.unlock()
        guard first else { return }
        Task.detached(priority: Task.currentPriority) { [self] in deferredFlush() }
    }

    private func deferredFlush() {
        outboundCondition.lock()
        outbound.deferredSendStarted()
        outboundCondition.unlock()
        try? flush()
    }

    /// Sends everything queued, first waiting (bounded) for a thread that is
    /// already sending; for last words before a shutdown.
    private func sendQueued(waitingAtMost limit: Duration) {
        let deadline = Date() + Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        outboundCondition.lock()
        while outbound.flushing && outboundCondition.wait(until: deadline) {}
        outboundCondition.unlock()
        try? flush()
    }

    /// Writes all of `bytes` to the socket.
    private func sendAll(_ bytes: [UInt8]) throws(RPCError) {
        let fd = self.fd
        let state = self.state
        // Lock order: `descriptorClosed`, then `state` (nothing takes them the other way round).
        try descriptorClosed.withLock { (closed) throws(RPCError) in
            if closed { throw state.withLock { $0.failure } ?? RPCError(.unavailable, "the connection is closed") }
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    throw RPCError(.unavailable, "connection lost while sending: \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// Closes the connection; pending calls fail with UNAVAILABLE.
    func close() {
        fail(RPCError(.unavailable, "the client closed the connection"))
        // Once the reader thread has closed `fd` its number may belong to
        // another socket of this process (a server's connection, in tests):
        // shutting it down would cut that one.
        let fd = self.fd
        descriptorClosed.withLock { closed in
            if !closed { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func fail(_ error: RPCError) {
        let (calls, waiters) = state.withLock { $0.fail(error) }
        for call in calls { call.finished(.failure(error)) }
        for waiter in waiters { waiter.resume() }  // they fail in `open`
        handshakeDone.signal()  // a connect still waiting sees the failure
    }

    // MARK: - Reader thread

    private func readLoop() {
        var decoder = FrameDecoder(maxPayloadSize: maxFrameSize, expectPreface: true)
        var handshakeComplete = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            let fd = self.fd
            descriptorClosed.withLock { closed in
                Glibc.close(fd)
                closed = true
            }
        }
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 {
                if count < 0 && errno == EINTR { continue }
                fail(RPCError(.unavailable, "the server closed the connection"))
                return
            }
            buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0 ..< count])) }
            do {
                while let frame = try decoder.next() {
                    let (open, last) = state.withLock { ($0.call(frame.callID) != nil, $0.lastCallID) }
                    switch FrameRules.check(frame, role: .client, handshakeComplete: handshakeComplete,
                                            callIsOpen: open, lastCallID: last) {
                    case .accept:
                        if frame.type == .settings { handshakeComplete = true }
                        if let violation = handle(frame) {
                            protocolError(.invalidArgument, "call \(frame.callID): \(violation)")
                            return
                        }
                    case .ignore:
                        continue
                    case let .connectionError(code, reason):
                        protocolError(code, reason)
                        return
                    }
                }
            } catch {
                fail(RPCError(.internal, "bad data from the server: \(error)"))
                shutdown(fd, Int32(SHUT_RDWR))
                return
            }
        }
    }

    /// The server broke the protocol: tell it why, then fail every call.
    private func protocolError(_ code: StatusCode, _ reason: String) {
        var goAway = Strata_V1_GoAway()
        goAway.code = code.rawValue
        goAway.reason = reason
        fail(RPCError(.internal, "protocol error from the server: \(reason)"))
        enqueue { $0.append(contentsOf: Frame(type: .goAway, payload: (try? goAway.serializedBytes()) ?? []).encoded) }
        // Another thread may be mid-send: wait for it so the GOAWAY leaves
        // before the socket is shut down.
        sendQueued(waitingAtMost: .seconds(1))
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Applies an accepted frame; returns the call rule it breaks, if any.
    private func handle(_ frame: Frame) -> CallViolation? {
        switch frame.type {
        case .settings:
            if !frame.flags.contains(.ack) {
                if let settings = try? Strata_V1_Settings(serializedBytes: frame.payload) {
                    let ready = state.withLock {
                        $0.receivedSettings(initialWindowMessages: settings.initialWindowMessages,
                                            maxConcurrentCalls: settings.maxConcurrentCalls)
                    }
                    for waiter in ready { waiter.resume() }
                }
                try? write(Frame(type: .settings, flags: .ack).encoded)
                handshakeDone.signal()
            }
        case .message:
            do {
                try state.withLock { $0.call(frame.callID) }?.received(message: frame.payload)
            } catch {
                return error
            }
        case .trailers:
            guard let call = removeCall(frame.callID) else { return nil }
            guard let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) else {
                call.finished(.failure(RPCError(.internal, "undecodable TRAILERS from the server")))
                return nil
            }
            if let error = RPCError(trailers: trailers) {
                call.finished(.failure(error))
            } else {
                call.finished(.success(()))
            }
        case .ping:
            if !frame.flags.contains(.ack) { try? write(Frame(type: .ping, flags: .ack, payload: frame.payload).encoded) }
        case .goAway:
            let goAway = try? Strata_V1_GoAway(serializedBytes: frame.payload)
            let last = goAway?.lastCallID ?? 0
            // Calls above last_call_id were not processed: they fail UNAVAILABLE and are safe to retry.
            let (refused, waiters) = state.withLock { $0.receivedGoAway(lastCallID: last) }
            for call in refused {
                call.finished(.failure(RPCError(.unavailable, "the server is going away: \(goAway?.reason ?? "")")))
            }
            for waiter in waiters { waiter.resume() }  // they fail in `open`
        case .headers, .cancel, .windowUpdate:
            break
        }
        return nil
    }
}
