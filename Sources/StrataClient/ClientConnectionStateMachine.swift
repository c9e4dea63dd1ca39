import StrataWire

/// The protocol state of one client connection as data: its phase, the
/// calls open on it and their ids, the server's settings, the slots under
/// the server's concurrent-call limit and who waits for one, and the first
/// failure. Pure: `ClientConnection` feeds it what the reader thread and the
/// callers see and carries out what comes back (resuming waiters, finishing
/// calls). Generic over the call and waiter types so tests can drive it with
/// plain values.
///
/// Owned by its connection through a `Locked` (the reader thread and the
/// callers' tasks both drive it).
package struct ClientConnectionStateMachine<Call, Waiter> {
    package enum Phase: Equatable, Sendable {
        /// Connected; the server's SETTINGS have not arrived.
        case awaitingSettings
        case open
        /// The server sent GOAWAY, or every call id is used: calls in flight
        /// finish, no new call starts (the client opens a new connection).
        case goingAway
        /// Lost, closed or broken: every call failed with `failure`.
        case failed
    }

    package private(set) var phase = Phase.awaitingSettings
    /// The first failure; every later call fails with it.
    package private(set) var failure: RPCError?
    /// The highest call id used so far (for the per-frame rules); 0 before the first.
    package private(set) var lastCallID: UInt32 = 0
    package private(set) var calls: [UInt32: Call] = [:]
    /// The initial window the connection's calls start with: min(ours, the server's).
    package private(set) var initialWindow = Int(ProtocolDefaults.initialWindowMessages)
    /// The server's limit on open calls; calls beyond it wait for a slot.
    package private(set) var maxConcurrentCalls = Int(ProtocolDefaults.maxConcurrentCalls)
    /// Slots taken by `reserveSlot` and not yet used by `open`.
    package private(set) var reserved = 0
    private var slotWaiters: [Waiter] = []

    /// `lastCallID`: where the ids start (tests start near the end of the range).
    package init(lastCallID: UInt32 = 0) {
        self.lastCallID = lastCallID
    }

    /// Whether new calls may use this connection.
    package var isUsable: Bool { failure == nil && phase != .goingAway }
    package var waitingForSlots: Int { slotWaiters.count }

    package func call(_ id: UInt32) -> Call? { calls[id] }

    /// Takes a slot under the server's limit for the next `open`: true when
    /// one is free now, else `waiter` waits (it is returned once a slot
    /// frees, or the connection fails and every waiter must see why).
    package mutating func reserveSlot(_ waiter: Waiter) -> Bool {
        if hasFreeSlot {
            reserved += 1
            return true
        }
        slotWaiters.append(waiter)
        return false
    }

    /// Registers `call` under the next id (ids reach the server in
    /// increasing order: the caller queues its frames while it holds the
    /// lock that owns this machine). Returns the id and whether other calls
    /// are in flight. Uses up a reserved slot, if any.
    package mutating func open(_ call: Call) throws(RPCError) -> (id: UInt32, othersInFlight: Bool) {
        reserved = Swift.max(0, reserved - 1)
        if let failure { throw failure }
        if phase == .goingAway { throw RPCError(.unavailable, "the connection is going away") }
        let id = lastCallID + 1  // < .max + 1: the connection went away when .max was used
        lastCallID = id
        // Ids must increase: after the last one, new calls go to a new connection.
        if id == .max { phase = .goingAway }
        calls[id] = call
        return (id, calls.count > 1)
    }

    /// A call ended (its trailers, a cancel): removes it and returns the
    /// waiters its slot lets in.
    package mutating func remove(_ id: UInt32) -> (call: Call?, ready: [Waiter]) {
        let call = calls.removeValue(forKey: id)
        return (call, releaseSlots())
    }

    /// The server's SETTINGS: its initial window (the client applies
    /// min(ours, theirs), as the server does) and its call limit (0: unchanged).
    package mutating func receivedSettings(initialWindowMessages: UInt32, maxConcurrentCalls: UInt32) -> [Waiter] {
        if phase == .awaitingSettings { phase = .open }
        if initialWindowMessages > 0 { initialWindow = Swift.min(initialWindow, Int(initialWindowMessages)) }
        if maxConcurrentCalls > 0 { self.maxConcurrentCalls = Int(maxConcurrentCalls) }
        return releaseSlots()
    }

    /// The server's GOAWAY: calls above `lastCallID` were never processed
    /// and are returned to fail UNAVAILABLE (safe to retry); the others
    /// finish. Slot waiters are returned too: no call will start here, so
    /// they go on to `open`, which tells them so.
    package mutating func receivedGoAway(lastCallID: UInt32) -> (refused: [Call], waiters: [Waiter]) {
        if phase != .failed { phase = .goingAway }
        let refused = calls.keys.filter { $0 > lastCallID }.sorted().compactMap { calls.removeValue(forKey: $0) }
        let waiters = slotWaiters
        slotWaiters.removeAll()
        reserved += waiters.count
        return (refused, waiters)
    }

    /// The connection failed: the first error is kept; the open calls and
    /// the slot waiters are returned to be told (a later failure returns none).
    package mutating func fail(_ error: RPCError) -> (calls: [Call], waiters: [Waiter]) {
        if failure == nil { failure = error }
        phase = .failed
        let failedCalls = calls.keys.sorted().compactMap { calls[$0] }
        let waiters = slotWaiters
        calls.removeAll()
        slotWaiters.removeAll()
        return (failedCalls, waiters)
    }

    /// A slot is free under the limit; or no call will start here (going
    /// away, failed) and the caller goes straight on to `open`, which says why.
    private var hasFreeSlot: Bool { calls.count + reserved < maxConcurrentCalls || failure != nil || phase == .goingAway }

    private mutating func releaseSlots() -> [Waiter] {
        var ready: [Waiter] = []
        while !slotWaiters.isEmpty && hasFreeSlot {
            reserved += 1
            ready.append(slotWaiters.removeFirst())
        }
        return ready
    }
}
