import Foundation
import StrataClient
import StrataProto
import StrataServer
import StrataStorage
import StrataWire
import SwiftProtobuf
import StrataSupport

/// The fuzz targets (docs/reliability.md, "Fuzzing"). Each takes arbitrary
/// bytes and must neither crash nor break an invariant; a broken invariant
/// stops the process (`FuzzFailure.stop`), which libFuzzer reports as a
/// crash with the input that caused it. The same functions replay saved
/// inputs in the test suite (`Tests/StrataFuzzingTests`).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The incremental frame decoder: preface, headers, payload limits, any split of the input.
    case frames
    /// The call state machine (request, respond, grant, end) and the per-frame rules.
    case calls
    /// Request and response payloads: the hand-written decoders against swift-protobuf.
    case payloads
    /// The server connection's state machine fed random event sequences.
    case connections
    /// The client connection's state machine fed random event sequences.
    case clientConnections = "client-connections"

    public func run(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        FuzzFailure.$currentInput.withValue(bytes) {
            switch self {
            case .frames: FrameFuzzing.run(bytes)
            case .calls: CallFuzzing.run(bytes)
            case .payloads: PayloadFuzzing.run(bytes)
            case .connections: ConnectionFuzzing.run(bytes)
            case .clientConnections: ClientConnectionFuzzing.run(bytes)
            }
        }
    }
}

/// A broken invariant: printed, then the process aborts so the fuzzer (or
/// the test run) reports the input.
public enum FuzzFailure {
    /// The input being run, printed (in hex) when an invariant breaks
    /// outside libFuzzer, which saves it by itself.
    @TaskLocal static var currentInput: [UInt8] = []

    public static func stop(_ message: String) -> Never {
        let input = currentInput.prefix(1024).map { String(format: "%02x", $0) }.joined()
        FileHandle.standardError.write(Data("fuzz invariant broken: \(message)\ninput (hex): \(input)\n".utf8))
        abort()
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { stop(message()) }
    }
}

/// Reads the input as a stream of small decisions.
struct Choices {
    private let bytes: [UInt8]
    private(set) var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var isEmpty: Bool { offset >= bytes.count }
    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }
    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return offset < bytes.count ? Array(bytes[offset...]) : []
    }
}

enum FrameFuzzing {
    /// The first byte picks the options and the chunk sizes; the rest is fed
    /// to a decoder in those chunks. Every frame decoded must re-encode to
    /// the same bytes and respect the payload limit; the same input fed in
    /// one piece must give the same frames and the same error.
    static func run(_ input: [UInt8]) {
        var choices = Choices(input)
        let options = choices.byte()
        let expectPreface = options & 1 == 1
        let maxPayload: UInt32 = options & 2 == 2 ? 64 : 1 << 20
        let chunk = Int(options >> 2) + 1
        let stream = choices.rest()

        func decode(chunked: Bool) -> (frames: [Frame], error: String?) {
            var decoder = FrameDecoder(maxPayloadSize: maxPayload, expectPreface: expectPreface)
            var frames: [Frame] = []
            var start = 0
            while start < stream.count {
                let end = chunked ? min(stream.count, start + chunk) : stream.count
                decoder.append(stream[start ..< end])
                start = end
                while true {
                    do {
                        guard let frame = try decoder.next() else { break }
                        frames.append(frame)
                    } catch {
                        return (frames, "\(error)")
                    }
                }
            }
            return (frames, nil)
        }
        let split = decode(chunked: true)
        let whole = decode(chunked: false)
        FuzzFailure.check(split.frames == whole.frames, "frames differ with chunk size \(chunk)")
        FuzzFailure.check(split.error == whole.error, "errors differ with chunk size \(chunk): \(split.error ?? "-") / \(whole.error ?? "-")")
        for frame in split.frames {
            FuzzFailure.check(frame.payload.count <= Int(maxPayload), "a \(frame.payload.count)-byte payload passed a \(maxPayload)-byte limit")
            var again = FrameDecoder(maxPayloadSize: maxPayload, expectPreface: false)
            again.append(frame.encoded)
            let decoded = try? again.next()
            FuzzFailure.check(decoded == frame, "a decoded frame does not survive encoding")
        }
    }
}

