import StrataStorage
import StrataSupport
import Synchronization

/// The live subscriptions of a server, for the subscription gauges.
///
/// A subscription registers a probe when it is created and unregisters it
/// when it ends. The subscription publishes its cursor into the probe after
/// each read (an atomic store), so a scrape computes every lag without
/// touching the connections' queues.
///
/// Thread-safe: `probes` is a `Locked`; a probe's cursor is atomic.
public final class SubscriptionRegistry: Sendable {
    /// One subscription's published position.
    final class Probe: Sendable {
        let tenant: String
        /// The stream of a stream subscription (the cursor is a revision);
        /// nil for `$all` and categories (the cursor is a position).
        let stream: String?
        let store: EventStore
        /// The next revision or position the subscription will read.
        let cursor: Atomic<UInt64>

        init(tenant: String, stream: String?, store: EventStore, cursor: UInt64) {
            self.tenant = tenant
            self.stream = stream
            self.store = store
            self.cursor = Atomic(cursor)
        }

        /// Events between the cursor and the head; nil once the store has
        /// closed (the subscription is ending).
        var lag: UInt64? {
            let next = cursor.load(ordering: .relaxed)
            do {
                if let stream {
                    let info = try store.streamInfo(stream)
                    return info.lastRevision >= next ? info.lastRevision - next + 1 : 0
                }
                let head = try store.headPosition()
                return head >= next ? head - next + 1 : 0
            } catch .streamNotFound {
                return 0
            } catch {
                return nil
            }
        }
    }

    private let probes = Locked<[ObjectIdentifier: Probe]>([:])

    public init() {}

    func register(_ probe: Probe) {
        probes.withLock { $0[ObjectIdentifier(probe)] = probe }
    }

    func unregister(_ probe: Probe) {
        _ = probes.withLock { $0.removeValue(forKey: ObjectIdentifier(probe)) }
    }

    /// Open subscriptions now.
    public var count: Int { probes.withLock { $0.count } }

    /// Per tenant: how many subscriptions, and the largest lag in events.
    public func byTenant() -> [String: (count: Int, maxLag: UInt64)] {
        let all = probes.withLock { Array($0.values) }
        var out: [String: (count: Int, maxLag: UInt64)] = [:]
        for probe in all {
            guard let lag = probe.lag else { continue }
            let current = out[probe.tenant] ?? (0, 0)
            out[probe.tenant] = (current.count + 1, max(current.maxLag, lag))
        }
        return out
    }
}
