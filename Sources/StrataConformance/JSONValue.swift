import Foundation

/// A JSON value as case files write it and as protobuf's JSON mapping
/// produces it: the request bodies, expected fields and error details of the
/// conformance cases. Integers keep their exact value (positions reach 2⁶⁴−1).
enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(UInt64.self) {
            self = .unsigned(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .unsigned(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// Decodes JSON text (a protobuf message's JSON form).
    static func parse(_ data: Data) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// JSON text, for protobuf's JSON decoder.
    func data() throws -> Data {
        try JSONEncoder().encode(self)
    }

    /// A scalar as text (what a captured variable holds, what numbers and
    /// strings are compared by); nil for arrays, objects and null.
    var text: String? {
        switch self {
        case .bool(let value): "\(value)"
        case .integer(let value): "\(value)"
        case .unsigned(let value): "\(value)"
        case .double(let value): value == value.rounded() && abs(value) < 1e15 ? "\(Int64(value))" : "\(value)"
        case .string(let value): value
        case .null, .array, .object: nil
        }
    }

    /// The proto3 default of its kind: 0, false, "" (or "0", a 64-bit
    /// integer as a string), [], {}.
    var isDefault: Bool {
        switch self {
        case .null: false
        case .bool(let value): !value
        case .integer(let value): value == 0
        case .unsigned(let value): value == 0
        case .double(let value): value == 0
        case .string(let value): value.isEmpty || value == "0"
        case .array(let value): value.isEmpty
        case .object(let value): value.isEmpty
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// nil when `actual` has everything `expected` names (a subset for
    /// objects; absent fields count as their proto3 default; "$any" matches
    /// anything present; null requires absence; {"$present": X} requires
    /// presence and equality), else where they differ.
    static func mismatch(_ actual: JSONValue?, _ expected: JSONValue, path: String) -> String? {
        if case .string("$any") = expected {
            return actual == nil ? "\(path) is missing" : nil
        }
        if case .null = expected {
            return actual.map { "\(path) is \($0.description), expected it absent" }
        }
        if case .object(let object) = expected, object.count == 1, let wanted = object["$present"] {
            guard let actual else { return "\(path) is missing, expected \(wanted.description)" }
            return mismatch(actual, wanted, path: path)
        }
        guard let actual else {
            return expected.isDefault ? nil : "\(path) is missing, expected \(expected.description)"
        }
        switch expected {
        case .object(let object):
            guard case .object(let actualObject) = actual else { return "\(path) is \(actual.description), expected an object" }
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                if let failure = mismatch(actualObject[key], value, path: "\(path).\(key)") { return failure }
            }
            return nil
        case .array(let array):
            guard case .array(let actualArray) = actual else { return "\(path) is \(actual.description), expected an array" }
            guard actualArray.count == array.count else { return "\(path) has \(actualArray.count) element(s), expected \(array.count)" }
            for (index, value) in array.enumerated() {
                if let failure = mismatch(actualArray[index], value, path: "\(path)[\(index)]") { return failure }
            }
            return nil
        default:
            // A boolean never equals a number or a string.
            if case .bool = actual, !({ if case .bool = expected { true } else { false } }()) {
                return "\(path) is \(actual.description), expected \(expected.description)"
            }
            if case .bool = expected, !({ if case .bool = actual { true } else { false } }()) {
                return "\(path) is \(actual.description), expected \(expected.description)"
            }
            // Numbers and strings compare by text: protobuf writes 64-bit
            // integers as numbers here, a case may write them either way.
            return actual.text != nil && actual.text == expected.text ? nil
                : "\(path) is \(actual.description), expected \(expected.description)"
        }
    }

    var description: String {
        switch self {
        case .null: "null"
        case .string(let value): "\"\(value)\""
        case .array, .object: (try? String(decoding: data(), as: UTF8.self)) ?? "?"
        default: text ?? "?"
        }
    }
}
