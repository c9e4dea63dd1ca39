import StrataWire

/// The life of one server connection as data: which phase it is in, whether
/// it reads, and what each event means for it. Pure: events come in as
/// method calls, the actions the I/O layer (`Connection`) must carry out come
/// back, in order. Nothing here touches a socket, a queue or a clock, so a
/// test can start it in any phase and feed it any sequence of events.
///
/// Owned by its `Connection` and confined to that connection's queue.
package struct ServerConnectionStateMachine {
    package enum Phase: Equatable, Sendable {
        /// Preface read; waiting for the client's SETTINGS.
        case awaitingSettings
        /// Calls may open.
        case open
        /// GOAWAY sent or received: no new calls; the connection closes once
        /// the open calls have ended.
        case goingAway
        /// A GOAWAY (or the last trailers) is queued: the connection closes
        /// as soon as the queued bytes reach the socket.
        case closingAfterFlush
        /// Closed: nothing more is read, written or started.
        case closed
    }

    package enum Action: Equatable, Sendable {
        case sendSettingsAck
        case sendGoAway(code: StatusCode, reason: String)
        /// End the calls that only end when cancelled (subscriptions) with this status.
        case endOpenEndedCalls(RPCError)
        /// Drop every open call without trailers (the connection is going).
        case abandonCalls
        case suspendReads
        case resumeReads
        /// Close the socket. `resumeReadsFirst`: the read source is suspended
        /// and must be resumed before it can be cancelled.
        case close(reason: String, isError: Bool, resumeReadsFirst: Bool)
    }

    /// Whether the connection has room for a new call.
    package enum CallSlot: Equatable, Sendable {
        case granted
        case refused(RPCError)
    }

    package struct Limits: Sendable {
        package var maxConcurrentCalls: Int
        /// Queued bytes at which reading stops (it resumes at half).
        package var maxWriteBufferBytes: Int

        package init(maxConcurrentCalls: Int, maxWriteBufferBytes: Int) {
            self.maxConcurrentCalls = maxConcurrentCalls
            self.maxWriteBufferBytes = maxWriteBufferBytes
        }
    }

    package let limits: Limits
    package private(set) var phase: Phase = .awaitingSettings
    /// The client's SETTINGS arrived (frames other than SETTINGS are refused before).
    package private(set) var settingsReceived = false
    /// Reading is suspended because the client does not read its responses.
    package private(set) var readsSuspended = false

    package init(limits: Limits) {
        self.limits = limits
    }

    package var isClosed: Bool { phase == .closed }
    /// Whether the I/O layer should read from the socket now.
    package var mayRead: Bool { phase != .closed && !readsSuspended }
    /// GOAWAY sent or received: no call may start.
    package var isGoingAway: Bool { phase == .goingAway || phase == .closingAfterFlush }

    // MARK: - Events

    /// The client's SETTINGS (not an ACK) arrived.
    package mutating func receivedSettings() -> [Action] {
        guard phase != .closed else { return [] }
        settingsReceived = true
        if phase == .awaitingSettings { phase = .open }
        return [.sendSettingsAck]
    }

    /// The handshake timer fired; `limit` is the configured timeout.
    package mutating func handshakeTimerFired(limit: Duration) -> [Action] {
        guard !settingsReceived else { return [] }
        return connectionError(.deadlineExceeded, "no preface and SETTINGS within \(limit)")
    }

    /// The idle timer fired: a connection with no call and no frame for
    /// `limit` goes away.
    package mutating func idleTimerFired(openCalls: Int, idleFor: Duration, limit: Duration) -> [Action] {
        guard openCalls == 0, idleFor >= limit else { return [] }
        return connectionError(.ok, "idle for \(limit)")
    }

    /// The connection breaks the protocol (or times out): GOAWAY with `code`,
    /// drop every call, close once the GOAWAY is written.
    package mutating func connectionError(_ code: StatusCode, _ reason: String) -> [Action] {
        // Once a GOAWAY is queued and the connection only waits to flush it,
        // a later fault (more bytes of the same oversized frame, say) sends
        // no second one.
        guard phase != .closed && phase != .closingAfterFlush else { return [] }
        phase = .closingAfterFlush
        return [.sendGoAway(code: code, reason: reason), .abandonCalls]
    }

    /// Graceful shutdown: GOAWAY, end subscriptions, let the other calls
    /// finish; `callsChanged` closes once none is left.
    package mutating func shutdownRequested() -> [Action] {
        guard phase == .awaitingSettings || phase == .open else { return [] }
        phase = .goingAway
        return [.sendGoAway(code: .ok, reason: "server shutting down"),
                .endOpenEndedCalls(RPCError(.unavailable, "the server is shutting down; resubscribe after the last event you received"))]
    }

    /// The client sent GOAWAY: it starts no more calls; its subscriptions
    /// end, the other calls finish.
    package mutating func receivedGoAway() -> [Action] {
        guard phase == .awaitingSettings || phase == .open || phase == .goingAway else { return [] }
        phase = .goingAway
        return [.endOpenEndedCalls(RPCError(.cancelled, "the client sent GOAWAY"))]
    }

    /// A call's HEADERS arrived; `openCalls` counts the calls open now.
    package func callSlot(openCalls: Int) -> CallSlot {
        if phase == .awaitingSettings {
            // FrameRules refuses HEADERS before SETTINGS as a connection error;
            // the machine does not rely on it.
            return .refused(RPCError(.failedPrecondition, "HEADERS before the connection's SETTINGS"))
        }
        if isGoingAway || phase == .closed {
            return .refused(RPCError(.unavailable, "the server is shutting down; retry on a new connection"))
        }
        if openCalls >= limits.maxConcurrentCalls {
            return .refused(RPCError(.resourceExhausted, "more than \(limits.maxConcurrentCalls) concurrent calls on one connection"))
        }
        return .granted
    }

    /// Calls ended (or an event that ends calls was carried out): a
    /// connection going away closes once none is left.
    package mutating func callsChanged(openCalls: Int, pendingBytes: Int) -> [Action] {
        guard phase == .goingAway, openCalls == 0 else { return [] }
        return closeAfterFlush(pendingBytes: pendingBytes)
    }

    /// A write to the socket finished with `pendingBytes` still queued.
    package mutating func flushed(pendingBytes: Int) -> [Action] {
        if phase == .closingAfterFlush && pendingBytes == 0 {
            return close(reason: "closed after GOAWAY", isError: false)
        }
        guard phase != .closed else { return [] }
        if pendingBytes >= limits.maxWriteBufferBytes && !readsSuspended {
            readsSuspended = true
            return [.suspendReads]
        }
        if pendingBytes <= limits.maxWriteBufferBytes / 2 && readsSuspended {
            readsSuspended = false
            return [.resumeReads]
        }
        return []
    }

    /// The peer closed, a socket call failed, or the server forces the
    /// connection closed.
    package mutating func close(reason: String, isError: Bool) -> [Action] {
        guard phase != .closed else { return [] }
        phase = .closed
        let resume = readsSuspended
        readsSuspended = false
        return [.close(reason: reason, isError: isError, resumeReadsFirst: resume)]
    }

    private mutating func closeAfterFlush(pendingBytes: Int) -> [Action] {
        phase = .closingAfterFlush
        return pendingBytes == 0 ? close(reason: "closed after GOAWAY", isError: false) : []
    }
}
