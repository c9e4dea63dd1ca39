import Testing
@testable import StrataWire
import StrataTestSupport

@Suite("Call lifecycle")
struct CallLifecycleTests {
    @Test("a unary call takes one request with END_STREAM and allows one response")
    func unary() throws {
        var call = CallLifecycle(kind: .unary, initialWindow: 64)
        #expect(call.phase == .awaitingRequest)
        #expect(!call.mayRespond)
        #expect(throws: CallViolation.responseBeforeRequest) { try call.respond() }
        try call.request(endStream: true)
        #expect(call.mayRespond)
        try call.respond()
        #expect(!call.mayRespond)
        #expect(throws: CallViolation.secondUnaryResponse) { try call.respond() }
        #expect(throws: CallViolation.secondRequest) { try call.request(endStream: true) }
    }

    @Test("a request without END_STREAM is refused and leaves the call awaiting its request")
    func requestWithoutEndStream() throws {
        var call = CallLifecycle(kind: .serverStreaming, initialWindow: 4)
        #expect(throws: CallViolation.requestWithoutEndStream) { try call.request(endStream: false) }
        #expect(call.phase == .awaitingRequest)
    }

    @Test("a grant on a unary call changes nothing")
    func grantOnUnary() throws {
        var call = CallLifecycle(kind: .unary, initialWindow: 64)
        try call.request(endStream: true)
        call.grant(10)
        try call.respond()
        #expect(throws: CallViolation.secondUnaryResponse) { try call.respond() }
    }

    @Test("a streaming call spends its initial window, then what each grant adds")
    func streamingCredit() throws {
        var call = CallLifecycle(kind: .serverStreaming, initialWindow: 2)
        try call.request(endStream: true)
        try call.respond()
        try call.respond()
        #expect(!call.mayRespond)
        #expect(throws: CallViolation.responseWithoutCredit) { try call.respond() }
        call.grant(3)
        #expect(call.credit == 3)
        for _ in 0 ..< 3 { try call.respond() }
        #expect(throws: CallViolation.responseWithoutCredit) { try call.respond() }
    }

    @Test("a zero initial window waits for the first grant")
    func zeroWindow() throws {
        var call = CallLifecycle(kind: .serverStreaming, initialWindow: 0)
        try call.request(endStream: true)
        #expect(!call.mayRespond)
        call.grant(1)
        try call.respond()
    }

    @Test("credit is clamped at 2^30 however much is granted")
    func creditCap() throws {
        var call = CallLifecycle(kind: .serverStreaming, initialWindow: Int.max)
        #expect(call.credit == CallLifecycle.maxCredit)
        for _ in 0 ..< 4 { call.grant(UInt32.max) }
        #expect(call.credit == CallLifecycle.maxCredit)
        try call.request(endStream: true)
        try call.respond()
        call.grant(UInt32.max)
        #expect(call.credit == CallLifecycle.maxCredit)
    }

    @Test("an ended call refuses everything and ignores grants")
    func ended() throws {
        var call = CallLifecycle(kind: .serverStreaming, initialWindow: 8)
        try call.request(endStream: true)
        call.end()
        #expect(call.isEnded)
        #expect(!call.mayRespond)
        #expect(throws: CallViolation.callEnded) { try call.respond() }
        #expect(throws: CallViolation.callEnded) { try call.request(endStream: true) }
        call.grant(5)
        #expect(call.credit == 0)
    }

    /// Random operation sequences against a plain model: the number of
    /// responses ever accepted equals 1 (unary) or the window plus all grants
    /// (streaming), whatever the interleaving.
    @Test("random sequences never accept more responses than the credit granted", arguments: 0 ..< 20)
    func randomSequences(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for kind in [CallLifecycle.Kind.unary, .serverStreaming] {
            let window = Int(rng.next() % 5)
            var call = CallLifecycle(kind: kind, initialWindow: window)
            var requested = false
            var ended = false
            var allowed = kind == .unary ? 1 : window
            var accepted = 0
            for _ in 0 ..< 200 {
                switch rng.next() % 10 {
                case 0:
                    let endStream = rng.next() % 4 != 0
                    let ok = (try? call.request(endStream: endStream)) != nil
                    #expect(ok == (!ended && !requested && endStream))
                    if ok { requested = true }
                case 1:
                    let grant = UInt32(rng.next() % 3)
                    call.grant(grant)
                    if kind == .serverStreaming && !ended { allowed += Int(grant) }
                case 2 where rng.next() % 20 == 0:
                    call.end()
                    ended = true
                default:
                    let ok = (try? call.respond()) != nil
                    #expect(ok == (!ended && requested && accepted < allowed))
                    if ok { accepted += 1 }
                }
            }
            #expect(accepted <= allowed)
        }
    }
}