enum CallFuzzing {
    /// Drives one call's state machine with the input's decisions and checks
    /// it against a model: never more responses than the credit granted
    /// (clamped at 2^30), nothing after the end, one response for a unary
    /// call. Then runs the per-frame rules on frames built from the rest.
    static func run(_ input: [UInt8]) {
        var choices = Choices(input)
        let streaming = choices.byte() & 1 == 1
        let window = Int(choices.byte() % 8)
        var call = CallLifecycle(kind: streaming ? .serverStreaming : .unary, initialWindow: window)
        var requested = false, ended = false
        var credit = streaming ? window : 1
        var responses = 0
        for _ in 0 ..< 64 where !choices.isEmpty {
            let operation = choices.byte()
            switch operation % 4 {
            case 0:
                let endStream = operation & 4 == 4
                do {
                    try call.request(endStream: endStream)
                    FuzzFailure.check(!ended && !requested && endStream, "a request was accepted after the end, twice or without END_STREAM")
                    requested = true
                } catch {
                    FuzzFailure.check(ended || requested || !endStream, "a valid request was refused: \(error)")
                }
            case 1:
                do {
                    try call.respond()
                    FuzzFailure.check(!ended && requested && credit > 0, "a response was allowed without a request or credit")
                    responses += 1
                    credit -= 1
                } catch {
                    FuzzFailure.check(ended || !requested || credit == 0, "a response within credit was refused: \(error)")
                }
            case 2:
                let grant = UInt32(choices.byte()) << (UInt32(operation >> 4) % 4 * 8)
                call.grant(grant)
                if streaming && !ended { credit = min(credit + Int(grant), 1 << 30) }
            default:
                call.end()
                ended = true
            }
            FuzzFailure.check(streaming || responses <= 1, "a unary call sent \(responses) responses")
        }
        // The per-frame rules: any frame, any state, never a crash.
        var rest = Choices(choices.rest())
        while !rest.isEmpty {
            let type = FrameType(rawValue: rest.byte() % 10) ?? .ping
            let flags = FrameFlags(rawValue: rest.byte())
            let callID = UInt32(rest.byte())
            let length = Int(rest.byte() % 16)
            let payload = (0 ..< length).map { _ in rest.byte() }
            let state = rest.byte()
            _ = FrameRules.check(Frame(type: type, flags: flags, callID: callID, payload: payload),
                                 role: state & 1 == 1 ? .server : .client, handshakeComplete: state & 2 == 2,
                                 callIsOpen: state & 4 == 4, lastCallID: UInt32(state >> 3))
        }
    }
}

enum PayloadFuzzing {
    /// The first byte picks the message; the rest is its payload. Whatever
    /// a hand-written decoder accepts, swift-protobuf must accept too and
    /// mean the same; every generated request type must decode or refuse
    /// without crashing.
    static func run(_ input: [UInt8]) {
        var choices = Choices(input)
        let which = choices.byte()
        let payload = choices.rest()
        switch which % 5 {
        case 0: callHeaders(payload)
        case 1: appendRequest(payload)
        case 2: appendMulti(payload)
        case 3: readResponse(payload)
        default: generated(payload, which: Int(which / 5))
        }
    }

    static func callHeaders(_ bytes: [UInt8]) {
        guard let ours = try? CallHeadersCodec.decode(bytes) else { return }
        guard let reference = try? Strata_V1_CallHeaders(serializedBytes: bytes) else {
            FuzzFailure.stop("CallHeadersCodec accepted headers swift-protobuf refuses")
        }
        FuzzFailure.check(ours.method == reference.method && ours.metadata == reference.metadata && ours.timeoutMs == reference.timeoutMs,
                          "CallHeadersCodec and swift-protobuf disagree")
    }

    static func appendRequest(_ bytes: [UInt8]) {
        guard let ours = try? AppendRequestDecoder.decode(bytes) else { return }
        guard let reference = try? Strata_V1_AppendRequest(serializedBytes: bytes) else {
            FuzzFailure.stop("AppendRequestDecoder accepted a request swift-protobuf refuses")
        }
        compare(ours, reference, "AppendRequest")
    }

    static func appendMulti(_ bytes: [UInt8]) {
        guard let ours = try? AppendRequestDecoder.decodeMulti(bytes) else { return }
        guard let reference = try? Strata_V1_AppendMultiRequest(serializedBytes: bytes) else {
            FuzzFailure.stop("AppendRequestDecoder.decodeMulti accepted a request swift-protobuf refuses")
        }
        FuzzFailure.check(ours.count == reference.writes.count, "AppendMulti write counts differ")
        for (write, request) in zip(ours, reference.writes) { compare(write, request, "AppendMulti") }
    }

