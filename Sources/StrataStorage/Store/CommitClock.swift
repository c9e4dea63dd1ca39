import Foundation

/// Commit times: the server's wall clock in nanoseconds since the Unix epoch,
/// forced strictly increasing per tenant so that every commit has its own
/// time (a wall clock that steps back never makes `recordedAt` go back).
/// Owned by the writer thread.
struct CommitClock {
    private(set) var last: Int64

    init(last: Int64) { self.last = last }

    static func wallNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// The time for the next commit (not yet taken: see `advance(to:)`).
    func next() -> Int64 { max(Self.wallNanoseconds(), last + 1) }

    /// Records that a commit with `time` succeeded.
    mutating func advance(to time: Int64) { last = max(last, time) }
}
