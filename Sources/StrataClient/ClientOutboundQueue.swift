/// The client connection's outbound bytes and who sends them, as data: a
/// caller that finds nobody sending becomes the flusher and sends what the
/// others queue meanwhile, so 16 concurrent calls on a connection cost a few
/// system calls, not 16. Pure: the connection does the sending and the
/// waiting.
///
/// Owned by the connection's `outboundCondition` (a condition: callers wait
/// on it while `mustWait`).
struct ClientOutboundQueue {
    /// Bytes queued for the socket.
    private(set) var bytes: [UInt8] = []
    /// A thread is sending; it also sends what others queue meanwhile.
    private(set) var flushing = false
    /// A deferred send is pending (`ClientConnection.deferSend`).
    private(set) var sendDeferred = false
    /// Callers wait while more than this is queued and someone is sending
    /// (a server that stops reading cannot make the client buffer without bound).
    let maxQueuedBytes: Int

    init(maxQueuedBytes: Int) {
        self.maxQueuedBytes = maxQueuedBytes
    }

    /// Whether a caller must wait before queuing more.
    var mustWait: Bool { flushing && bytes.count >= maxQueuedBytes }

    /// Appends frames (written by `body`) to the queue.
    mutating func enqueue<T, E: Error>(_ body: (inout [UInt8]) throws(E) -> T) throws(E) -> T {
        try body(&bytes)
    }

    /// Makes the caller the flusher and moves the queued bytes into `batch`
    /// (emptied first); false when someone is already sending or nothing is
    /// queued.
    mutating func startFlush(into batch: inout [UInt8]) -> Bool {
        guard !flushing, !bytes.isEmpty else { return false }
        flushing = true
        batch.removeAll(keepingCapacity: true)
        swap(&batch, &bytes)
        return true
    }

    /// After the flusher sent `batch`: moves what was queued meanwhile into
    /// it and returns true, or ends the flush and returns false.
    mutating func continueFlush(into batch: inout [UInt8]) -> Bool {
        batch.removeAll(keepingCapacity: true)
        guard !bytes.isEmpty else {
            flushing = false
            return false
        }
        swap(&batch, &bytes)
        return true
    }

    /// The send failed: what is queued is dropped (the connection fails
    /// every call) and the flush ends.
    mutating func abandonFlush() {
        flushing = false
        bytes.removeAll()
    }

    /// Asks for a deferred send; true when none was pending, and the caller
    /// must start one.
    mutating func requestDeferredSend() -> Bool {
        defer { sendDeferred = true }
        return !sendDeferred
    }

    /// The deferred send begins: later requests start another.
    mutating func deferredSendStarted() {
        sendDeferred = false
    }
}
