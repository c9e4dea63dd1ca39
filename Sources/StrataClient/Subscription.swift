import StrataProto
import StrataWire

extension StrataClient {
    /// What a subscription follows.
    public enum SubscriptionTarget: Sendable, Hashable {
        case stream(String)
        /// Every stream named "<category>-…".
        case category(String)
        case all
    }

    /// Where a subscription begins.
    public enum SubscriptionStart: Sendable, Hashable {
        /// From the first event.
        case start
        /// Only events committed after the subscription began.
        case end
        /// After this revision (stream subscriptions).
        case afterRevision(UInt64)
        /// After this global position (category and `$all`).
        case afterPosition(UInt64)
    }

    /// One item of a subscription.
    public enum SubscriptionMessage: Sendable, Hashable {
        case event(RecordedEvent)
        /// Catch-up is over: everything up to `position` was delivered; what
        /// follows is live. Sent once per subscription (again after a resume).
        case caughtUp(position: UInt64)
        /// A filter skipped events up to `position`: save it to resume there.
        case checkpoint(position: UInt64)
    }

    /// How a subscription reconnects after its connection is lost.
    public struct ReconnectPolicy: Sendable {
        /// Attempts in a row before the subscription fails (0: never reconnect).
        public var maxAttempts: Int
        public var initialDelay: Duration
        public var maxDelay: Duration

        public init(maxAttempts: Int = 20, initialDelay: Duration = .milliseconds(50), maxDelay: Duration = .seconds(2)) {
            self.maxAttempts = maxAttempts
            self.initialDelay = initialDelay
            self.maxDelay = maxDelay
        }

        public static let never = ReconnectPolicy(maxAttempts: 0)
    }

    /// Subscribes to a stream, a category or `$all`: stored events first, then
    /// live ones as they commit, with no gap and no repeat between the two.
    /// The sequence never ends on its own; cancel the task (or stop
    /// iterating) to end it. If the connection is lost it reconnects per
    /// `reconnect` and resumes after the last event (or checkpoint) it
    /// delivered.
    public func subscribe(to target: SubscriptionTarget, from start: SubscriptionStart = .start,
                          streamPrefixes: [String] = [], eventTypes: [String] = [], checkpointInterval: UInt32 = 0,
                          reconnect: ReconnectPolicy = ReconnectPolicy()) -> Subscription {
        var request = Strata_V1_SubscribeRequest()
        switch target {
        case .stream(let name): request.stream = name
        case .category(let category): request.category = category
        case .all: request.all = Strata_V1_Empty()
        }
        request.streamPrefixes = streamPrefixes
        request.eventTypes = eventTypes
        request.checkpointInterval = checkpointInterval
        return Subscription(client: self, request: request, start: start, reconnect: reconnect)
    }
}

/// A live subscription as an async sequence. Iterate once.
public struct Subscription: AsyncSequence, Sendable {
    public typealias Element = StrataClient.SubscriptionMessage
    let client: StrataClient
    let request: Strata_V1_SubscribeRequest
    let start: StrataClient.SubscriptionStart
    let reconnect: StrataClient.ReconnectPolicy

    public func makeAsyncIterator() -> Iterator {
        Iterator(client: client, request: request, start: start, reconnect: reconnect)
    }

    public final class Iterator: AsyncIteratorProtocol {
        private let client: StrataClient
        private let request: Strata_V1_SubscribeRequest
        private let reconnect: StrataClient.ReconnectPolicy
        /// Where the next (re)subscription begins: moves with every delivered
        /// event and checkpoint.
        private var resumeFrom: StrataClient.SubscriptionStart
        private var call: (connection: ClientConnection, id: UInt32, pending: PendingCall)?
        /// The current message's events not yet handed out, then its markers
        /// (kept apart so events are not re-wrapped one by one).
        private var pendingEvents: [StrataClient.RecordedEvent] = []
        private var pendingIndex = 0
        private var pendingMarkers: [StrataClient.SubscriptionMessage] = []
        /// The stream's next revision carried by the pending caught-up marker.
        private var caughtUpNextRevision: UInt64 = 0
        private var failed = false
        /// Stream subscriptions resume by revision, the others by position.
        private var isStream: Bool {
            if case .stream = request.target { return true }
            return false
        }

