import Foundation
import StrataProto
import StrataSupport
import StrataWire
import SwiftProtobuf

/// A call waiting for its response, fed by the connection's reader thread.
/// Thread-safe: its state is guarded by `lock`.
final class PendingCall: @unchecked Sendable {
    private let lock = NSLock()
    /// The protocol state shared with the server's implementation; it decides
    /// whether a response MESSAGE from the server is legal.
    private var lifecycle: CallLifecycle
    private var messages: [[UInt8]] = []
    private var head = 0  // messages before `head` were taken
    private var outcome: Result<Void, RPCError>?
    private var waiter: CheckedContinuation<Void, Never>?

    /// The window the call started with, and the messages consumed since
    /// credit was last returned (under `lock`).
    private let initialWindow: Int
    private var consumedSinceGrant = 0

    init(kind: CallLifecycle.Kind, initialWindow: Int) {
        self.initialWindow = initialWindow
        lifecycle = CallLifecycle(kind: kind, initialWindow: initialWindow)
        // The request goes out with the HEADERS, END_STREAM set.
        try? lifecycle.request(endStream: true)
    }

    /// Called by the reader thread. Throws when the server sent a message the
    /// protocol does not allow (beyond credit, a second unary response).
    func received(message: [UInt8]) throws(CallViolation) {
        lock.lock()
        do {
            try lifecycle.respond()
        } catch {
            lock.unlock()
            throw error
        }
        messages.append(message)
        let waiter = self.waiter
        self.waiter = nil
        lock.unlock()
        waiter?.resume()
    }

    /// Counts one message the caller has consumed; once half the initial
    /// window is consumed, returns that many messages of credit to give back.
    func consumedMessage() -> Int? {
        lock.withLock {
            consumedSinceGrant += 1
            guard consumedSinceGrant >= Swift.max(1, initialWindow / 2) else { return nil }
            defer { consumedSinceGrant = 0 }
            return consumedSinceGrant
        }
    }

    /// Records credit granted to the server (before the WINDOW_UPDATE is sent).
    func granted(_ messages: UInt32) {
        lock.withLock { lifecycle.grant(messages) }
    }

    /// Called by the reader thread (trailers) or on cancellation/close; the first outcome wins.
    func finished(_ result: Result<Void, RPCError>) {
        lock.lock()
        lifecycle.end()
        if outcome == nil { outcome = result }
        let waiter = self.waiter
        self.waiter = nil
        lock.unlock()
        waiter?.resume()
    }

    private enum Poll {
        case message([UInt8])
        case ended(Result<Void, RPCError>)
        case empty
    }

    private func poll() -> Poll {
        lock.withLock {
            if head < messages.count {
                let message = messages[head]
                head += 1
                if head == messages.count {
                    messages.removeAll(keepingCapacity: true)
                    head = 0
                }
                return .message(message)
            }
            if let outcome { return .ended(outcome) }
            return .empty
        }
    }

