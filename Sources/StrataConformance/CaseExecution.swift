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

    /// nil on success, else "step N (kind): reason".
    func run(_ conformanceCase: ConformanceCase) -> String? {
        for (index, text) in conformanceCase.steps.enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let (kind, body) = object.first.map({ ($0.key, $0.value) }) else {
                return "step \(index + 1): does not parse"
            }
            let arguments = substitute(body) as? [String: Any] ?? [:]
            do {
                try perform(kind, arguments)
            } catch let failure as StepFailure {
                return "step \(index + 1) (\(kind)\(summary(arguments))): \(failure.reason)"
            } catch {
                return "step \(index + 1) (\(kind)): \(error)"
            }
        }
        return nil
    }

    private func summary(_ arguments: [String: Any]) -> String {
        var parts: [String] = []
        if let frame = arguments["frame"] as? String { parts.append(frame) }
        if let method = arguments["method"] as? String { parts.append(method) }
        if let call = arguments["call"] ?? arguments["id"] { parts.append("call \(call)") }
        return parts.isEmpty ? "" : " " + parts.joined(separator: " ")
    }

    // MARK: - Variables

    private func substitute(_ value: Any) -> Any {
        switch value {
        case let text as String:
            // "$base64_zeros(N)": N zero bytes in base64, for payloads too
            // large to write into a case file (filling a quota).
            if text.hasPrefix("$base64_zeros("), text.hasSuffix(")"),
               let count = Int(text.dropFirst("$base64_zeros(".count).dropLast()), count >= 0, count <= 16 << 20 {
                return Data(count: count).base64EncodedString()
            }
            var out = text
            for (name, replacement) in variables.sorted(by: { $0.key.count > $1.key.count }) where out.contains(name) {
                out = out.replacingOccurrences(of: name, with: replacement)
            }
            return out
        case let array as [Any]: return array.map(substitute)
        case let object as [String: Any]:
            // {"$repeat": N, "item": X}: an array of N copies of X (10,001
            // events for a limit, without writing them out).
            if let count = object["$repeat"] as? Int, let item = object["item"], object.count == 2, (0 ... 100_000).contains(count) {
                let one = substitute(item)
                return [Any](repeating: one, count: count)
            }
            return object.mapValues(substitute)
        default: return value
        }
    }

    // MARK: - Steps

    private func connection(_ arguments: [String: Any]) throws -> WireConnection {
        let name = arguments["conn"] as? String ?? "main"
        guard let connection = connections[name] else { throw StepFailure(reason: "no connection '\(name)': add a connect step") }
        return connection
    }

    private func timeout(_ arguments: [String: Any]) -> Duration {
        (arguments["timeout_ms"] as? Int).map { .milliseconds($0) } ?? runner.timeout
    }

    private func perform(_ kind: String, _ a: [String: Any]) throws {
        switch StepKind(rawValue: kind) {
        case .connect: try connect(a)
        case .send: try send(a)
        case .call: try call(a)
        case .expect: try expect(a)
        case .collect: try collect(a)
        case .silence: try silence(a)
        case .grant:
            let update = Strata_V1_WindowUpdate.with { $0.messages = Self.u32(a["messages"], default: 1) }
            try connection(a).send(WireFrame(type: 6, flags: 0, callID: Self.u32(a["call"]), payload: update.serializedBytes()).encoded)
        case .repeat: try repeatCall(a)
        case .cancel:
            try connection(a).send(WireFrame(type: 5, flags: 0, callID: Self.u32(a["call"]), payload: []).encoded)
        case nil: throw StepFailure(reason: "unknown step kind")
        }
    }

    /// Opens a connection; with `handshake` (the default) sends the preface
    /// and SETTINGS and reads the server's preface and SETTINGS.
    private func connect(_ a: [String: Any]) throws {
        let name = a["conn"] as? String ?? "main"
        let connection: WireConnection
        do {
            connection = try WireConnection(host: runner.host, port: runner.port)
        } catch {
            throw StepFailure(reason: "\(error)")
        }
        connections[name] = connection
        guard a["handshake"] as? Bool ?? true else { return }
        var settings = Strata_V1_Settings()
        if let window = a["initial_window_messages"] as? Int { settings.initialWindowMessages = UInt32(window) }
        connection.send(WireConnection.preface + WireFrame(type: 1, flags: 0, callID: 0, payload: try settings.serializedBytes()).encoded)
        guard case .preface(let preface) = connection.next(timeout: runner.timeout) else {
            throw StepFailure(reason: "the server sent no preface")
        }
        guard preface == WireConnection.preface else { throw StepFailure(reason: "the server's preface is \(hex(preface)), not \(hex(WireConnection.preface))") }
        try expect(["frame": "SETTINGS", "flags": [String](), "conn": name])
        connection.send(WireFrame(type: 1, flags: 1, callID: 0, payload: []).encoded)  // §1: the client ACKs too
    }

    private func send(_ a: [String: Any]) throws {
        let connection = try connection(a)
        if let raw = a["raw"] as? String {
            connection.send(try bytes(hex: raw))
            return
        }
        if a["preface"] as? Bool == true {
            connection.send(WireConnection.preface)
            return
        }
        guard let name = a["frame"] as? String, let type = WireFrame.typeNames[name] ?? (a["type_byte"] as? Int).map(UInt8.init) else {
            throw StepFailure(reason: "send needs raw, preface or frame")
        }
        connection.send(WireFrame(type: type, flags: try flags(a["flags"]), callID: Self.u32(a["call"]),
                                  payload: try payload(a)).encoded)
    }

    /// HEADERS (method, tenant, key, deadline) then the request MESSAGE.
    private func call(_ a: [String: Any]) throws {
        let connection = try connection(a)
        guard let id = (a["id"] as? Int).flatMap(UInt32.init(exactly:)), let method = a["method"] as? String else {
            throw StepFailure(reason: "call needs id (0…2³²−1) and method")
        }
        var headers = Strata_V1_CallHeaders()
        headers.method = method
        if !(a["tenant"] is NSNull) { headers.metadata["tenant"] = a["tenant"] as? String ?? variables["$tenant"] ?? "" }
        if !(a["key"] is NSNull) { headers.metadata["authorization"] = "Bearer " + (a["key"] as? String ?? variables["$admin_key"] ?? "") }
        for (key, value) in a["metadata"] as? [String: String] ?? [:] { headers.metadata[key] = value }
        headers.timeoutMs = UInt64(max(0, a["timeout_ms"] as? Int ?? 0))
        var bytes = WireFrame(type: 2, flags: 0, callID: id, payload: try headers.serializedBytes()).encoded
        if a["request"] != nil || a["request_hex"] != nil {
            let body = try payload(["message": a["request"] as Any, "payload_hex": a["request_hex"] as Any])
            bytes += WireFrame(type: 3, flags: a["end_stream"] as? Bool ?? true ? 1 : 0, callID: id, payload: body).encoded
        }
        connection.send(bytes)
    }

    /// Waits for a frame matching `frame` (and `call`), checking what the
    /// case asks of it. Frames of other calls wait for later steps; a
    /// SETTINGS ACK is skipped unless expected; anything else fails.
    private func expect(_ a: [String: Any]) throws {
        let connection = try connection(a)
        let wait = timeout(a)
        if a["closed"] as? Bool == true {
            let deadline = ContinuousClock.now + wait
            while true {
                switch connection.next(timeout: deadline - .now) {
                case .closed: return
                case .timedOut: throw StepFailure(reason: "the connection is still open after \(wait)")
                case .frame(let frame) where frame.type == 1 && frame.flags & 1 == 1:
                    continue
                case .frame(let frame) where frame.type == 8 && (try? Strata_V1_GoAway(serializedBytes: frame.payload))?.code == 0:
                    continue  // a graceful GOAWAY may precede the close
                case .frame(let frame): throw StepFailure(reason: "expected the connection to close, got \(frame)")
                case .preface: continue
                }
            }
        }
        if a["preface"] as? Bool == true {
            guard case .preface(let preface) = connection.next(timeout: wait) else { throw StepFailure(reason: "no preface") }
            guard preface == WireConnection.preface else { throw StepFailure(reason: "preface \(hex(preface))") }
            return
        }
        guard let name = a["frame"] as? String, let type = WireFrame.typeNames[name] else {
            throw StepFailure(reason: "expect needs frame, preface or closed")
        }
        let call = a["call"] == nil ? nil : Self.u32(a["call"])
        // "skip": frames of this type that do not match are passed over (a
        // stream may batch or split messages as the protocol allows).
        let deadline = ContinuousClock.now + wait
        var skipped = 0
        while true {
            let frame = try nextFrame(connection, type: type, call: call, timeout: deadline - .now, expecting: name)
            do {
                try check(frame, a)
                return
            } catch let failure as StepFailure where a["skip"] as? Bool == true {
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
                if frame.type == 1 && frame.flags & 1 == 1 { continue }  // SETTINGS ACK
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

    /// Checks flags, status code, message text, detail, payload and response fields.
    private func check(_ frame: WireFrame, _ a: [String: Any]) throws {
        if let expected = a["flags"] {
            let wanted = try flags(expected)
            guard frame.flags == wanted else { throw StepFailure(reason: "\(frame) has flags 0x\(String(frame.flags, radix: 16)), expected 0x\(String(wanted, radix: 16))") }
        }
        if let hexPayload = a["payload_hex"] as? String {
            let wanted = try bytes(hex: hexPayload)
            guard frame.payload == wanted else { throw StepFailure(reason: "payload \(hex(frame.payload)), expected \(hex(wanted))") }
        }
        if frame.type == 4 || frame.type == 8 {
            let (code, text, detail): (UInt32, String, Any?)
            if frame.type == 4 {
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
            if let name = a["code"] as? String {
                guard let wanted = ConformanceRunner.statusCodes[name] else { throw StepFailure(reason: "unknown status name \(name)") }
                guard code == wanted else {
                    throw StepFailure(reason: "status \(ConformanceRunner.statusName(code)) (\"\(text)\"), expected \(name)")
                }
            }
            if let fragment = a["message_contains"] as? String, !text.contains(fragment) {
                throw StepFailure(reason: "message \"\(text)\" does not contain \"\(fragment)\"")
            }
            if let wanted = a["detail"] {
                guard let detail else { throw StepFailure(reason: "no detail; expected \(wanted)") }
                if let mismatch = Self.mismatch(detail, wanted, path: "detail") { throw StepFailure(reason: mismatch) }
            }
        }
        if let message = a["message"] as? [String: Any] {
            guard let typeName = message["type"] as? String, let type = MessageRegistry.types[typeName] else {
                throw StepFailure(reason: "message needs a known type")
            }
            let decoded: any SwiftProtobuf.Message
            do {
                decoded = try type.init(serializedBytes: frame.payload)
            } catch {
                throw StepFailure(reason: "the payload does not decode as \(typeName): \(error)")
            }
            let actual = try json(decoded)
            if let fields = message["fields"], let mismatch = Self.mismatch(actual, fields, path: typeName) {
                throw StepFailure(reason: mismatch)
            }
            // "capture": {"$name": "path.to.field"} keeps a response value
            // for later steps (a new key's id and secret, a position).
            for (name, path) in message["capture"] as? [String: String] ?? [:] {
                var value: Any? = actual
                for component in path.split(separator: ".") { value = (value as? [String: Any])?[String(component)] }
                guard let value else { throw StepFailure(reason: "cannot capture \(path): \(typeName) has no such field") }
                variables[name] = "\(value)"
            }
        }
    }

    /// MESSAGE frames of `call` until its TRAILERS: counts, each message's
    /// fields and the final status.
    private func collect(_ a: [String: Any]) throws {
        let connection = try connection(a)
        guard a["call"] is Int else { throw StepFailure(reason: "collect needs call") }
        let call = Self.u32(a["call"])
        var messages: [WireFrame] = []
        let deadline = ContinuousClock.now + timeout(a)
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
                case .timedOut: throw StepFailure(reason: "no TRAILERS within \(timeout(a)) after \(messages.count) message(s)")
                }
            }
            if frame.type == 1 && frame.flags & 1 == 1 { continue }
            if frame.callID != call {
                if frame.callID == 0 { throw StepFailure(reason: "got \(describe(frame)) while collecting call \(call)") }
                connection.pending.append(frame)
                continue
            }
            switch frame.type {
            case 3: messages.append(frame)
            case 4: trailers = frame
            default: throw StepFailure(reason: "unexpected \(frame) while collecting")
            }
        }
        if let exact = a["messages"] as? Int, messages.count != exact {
            throw StepFailure(reason: "\(messages.count) message(s), expected \(exact)")
        }
        if let least = a["min_messages"] as? Int, messages.count < least {
            throw StepFailure(reason: "\(messages.count) message(s), expected at least \(least)")
        }
        if let most = a["max_messages"] as? Int, messages.count > most {
            throw StepFailure(reason: "\(messages.count) message(s), expected at most \(most)")
        }
        if let each = a["each"] as? [String: Any] {
            for (index, message) in messages.enumerated() {
                do {
                    try check(message, ["message": each])
                } catch let failure as StepFailure {
                    throw StepFailure(reason: "message \(index + 1): \(failure.reason)")
                }
            }
        }
        // "events": the events of every message, concatenated (a read may
        // split its pages as the server likes), against this array.
        if let wanted = a["events"] {
            guard let typeName = a["events_of"] as? String, let type = MessageRegistry.types[typeName] else {
                throw StepFailure(reason: "events needs events_of, the message type")
            }
            var all: [Any] = []
            for message in messages {
                let decoded = try type.init(serializedBytes: message.payload)
                all += ((try json(decoded)) as? [String: Any])?["events"] as? [Any] ?? []
            }
            if let failure = Self.mismatch(all, wanted, path: "events") { throw StepFailure(reason: failure) }
        }
        if let last = a["last"] as? [String: Any] {
            guard let message = messages.last else { throw StepFailure(reason: "no message to check") }
            try check(message, ["message": last])
        }
        if let trailers {
            var expected: [String: Any] = ["code": a["code"] as? String ?? "OK"]
            expected["message_contains"] = a["message_contains"]
            expected["detail"] = a["detail"]
            try check(trailers, expected)
        }
    }

    /// The same unary call, up to `max` times with call ids from `first_id`
    /// (step 2), until one ends with `until` (a status name); every earlier
    /// one must end OK. For filling a quota.
    private func repeatCall(_ a: [String: Any]) throws {
        guard var call = a["call"] as? [String: Any], let until = a["until"] as? String,
              let wanted = ConformanceRunner.statusCodes[until] else {
            throw StepFailure(reason: "repeat needs call and until (a status name)")
        }
        let connection = try connection(a)
        let most = a["max"] as? Int ?? 10
        var id = a["first_id"] as? Int ?? 1
        for attempt in 1 ... most {
            call["id"] = id
            if let name = a["conn"] { call["conn"] = name }
            try self.call(call)
            var code: UInt32?
            let deadline = ContinuousClock.now + timeout(a)
            while code == nil {
                switch connection.next(timeout: deadline - .now) {
                case .frame(let frame) where frame.callID == UInt32(id) && frame.type == 4:
                    guard let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) else {
                        throw StepFailure(reason: "TRAILERS do not decode")
                    }
                    code = trailers.code
                case .frame(let frame) where frame.callID == UInt32(id) && frame.type == 3:
                    continue  // the response of an attempt that succeeded
                case .frame(let frame) where frame.type == 1 && frame.flags & 1 == 1:
                    continue
                case .frame(let frame):
                    throw StepFailure(reason: "unexpected \(describe(frame)) during attempt \(attempt)")
                case .preface: continue
                case .closed: throw StepFailure(reason: "the connection closed during attempt \(attempt)")
                case .timedOut: throw StepFailure(reason: "no TRAILERS for attempt \(attempt) within \(timeout(a))")
                }
            }
            if code == wanted { return }
            guard code == 0 else {
                throw StepFailure(reason: "attempt \(attempt) ended \(ConformanceRunner.statusName(code ?? 0)), expected OK or \(until)")
            }
            id += 2
        }
        throw StepFailure(reason: "no \(until) after \(most) calls")
    }

    /// Nothing (but a SETTINGS ACK) arrives for `ms` milliseconds.
    private func silence(_ a: [String: Any]) throws {
        let connection = try connection(a)
        if let early = connection.pending.first {
            throw StepFailure(reason: "expected silence, but \(describe(early)) had already arrived")
        }
        let deadline = ContinuousClock.now + .milliseconds(a["ms"] as? Int ?? 200)
        while true {
            switch connection.next(timeout: deadline - .now) {
            case .timedOut: return
            case .frame(let frame) where frame.type == 1 && frame.flags & 1 == 1: continue
            case .frame(let frame): throw StepFailure(reason: "expected silence, got \(describe(frame))")
            case .preface: continue
            case .closed: throw StepFailure(reason: "expected silence, the connection closed")
            }
        }
    }

    // MARK: - Helpers

    private func payload(_ a: [String: Any]) throws -> [UInt8] {
        if let text = a["payload_hex"] as? String { return try bytes(hex: text) }
        guard let message = a["message"] as? [String: Any] else { return [] }
        guard let typeName = message["type"] as? String, let type = MessageRegistry.types[typeName] else {
            throw StepFailure(reason: "message needs a type known to the runner, not \(String(describing: message["type"]))")
        }
        let body = message["json"] ?? [String: Any]()
        do {
            let data = try JSONSerialization.data(withJSONObject: body, options: [.fragmentsAllowed])
            return try type.init(jsonUTF8Data: data).serializedBytes()
        } catch {
            throw StepFailure(reason: "the case's \(typeName) does not encode: \(error)")
        }
    }

    private func flags(_ value: Any?) throws -> UInt8 {
        guard let value else { return 0 }
        guard let names = value as? [String] else { throw StepFailure(reason: "flags must be an array of names, not \(value)") }
        var out: UInt8 = 0
        for name in names {
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
        if frame.type == 4, let trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload) {
            return "TRAILERS(call \(frame.callID)) \(ConformanceRunner.statusName(trailers.code)) \"\(trailers.message)\""
        }
        if frame.type == 8, let goAway = try? Strata_V1_GoAway(serializedBytes: frame.payload) {
            return "GOAWAY \(ConformanceRunner.statusName(goAway.code)) \"\(goAway.reason)\""
        }
        return frame.description
    }

    private func json(_ message: any SwiftProtobuf.Message) throws -> Any {
        var options = JSONEncodingOptions()
        options.alwaysPrintInt64sAsNumbers = true
        return try JSONSerialization.jsonObject(with: message.jsonUTF8Data(options: options), options: [.fragmentsAllowed])
    }

    /// nil when `actual` has everything `expected` names (a subset for
    /// objects; absent fields count as their proto3 default; "$any" matches
    /// anything present), else where they differ.
    static func mismatch(_ actual: Any?, _ expected: Any, path: String) -> String? {
        if let text = expected as? String, text == "$any" {
            return actual == nil ? "\(path) is missing" : nil
        }
        // null: the field must be absent (unset message, default scalar).
        if expected is NSNull {
            return actual.map { "\(path) is \($0), expected it absent" }
        }
        // {"$present": X}: present and equal, even if X is a default (a oneof member).
        if let object = expected as? [String: Any], object.count == 1, let wanted = object["$present"] {
            guard let actual else { return "\(path) is missing, expected \(wanted)" }
            return mismatch(actual, wanted, path: path)
        }
        guard let actual else {
            return isDefault(expected) ? nil : "\(path) is missing, expected \(expected)"
        }
        switch expected {
        case let object as [String: Any]:
            guard let actualObject = actual as? [String: Any] else { return "\(path) is \(actual), expected an object" }
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                if let failure = mismatch(actualObject[key], value, path: "\(path).\(key)") { return failure }
            }
            return nil
        case let array as [Any]:
            guard let actualArray = actual as? [Any] else { return "\(path) is \(actual), expected an array" }
            guard actualArray.count == array.count else { return "\(path) has \(actualArray.count) element(s), expected \(array.count)" }
            for (index, value) in array.enumerated() {
                if let failure = mismatch(actualArray[index], value, path: "\(path)[\(index)]") { return failure }
            }
            return nil
        default:
            // A boolean never equals a number, though both arrive as NSNumber.
            if actual is NSNumber, expected is NSNumber, isBoolean(actual) != isBoolean(expected) {
                return "\(path) is \(actual), expected \(expected)"
            }
            return "\(actual)" == "\(expected)" || (actual as? NSNumber)?.stringValue == "\(expected)" ? nil
                : "\(path) is \(actual), expected \(expected)"
        }
    }

    private static func isBoolean(_ value: Any) -> Bool {
        guard let number = value as? NSNumber else { return false }
        let type = String(cString: number.objCType)
        return type == "c" || type == "B"
    }

    static func u32(_ value: Any?, default fallback: UInt32 = 0) -> UInt32 {
        guard let number = value as? Int else { return fallback }
        return UInt32(clamping: number)
    }

    private static func isDefault(_ value: Any) -> Bool {
        switch value {
        case let number as NSNumber: return number == 0 || number == false
        case let text as String: return text.isEmpty || text == "0"
        case let array as [Any]: return array.isEmpty
        case let object as [String: Any]: return object.isEmpty
        default: return false
        }
    }
}
