import Dispatch

/// The deadlines of one connection's calls, behind one timer.
///
/// A DispatchSourceTimer per call cost more than the call itself: creating,
/// resuming and cancelling a source each wake Dispatch's manager thread. Here
/// a min-heap holds (deadline, call id); the one timer is set to the earliest
/// deadline and moved only when a new deadline is earlier. Entries of calls
/// that ended are dropped lazily (the owner checks that the call still
/// exists), and the heap is rebuilt when stale entries outnumber live ones,
/// so memory follows the live calls, not the calls of the last deadline span.
///
/// Confined to the owning connection's queue, on which the timer fires.
final class CallDeadlines {
    private struct Entry {
        let deadline: DispatchTime
        let callID: UInt32
    }

    private let queue: DispatchQueue
    private let expired: (UInt32) -> Void
    private var heap: [Entry] = []
    /// The deadline of every live call that has one.
    private var live: [UInt32: DispatchTime] = [:]
    private var timer: DispatchSourceTimer?
    private var scheduled: DispatchTime?

    /// `expired` runs on `queue` for each call whose deadline passed.
    init(queue: DispatchQueue, expired: @escaping (UInt32) -> Void) {
        self.queue = queue
        self.expired = expired
    }

    func add(_ callID: UInt32, deadline: DispatchTime) {
        live[callID] = deadline
        push(Entry(deadline: deadline, callID: callID))
        if scheduled.map({ deadline < $0 }) ?? true { arm(at: deadline) }
    }

    func remove(_ callID: UInt32) {
        guard live.removeValue(forKey: callID) != nil else { return }
        if heap.count > 64 && heap.count > 2 * live.count {
            heap = live.map { Entry(deadline: $0.value, callID: $0.key) }
            heap.sort { $0.deadline < $1.deadline }  // a sorted array is a valid min-heap
        }
    }

    /// Heap entries, live or stale (for tests).
    var pendingEntries: Int { heap.count }

    /// Stops the timer for good (the connection is closing).
    func cancel() {
        timer?.cancel()
        timer = nil
        heap.removeAll()
        live.removeAll()
    }

    private func arm(at deadline: DispatchTime) {
        if timer == nil {
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.setEventHandler { [weak self] in self?.fire() }
            timer.schedule(deadline: deadline)
            timer.resume()
            self.timer = timer
        } else {
            timer?.schedule(deadline: deadline)
        }
        scheduled = deadline
    }

    private func fire() {
        scheduled = nil
        let now = DispatchTime.now()
        while let first = heap.first, first.deadline <= now {
            popFirst()
            // Stale if the call ended (or its id's entry was replaced).
            if live[first.callID] == first.deadline {
                live[first.callID] = nil
                expired(first.callID)
            }
        }
        if let next = heap.first { arm(at: next.deadline) }
    }

    // MARK: - Binary min-heap on `deadline`

    private func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private func popFirst() {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            if smallest == parent { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
