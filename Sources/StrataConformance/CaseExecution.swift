import Foundation
import StrataProto
import SwiftProtobuf

/// One run of one case: its connections and variables. A step failing
/// throws `StepFailure`; `run` turns it into the case's failure text.
final class CaseExecution {
    private let runner: ConformanceRunner
    /// The run's variables, plus those captured by this case's steps.
    private var variables: [String: String]
    private var connections: [String: WireConnection] = [:]

    struct StepFailure: Error { let reason: String }

    init(runner: ConformanceRunner, variables: [String: String]) {
        self.runner = runner
        self.variables = variables
    }

    /// nil on success, else "step N (kind): reason". The case's connections
    /// are closed (politely) when it ends.
    func run(_ conformanceCase: ConformanceCase) -> String? {
        defer {
            for connection in connections.values { connection.finish(timeout: .seconds(2)) }
            connections.removeAll()
        }
        for (index, step) in conformanceCase.steps.enumerated() {
            do {
                try perform(step)
            } catch let failure as StepFailure {
                return "step \(index + 1) (\(step.kind.rawValue)\(summary(step))): \(failure.reason)"
            } catch {
                return "step \(index + 1) (\(step.kind.rawValue)): \(error)"
            }
        }
        return nil
    }

    private func summary(_ step: ConformanceStep) -> String {
        var parts: [String] = []
        switch step {
        case .send(let s):
            if let frame = s.frame { parts.append(frame) }
            if let call = s.call { parts.append("call \(call)") }
        case .call(let c):
            parts.append(substitute(c.method))
            if let id = c.id { parts.append("call \(id)") }
        case .expect(let e):
            if let frame = e.frame { parts.append(frame) }
            if let call = e.call { parts.append("call \(call)") }
        case .collect(let c): parts.append("call \(c.call)")
        case .grant(let g): parts.append("call \(g.call)")
        case .cancel(let c): parts.append("call \(c.call)")
        case .repeat(let r): parts.append(substitute(r.call.method))
        case .connect, .silence: break
        }
        return parts.isEmpty ? "" : " " + parts.joined(separator: " ")
    }

    // MARK: - Variables

    /// Replaces the variables in `text`; "$base64_zeros(N)" becomes N zero
    /// bytes in base64, for payloads too large to write into a case file
    /// (filling a quota).
    private func substitute(_ text: String) -> String {
        if text.hasPrefix("$base64_zeros("), text.hasSuffix(")"),
           let count = Int(text.dropFirst("$base64_zeros(".count).dropLast()), count >= 0, count <= 16 << 20 {
            return Data(count: count).base64EncodedString()
        }
        guard text.contains("$") else { return text }
        var out = text
        for (name, replacement) in variables.sorted(by: { $0.key.count > $1.key.count }) where out.contains(name) {
            out = out.replacingOccurrences(of: name, with: replacement)
        }
        return out
    }

    private func substitute(_ text: String?) -> String? { text.map { substitute($0) } }

