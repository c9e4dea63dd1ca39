import Testing
@testable import StrataWire

@Suite("Frame rules")
struct FrameRulesTests {
    func check(_ frame: Frame, _ role: ConnectionRole, handshake: Bool = true, open: Bool = false, last: UInt32 = 4) -> FrameVerdict {
        FrameRules.check(frame, role: role, handshakeComplete: handshake, callIsOpen: open, lastCallID: last)
    }

    func isError(_ verdict: FrameVerdict) -> Bool {
        if case .connectionError(.invalidArgument, _) = verdict { return true }
        return false
    }

    @Test("before the handshake only a non-ACK SETTINGS on call 0 is accepted")
    func handshake() {
        #expect(check(Frame(type: .settings), .server, handshake: false) == .accept)
        #expect(isError(check(Frame(type: .settings, flags: .ack), .server, handshake: false)))
        #expect(isError(check(Frame(type: .headers, callID: 5), .server, handshake: false)))
        #expect(isError(check(Frame(type: .ping, payload: [0, 0, 0, 0, 0, 0, 0, 0]), .client, handshake: false)))
    }

    @Test("a refused first frame is named for what is wrong with it")
    func handshakeMessages() {
        #expect(check(Frame(type: .settings, callID: 7), .server, handshake: false)
            == .connectionError(.invalidArgument, "SETTINGS must use call id 0, not 7"))
        #expect(check(Frame(type: .settings, flags: .ack), .server, handshake: false)
            == .connectionError(.invalidArgument, "the first frame after the preface must be the peer's own SETTINGS, not an ACK"))
        #expect(check(Frame(type: .headers, callID: 5), .server, handshake: false)
            == .connectionError(.invalidArgument, "the first frame after the preface must be SETTINGS, not HEADERS"))
    }

    @Test("call ids must increase; frames for ended calls are ignored, for unopened calls refused")
    func callIDs() {
        #expect(check(Frame(type: .headers, callID: 5), .server) == .accept)
        #expect(isError(check(Frame(type: .headers, callID: 4), .server)))
        #expect(isError(check(Frame(type: .headers, callID: 0), .server, last: 0)))
        #expect(check(Frame(type: .message, callID: 3), .server, open: true) == .accept)
        #expect(check(Frame(type: .message, callID: 3), .server) == .ignore)
        #expect(isError(check(Frame(type: .message, callID: 9), .server)))
        #expect(check(Frame(type: .windowUpdate, callID: 2), .server) == .ignore)
        #expect(isError(check(Frame(type: .windowUpdate, callID: 7), .server)))
        #expect(check(Frame(type: .cancel, callID: 7), .server) == .ignore)
    }

    @Test("each side refuses the frames only the other side may send")
    func direction() {
        #expect(isError(check(Frame(type: .trailers, callID: 1), .server, open: true)))
        #expect(check(Frame(type: .trailers, callID: 1), .client, open: true) == .accept)
        #expect(check(Frame(type: .trailers, callID: 1), .client) == .ignore)
        #expect(isError(check(Frame(type: .headers, callID: 5), .client)))
        #expect(isError(check(Frame(type: .windowUpdate, callID: 1), .client, open: true)))
        #expect(isError(check(Frame(type: .cancel, callID: 1), .client, open: true)))
    }

    @Test("connection frames use call id 0; PING carries exactly 8 bytes")
    func connectionFrames() {
        for role in [ConnectionRole.server, .client] {
            #expect(isError(check(Frame(type: .settings, callID: 1), role)))
            #expect(isError(check(Frame(type: .goAway, callID: 1), role)))
            #expect(isError(check(Frame(type: .ping, payload: [1]), role)))
            #expect(isError(check(Frame(type: .ping, callID: 2, payload: [0, 0, 0, 0, 0, 0, 0, 0]), role)))
            #expect(check(Frame(type: .ping, payload: [0, 0, 0, 0, 0, 0, 0, 0]), role) == .accept)
            #expect(check(Frame(type: .goAway), role) == .accept)
        }
    }
}
