/// Why a protobuf payload cannot be decoded by one of the hand-written codecs.
public enum ProtoDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated
    case malformedVarint
    case invalidWireType(UInt8)
    case invalidUTF8
    case invalidFieldNumber
    case tooDeeplyNested

    public var description: String {
        switch self {
        case .truncated: "the message ends inside a field"
        case .malformedVarint: "a varint is longer than 10 bytes"
        case .invalidWireType(let type): "wire type \(type) is not valid"
        case .invalidUTF8: "a string field is not valid UTF-8"
        case .invalidFieldNumber: "field number 0 or out of range"
        case .tooDeeplyNested: "groups nested more than \(ProtoReader.maxGroupDepth) deep"
        }
    }
}

/// The name the CallHeaders codec's errors had first.
public typealias CallHeadersDecodingError = ProtoDecodingError

/// A bounds-checked cursor over protobuf binary data, for the hand-written
/// codecs of the hottest messages. It refuses what swift-protobuf refuses:
/// truncation, overlong varints, field number 0 or beyond 32 bits, bad wire
/// types, groups nested more than 100 deep.
public struct ProtoReader {
    private let buffer: UnsafeBufferPointer<UInt8>
    private var index: Int
    private let end: Int

    public init(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int = 0, to end: Int? = nil) {
        self.buffer = buffer
        self.index = start
        self.end = end ?? buffer.count
    }

    public var atEnd: Bool { index >= end }

    public mutating func varint() throws(ProtoDecodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < end else { throw .truncated }
            let byte = buffer[index]
            index += 1
            guard shift < 64 else { throw .malformedVarint }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    public mutating func tag() throws(ProtoDecodingError) -> (field: UInt64, wireType: UInt8) {
        let start = index
        let tag = try varint()
        let wireType = UInt8(tag & 7)
        // Field numbers are 29 bits; swift-protobuf refuses larger tags too,
        // and tags written in more than 5 bytes (found by the payloads fuzz target).
        guard tag >> 3 != 0, tag < UInt64(UInt32.max), index - start <= 5 else { throw .invalidFieldNumber }
        return (tag >> 3, wireType)
    }

    /// The bounds of a length-delimited field's contents; advances past it.
    private mutating func lengthDelimited() throws(ProtoDecodingError) -> Range<Int> {
        let length = try varint()
        guard length <= UInt64(end - index) else { throw .truncated }
        let range = index ..< index + Int(length)
        index = range.upperBound
        return range
    }

    /// A length-delimited field's bytes (valid as long as the buffer is).
    public mutating func bytes() throws(ProtoDecodingError) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: buffer[try lengthDelimited()])
    }

    public mutating func string() throws(ProtoDecodingError) -> String {
        let range = try lengthDelimited()
        guard let string = UTF8Validation.string(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: buffer[range]))) else {
            throw .invalidUTF8
        }
        return string
    }

    public mutating func nested() throws(ProtoDecodingError) -> ProtoReader {
        let range = try lengthDelimited()
        return ProtoReader(buffer, from: range.lowerBound, to: range.upperBound)
    }

    /// Groups nest; the depth is bounded as swift-protobuf bounds it, so a
    /// hostile payload of nested group starts cannot exhaust the stack.
    public static let maxGroupDepth = 100

    public mutating func skip(field: UInt64, wireType: UInt8, depth: Int = 0) throws(ProtoDecodingError) {
        switch wireType {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try lengthDelimited()
        case 3:
            // A group: fields up to the END_GROUP of the same field number.
            guard depth < Self.maxGroupDepth else { throw .tooDeeplyNested }
            while true {
                let (inner, innerType) = try tag()
                if innerType == 4 {
                    guard inner == field else { throw .invalidWireType(4) }
                    return
                }
                try skip(field: inner, wireType: innerType, depth: depth + 1)
            }
        case 5: try advance(4)
        default: throw .invalidWireType(wireType)  // 4 (END_GROUP without a start), 6, 7
        }
    }

    private mutating func advance(_ count: Int) throws(ProtoDecodingError) {
        guard end - index >= count else { throw .truncated }
        index += count
    }
}
