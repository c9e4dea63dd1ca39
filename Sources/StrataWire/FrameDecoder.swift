/// Why the byte stream from a peer cannot be decoded. Each is a connection
/// error: the receiver sends GOAWAY with the reason and closes (PROTOCOL.md,
/// "Bad input").
public enum FrameDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The first bytes were not `STRATA`.
    case badPreface
    /// The peer speaks a protocol version this side does not.
    case unsupportedVersion(UInt16)
    /// A frame's declared payload is larger than this side accepts.
    case frameTooLarge(length: UInt32, limit: UInt32)
    /// A frame type this protocol version does not define.
    case unknownFrameType(UInt8)

    public var description: String {
        switch self {
        case .badPreface: "connection preface is not 'STRATA'"
        case .unsupportedVersion(let v): "unsupported protocol version \(v) (this side speaks \(Preface.version))"
        case let .frameTooLarge(length, limit): "frame payload of \(length) bytes exceeds the limit of \(limit)"
        case .unknownFrameType(let code): "unknown frame type 0x\(String(code, radix: 16))"
        }
    }
}

/// Turns a byte stream into frames, incrementally: feed it whatever a read
/// returned (part of a frame, or many frames) and take the frames that are
/// complete. The length is checked as soon as a header is complete, so an
/// oversized frame is refused before its payload is buffered.
///
/// Not thread-safe: one decoder per connection, used by its read handler.
public struct FrameDecoder: Sendable {
    public var maxPayloadSize: UInt32
    private var expectingPreface: Bool
    private var buffer: [UInt8] = []
    private var readIndex = 0

    public init(maxPayloadSize: UInt32, expectPreface: Bool) {
        self.maxPayloadSize = maxPayloadSize
        self.expectingPreface = expectPreface
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedBytes: Int { buffer.count - readIndex }

    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }

    /// The next complete frame, or nil when more bytes are needed. After an
    /// error the stream is unusable.
    public mutating func next() throws(FrameDecodingError) -> Frame? {
        if expectingPreface {
            guard bufferedBytes >= Preface.size else {
                // Refuse a wrong magic as soon as its bytes are here.
                let available = buffer[readIndex...].prefix(Preface.magic.count)
                if !Preface.magic.starts(with: available) { throw .badPreface }
                return nil
            }
            guard buffer[readIndex ..< readIndex + 6].elementsEqual(Preface.magic) else { throw .badPreface }
            let version = UInt16(buffer[readIndex + 6]) << 8 | UInt16(buffer[readIndex + 7])
            guard version == Preface.version else { throw .unsupportedVersion(version) }
            readIndex += Preface.size
            expectingPreface = false
        }
        guard bufferedBytes >= Frame.headerSize else {
            compact()
            return nil
        }
        let h = readIndex
        let length = UInt32(buffer[h]) << 24 | UInt32(buffer[h + 1]) << 16 | UInt32(buffer[h + 2]) << 8 | UInt32(buffer[h + 3])
        guard length <= maxPayloadSize else { throw .frameTooLarge(length: length, limit: maxPayloadSize) }
        guard let type = FrameType(rawValue: buffer[h + 4]) else { throw .unknownFrameType(buffer[h + 4]) }
        let total = Frame.headerSize + Int(length)
        guard bufferedBytes >= total else {
            compact()
            return nil
        }
        let flags = FrameFlags(rawValue: buffer[h + 5])
        let callID = UInt32(buffer[h + 6]) << 24 | UInt32(buffer[h + 7]) << 16 | UInt32(buffer[h + 8]) << 8 | UInt32(buffer[h + 9])
        let payload = Array(buffer[h + Frame.headerSize ..< h + total])
        readIndex += total
        return Frame(type: type, flags: flags, callID: callID, payload: payload)
    }

    /// Drops consumed bytes once they dominate the buffer, so it does not grow
    /// without bound across a long connection.
    private mutating func compact() {
        if readIndex > 0 && (readIndex >= buffer.count || readIndex > 65_536) {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}
