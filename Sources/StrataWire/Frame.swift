/// The kinds of frame (PROTOCOL.md, "Frames").
public enum FrameType: UInt8, Sendable, CaseIterable {
    case settings = 0x01
    case headers = 0x02
    case message = 0x03
    case trailers = 0x04
    case cancel = 0x05
    case windowUpdate = 0x06
    case ping = 0x07
    case goAway = 0x08
}

/// Frame flags. Which flags a frame type allows is in PROTOCOL.md.
public struct FrameFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// SETTINGS, PING: this frame acknowledges the peer's.
    public static let ack = FrameFlags(rawValue: 0x01)
    /// MESSAGE from the client: the last message of the call (half-close).
    public static let endStream = FrameFlags(rawValue: 0x01)
}

/// One frame: a 10-byte header (payload length u32, type u8, flags u8, call
/// id u32, all big-endian) and the payload.
public struct Frame: Sendable, Hashable {
    public static let headerSize = 10

    public var type: FrameType
    public var flags: FrameFlags
    /// 0 for connection frames (SETTINGS, PING, GOAWAY); the call otherwise.
    public var callID: UInt32
    public var payload: [UInt8]

    public init(type: FrameType, flags: FrameFlags = [], callID: UInt32 = 0, payload: [UInt8] = []) {
        self.type = type
        self.flags = flags
        self.callID = callID
        self.payload = payload
    }

    /// Appends the encoded frame to `out`.
    public func encode(into out: inout [UInt8]) {
        let length = UInt32(payload.count)
        // No reserveCapacity here: reserving the exact size on every append
        // would defeat the array's geometric growth and copy the buffer each time.
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(type.rawValue)
        out.append(flags.rawValue)
        out.append(UInt8(truncatingIfNeeded: callID >> 24))
        out.append(UInt8(truncatingIfNeeded: callID >> 16))
        out.append(UInt8(truncatingIfNeeded: callID >> 8))
        out.append(UInt8(truncatingIfNeeded: callID))
        out.append(contentsOf: payload)
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }
}

/// The connection preface: the ASCII bytes `STRATA` then the protocol version
/// as a big-endian u16. Each side sends it first; the client before anything
/// else, the server in reply.
public enum Preface {
    public static let magic: [UInt8] = Array("STRATA".utf8)
    public static let version: UInt16 = 1
    public static let size = 8
    public static var bytes: [UInt8] { magic + [UInt8(version >> 8), UInt8(version & 0xFF)] }
}