    /// Parks `continuation` until a message or the outcome arrives.
    private func wait(_ continuation: CheckedContinuation<Void, Never>) {
        let ready: Bool = lock.withLock {
            if head == messages.count && outcome == nil {
                waiter = continuation
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
    // @unchecked: `fd` is immutable; `outbound`, `flushing` and
    // `sendDeferred` are guarded by `outboundCondition`; `descriptorClosed`
    // by `sendLock`; `state` is a `Locked`; the decoder belongs to the
    // reader thread.
    private let fd: Int32
    /// Bytes queued for the socket. A caller that finds nobody sending becomes
    /// the flusher and sends what others queue meanwhile, so 16 concurrent
    /// calls on a connection cost a few system calls, not 16.
    private let outboundCondition = NSCondition()
    private var outbound: [UInt8] = []
    private var flushing = false
    /// A deferred send is pending (guarded by `outboundCondition`).
    private var sendDeferred = false
    /// Callers wait while more than this is queued (a server that stops
    /// reading cannot make the client buffer without bound).
    private static let maxQueuedBytes = 4 << 20
    /// Held by the flusher around `send`, and by the reader thread to close
    /// `fd`, so no write can reach a descriptor number the OS has handed out again.
    private let sendLock = NSLock()
    private var descriptorClosed = false
    private struct State {
        var nextCallID: UInt32 = 1
        var calls: [UInt32: PendingCall] = [:]
        var failure: RPCError?
        var goingAway = false
        var initialWindow = Int(ProtocolDefaults.initialWindowMessages)
        /// The server's limit on open calls; calls beyond it wait for a slot.
        var maxConcurrentCalls = Int(ProtocolDefaults.maxConcurrentCalls)
        /// Slots taken by `reserveSlot` and not yet used by `open`.
        var reserved = 0
        var slotWaiters: [CheckedContinuation<Void, Never>] = []

        mutating func releaseSlots() -> [CheckedContinuation<Void, Never>] {
            var ready: [CheckedContinuation<Void, Never>] = []
            while !slotWaiters.isEmpty && (calls.count + reserved < maxConcurrentCalls || failure != nil) {
                reserved += 1
                ready.append(slotWaiters.removeFirst())
            }
            return ready
        }
    }
    private let state = Locked(State())
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

    var isUsable: Bool { state.withLock { $0.failure == nil && !$0.goingAway } }

    var initialWindow: Int { state.withLock { $0.initialWindow } }

    /// Waits until the server's concurrent-call limit leaves room, and
    /// reserves that room for the next `open`.
    func reserveSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready: Bool = state.withLock { state in
                if state.calls.count + state.reserved < state.maxConcurrentCalls || state.failure != nil {
                    state.reserved += 1
                    return true
                }
                state.slotWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Removes a finished call and lets waiting calls in.
    private func removeCall(_ id: UInt32) -> PendingCall? {
        let (call, ready) = state.withLock { state in
            let call = state.calls.removeValue(forKey: id)
            return (call, state.releaseSlots())
        }
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
            let (id, others) = try state.withLock { (state) throws(RPCError) -> (UInt32, Bool) in
                state.reserved = Swift.max(0, state.reserved - 1)
                if let failure = state.failure { throw failure }
                if state.goingAway { throw RPCError(.unavailable, "the connection is going away") }
                let id = state.nextCallID
                state.nextCallID += 1
                state.calls[id] = call
                return (id, state.calls.count > 1)
            }
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
        guard let call = state.withLock({ $0.calls[id] }) else { return }  // ended meanwhile
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
        while flushing && outbound.count >= Self.maxQueuedBytes { outboundCondition.wait() }
        return try body(&outbound)
    }

    private func enqueue(_ body: (inout [UInt8]) -> Void) {
        outboundCondition.lock()
        defer { outboundCondition.unlock() }
        while flushing && outbound.count >= Self.maxQueuedBytes { outboundCondition.wait() }
        body(&outbound)
    }

    /// Sends the queued bytes unless another thread is already doing so (it
    /// will send ours too). Throws only to the thread that did the sending.
    private func flush() throws(RPCError) {
        var batch: [UInt8] = []
        outboundCondition.lock()
        if flushing || outbound.isEmpty {
            outboundCondition.unlock()
            return
        }
        flushing = true
        swap(&batch, &outbound)
        outboundCondition.unlock()
        while true {
            do {
                try sendAll(batch)
            } catch {
                outboundCondition.lock()
                flushing = false
                outbound.removeAll()
                outboundCondition.broadcast()
                outboundCondition.unlock()
                fail(error)
                throw error
            }
            batch.removeAll(keepingCapacity: true)
            outboundCondition.lock()
            if outbound.isEmpty {
                flushing = false
                outboundCondition.broadcast()
                outboundCondition.unlock()
                return
            }
            swap(&batch, &outbound)
            outboundCondition.broadcast()  // room again for callers waiting on the limit
            outboundCondition.unlock()
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
        let first = !sendDeferred
        sendDeferred = true
        outboundCondition.unlock()
        guard first else { return }
        Task.detached(priority: Task.currentPriority) { [self] in deferredFlush() }
    }

    private func deferredFlush() {
        outboundCondition.lock()
        sendDeferred = false
        outboundCondition.unlock()
        try? flush()
    }

    /// Sends everything queued, first waiting (bounded) for a thread that is
    /// already sending; for last words before a shutdown.
    private func sendQueued(waitingAtMost limit: Duration) {
        let deadline = Date() + Double(limit.components.seconds) + Double(limit.components.attoseconds) / 1e18
        outboundCondition.lock()
        while flushing && outboundCondition.wait(until: deadline) {}
        outboundCondition.unlock()
        try? flush()
    }

    /// Writes all of `bytes` to the socket.
    private func sendAll(_ bytes: [UInt8]) throws(RPCError) {
        sendLock.lock()
        defer { sendLock.unlock() }
        if descriptorClosed { throw state.withLock { $0.failure } ?? RPCError(.unavailable, "the connection is closed") }
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

    /// Closes the connection; pending calls fail with UNAVAILABLE.
    func close() {
        fail(RPCError(.unavailable, "the client closed the connection"))
        // Once the reader thread has closed `fd` its number may belong to
        // another socket of this process (a server's connection, in tests):
        // shutting it down would cut that one.
        sendLock.lock()
        defer { sendLock.unlock() }
        if !descriptorClosed { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func fail(_ error: RPCError) {
        let (calls, waiters) = state.withLock { state -> ([PendingCall], [CheckedContinuation<Void, Never>]) in
            if state.failure == nil { state.failure = error }
            defer {
                state.calls.removeAll()
                state.slotWaiters.removeAll()
            }
            return (Array(state.calls.values), state.slotWaiters)
        }
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
            sendLock.lock()
            Glibc.close(fd)
            descriptorClosed = true
            sendLock.unlock()
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
                    let (open, last) = state.withLock { ($0.calls[frame.callID] != nil, $0.nextCallID &- 1) }
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
                    let ready = state.withLock { state in
                        // The server applies min(ours, its own); so does the client.
                        if settings.initialWindowMessages > 0 {
                            state.initialWindow = Swift.min(state.initialWindow, Int(settings.initialWindowMessages))
                        }
                        if settings.maxConcurrentCalls > 0 { state.maxConcurrentCalls = Int(settings.maxConcurrentCalls) }
                        return state.releaseSlots()
                    }
                    for waiter in ready { waiter.resume() }
                }
                try? write(Frame(type: .settings, flags: .ack).encoded)
                handshakeDone.signal()
            }
        case .message:
            do {
                try state.withLock { $0.calls[frame.callID] }?.received(message: frame.payload)
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
            let refused = state.withLock { state -> [PendingCall] in
                state.goingAway = true
                let ids = state.calls.keys.filter { $0 > last }
                return ids.compactMap { state.calls.removeValue(forKey: $0) }
            }
            for call in refused {
                call.finished(.failure(RPCError(.unavailable, "the server is going away: \(goAway?.reason ?? "")")))
            }
        case .headers, .cancel, .windowUpdate:
            break
        }
        return nil
    }
}
