import StrataStorage
import StrataWire
import Synchronization

/// Limits and defaults of subscriptions (config `subscription.*`).
public struct SubscriptionLimits: Sendable {
    /// Events scanned without a match after which a filtered subscription
    /// sends a checkpoint (when the request does not choose).
    public var checkpointInterval: Int = 1_000
    /// A live subscriber further behind the head than this many events…
    public var maxLagEvents: UInt64 = 100_000
    /// …for longer than this is ended with RESOURCE_EXHAUSTED.
    public var maxLagDuration: Duration = .seconds(30)

    public init() {}
}

/// What a subscription follows.
enum SubscriptionTarget {
    case stream(String)
    /// `$all` or a category (a category is `$all` with the prefix "<category>-").
    case all(EventFilter)
}

/// A catch-up-then-live subscription. It reads everything from the store,
/// catch-up and live alike, from a cursor (the next position, or the next
/// revision for a stream): a commit only wakes it up to read again, so the
/// switch to live can neither skip nor repeat an event, and a slow subscriber
/// holds no events in memory — only its cursor.
///
/// Used on its connection's queue (`next`, `checkHealth`); `start`'s commit
/// observer runs on the writer thread and only flips an atomic and hops.
final class SubscriptionSource: ServerStreamSource {
    private let lease: TenantLease
    private let target: SubscriptionTarget
    private let pageSize: Int
    private let byteBudget: Int
    private let checkpointInterval: UInt64
    private let limits: SubscriptionLimits
    /// Next position to read ($all, category) or next revision (stream).
    private var cursor: UInt64
    private var caughtUp = false
    /// Events scanned by a filtered subscription since the last event or checkpoint sent.
    private var skippedSinceReport: UInt64 = 0
    /// Events read but not yet sent (a page larger than one message).
    private var buffered: [RecordedEvent] = []
    private var bufferedIndex = 0
    /// Whether the page in `buffered` reached the head (caught-up is sent after it).
    private var bufferedReachedHead = false
    private var headAtRead: UInt64 = 0
    private var laggingSince: ContinuousClock.Instant?
    private var observation: CommitObservation?
    /// Set when a wake-up is queued and not yet consumed: one per burst of commits.
    private let wakePending = WakeFlag()
    private var wake: (@Sendable () -> Void)?
    /// Where the metrics see this subscription's cursor (nil: not counted).
    private let probe: SubscriptionRegistry.Probe?
    private let registry: SubscriptionRegistry?

    init(lease: TenantLease, target: SubscriptionTarget, cursor: UInt64, pageSize: Int, byteBudget: Int,
         checkpointInterval: Int, limits: SubscriptionLimits, registry: SubscriptionRegistry? = nil) {
        self.lease = lease
        self.registry = registry
        if let registry {
            let stream: String? = if case .stream(let name) = target { name } else { nil }
            let probe = SubscriptionRegistry.Probe(tenant: lease.store.tenant, stream: stream, store: lease.store, cursor: cursor)
            registry.register(probe)
            self.probe = probe
        } else {
            self.probe = nil
        }
        self.target = target
        self.cursor = cursor
        self.pageSize = pageSize
        self.byteBudget = byteBudget
        self.checkpointInterval = UInt64(max(1, checkpointInterval))
        self.limits = limits
    }

    deinit {
        if let probe { registry?.unregister(probe) }
        observation?.cancel()
        lease.release()
    }

    var endsOnItsOwn: Bool { false }

    func start(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
        let pending = wakePending
        observation = lease.store.commits.observe { _ in
            if pending.raise() { wake() }
        }
    }

    /// Ends a live subscriber that has stayed too far behind (it is not
    /// granting credit, or not reading its socket).
    func checkHealth() throws(RPCError) {
        wakePending.lower()
        guard caughtUp else { return }
        let lag = try currentLag()
        if lag <= limits.maxLagEvents {
            laggingSince = nil
            return
        }
        let now = ContinuousClock.now
        if laggingSince == nil { laggingSince = now }
        if let since = laggingSince, now - since >= limits.maxLagDuration {
            throw RPCError(.resourceExhausted, "the subscriber stayed \(lag) events behind the head (limit \(limits.maxLagEvents) "
                           + "for \(limits.maxLagDuration)); resubscribe after \(resumePoint)")
        }
    }

    /// For a stream subscription, the revision of the next event (0 otherwise).
    private var streamNextRevision: UInt64 {
        if case .stream = target { return cursor }
        return 0
    }

    private var resumePoint: String {
        switch target {
        case .stream: cursor == 0 ? "the start" : "revision \(cursor - 1)"
        case .all: cursor <= 1 ? "the start" : "position \(cursor - 1)"
        }
    }

