import Glibc

/// Blocking TCP sockets to a server on 127.0.0.1, for tests that speak raw
/// bytes (protocol, HTTP, abuse). One copy of the `sockaddr_in` dance.
public enum LoopbackSocket {
    /// A connect that failed: the port and the `errno`.
    public struct ConnectError: Error, CustomStringConvertible {
        public let port: UInt16
        public let code: Int32
        public var description: String { "connect to 127.0.0.1:\(port): \(String(cString: strerror(code)))" }
    }

    /// A connected socket; on failure the socket is closed and the error
    /// thrown. The timeouts bound each `recv`/`send`; `noDelay` turns Nagle
    /// off (a test that sends a call as two writes waits ~40 ms otherwise).
    public static func connect(port: UInt16, receiveTimeout: Duration? = nil, sendTimeout: Duration? = nil,
                               noDelay: Bool = false) throws(ConnectError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ConnectError(port: port, code: errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw ConnectError(port: port, code: code)
        }
        if let receiveTimeout { setTimeout(fd, SO_RCVTIMEO, receiveTimeout) }
        if let sendTimeout { setTimeout(fd, SO_SNDTIMEO, sendTimeout) }
        if noDelay {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return fd
    }

    /// Sets SO_RCVTIMEO or SO_SNDTIMEO on `fd`.
    public static func setTimeout(_ fd: Int32, _ option: Int32, _ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}
