import Dispatch
import Foundation
import Logging

/// A small HTTP/1.1 responder for operators' probes and scrapers, on the
/// same POSIX socket layer as the RPC server: `GET` (or `HEAD`) of a path,
/// answered by `respond`, one request per connection (`Connection: close`).
///
/// Bounded against misuse: at most `maxConnections` open at once (more are
/// closed at once), a request head of at most 8 KiB that must arrive within
/// `requestTimeout`, no request bodies.
///
/// `@unchecked Sendable`: `listenFD`, `acceptSource`, `open` and `stopped`
/// are confined to `queue`; each exchange's state is confined to `queue` too.
public final class HTTPEndpoint: @unchecked Sendable {
    /// An answer to one request.
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: [UInt8]
        public var headers: [(String, String)] = []

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }

        public init(status: Int, text: String) {
            self.init(status: status, body: Array((text + "\n").utf8))
        }
    }

    public static let maxRequestHeadBytes = 8192

    private let host: String
    private let port: UInt16
    private let maxConnections: Int
    private let requestTimeout: Duration
    private let logger: Logger
    private let respond: @Sendable (_ method: String, _ path: String) -> Response
    private let queue = DispatchQueue(label: "strata.http")
    private var listenFD: Int32 = -1
    private var acceptSource: DispatchSourceRead?
    private var open: [Int32: Exchange] = [:]
    private var stopped = false

    public init(host: String, port: UInt16, maxConnections: Int = 16, requestTimeout: Duration = .seconds(5),
                logger: Logger, respond: @escaping @Sendable (_ method: String, _ path: String) -> Response) {
        self.host = host
        self.port = port
        self.maxConnections = maxConnections
        self.requestTimeout = requestTimeout
        self.logger = logger
        self.respond = respond
    }

    /// Binds and starts accepting; returns the bound port.
    public func start() throws(SocketError) -> UInt16 {
        let (fd, bound) = try Socket.listen(host: host, port: port, backlog: 64)
        queue.sync {
            listenFD = fd
            acceptSource = Socket.startAcceptSource(fd, queue: queue) { [self] in acceptAll() }
        }
        return bound
    }

    /// Stops accepting and closes open exchanges.
    public func stop() {
        queue.sync {
            stopped = true
            acceptSource?.cancel()
            acceptSource = nil
            // Each closes through its read source (a response being written
            // finishes first) and then leaves `open`.
            for exchange in open.values { exchange.close() }
        }
    }

    private func acceptAll() {
        while !stopped {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            guard open.count < maxConnections, (try? Socket.setNonBlocking(fd)) != nil else {
                Glibc.close(fd)
                logger.debug("metrics endpoint: closed a connection over the limit of \(maxConnections)")
                continue
            }
            let exchange = Exchange(fd: fd, queue: queue, endpoint: self)
            open[fd] = exchange
            exchange.start(timeout: requestTimeout)
        }
    }

    /// An exchange closed its descriptor. On `queue`.
    fileprivate func finished(_ fd: Int32) {
        open[fd] = nil
    }

    /// What to do with the bytes of a request head read so far.
    fileprivate enum Parsed {
        /// Not complete yet: read more.
        case incomplete
        /// Answered without the handler (a bad or refused request).
        case answer(Response)
        /// A GET or HEAD for `path`, for the handler.
        case request(method: String, path: String)
    }

    fileprivate func parse(_ head: [UInt8]) -> Parsed {
        let terminator = head.firstRange(of: [0x0D, 0x0A, 0x0D, 0x0A])
        let tooLarge = if let terminator { terminator.upperBound > Self.maxRequestHeadBytes } else { head.count >= Self.maxRequestHeadBytes }
        if tooLarge {
            return .answer(Response(status: 431, text: "request head larger than \(Self.maxRequestHeadBytes) bytes"))
        }
        guard let end = terminator else { return .incomplete }
        let requestLine = String(decoding: head[..<end.lowerBound], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = requestLine.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            return .answer(Response(status: 400, text: "expected a request line such as GET /metrics HTTP/1.1"))
        }
        let method = String(parts[0])
        let path = String(parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        guard method == "GET" || method == "HEAD" else {
            var response = Response(status: 405, text: "only GET and HEAD are served")
            response.headers = [("Allow", "GET, HEAD")]
            return .answer(response)
        }
        return .request(method: method, path: path)
    }

    /// The handler's answer; runs off the endpoint's queue (rendering
    /// metrics takes a while and must not hold up `/health`).
    fileprivate func handle(method: String, path: String) -> Response {
        respond(method, path)
    }
}