    /// What the server stores for a request, as swift-protobuf reads it
    /// (event ids the server assigns are not compared).
    static func compare(_ ours: StreamWrite, _ reference: Strata_V1_AppendRequest, _ what: String) {
        FuzzFailure.check(ours.stream == reference.stream, "\(what): stream differs")
        FuzzFailure.check(ours.expected == ExpectedRevision(proto: reference.hasExpected ? reference.expected : nil),
                          "\(what): expected revision differs")
        FuzzFailure.check(ours.events.count == reference.events.count, "\(what): event counts differ")
        for (event, proto) in zip(ours.events, reference.events) {
            FuzzFailure.check(event.type == proto.type && event.data == proto.data && event.metadata == proto.metadata,
                              "\(what): an event differs")
            FuzzFailure.check(event.contentType == (proto.contentType.isEmpty ? "application/json" : proto.contentType),
                              "\(what): a content type differs")
            if !proto.id.isEmpty {
                FuzzFailure.check(proto.id.count == 16, "\(what): a \(proto.id.count)-byte event id was accepted")
                let id = proto.id.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
                FuzzFailure.check(event.id == id, "\(what): an event id differs")
            }
        }
    }

    static func readResponse(_ bytes: [UInt8]) {
        guard let ours = try? ReadResponseDecoder.decode(bytes) else { return }
        guard let reference = try? Strata_V1_ReadResponse(serializedBytes: bytes) else {
            FuzzFailure.stop("ReadResponseDecoder accepted a page swift-protobuf refuses")
        }
        FuzzFailure.check(ours.events.count == reference.events.count, "ReadResponse event counts differ")
        FuzzFailure.check(ours.endOfStream == reference.endOfStream, "ReadResponse: end of stream differs")
        for (event, proto) in zip(ours.events, reference.events) {
            FuzzFailure.check(event.stream == proto.stream && event.revision == proto.revision && event.position == proto.position
                              && event.type == proto.type && event.contentType == proto.contentType && event.data == proto.data
                              && event.metadata == proto.metadata && event.recordedAt == proto.recordedAt,
                              "ReadResponse: an event differs")
            if proto.id.count == 16 {
                let id = proto.id.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
                FuzzFailure.check(event.id == id, "ReadResponse: an event id differs")
            }
        }
    }

    /// Every request message a client can send: decode, and if it decodes,
    /// re-encode and decode again to the same message.
    static func generated(_ bytes: [UInt8], which: Int) {
        let types: [any SwiftProtobuf.Message.Type] = [
            Strata_V1_Settings.self, Strata_V1_WindowUpdate.self, Strata_V1_GoAway.self, Strata_V1_ReadRequest.self,
            Strata_V1_SubscribeRequest.self, Strata_V1_GetStreamInfoRequest.self, Strata_V1_DeleteStreamRequest.self,
            Strata_V1_CreateProjectionRequest.self, Strata_V1_GetProjectionStateRequest.self, Strata_V1_CreateTenantRequest.self,
            Strata_V1_DeleteTenantRequest.self, Strata_V1_BackupTenantRequest.self, Strata_V1_SaveSnapshotRequest.self,
            Strata_V1_LoadAggregateRequest.self, Strata_V1_RestoreTenantRequest.self, Strata_V1_UpdateProjectionRequest.self,
            Strata_V1_CreateKeyRequest.self, Strata_V1_GetPositionAtRequest.self, Strata_V1_Trailers.self,
        ]
        let type = types[which % types.count]
        guard let message = try? type.init(serializedBytes: bytes) else { return }
        guard let encoded: [UInt8] = try? message.serializedBytes(), let again = try? type.init(serializedBytes: encoded) else {
            FuzzFailure.stop("\(type) decoded but does not survive re-encoding")
        }
        FuzzFailure.check(message.isEqualTo(message: again), "\(type) changed through re-encoding")
    }
}

enum ConnectionFuzzing {
    typealias Machine = ServerConnectionStateMachine

