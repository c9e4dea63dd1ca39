@testable import StrataClient
import StrataWire
import Testing

/// `ClientConnectionStateMachine`, one transition at a time, driven with
/// strings for calls and integers for slot waiters.
@Suite("Client connection state machine")
struct ClientConnectionStateMachineTests {
    typealias Machine = ClientConnectionStateMachine<String, Int>

    private static func open(maxCalls: UInt32) -> Machine {
        var machine = Machine()
        _ = machine.receivedSettings(initialWindowMessages: 0, maxConcurrentCalls: maxCalls)
        return machine
    }

    @Test("SETTINGS open the connection; the initial window is the smaller of ours and the server's; 0 changes nothing")
    func settings() {
        var machine = Machine()
        #expect(machine.phase == .awaitingSettings)
        let noneReady = machine.receivedSettings(initialWindowMessages: 16, maxConcurrentCalls: 0).isEmpty
        #expect(noneReady)
        #expect(machine.phase == .open)
        #expect(machine.initialWindow == 16)
        #expect(machine.maxConcurrentCalls == Int(ProtocolDefaults.maxConcurrentCalls))
        _ = machine.receivedSettings(initialWindowMessages: 1000, maxConcurrentCalls: 3)
        #expect(machine.initialWindow == 16)
        #expect(machine.maxConcurrentCalls == 3)
    }

    @Test("call ids increase from 1; a call knows whether others are in flight")
    func ids() throws {
        var machine = Self.open(maxCalls: 10)
        let first = try machine.open("a")
        let second = try machine.open("b")
        #expect(first.id == 1 && !first.othersInFlight)
        #expect(second.id == 2 && second.othersInFlight)
        #expect(machine.lastCallID == 2)
        #expect(machine.call(2) == "b")
        let result2 = machine.remove(1).call
        #expect(result2 == "a")
        let result3 = machine.remove(1).call
        #expect(result3 == nil)
        let result4 = try machine.open("c").id
        #expect(result4 == 3)
    }

    @Test("after the last call id the connection goes away, so new calls go to a new connection instead of trapping")
    func idsRunOut() throws {
        var machine = Machine(lastCallID: .max - 2)
        _ = machine.receivedSettings(initialWindowMessages: 0, maxConcurrentCalls: 0)
        let before = try machine.open("a")
        #expect(before.id == .max - 1 && machine.isUsable)
        let last = try machine.open("b")
        #expect(last.id == .max && !machine.isUsable && machine.phase == .goingAway)
        #expect(throws: RPCError(.unavailable, "the connection is going away")) { try machine.open("c") }
        #expect(machine.lastCallID == .max)
        let (call, _) = machine.remove(.max)
        #expect(call == "b")
    }

    @Test("beyond the server's call limit callers wait for a slot, and an ending call lets the first one in")
    func slots() throws {
        var machine = Self.open(maxCalls: 2)
        let granted5 = machine.reserveSlot(1)
        #expect(granted5)
        _ = try machine.open("a")
        let granted6 = machine.reserveSlot(2)
        #expect(granted6)
        _ = try machine.open("b")
        let granted7 = machine.reserveSlot(3)
        #expect(!granted7)
        let granted8 = machine.reserveSlot(4)
        #expect(!granted8)
        #expect(machine.waitingForSlots == 2)
        let (call, ready) = machine.remove(1)
        #expect(call == "a" && ready == [3])
        #expect(machine.reserved == 1)
        _ = try machine.open("c")
        #expect(machine.reserved == 0)
        // A higher limit from the server lets the next waiter in at once.
        let result9 = machine.receivedSettings(initialWindowMessages: 0, maxConcurrentCalls: 3)
        #expect(result9 == [4])
    }

    @Test("GOAWAY lets slot waiters through to learn that no call starts here")
    func goAwayReleasesWaiters() throws {
        var machine = Self.open(maxCalls: 1)
        _ = try machine.open("a")
        let waiting = machine.reserveSlot(5)
        #expect(!waiting)
        let (refused, waiters) = machine.receivedGoAway(lastCallID: 1)
        #expect(refused.isEmpty && waiters == [5])
        #expect(throws: RPCError(.unavailable, "the connection is going away")) { try machine.open("b") }
        #expect(machine.reserved == 0)
    }