    private func substitute(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string(let text): return .string(substitute(text))
        case .array(let array): return .array(array.map { substitute($0) })
        case .object(let object):
            // {"$repeat": N, "item": X}: an array of N copies of X (10,001
            // events for a limit, without writing them out).
            if object.count == 2, let item = object["item"], case .integer(let count)? = object["$repeat"],
               (0 ... 100_000).contains(count) {
                return .array([JSONValue](repeating: substitute(item), count: Int(count)))
            }
            return .object(object.mapValues { substitute($0) })
        default: return value
        }
    }

    // MARK: - Steps

    private func connection(_ name: String?) throws -> WireConnection {
        let name = substitute(name) ?? "main"
        guard let connection = connections[name] else { throw StepFailure(reason: "no connection '\(name)': add a connect step") }
        return connection
    }

    private func timeout(_ milliseconds: Int?) -> Duration {
        milliseconds.map { .milliseconds($0) } ?? runner.timeout
    }

    private func perform(_ step: ConformanceStep) throws {
        switch step {
        case .connect(let s): try connect(s)
        case .send(let s): try send(s)
        case .call(let s): try call(s)
        case .expect(let s): try expect(s)
        case .collect(let s): try collect(s)
        case .silence(let s): try silence(s)
        case .grant(let s):
            let update = Strata_V1_WindowUpdate.with { $0.messages = s.messages ?? 1 }
            try connection(s.conn).send(WireFrame(type: WireFrame.windowUpdate, flags: 0, callID: s.call, payload: update.serializedBytes()).encoded)
        case .repeat(let s): try repeatCall(s)
        case .cancel(let s):
            try connection(s.conn).send(WireFrame(type: WireFrame.cancel, flags: 0, callID: s.call, payload: []).encoded)
        }
    }

    /// Opens a connection; with `handshake` (the default) sends the preface
    /// and SETTINGS and reads the server's preface and SETTINGS.
    private func connect(_ step: ConformanceStep.Connect) throws {
        let name = substitute(step.conn) ?? "main"
        let connection: WireConnection
        do {
            connection = try WireConnection(host: runner.host, port: runner.port)
        } catch {
            throw StepFailure(reason: "\(error)")
        }
        connections[name] = connection
        guard step.handshake ?? true else { return }
        var settings = Strata_V1_Settings()
        if let window = step.initialWindowMessages { settings.initialWindowMessages = window }
        connection.send(WireConnection.preface + WireFrame(type: WireFrame.settings, flags: 0, callID: 0, payload: try settings.serializedBytes()).encoded)
        guard case .preface(let preface) = connection.next(timeout: runner.timeout) else {
            throw StepFailure(reason: "the server sent no preface")
        }
        guard preface == WireConnection.preface else { throw StepFailure(reason: "the server's preface is \(hex(preface)), not \(hex(WireConnection.preface))") }
        let settingsFrame = try nextFrame(connection, type: WireFrame.settings, call: nil, timeout: runner.timeout, expecting: "SETTINGS")
        guard settingsFrame.flags == 0 else { throw StepFailure(reason: "the server's first SETTINGS has flags 0x\(String(settingsFrame.flags, radix: 16))") }
        connection.send(WireFrame(type: WireFrame.settings, flags: 1, callID: 0, payload: []).encoded)  // §1: the client ACKs too
    }

    private func send(_ step: ConformanceStep.Send) throws {
        let connection = try connection(step.conn)
        if let raw = substitute(step.raw) {
            connection.send(try bytes(hex: raw))
            return
        }
        if step.preface == true {
            connection.send(WireConnection.preface)
            return
        }
        guard let name = step.frame, let type = WireFrame.typeNames[name] ?? step.typeByte else {
            throw StepFailure(reason: "send needs raw, preface or frame")
        }
        connection.send(WireFrame(type: type, flags: try flags(step.flags), callID: step.call ?? 0,
                                  payload: try payload(step.message, hex: step.payloadHex)).encoded)
    }

    /// HEADERS (method, tenant, key, deadline) then the request MESSAGE.
    private func call(_ step: ConformanceStep.Call, id assigned: UInt32? = nil, conn: String? = nil) throws {
        let connection = try connection(conn ?? step.conn)
        guard let id = assigned ?? step.id else { throw StepFailure(reason: "call needs id") }
        var headers = Strata_V1_CallHeaders()
        headers.method = substitute(step.method)
        switch step.tenant {
        case .useDefault: headers.metadata["tenant"] = variables["$tenant"] ?? ""
        case .omit: break
        case .value(let tenant): headers.metadata["tenant"] = substitute(tenant)
        }
        switch step.key {
        case .useDefault: headers.metadata["authorization"] = "Bearer " + (variables["$admin_key"] ?? "")
        case .omit: break
        case .value(let key): headers.metadata["authorization"] = "Bearer " + substitute(key)
        }
        for (key, value) in step.metadata ?? [:] { headers.metadata[substitute(key)] = substitute(value) }
        headers.timeoutMs = step.timeoutMs ?? 0
        var bytes = WireFrame(type: WireFrame.headers, flags: 0, callID: id, payload: try headers.serializedBytes()).encoded
        if step.request != nil || step.requestHex != nil {
            let body = try payload(step.request, hex: step.requestHex)
            bytes += WireFrame(type: WireFrame.message, flags: step.endStream ?? true ? 1 : 0, callID: id, payload: body).encoded
        }
        connection.send(bytes)
    }

    /// Waits for a frame matching `frame` (and `call`), checking what the
    /// case asks of it. Frames of other calls wait for later steps; a
    /// SETTINGS ACK is skipped unless expected; anything else fails.
    private func expect(_ step: ConformanceStep.Expect) throws {
        let connection = try connection(step.conn)
        let wait = timeout(step.timeoutMs)
        if step.closed == true {
            let deadline = ContinuousClock.now + wait
            while true {
                switch connection.next(timeout: deadline - .now) {
                case .closed: return
                case .timedOut: throw StepFailure(reason: "the connection is still open after \(wait)")
                case .frame(let frame) where frame.type == WireFrame.settings && frame.flags & 1 == 1:
                    continue
                case .frame(let frame) where frame.type == WireFrame.goAway && (try? Strata_V1_GoAway(serializedBytes: frame.payload))?.code == 0:
                    continue  // a graceful GOAWAY may precede the close
                case .frame(let frame): throw StepFailure(reason: "expected the connection to close, got \(frame)")
                case .preface: continue
                }
            }
        }
        if step.preface == true {
            guard case .preface(let preface) = connection.next(timeout: wait) else { throw StepFailure(reason: "no preface") }
            guard preface == WireConnection.preface else { throw StepFailure(reason: "preface \(hex(preface))") }
            return
        }
        guard let name = step.frame, let type = WireFrame.typeNames[name] else {
            throw StepFailure(reason: "expect needs frame, preface or closed")
        }
        let check = FrameCheck(flags: step.flags, payloadHex: substitute(step.payloadHex), code: step.code,
                               messageContains: substitute(step.messageContains), detail: step.detail, message: step.message)
        // "skip": frames of this type that do not match are passed over (a
        // stream may batch or split messages as the protocol allows).
        let deadline = ContinuousClock.now + wait
        var skipped = 0
        while true {
            let frame = try nextFrame(connection, type: type, call: step.call, timeout: deadline - .now, expecting: name)
            do {
                try self.check(frame, check)
                return
            } catch let failure as StepFailure where step.skip == true {
                skipped += 1
                if ContinuousClock.now >= deadline { throw StepFailure(reason: "\(skipped) frame(s) did not match; the last: \(failure.reason)") }
            }
        }
    }

    private func nextFrame(_ connection: WireConnection, type: UInt8, call: UInt32?, timeout: Duration, expecting: String) throws -> WireFrame {
        let matches = { (frame: WireFrame) in frame.type == type && (call == nil || frame.callID == call) }
        // Frames set aside for this call come back in the order they came:
        // the first must be the one expected (TRAILERS before a MESSAGE, or
        // a second MESSAGE on a unary call, is a failure).
        if let call, let index = connection.pending.firstIndex(where: { $0.callID == call }) {
            let frame = connection.pending.remove(at: index)
            guard matches(frame) else { throw StepFailure(reason: "expected \(expecting) for call \(call), got \(describe(frame))") }
            return frame
        }
        if call == nil, let index = connection.pending.firstIndex(where: matches) { return connection.pending.remove(at: index) }
        let deadline = ContinuousClock.now + timeout
        let what = expecting + (call.map { " for call \($0)" } ?? "")
        while true {
            switch connection.next(timeout: deadline - .now) {
            case .frame(let frame):
                if matches(frame) { return frame }
                if frame.type == WireFrame.settings && frame.flags & 1 == 1 { continue }  // SETTINGS ACK
                if let call, frame.callID != 0, frame.callID != call {
                    connection.pending.append(frame)
                    continue
                }
                throw StepFailure(reason: "expected \(what), got \(describe(frame))")
            case .preface: continue
            case .closed: throw StepFailure(reason: "the connection closed while waiting for \(what)")
            case .timedOut: throw StepFailure(reason: "no \(what) within \(timeout)")
            }
        }
    }

    /// What a received frame must hold (an `expect`, or the parts of a
    /// `collect` that apply to each message or to the trailers).
    private struct FrameCheck {
        var flags: [String]?
        var payloadHex: String?
        var code: String?
        var messageContains: String?
        var detail: JSONValue?
        var message: ConformanceStep.MessageCheck?
    }

    /// Checks flags, status code, message text, detail, payload and response fields.
    private func check(_ frame: WireFrame, _ check: FrameCheck) throws {
        if let expected = check.flags {
            let wanted = try flags(expected)
            guard frame.flags == wanted else { throw StepFailure(reason: "\(frame) has flags 0x\(String(frame.flags, radix: 16)), expected 0x\(String(wanted, radix: 16))") }
        }
        if let hexPayload = check.payloadHex {
            let wanted = try bytes(hex: hexPayload)
            guard frame.payload == wanted else { throw StepFailure(reason: "payload \(hex(frame.payload)), expected \(hex(wanted))") }
        }
        if frame.type == WireFrame.trailers || frame.type == WireFrame.goAway {
            let (code, text, detail): (UInt32, String, JSONValue?)
            if frame.type == WireFrame.trailers {
                guard let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) else {
                    throw StepFailure(reason: "TRAILERS payload does not decode as strata.v1.Trailers")
                }
                code = trailers.code
                text = trailers.message
                detail = trailers.hasDetail ? try? json(trailers.detail) : nil
            } else {
                guard let goAway = try? Strata_V1_GoAway(serializedBytes: frame.payload) else {
                    throw StepFailure(reason: "GOAWAY payload does not decode as strata.v1.GoAway")
                }
                (code, text, detail) = (goAway.code, goAway.reason, nil)
            }
            if let name = check.code {
                guard let wanted = ConformanceRunner.statusCodes[name] else { throw StepFailure(reason: "unknown status name \(name)") }
                guard code == wanted else {
                    throw StepFailure(reason: "status \(ConformanceRunner.statusName(code)) (\"\(text)\"), expected \(name)")
                }
            }
            if let fragment = check.messageContains, !text.contains(fragment) {
                throw StepFailure(reason: "message \"\(text)\" does not contain \"\(fragment)\"")
            }
            if let wanted = check.detail.map({ substitute($0) }) {
                guard let detail else { throw StepFailure(reason: "no detail; expected \(wanted.description)") }
                if let mismatch = JSONValue.mismatch(detail, wanted, path: "detail") { throw StepFailure(reason: mismatch) }
            }
        }
        if let message = check.message {
            guard let type = MessageRegistry.types[message.type] else {
                throw StepFailure(reason: "message needs a known type, not \(message.type)")
            }
            let decoded: any SwiftProtobuf.Message
            do {
                decoded = try type.init(serializedBytes: frame.payload)
            } catch {
                throw StepFailure(reason: "the payload does not decode as \(message.type): \(error)")
            }
            let actual = try json(decoded)
            if let fields = message.fields.map({ substitute($0) }), let mismatch = JSONValue.mismatch(actual, fields, path: message.type) {
                throw StepFailure(reason: mismatch)
            }
            // "capture": {"$name": "path.to.field"} keeps a response value
            // for later steps (a new key's id and secret, a position).
            for (name, path) in message.capture ?? [:] {
                var value: JSONValue? = actual
                for component in path.split(separator: ".") { value = value?[String(component)] }
                guard let text = value?.text else { throw StepFailure(reason: "cannot capture \(path): \(message.type) has no such field") }
                variables[name] = text
            }
        }
    }

    /// MESSAGE frames of `call` until its TRAILERS: counts, each message's
    /// fields and the final status.
    private func collect(_ step: ConformanceStep.Collect) throws {
        let connection = try connection(step.conn)
        let call = step.call
        var messages: [WireFrame] = []
        let wait = timeout(step.timeoutMs)
        let deadline = ContinuousClock.now + wait
        var trailers: WireFrame?
        while trailers == nil {
            let frame: WireFrame
            if let index = connection.pending.firstIndex(where: { $0.callID == call }) {
                frame = connection.pending.remove(at: index)
            } else {
                switch connection.next(timeout: deadline - .now) {
                case .frame(let next): frame = next
                case .preface: continue
                case .closed: throw StepFailure(reason: "the connection closed after \(messages.count) message(s), before TRAILERS")
                case .timedOut: throw StepFailure(reason: "no TRAILERS within \(wait) after \(messages.count) message(s)")
                }
            }
            if frame.type == WireFrame.settings && frame.flags & 1 == 1 { continue }
            if frame.callID != call {
                if frame.callID == 0 { throw StepFailure(reason: "got \(describe(frame)) while collecting call \(call)") }
                connection.pending.append(frame)
                continue
            }
            switch frame.type {
            case WireFrame.message: messages.append(frame)
            case WireFrame.trailers: trailers = frame
            default: throw StepFailure(reason: "unexpected \(frame) while collecting")
            }
        }
        if let exact = step.messages, messages.count != exact {
            throw StepFailure(reason: "\(messages.count) message(s), expected \(exact)")
        }
        if let least = step.minMessages, messages.count < least {
            throw StepFailure(reason: "\(messages.count) message(s), expected at least \(least)")
        }
        if let most = step.maxMessages, messages.count > most {
            throw StepFailure(reason: "\(messages.count) message(s), expected at most \(most)")
        }
        if let each = step.each {
            for (index, message) in messages.enumerated() {
                do {
                    try check(message, FrameCheck(message: each))
                } catch let failure as StepFailure {
                    throw StepFailure(reason: "message \(index + 1): \(failure.reason)")
                }
            }
        }
        // "events": the events of every message, concatenated (a read may
        // split its pages as the server likes), against this array.
        if let wanted = step.events.map({ substitute($0) }) {
            guard let typeName = step.eventsOf, let type = MessageRegistry.types[typeName] else {
                throw StepFailure(reason: "events needs events_of, the message type")
            }
            var all: [JSONValue] = []
            for message in messages {
                let decoded = try type.init(serializedBytes: message.payload)
                if case .array(let events)? = try json(decoded)["events"] { all += events }
            }
            if let failure = JSONValue.mismatch(.array(all), wanted, path: "events") { throw StepFailure(reason: failure) }
        }
        if let last = step.last {
            guard let message = messages.last else { throw StepFailure(reason: "no message to check") }
            try check(message, FrameCheck(message: last))
        }
        if let trailers {
            try check(trailers, FrameCheck(code: step.code ?? "OK", messageContains: substitute(step.messageContains), detail: step.detail))
        }
    }

    /// The same unary call, up to `max` times with call ids from `first_id`
    /// (step 2), until one ends with `until` (a status name); every earlier
    /// one must end OK. For filling a quota.
    private func repeatCall(_ step: ConformanceStep.Repeat) throws {
        guard let wanted = ConformanceRunner.statusCodes[step.until] else {
            throw StepFailure(reason: "repeat needs until, a status name, not \(step.until)")
        }
        let connection = try connection(step.conn ?? step.call.conn)
        let most = step.max ?? 10
        guard most >= 1 else { throw StepFailure(reason: "repeat needs max of at least 1, not \(most)") }
        var id = step.firstId ?? 1
        for attempt in 1 ... most {
            try call(step.call, id: id, conn: step.conn ?? step.call.conn)
            var code: UInt32?
            let wait = timeout(step.timeoutMs)
            let deadline = ContinuousClock.now + wait
            while code == nil {
                switch connection.next(timeout: deadline - .now) {
                case .frame(let frame) where frame.callID == id && frame.type == WireFrame.trailers:
                    guard let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) else {
                        throw StepFailure(reason: "TRAILERS do not decode")
                    }
                    code = trailers.code
                case .frame(let frame) where frame.callID == id && frame.type == WireFrame.message:
                    continue  // the response of an attempt that succeeded
                case .frame(let frame) where frame.type == WireFrame.settings && frame.flags & 1 == 1:
                    continue
                case .frame(let frame):
                    throw StepFailure(reason: "unexpected \(describe(frame)) during attempt \(attempt)")
                case .preface: continue
                case .closed: throw StepFailure(reason: "the connection closed during attempt \(attempt)")
                case .timedOut: throw StepFailure(reason: "no TRAILERS for attempt \(attempt) within \(wait)")
                }
            }
            if code == wanted { return }
            guard code == 0 else {
                throw StepFailure(reason: "attempt \(attempt) ended \(ConformanceRunner.statusName(code ?? 0)), expected OK or \(step.until)")
            }
            id += 2
        }
        throw StepFailure(reason: "no \(step.until) after \(most) calls")
    }

    /// Nothing (but a SETTINGS ACK) arrives for `ms` milliseconds.
    private func silence(_ step: ConformanceStep.Silence) throws {
        let connection = try connection(step.conn)
        if let early = connection.pending.first {
            throw StepFailure(reason: "expected silence, but \(describe(early)) had already arrived")
        }
        let deadline = ContinuousClock.now + .milliseconds(step.ms ?? 200)
        while true {
            switch connection.next(timeout: deadline - .now) {
            case .timedOut: return
            case .frame(let frame) where frame.type == WireFrame.settings && frame.flags & 1 == 1: continue
            case .frame(let frame): throw StepFailure(reason: "expected silence, got \(describe(frame))")
            case .preface: continue
            case .closed: throw StepFailure(reason: "expected silence, the connection closed")
            }
        }
    }

    // MARK: - Helpers

    private func payload(_ message: ConformanceStep.Message?, hex text: String?) throws -> [UInt8] {
        if let text = substitute(text) { return try bytes(hex: text) }
        guard let message else { return [] }
        guard let type = MessageRegistry.types[message.type] else {
            throw StepFailure(reason: "message needs a type known to the runner, not \(message.type)")
        }
        let body = substitute(message.json ?? .object([:]))
        do {
            return try type.init(jsonUTF8Data: try body.data()).serializedBytes()
        } catch {
            throw StepFailure(reason: "the case's \(message.type) does not encode: \(error)")
        }
    }

    private func flags(_ names: [String]?) throws -> UInt8 {
        var out: UInt8 = 0
        for name in names ?? [] {
            switch name {
            case "ACK", "END_STREAM": out |= 1
            default:
                guard name.hasPrefix("0x"), let bits = UInt8(name.dropFirst(2), radix: 16) else { throw StepFailure(reason: "unknown flag \(name)") }
                out |= bits
            }
        }
        return out
    }

    private func bytes(hex text: String) throws -> [UInt8] {
        let digits = text.filter { !$0.isWhitespace }
        guard digits.count % 2 == 0 else { throw StepFailure(reason: "odd hex length") }
        var out: [UInt8] = []
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            guard let byte = UInt8(digits[index ..< next], radix: 16) else { throw StepFailure(reason: "bad hex \(digits[index ..< next])") }
            out.append(byte)
            index = next
        }
        return out
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.prefix(32).map { String(format: "%02x", $0) }.joined() + (bytes.count > 32 ? "…" : "") }

    private func describe(_ frame: WireFrame) -> String {
        if frame.type == WireFrame.trailers, let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) {
            return "TRAILERS(call \(frame.callID)) \(ConformanceRunner.statusName(trailers.code)) \"\(trailers.message)\""
        }
        if frame.type == WireFrame.goAway, let goAway = try? Strata_V1_GoAway(serializedBytes: frame.payload) {
            return "GOAWAY \(ConformanceRunner.statusName(goAway.code)) \"\(goAway.reason)\""
        }
        return frame.description
    }

    private func json(_ message: any SwiftProtobuf.Message) throws -> JSONValue {
        var options = JSONEncodingOptions()
        options.alwaysPrintInt64sAsNumbers = true
        return try JSONValue.parse(message.jsonUTF8Data(options: options))
    }
}
