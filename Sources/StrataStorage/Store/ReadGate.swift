import Foundation

/// Lets reads run concurrently with each other but never with `close()`,
/// so no read touches an environment after it is closed. A pthread rwlock:
/// readers share it, closing takes it exclusively.
final class ReadGate: @unchecked Sendable {
    // @unchecked: `lock` is the synchronization; `isClosed` is written only
    // with the lock held exclusively and read with it held shared.
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
    private var isClosed = false

    init() { pthread_rwlock_init(lock, nil) }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` unless the gate is closed, in which case `closedError` is thrown.
    func enter<R>(orThrow closedError: @autoclosure () -> StorageError, _ body: () throws -> R) throws -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        if isClosed { throw closedError() }
        return try body()
    }

    /// Waits for running reads, then closes the gate and runs `body` (once).
    func close(_ body: () -> Void) {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        if !isClosed {
            isClosed = true
            body()
        }
    }
}
