import StrataSupport

/// Tells observers that something was committed: the writer calls `notify`
/// after every commit, with the position of the last committed event.
/// Observers only learn *that* there is more to read; they read it from the
/// store themselves, so a notification can never carry an event twice or
/// skip one, and a slow observer costs nothing here.
///
/// Thread-safe: the observer table is owned by a `Locked`; handlers run on the
/// writer thread outside it and must return quickly (hop to a queue).
public final class CommitNotifier: Sendable {
    private struct Observers {
        var nextID: UInt64 = 0
        var handlers: [UInt64: @Sendable (UInt64) -> Void] = [:]
    }
    private let observers = Locked(Observers())

    init() {}

    /// Registers `handler`, called with the new head position after each
    /// commit until the returned observation is cancelled.
    public func observe(_ handler: @escaping @Sendable (_ head: UInt64) -> Void) -> CommitObservation {
        let id = observers.withLock { state in
            state.nextID += 1
            state.handlers[state.nextID] = handler
            return state.nextID
        }
        return CommitObservation(notifier: self, id: id)
    }

    fileprivate func remove(_ id: UInt64) {
        _ = observers.withLock { $0.handlers.removeValue(forKey: id) }
    }

    /// Observers currently registered.
    public var count: Int { observers.withLock { $0.handlers.count } }

    func notify(head: UInt64) {
        let handlers = observers.withLock { Array($0.handlers.values) }
        for handler in handlers { handler(head) }
    }
}

/// A registration with a `CommitNotifier`; `cancel()` (or releasing it) ends it.
public final class CommitObservation: Sendable {
    private let notifier: CommitNotifier
    private let id: UInt64

    fileprivate init(notifier: CommitNotifier, id: UInt64) {
        self.notifier = notifier
        self.id = id
    }

    public func cancel() { notifier.remove(id) }

    deinit { notifier.remove(id) }
}
