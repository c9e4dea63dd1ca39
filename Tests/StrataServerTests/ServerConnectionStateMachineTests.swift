@testable import StrataServer
import StrataWire
import Testing

/// `ServerConnectionStateMachine`, one transition at a time: each test puts
/// the machine in a phase and checks the actions an event produces.
@Suite("Server connection state machine")
struct ServerConnectionStateMachineTests {
    typealias Machine = ServerConnectionStateMachine

    private static func open(maxCalls: Int = 2) -> Machine {
        var machine = Machine(limits: .init(maxConcurrentCalls: maxCalls, maxWriteBufferBytes: 64))
        _ = machine.receivedSettings()
        return machine
    }

    @Test("SETTINGS opens the connection and is acknowledged; the handshake timer then does nothing")
    func settingsOpen() {
        var machine = Machine(limits: .init(maxConcurrentCalls: 2, maxWriteBufferBytes: 64))
        #expect(machine.phase == .awaitingSettings)
        #expect(machine.callSlot(openCalls: 0) != .granted)
        #expect(machine.receivedSettings() == [.sendSettingsAck])
        #expect(machine.phase == .open && machine.settingsReceived)
        #expect(machine.handshakeTimerFired(limit: .seconds(10)).isEmpty)
        #expect(machine.callSlot(openCalls: 1) == .granted)
    }