    private func currentLag() throws(RPCError) -> UInt64 {
        do {
            switch target {
            case .all:
                let head = try lease.store.headPosition()
                return head >= cursor ? head - cursor + 1 : 0
            case .stream(let name):
                let info = try lease.store.streamInfo(name)
                return info.lastRevision >= cursor ? info.lastRevision - cursor + 1 : 0
            }
        } catch .streamNotFound {
            return 0
        } catch {
            throw RPCError(error)
        }
    }

    func next(max: Int) throws(RPCError) -> (messages: [[UInt8]], finished: Bool) {
        wakePending.lower()
        var messages: [[UInt8]] = []
        var emptyReads = 0
        while messages.count < max {
            if bufferedIndex == buffered.count {
                let reachedHead = try readPage()
                if buffered.isEmpty {
                    var message: [UInt8] = []
                    if reachedHead && !caughtUp {
                        caughtUp = true
                        RecordedEventEncoder.appendCaughtUp(headAtRead, nextRevision: streamNextRevision, to: &message)
                    } else if skippedSinceReport >= checkpointInterval, case .all = target {
                        skippedSinceReport = 0
                        RecordedEventEncoder.appendCheckpoint(cursor - 1, to: &message)
                    }
                    if !message.isEmpty { messages.append(message) }
                    if reachedHead { break }
                    emptyReads += 1
                    if message.isEmpty && emptyReads >= 4 {
                        // A filter skipping a long stretch: let the connection
                        // serve its other calls, and come back for more.
                        scheduleWake()
                        break
                    }
                    continue
                }
            }
            var message: [UInt8] = []
            RecordedEventEncoder.appendPage(of: buffered, from: &bufferedIndex, maxEvents: pageSize, byteBudget: byteBudget, to: &message)
            if bufferedIndex == buffered.count && bufferedReachedHead && !caughtUp {
                caughtUp = true
                RecordedEventEncoder.appendCaughtUp(headAtRead, nextRevision: streamNextRevision, to: &message)
            } else if bufferedIndex == buffered.count && skippedSinceReport >= checkpointInterval, case .all = target {
                // The page ended in a long skipped stretch: report progress past it.
                skippedSinceReport = 0
                RecordedEventEncoder.appendCheckpoint(cursor - 1, to: &message)
            }
            messages.append(message)
            if bufferedIndex == buffered.count && bufferedReachedHead { break }
        }
        publishCursor()
        return (messages, false)
    }

    /// The next event not yet sent, for the lag gauge.
    private func publishCursor() {
        guard let probe else { return }
        // Events read but still buffered are not delivered yet.
        var next = cursor
        if bufferedIndex < buffered.count {
            let event = buffered[bufferedIndex]
            next = if case .stream = target { event.revision } else { event.position }
        }
        probe.cursor.store(next, ordering: .relaxed)
    }

    private func scheduleWake() {
        if wakePending.raise() { wake?() }
    }

    /// Reads the next page into `buffered` and moves the cursor past it.
    /// Returns whether the read reached the head.
    private func readPage() throws(RPCError) -> Bool {
        buffered = []
        bufferedIndex = 0
        do {
            switch target {
            case .all(let filter):
                let slice = try lease.store.readAll(from: .position(Swift.max(cursor, 1)), direction: .forwards,
                                                    maxCount: pageSize, filter: filter, scanLimit: pageSize * 16)
                let nextCursor = Swift.max(cursor, slice.nextPosition ?? (slice.headPosition + 1))
                let scanned = nextCursor - cursor
                skippedSinceReport = slice.events.isEmpty ? skippedSinceReport + scanned : 0
                if !slice.events.isEmpty, let last = slice.events.last {
                    // Skips after the last delivered event still count.
                    skippedSinceReport = nextCursor - 1 - last.position
                }
                cursor = nextCursor
                buffered = slice.events
                headAtRead = slice.headPosition
                bufferedReachedHead = slice.nextPosition == nil
                return bufferedReachedHead
            case .stream(let name):
                // The head first: the stream read that follows sees at least
                // everything up to it, so "caught up at head" stays true.
                headAtRead = try lease.store.headPosition()
                let slice = try lease.store.readStream(name, from: .revision(cursor), direction: .forwards, maxCount: pageSize)
                if let last = slice.events.last { cursor = last.revision + 1 }
                buffered = slice.events
                bufferedReachedHead = slice.nextRevision == nil
                return bufferedReachedHead
            }
        } catch .streamNotFound {
            // Not created yet: nothing to deliver until its first append.
            headAtRead = (try? lease.store.headPosition()) ?? 0
            bufferedReachedHead = true
            return true
        } catch {
            throw RPCError(error)
        }
    }
}

/// A flag shared by the commit observer (writer thread) and the source
/// (connection queue): raised when a wake-up is queued, lowered when the
/// source reads, so a burst of commits queues one wake-up and a commit during
/// a read queues another.
final class WakeFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    /// Raises the flag; true when it was down (the caller should wake).
    func raise() -> Bool { !flag.exchange(true, ordering: .acquiringAndReleasing) }

    func lower() { flag.store(false, ordering: .releasing) }
}