        init(client: StrataClient, request: Strata_V1_SubscribeRequest, start: StrataClient.SubscriptionStart,
             reconnect: StrataClient.ReconnectPolicy) {
            self.client = client
            self.request = request
            self.resumeFrom = start
            self.reconnect = reconnect
        }

        deinit {
            if let call { call.connection.cancel(call.id) }
        }

        public func next() async throws(StrataClient.Error) -> StrataClient.SubscriptionMessage? {
            if pendingIndex < pendingEvents.count || !pendingMarkers.isEmpty {
                return deliver()
            }
            if failed || Task.isCancelled { return nil }
            var attempts = 0
            while true {
                do {
                    try await fill()
                    return deliver()
                } catch let error as RPCError {
                    if let call { call.connection.cancel(call.id) }
                    call = nil
                    if error.code == .cancelled || Task.isCancelled { return nil }
                    // Only a lost connection is worth a resume; any other status is the answer.
                    guard error.code == .unavailable, attempts < reconnect.maxAttempts else {
                        failed = true
                        throw StrataClient.Error(error)
                    }
                    let delay = Swift.min(reconnect.initialDelay * (1 << Swift.min(attempts, 16)), reconnect.maxDelay)
                    attempts += 1
                    do { try await Task.sleep(for: delay) } catch { return nil }
                } catch {
                    failed = true
                    throw StrataClient.Error(.internal, "\(error)")
                }
            }
        }

        /// Hands out the next pending message and moves the resume point past it.
        private func deliver() -> StrataClient.SubscriptionMessage {
            if pendingIndex < pendingEvents.count {
                let event = pendingEvents[pendingIndex]
                pendingIndex += 1
                resumeFrom = isStream ? .afterRevision(event.revision) : .afterPosition(event.position)
                return .event(event)
            }
            let marker = pendingMarkers.removeFirst()
            switch marker {
            case .checkpoint(let position):
                resumeFrom = .afterPosition(position)
            case .caughtUp(let position):
                // Everything up to here was delivered: a reconnect resumes
                // after it (a subscription started at the end would otherwise
                // start at the end again and lose what came in between).
                if isStream {
                    resumeFrom = caughtUpNextRevision == 0 ? .start : .afterRevision(caughtUpNextRevision - 1)
                } else {
                    resumeFrom = .afterPosition(position)
                }
            case .event:
                break
            }
            return marker
        }

        /// Opens the call if needed and waits for the next message with content.
        private func fill() async throws {
            pendingEvents = []
            pendingIndex = 0
            pendingMarkers = []
            let call: (connection: ClientConnection, id: UInt32, pending: PendingCall)
            if let open = self.call {
                call = open
            } else {
                var request = self.request
                switch resumeFrom {
                case .start: request.start = Strata_V1_Empty()
                case .end: request.end = Strata_V1_Empty()
                case .afterRevision(let revision): request.afterRevision = revision
                case .afterPosition(let position): request.afterPosition = position
                }
                call = try await client.openStream(StreamsMethod.subscribe, request, timeout: nil)
                self.call = call
            }
            while pendingEvents.isEmpty && pendingMarkers.isEmpty {
                let message = try await withTaskCancellationHandler {
                    try await call.pending.next()
                } onCancel: {
                    call.connection.cancel(call.id)
                }
                guard let message else {
                    throw RPCError(.internal, "the server ended a subscription without a status")
                }
                call.connection.consumed(call.id, call.pending)
                let page = try ReadResponseDecoder.decodeSubscription(message)
                pendingEvents = page.events
                if let position = page.caughtUp {
                    pendingMarkers.append(.caughtUp(position: position))
                    caughtUpNextRevision = page.caughtUpNextRevision
                }
                if let position = page.checkpoint { pendingMarkers.append(.checkpoint(position: position)) }
            }
        }
    }
}
