#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a pthread mutex: `withLock` runs its body with the
/// value, one thread at a time.
///
/// Why not `Synchronization.Mutex`: on Linux it locks with futexes inside
/// the standard library, which ThreadSanitizer cannot see, so it reports a
/// race inside every `withLock` (docs/reliability.md, "Sanitizers", shows
/// a five-line program that does it). pthread mutexes are intercepted, so a
/// race TSan reports here is a real one.
public final class Locked<Value: ~Copyable>: @unchecked Sendable {
    // Allocated once and never moved: a pthread mutex must keep its address.
    // Visible to inlined code so `withLock` specialises in the modules that
    // use it (it is on hot paths: every call, every stream-index lookup).
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var value: Value

    public init(_ value: consuming sending Value) {
        self.value = value
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock. `body` must not
    /// call `withLock` on the same instance (the mutex is not recursive).
    @inlinable
    public func withLock<Result: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending Result) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