    @Test("GOAWAY fails the calls above its last call id, keeps the others, and refuses new calls")
    func goAway() throws {
        var machine = Self.open(maxCalls: 10)
        for name in ["a", "b", "c", "d"] { _ = try machine.open(name) }
        let (refused, waiters) = machine.receivedGoAway(lastCallID: 2)
        #expect(refused == ["c", "d"])
        #expect(waiters.isEmpty)
        #expect(machine.phase == .goingAway && !machine.isUsable)
        #expect(machine.call(1) == "a" && machine.call(2) == "b")
        #expect(throws: RPCError(.unavailable, "the connection is going away")) { try machine.open("e") }
    }

    @Test("a failure fails every call and waiter once, keeps the first error, and lets waiters through to see it")
    func failure() throws {
        var machine = Self.open(maxCalls: 1)
        _ = try machine.open("a")
        let granted11 = machine.reserveSlot(7)
        #expect(!granted11)
        let first = RPCError(.unavailable, "the server closed the connection")
        let (calls, waiters) = machine.fail(first)
        #expect(calls == ["a"] && waiters == [7])
        #expect(machine.phase == .failed && !machine.isUsable)
        let again = machine.fail(RPCError(.unavailable, "the client closed the connection"))
        #expect(again.calls.isEmpty && again.waiters.isEmpty)
        #expect(machine.failure == first)
        // After a failure a slot is always "free": the caller proceeds and `open` throws the failure.
        let granted12 = machine.reserveSlot(8)
        #expect(granted12)
        #expect(throws: first) { try machine.open("b") }
        let noneRefused = machine.receivedGoAway(lastCallID: 0).refused.isEmpty
        #expect(noneRefused)
        #expect(machine.phase == .failed)
    }
}

/// `ClientOutboundQueue`: who sends, what is sent, and when callers wait.
@Suite("Client outbound queue")
struct ClientOutboundQueueTests {
    @Test("the first caller to flush sends everything queued, including what others queue while it sends")
    func oneFlusher() {
        var queue = ClientOutboundQueue(maxQueuedBytes: 8)
        var batch: [UInt8] = []
        let nothing = queue.startFlush(into: &batch)
        #expect(!nothing, "nothing queued: no flush")
        queue.enqueue { $0 += [1, 2] }
        let started = queue.startFlush(into: &batch)
        #expect(started && batch == [1, 2] && queue.flushing)
        var other: [UInt8] = []
        queue.enqueue { $0 += [3] }
        let second = queue.startFlush(into: &other)
        #expect(!second, "a second caller leaves it to the flusher")
        let more = queue.continueFlush(into: &batch)
        #expect(more && batch == [3])
        let done = !queue.continueFlush(into: &batch)
        #expect(done && batch.isEmpty && !queue.flushing)
    }

    @Test("callers wait only while someone sends and the queue is at its limit")
    func backpressure() {
        var queue = ClientOutboundQueue(maxQueuedBytes: 4)
        queue.enqueue { $0 += [0, 0, 0, 0, 0] }
        #expect(!queue.mustWait, "nobody is sending: the caller will")
        var batch: [UInt8] = []
        _ = queue.startFlush(into: &batch)
        queue.enqueue { $0 += [1, 1, 1, 1] }
        #expect(queue.mustWait)
        queue.abandonFlush()
        #expect(!queue.mustWait && queue.bytes.isEmpty && !queue.flushing)
    }

    @Test("one deferred send at a time: the first request starts it, later ones ride along until it begins")
    func deferredSend() {
        var queue = ClientOutboundQueue(maxQueuedBytes: 8)
        let first = queue.requestDeferredSend()
        let second = queue.requestDeferredSend()
        #expect(first && !second)
        queue.deferredSendStarted()
        let afterStart = queue.requestDeferredSend()
        #expect(afterStart)
    }
}
