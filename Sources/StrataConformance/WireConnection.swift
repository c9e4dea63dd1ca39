import Foundation

/// One frame as the runner sees it. The runner does its own framing (not
/// StrataWire's), so a bug shared by the server and the Swift client cannot
/// hide from it.
public struct WireFrame: Sendable, Equatable, CustomStringConvertible {
    public var type: UInt8
    public var flags: UInt8
    public var callID: UInt32
    public var payload: [UInt8]

    public static let headerSize = 10

    // Frame types (PROTOCOL.md §2), by name.
    public static let settings: UInt8 = 1
    public static let headers: UInt8 = 2
    public static let message: UInt8 = 3
    public static let trailers: UInt8 = 4
    public static let cancel: UInt8 = 5
    public static let windowUpdate: UInt8 = 6
    public static let ping: UInt8 = 7
    public static let goAway: UInt8 = 8

    public static let typeNames: [String: UInt8] = [
        "SETTINGS": settings, "HEADERS": headers, "MESSAGE": message, "TRAILERS": trailers, "CANCEL": cancel,
        "WINDOW_UPDATE": windowUpdate, "PING": ping, "GOAWAY": goAway,
    ]

    public static func name(of type: UInt8) -> String {
        typeNames.first { $0.value == type }?.key ?? String(format: "0x%02x", type)
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + payload.count)
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(type)
        out.append(flags)
        withUnsafeBytes(of: callID.bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
        return out
    }

    public var description: String {
        "\(Self.name(of: type))(call \(callID), flags 0x\(String(flags, radix: 16)), \(payload.count) bytes)"
    }
}

/// What the next read produced.
enum WireEvent {
    case preface([UInt8])
    case frame(WireFrame)
    case closed
    case timedOut
}

/// A blocking TCP connection with a read timeout per call, reading the
/// server's 8-byte preface first and then frames.
final class WireConnection {
    static let preface: [UInt8] = Array("STRATA".utf8) + [0, 1]

    private let fd: Int32
    private var buffer: [UInt8] = []
    private var prefaceRead = false
    private var eof = false
    /// Frames read while waiting for something else (another call's).
    var pending: [WireFrame] = []

    init(host: String, port: UInt16) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw ConformanceError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw ConformanceError("socket: \(String(cString: strerror(errno)))") }
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ConformanceError("cannot connect to \(host):\(port): \(reason)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A server that stops reading must not hang the runner in send().
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// Closes politely: no more writes, then waits (at most `timeout`) for
    /// the server to close its side, so the server has let go of the
    /// connection before the next case connects (a case about the
    /// connection limit counts on it).
    func finish(timeout: Duration) {
        guard !eof else { return }
        shutdown(fd, Int32(SHUT_WR))
        let deadline = ContinuousClock.now + timeout
        while true {
            switch next(timeout: deadline - .now) {
            case .closed, .timedOut: return
            case .frame, .preface: continue
            }
        }
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }  // the server closed: later expectations say so
            offset += n
        }
    }

    /// The next preface or frame, waiting at most `timeout`.
    func next(timeout: Duration) -> WireEvent {
        let deadline = ContinuousClock.now + timeout
        while true {
            if !prefaceRead, buffer.count >= 8 {
                prefaceRead = true
                let preface = Array(buffer.prefix(8))
                buffer.removeFirst(8)
                return .preface(preface)
            }
            if prefaceRead, buffer.count >= WireFrame.headerSize {
                let length = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
                if buffer.count >= WireFrame.headerSize + length {
                    let callID = UInt32(buffer[6]) << 24 | UInt32(buffer[7]) << 16 | UInt32(buffer[8]) << 8 | UInt32(buffer[9])
                    let frame = WireFrame(type: buffer[4], flags: buffer[5], callID: callID,
                                          payload: Array(buffer[WireFrame.headerSize ..< WireFrame.headerSize + length]))
                    buffer.removeFirst(WireFrame.headerSize + length)
                    return .frame(frame)
                }
            }
            if eof { return .closed }
            let left = deadline - .now
            if left <= .zero { return .timedOut }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(1, min(Double(Int32.max), (Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18) * 1000)))
            let ready = poll(&poller, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }  // the deadline check above ends the wait
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                eof = true
                continue
            }
            buffer.append(contentsOf: chunk[0 ..< count])
        }
    }
}

/// A setup or case-file problem (not a conformance failure).
public struct ConformanceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