    /// Feeds the server connection's state machine the input's events, with
    /// a model of the I/O around it (open calls, queued bytes), and checks:
    /// the phase only moves forward; closed is final (no action after it, no
    /// call admitted); the socket is closed once; no GOAWAY follows an error
    /// GOAWAY; reads are suspended and resumed alternately, and a close says
    /// whether they were suspended; a call is admitted only when open and
    /// under the limit; a connection closing after its GOAWAY closes once
    /// its bytes are flushed.
    static func run(_ input: [UInt8]) {
        var choices = Choices(input)
        let limits = Machine.Limits(maxConcurrentCalls: Int(choices.byte() % 4) + 1, maxWriteBufferBytes: 64)
        var machine = Machine(limits: limits)
        var openCalls = 0, pending = 0
        var suspended = false, closes = 0, errorGoAwaySent = false
        var rank = rankOf(machine.phase)

        func apply(_ actions: [Machine.Action], _ event: String) {
            for action in actions {
                FuzzFailure.check(closes == 0, "\(event): \(action) after the connection closed")
                switch action {
                case .sendGoAway(let code, _):
                    FuzzFailure.check(!errorGoAwaySent, "\(event): a GOAWAY after an error GOAWAY")
                    if code != .ok { errorGoAwaySent = true }
                    pending += 9
                case .sendSettingsAck:
                    pending += 9
                case .endOpenEndedCalls:
                    openCalls = openCalls / 2  // some of them were subscriptions
                case .abandonCalls:
                    openCalls = 0
                case .suspendReads:
                    FuzzFailure.check(!suspended, "\(event): reads suspended twice")
                    suspended = true
                case .resumeReads:
                    FuzzFailure.check(suspended, "\(event): reads resumed while running")
                    suspended = false
                case .close(_, _, let resumeFirst):
                    FuzzFailure.check(resumeFirst == suspended, "\(event): close says reads suspended \(resumeFirst), they were \(suspended)")
                    suspended = false
                    closes += 1
                }
            }
            let next = rankOf(machine.phase)
            FuzzFailure.check(next >= rank, "\(event): phase went back to \(machine.phase)")
            rank = next
            FuzzFailure.check(machine.isClosed == (closes == 1), "\(event): closed \(machine.isClosed) but \(closes) close action(s)")
            FuzzFailure.check(machine.readsSuspended == suspended, "\(event): reads suspended \(machine.readsSuspended), model \(suspended)")
        }

        for _ in 0 ..< 96 where !choices.isEmpty {
            let operation = choices.byte()
            switch operation % 11 {
            case 0: apply(machine.receivedSettings(), "settings")
            case 1: apply(machine.handshakeTimerFired(limit: .seconds(10)), "handshake timer")
            case 2: apply(machine.idleTimerFired(openCalls: openCalls, idleFor: .seconds(Int(operation >> 4)), limit: .seconds(8)), "idle timer")
            case 3: apply(machine.connectionError(.invalidArgument, "bad frame"), "connection error")
            case 4:
                apply(machine.shutdownRequested(), "shutdown")
                apply(machine.callsChanged(openCalls: openCalls, pendingBytes: pending), "shutdown, calls")
            case 5:
                apply(machine.receivedGoAway(), "client GOAWAY")
                apply(machine.callsChanged(openCalls: openCalls, pendingBytes: pending), "client GOAWAY, calls")
            case 6:
                let slot = machine.callSlot(openCalls: openCalls)
                if case .granted = slot {
                    FuzzFailure.check(machine.phase == .open && openCalls < limits.maxConcurrentCalls,
                                      "a call was admitted in \(machine.phase) with \(openCalls) open")
                    openCalls += 1
                } else {
                    FuzzFailure.check(machine.phase != .open || openCalls >= limits.maxConcurrentCalls,
                                      "a call was refused while open with \(openCalls) of \(limits.maxConcurrentCalls)")
                }
            case 7:
                if openCalls > 0 {
                    openCalls -= 1
                    if !machine.isClosed { pending += 9 }  // its trailers
                }
                apply(machine.callsChanged(openCalls: openCalls, pendingBytes: pending), "call ended")
            case 8:
                if !machine.isClosed { pending += Int(choices.byte()) }
                apply(machine.flushed(pendingBytes: pending), "queued")
            case 9:
                pending = max(0, pending - Int(choices.byte()) * (operation & 0x10 == 0 ? 1 : 8))
                let wasClosing = machine.phase == .closingAfterFlush
                apply(machine.flushed(pendingBytes: pending), "flushed")
                if wasClosing && pending == 0 {
                    FuzzFailure.check(machine.isClosed, "a connection closing after GOAWAY stayed open with nothing queued")
                }
            default:
                apply(machine.close(reason: "peer closed", isError: operation & 0x10 != 0), "close")
            }
            if machine.isClosed {
                FuzzFailure.check(machine.callSlot(openCalls: 0) != .granted, "a closed connection admitted a call")
                FuzzFailure.check(!machine.mayRead, "a closed connection still reads")
            }
        }
    }