    @Test("no SETTINGS in time: GOAWAY DEADLINE_EXCEEDED, calls dropped, closed once the GOAWAY is written")
    func handshakeTimeout() {
        var machine = Machine(limits: .init(maxConcurrentCalls: 2, maxWriteBufferBytes: 64))
        #expect(machine.handshakeTimerFired(limit: .seconds(10)) == [
            .sendGoAway(code: .deadlineExceeded, reason: "no preface and SETTINGS within 10.0 seconds"), .abandonCalls,
        ])
        #expect(machine.phase == .closingAfterFlush)
        #expect(machine.flushed(pendingBytes: 20).isEmpty)
        #expect(machine.flushed(pendingBytes: 0) == [.close(reason: "closed after GOAWAY", isError: false, resumeReadsFirst: false)])
        #expect(machine.isClosed && !machine.mayRead)
    }

    @Test("the idle timer sends GOAWAY OK only with no call open and after the whole idle time")
    func idle() {
        var machine = Self.open()
        #expect(machine.idleTimerFired(openCalls: 1, idleFor: .seconds(600), limit: .seconds(300)).isEmpty)
        #expect(machine.idleTimerFired(openCalls: 0, idleFor: .seconds(299), limit: .seconds(300)).isEmpty)
        #expect(machine.idleTimerFired(openCalls: 0, idleFor: .seconds(300), limit: .seconds(300)) == [
            .sendGoAway(code: .ok, reason: "idle for 300.0 seconds"), .abandonCalls,
        ])
    }

    @Test("graceful shutdown: GOAWAY OK, subscriptions end, new calls are refused, the connection closes after the last call's bytes")
    func shutdown() {
        var machine = Self.open()
        let actions = machine.shutdownRequested()
        #expect(actions.count == 2)
        #expect(actions.first == .sendGoAway(code: .ok, reason: "server shutting down"))
        guard case .endOpenEndedCalls(let error) = actions.last else {
            Issue.record("no endOpenEndedCalls: \(actions)")
            return
        }
        #expect(error.code == .unavailable)
        #expect(machine.shutdownRequested().isEmpty, "a second shutdown sends nothing")
        guard case .refused(let refusal) = machine.callSlot(openCalls: 1) else {
            Issue.record("a call was admitted while going away")
            return
        }
        #expect(refusal.code == .unavailable)
        #expect(machine.callsChanged(openCalls: 1, pendingBytes: 0).isEmpty)
        #expect(machine.callsChanged(openCalls: 0, pendingBytes: 30).isEmpty)
        #expect(machine.phase == .closingAfterFlush)
        #expect(machine.flushed(pendingBytes: 0) == [.close(reason: "closed after GOAWAY", isError: false, resumeReadsFirst: false)])
    }

    @Test("a shutdown with no call and nothing queued closes at once")
    func shutdownIdle() {
        var machine = Self.open()
        _ = machine.shutdownRequested()
        #expect(machine.callsChanged(openCalls: 0, pendingBytes: 0) == [.close(reason: "closed after GOAWAY", isError: false, resumeReadsFirst: false)])
    }

    @Test("a protocol error sends one GOAWAY, however many faults follow")
    func oneGoAwayPerError() {
        var machine = Self.open()
        #expect(machine.connectionError(.resourceExhausted, "frame too large") == [
            .sendGoAway(code: .resourceExhausted, reason: "frame too large"), .abandonCalls,
        ])
        #expect(machine.connectionError(.resourceExhausted, "frame too large").isEmpty)
        #expect(machine.connectionError(.invalidArgument, "another fault").isEmpty)
        #expect(machine.receivedGoAway().isEmpty)
    }

    @Test("an error during a graceful shutdown still sends its GOAWAY and drops the calls")
    func errorWhileGoingAway() {
        var machine = Self.open()
        _ = machine.shutdownRequested()
        #expect(machine.connectionError(.invalidArgument, "bad frame") == [
            .sendGoAway(code: .invalidArgument, reason: "bad frame"), .abandonCalls,
        ])
    }

    @Test("the client's GOAWAY ends its subscriptions with CANCELLED and refuses new calls")
    func clientGoAway() {
        var machine = Self.open()
        let actions = machine.receivedGoAway()
        guard actions.count == 1, case .endOpenEndedCalls(let error) = actions[0] else {
            Issue.record("unexpected actions \(actions)")
            return
        }
        #expect(error.code == .cancelled)
        #expect(machine.isGoingAway)
        #expect(machine.callSlot(openCalls: 0) != .granted)
        #expect(machine.callsChanged(openCalls: 0, pendingBytes: 0).count == 1)
        #expect(machine.isClosed)
    }

    @Test("calls beyond the limit are refused with RESOURCE_EXHAUSTED")
    func callLimit() {
        let machine = Self.open(maxCalls: 2)
        #expect(machine.callSlot(openCalls: 1) == .granted)
        guard case .refused(let error) = machine.callSlot(openCalls: 2) else {
            Issue.record("a call over the limit was admitted")
            return
        }
        #expect(error.code == .resourceExhausted)
        #expect(error.message.contains("more than 2 concurrent calls"))
    }

    @Test("reads stop at the write-buffer limit, resume at half of it, and a close while stopped resumes them first")
    func backpressure() {
        var machine = Self.open()
        #expect(machine.flushed(pendingBytes: 63).isEmpty)
        #expect(machine.flushed(pendingBytes: 64) == [.suspendReads])
        #expect(!machine.mayRead)
        #expect(machine.flushed(pendingBytes: 100).isEmpty)
        #expect(machine.flushed(pendingBytes: 33).isEmpty)
        #expect(machine.flushed(pendingBytes: 32) == [.resumeReads])
        #expect(machine.mayRead)
        #expect(machine.flushed(pendingBytes: 70) == [.suspendReads])
        #expect(machine.close(reason: "peer closed the connection", isError: false) == [
            .close(reason: "peer closed the connection", isError: false, resumeReadsFirst: true),
        ])
    }

    @Test("closed is final: no event produces an action and no call is admitted")
    func closedIsFinal() {
        var machine = Self.open()
        _ = machine.close(reason: "recv: connection reset", isError: true)
        #expect(machine.close(reason: "again", isError: false).isEmpty)
        #expect(machine.receivedSettings().isEmpty)
        #expect(machine.connectionError(.internal, "late").isEmpty)
        #expect(machine.shutdownRequested().isEmpty)
        #expect(machine.receivedGoAway().isEmpty)
        #expect(machine.idleTimerFired(openCalls: 0, idleFor: .seconds(1000), limit: .seconds(1)).isEmpty)
        #expect(machine.flushed(pendingBytes: 0).isEmpty)
        #expect(machine.callsChanged(openCalls: 0, pendingBytes: 0).isEmpty)
        #expect(machine.callSlot(openCalls: 0) != .granted)
    }
}
