import Foundation

/// One step of a case, decoded from its JSON object (one key: the step's
/// kind; proto/conformance/README.md lists the fields). Strings may hold
/// variables (`$tenant`, …), replaced when the step runs.
enum ConformanceStep: Sendable, Decodable {
    case connect(Connect)
    case send(Send)
    case call(Call)
    case expect(Expect)
    case collect(Collect)
    case silence(Silence)
    case grant(Grant)
    case cancel(Cancel)
    case `repeat`(Repeat)

    enum Kind: String, CodingKey, CaseIterable {
        case connect, send, call, expect, collect, silence, grant, cancel, `repeat`
    }

    var kind: Kind {
        switch self {
        case .connect: .connect
        case .send: .send
        case .call: .call
        case .expect: .expect
        case .collect: .collect
        case .silence: .silence
        case .grant: .grant
        case .cancel: .cancel
        case .repeat: .repeat
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Kind.self)
        guard container.allKeys.count == 1, let kind = container.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: "a step is one object with one key, its kind: one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        switch kind {
        case .connect: self = .connect(try container.decode(Connect.self, forKey: kind))
        case .send: self = .send(try container.decode(Send.self, forKey: kind))
        case .call: self = .call(try container.decode(Call.self, forKey: kind))
        case .expect: self = .expect(try container.decode(Expect.self, forKey: kind))
        case .collect: self = .collect(try container.decode(Collect.self, forKey: kind))
        case .silence: self = .silence(try container.decode(Silence.self, forKey: kind))
        case .grant: self = .grant(try container.decode(Grant.self, forKey: kind))
        case .cancel: self = .cancel(try container.decode(Cancel.self, forKey: kind))
        case .repeat: self = .repeat(try container.decode(Repeat.self, forKey: kind))
        }
    }

    /// A protobuf message written in its JSON mapping: `{"type": "strata.v1.X", "json": {…}}`.
    struct Message: Sendable, Decodable {
        let type: String
        let json: JSONValue?
    }

    /// What a received message must hold: `{"type", "fields", "capture"}`.
    struct MessageCheck: Sendable, Decodable {
        let type: String
        let fields: JSONValue?
        /// Variable name → dotted path of a response field to keep.
        let capture: [String: String]?
    }

    /// A metadata value a case may set, leave to its default, or omit (`null`).
    enum Override: Sendable {
        case useDefault
        case omit
        case value(String)
    }

    struct Connect: Sendable, Decodable {
        let conn: String?
        let handshake: Bool?
        let initialWindowMessages: UInt32?

        enum CodingKeys: String, CodingKey {
            case conn, handshake, initialWindowMessages = "initial_window_messages"
        }
    }

    struct Send: Sendable, Decodable {
        let conn: String?
        let raw: String?
        let preface: Bool?
        let frame: String?
        let typeByte: UInt8?
        let flags: [String]?
        let call: UInt32?
        let message: Message?
        let payloadHex: String?

        enum CodingKeys: String, CodingKey {
            case conn, raw, preface, frame, typeByte = "type_byte", flags, call, message, payloadHex = "payload_hex"
        }
    }

    struct Call: Sendable, Decodable {
        let conn: String?
        /// Absent only inside a `repeat`, which numbers its calls.
        let id: UInt32?
        let method: String
        let request: Message?
        let requestHex: String?
        let tenant: Override
        let key: Override
        let metadata: [String: String]?
        let timeoutMs: UInt64?
        let endStream: Bool?

        enum CodingKeys: String, CodingKey {
            case conn, id, method, request, requestHex = "request_hex", tenant, key, metadata, timeoutMs = "timeout_ms"
            case endStream = "end_stream"
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            conn = try container.decodeIfPresent(String.self, forKey: .conn)
            id = try container.decodeIfPresent(UInt32.self, forKey: .id)
            method = try container.decode(String.self, forKey: .method)
            request = try container.decodeIfPresent(Message.self, forKey: .request)
            requestHex = try container.decodeIfPresent(String.self, forKey: .requestHex)
            tenant = try Self.override(container, .tenant)
            key = try Self.override(container, .key)
            metadata = try container.decodeIfPresent([String: String].self, forKey: .metadata)
            timeoutMs = try container.decodeIfPresent(UInt64.self, forKey: .timeoutMs)
            endStream = try container.decodeIfPresent(Bool.self, forKey: .endStream)
        }

        private static func override(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Override {
            guard container.contains(key) else { return .useDefault }
            if try container.decodeNil(forKey: key) { return .omit }
            return .value(try container.decode(String.self, forKey: key))
        }
    }

    struct Expect: Sendable, Decodable {
        let conn: String?
        let timeoutMs: Int?
        let closed: Bool?
        let preface: Bool?
        let frame: String?
        let call: UInt32?
        let skip: Bool?
        let flags: [String]?
        let payloadHex: String?
        let code: String?
        let messageContains: String?
        let detail: JSONValue?
        let message: MessageCheck?

        enum CodingKeys: String, CodingKey {
            case conn, timeoutMs = "timeout_ms", closed, preface, frame, call, skip, flags, payloadHex = "payload_hex", code
            case messageContains = "message_contains", detail, message
        }
    }

    struct Collect: Sendable, Decodable {
        let conn: String?
        let call: UInt32
        let timeoutMs: Int?
        let messages: Int?
        let minMessages: Int?
        let maxMessages: Int?
        let each: MessageCheck?
        let last: MessageCheck?
        let events: JSONValue?
        let eventsOf: String?
        let code: String?
        let messageContains: String?
        let detail: JSONValue?

        enum CodingKeys: String, CodingKey {
            case conn, call, timeoutMs = "timeout_ms", messages, minMessages = "min_messages", maxMessages = "max_messages"
            case each, last, events, eventsOf = "events_of", code, messageContains = "message_contains", detail
        }
    }

    struct Silence: Sendable, Decodable {
        let conn: String?
        let ms: Int?
    }

    struct Grant: Sendable, Decodable {
        let conn: String?
        let call: UInt32
        let messages: UInt32?
    }

    struct Cancel: Sendable, Decodable {
        let conn: String?
        let call: UInt32
    }

    struct Repeat: Sendable, Decodable {
        let conn: String?
        let call: Call
        let until: String
        let max: Int?
        let firstId: UInt32?
        let timeoutMs: Int?

        enum CodingKeys: String, CodingKey {
            case conn, call, until, max, firstId = "first_id", timeoutMs = "timeout_ms"
        }
    }
}