    private static func rankOf(_ phase: Machine.Phase) -> Int {
        switch phase {
        case .awaitingSettings, .open: phase == .awaitingSettings ? 0 : 1
        case .goingAway: 2
        case .closingAfterFlush: 3
        case .closed: 4
        }
    }
}

enum ClientConnectionFuzzing {
    typealias Machine = ClientConnectionStateMachine<UInt32, Int>

    /// Feeds the client connection's state machine the input's events
    /// (slots reserved, calls opened and ended, SETTINGS, GOAWAY, failures)
    /// and checks: call ids only increase; a call opens only while usable;
    /// every call and every slot waiter comes back exactly once (ended,
    /// refused by GOAWAY or failed); a waiter is kept waiting only while no
    /// slot is free; a GOAWAY leaves no call above its last id; the first
    /// failure is kept and no call survives it.
    static func run(_ input: [UInt8]) {
        var choices = Choices(input)
        var machine = Machine()
        var open = Set<UInt32>(), waiting = Set<Int>(), done = Set<UInt32>()
        var lastID: UInt32 = 0, nextWaiter = 0
        var firstFailure: RPCError?

        func waitersBack(_ waiters: [Int], _ event: String) {
            for waiter in waiters {
                FuzzFailure.check(waiting.remove(waiter) != nil, "\(event): waiter \(waiter) came back twice or was never waiting")
            }
        }
        func callsBack(_ calls: [UInt32], _ event: String) {
            for call in calls {
                FuzzFailure.check(open.remove(call) != nil && done.insert(call).inserted, "\(event): call \(call) came back twice")
            }
        }

        for _ in 0 ..< 128 where !choices.isEmpty {
            let operation = choices.byte()
            switch operation % 7 {
            case 0:
                nextWaiter += 1
                if !machine.reserveSlot(nextWaiter) { waiting.insert(nextWaiter) }
            case 1:
                let usable = machine.isUsable
                do {
                    let (id, _) = try machine.open(lastID + 1)
                    FuzzFailure.check(usable, "a call opened on an unusable connection")
                    FuzzFailure.check(id == lastID + 1, "call id \(id) after \(lastID)")
                    lastID = id
                    open.insert(id)
                } catch {
                    FuzzFailure.check(!usable, "a usable connection refused a call: \(error)")
                }
            case 2:
                let id = open.isEmpty ? UInt32(choices.byte()) : open.sorted()[Int(choices.byte()) % open.count]
                let (call, ready) = machine.remove(id)
                if let call { callsBack([call], "end") }
                waitersBack(ready, "end")
            case 3:
                waitersBack(machine.receivedSettings(initialWindowMessages: UInt32(choices.byte()),
                                                     maxConcurrentCalls: UInt32(choices.byte() % 6)), "settings")
            case 4:
                let last = UInt32(choices.byte() % 16)
                let (refused, waiters) = machine.receivedGoAway(lastCallID: last)
                callsBack(refused, "goaway")
                waitersBack(waiters, "goaway")
                FuzzFailure.check(open.allSatisfy { $0 <= last }, "a call above GOAWAY's last id survived")
            case 5:
                let error = RPCError(.unavailable, "failure \(operation)")
                if firstFailure == nil { firstFailure = error }
                let (calls, waiters) = machine.fail(error)
                callsBack(calls, "fail")
                waitersBack(waiters, "fail")
                FuzzFailure.check(open.isEmpty && waiting.isEmpty, "calls or waiters survived a failure")
            default:
                break
            }
            FuzzFailure.check(machine.failure == firstFailure, "the failure changed from \(String(describing: firstFailure))")
            FuzzFailure.check(Set(machine.calls.keys) == open, "open calls \(machine.calls.keys.sorted()) against the model's \(open.sorted())")
            FuzzFailure.check(machine.waitingForSlots == waiting.count, "\(machine.waitingForSlots) waiting against the model's \(waiting.count)")
            if !waiting.isEmpty {
                FuzzFailure.check(machine.calls.count + machine.reserved >= machine.maxConcurrentCalls,
                                  "a waiter waits while a slot is free")
                FuzzFailure.check(machine.phase == .open || machine.phase == .awaitingSettings,
                                  "a waiter waits on a connection going away or failed")
            }
        }
    }
}
