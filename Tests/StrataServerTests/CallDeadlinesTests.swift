import Dispatch
import Foundation
@testable import StrataServer
import Testing

@Suite("Call deadlines")
struct CallDeadlinesTests {
    /// Runs `body` on the queue the deadlines are confined to and collects
    /// the expired call ids as they arrive.
    final class Harness: @unchecked Sendable {  // `deadlines` is touched only on `queue`
        let queue = DispatchQueue(label: "test.deadlines")
        var deadlines: CallDeadlines!
        let expired: AsyncStream<UInt32>
        private let continuation: AsyncStream<UInt32>.Continuation

        init() {
            (expired, continuation) = AsyncStream.makeStream(of: UInt32.self)
            queue.sync {
                deadlines = CallDeadlines(queue: queue) { [continuation] id in continuation.yield(id) }
            }
        }

        func on(_ body: @escaping @Sendable (CallDeadlines) -> Void) {
            queue.sync { body(deadlines) }
        }
    }

    @Test("calls expire in deadline order, also when an earlier deadline arrives later; ended calls never expire")
    func order() async {
        let harness = Harness()
        let now = DispatchTime.now()
        harness.on { d in
            d.add(1, deadline: now + .milliseconds(300))
            d.add(2, deadline: now + .milliseconds(150))
            d.add(3, deadline: now + .milliseconds(40))  // earlier than the timer is set for
            d.add(4, deadline: now + .milliseconds(80))
            d.remove(4)
        }
        var seen: [UInt32] = []
        for await id in harness.expired {
            seen.append(id)
            if seen.count == 3 { break }
        }
        #expect(seen == [3, 2, 1])
        #expect(DispatchTime.now() >= now + .milliseconds(300))
    }

    @Test("many ended calls do not pile up: the heap is rebuilt from the live ones")
    func compaction() async {
        let harness = Harness()
        let now = DispatchTime.now()
        harness.on { d in
            for id in 1...10_000 as ClosedRange<UInt32> {
                d.add(id, deadline: now + .seconds(60))
                d.remove(id)
            }
            d.add(20_000, deadline: now + .milliseconds(20))
        }
        for await id in harness.expired {
            #expect(id == 20_000)
            break
        }
        harness.on { d in #expect(d.pendingEntries <= 64) }
    }
}