/// One HTTP connection: reads the request head, then writes the answer and
/// closes. Confined to the endpoint's queue, apart from the final blocking
/// write, which runs on a global queue (with a send timeout) while the read
/// source is suspended. The descriptor is closed only by the read source's
/// cancel handler, after any write has finished.
private final class Exchange: @unchecked Sendable {
    private enum State { case reading, writing, closing }

    let fd: Int32
    private let queue: DispatchQueue
    private let endpoint: HTTPEndpoint
    private var head: [UInt8] = []
    private var source: DispatchSourceRead?
    private var timer: DispatchSourceTimer?
    private var state = State.reading

    init(fd: Int32, queue: DispatchQueue, endpoint: HTTPEndpoint) {
        self.fd = fd
        self.queue = queue
        self.endpoint = endpoint
    }

    func start(timeout: Duration) {
        let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        read.setEventHandler { [self] in readAvailable() }
        read.setCancelHandler { [self] in
            Glibc.close(fd)
            endpoint.finished(fd)
        }
        source = read
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + timeout.seconds)
        timer.setEventHandler { [self] in
            reply(headOnly: false) { HTTPEndpoint.Response(status: 408, text: "no complete request within \(timeout)") }
        }
        self.timer = timer
        read.resume()
        timer.resume()
    }

    private func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while state == .reading {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                head.append(contentsOf: buffer[0 ..< count])
                switch endpoint.parse(head) {
                case .incomplete: continue
                case .answer(let response): reply(headOnly: false) { response }
                case let .request(method, path):
                    reply(headOnly: method == "HEAD") { [endpoint] in endpoint.handle(method: method, path: path) }
                }
            } else if count == 0 {
                close()  // the client went away before finishing its request
            } else {
                if errno == EINTR { continue }
                if errno != EAGAIN && errno != EWOULDBLOCK { close() }
                return
            }
        }
    }

    /// Produces the response and writes it off the endpoint's queue (a
    /// metrics page takes a while to render and can exceed the socket
    /// buffer), then closes: at most `writeDeadline` for the writing, then
    /// up to a second reading what the client still sends, so closing does
    /// not reset the connection under the response.
    private func reply(headOnly: Bool, _ produce: @escaping @Sendable () -> HTTPEndpoint.Response) {
        guard state == .reading, let source else { return }
        state = .writing
        timer?.cancel()
        source.suspend()
        let fd = self.fd
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        var oneSecond = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &oneSecond, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &oneSecond, socklen_t(MemoryLayout<timeval>.size))
        DispatchQueue.global().async { [self] in
            let response = produce()
            var text = "HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
            text += "Content-Type: \(response.contentType)\r\nContent-Length: \(response.body.count)\r\nConnection: close\r\n"
            for (name, value) in response.headers { text += "\(name): \(value)\r\n" }
            text += "\r\n"
            var bytes = Array(text.utf8)
            if !headOnly { bytes += response.body }
            let deadline = ContinuousClock.now + Self.writeDeadline
            var offset = 0
            while offset < bytes.count && ContinuousClock.now < deadline {
                let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) { continue }
                if sent <= 0 { break }  // the client left
                offset += sent
            }
            shutdown(fd, Int32(SHUT_WR))
            var discard = [UInt8](repeating: 0, count: 4096)
            var drained = 0
            while drained < 65536 {
                let count = discard.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }  // the client closed (or a second passed)
                drained += count
            }
            queue.async { [self] in
                state = .reading  // lets close() proceed
                self.source?.resume()
                close()
            }
        }
    }

    /// The longest a response may take to write: a client reading slowly
    /// cannot hold a thread longer.
    static let writeDeadline: Duration = .seconds(10)

    /// Stops reading; the cancel handler closes the descriptor. A response
    /// being written finishes first (within its send timeout) and closes then.
    func close() {
        guard state == .reading else { return }
        state = .closing
        timer?.cancel()
        source?.cancel()
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
