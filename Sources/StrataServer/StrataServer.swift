import Dispatch
import Foundation
import StrataStorage
import StrataWire
import Synchronization

/// The Strata server: a listening socket, its connections, and the router
/// they share.
///
/// `@unchecked Sendable`: `listenFD`, `acceptSource`, `connections`,
/// `nextConnectionID` and `stopping` are confined to `queue`.
public final class StrataServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    private let env: ConnectionEnvironment
    private let queue = DispatchQueue(label: "strata.server.accept")
    private var listenFD: Int32 = -1
    private var acceptSource: DispatchSourceRead?
    private var connections: [UInt64: Connection] = [:]
    private var nextConnectionID: UInt64 = 1
    private var stopping = false
    private let allClosed = DispatchGroup()
    /// The tenant registry and maintenance, when built with every service.
    public let tenants: TenantDirectory?

    public init(configuration: ServerConfiguration, router: Router,
                authorizer: any CallAuthorizer, calls: CallTerminator? = nil, tenants: TenantDirectory? = nil,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(("strata: " + $0 + "\n").utf8)) }) {
        self.configuration = configuration
        self.env = ConnectionEnvironment(configuration: configuration, router: router, authorizer: authorizer, log: log)
        self.tenants = tenants
        calls?.attach(self)
    }

    /// A server with every service: Streams, Snapshots, Projections and
    /// Admin, authorizing calls against `system`'s keys and `adminKey`.
    public convenience init(configuration: ServerConfiguration, engine: StorageEngine, system: SystemStore,
                            adminKey: String, projections: ProjectionManager,
                            backupDirectory: String, drainTimeout: Duration = .seconds(10), maxAdminOperations: Int = 2,
                            log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(("strata: " + $0 + "\n").utf8)) }) {
        var router = Router()
        StreamsService(engine: engine, readPageSize: configuration.readPageSize, maxFrameSize: configuration.maxFrameSize,
                       subscriptions: configuration.subscriptions).register(in: &router)
        SnapshotsService(engine: engine, readPageSize: configuration.readPageSize, maxFrameSize: configuration.maxFrameSize)
            .register(in: &router)
        ProjectionsService(manager: projections).register(in: &router)
        let calls = CallTerminator()
        let tenants = TenantDirectory(system: system, engine: engine, projections: projections, calls: calls,
                                      backupDirectory: backupDirectory, drainTimeout: drainTimeout, log: log)
        AdminService(tenants: tenants, maxOperations: maxAdminOperations).register(in: &router)
        self.init(configuration: configuration, router: router,
                  authorizer: KeyAuthorizer(system: system, adminKey: adminKey), calls: calls, tenants: tenants, log: log)
    }

    /// Binds and starts accepting. Returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws(SocketError) -> UInt16 {
        // A vanished peer must not kill the process (sends also use MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        let (fd, port) = try Socket.listen(host: configuration.host, port: configuration.port, backlog: 512)
        queue.sync {
            listenFD = fd
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [self] in acceptAll() }
            source.setCancelHandler { Glibc.close(fd) }
            acceptSource = source
            source.resume()
        }
        return port
    }

    /// Every method the server serves, with what it needs of a caller's key.
    public var permissions: [String: Permission] {
        Dictionary(uniqueKeysWithValues: env.router.methods.compactMap { method in env.router.permission(for: method).map { (method, $0) } })
    }

    /// Open connections now.
    public var connectionCount: Int { queue.sync { connections.count } }

    /// Bytes queued for each open connection's socket (what slow clients cost).
    public var queuedBytesPerConnection: [Int] {
        let open: [Connection] = queue.sync { Array(connections.values) }
        return open.map(\.queuedBytes)
    }

    private func acceptAll() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN && errno != EWOULDBLOCK { env.log("accept: \(String(cString: strerror(errno)))") }
                return
            }
            if stopping || connections.count >= configuration.maxConnections {
                refuse(fd, reason: stopping ? "server shutting down" : "too many connections (limit \(configuration.maxConnections))")
                continue
            }
            do {
                try Socket.setNonBlocking(fd)
            } catch {
                Glibc.close(fd)
                continue
            }
            Socket.setNoDelay(fd)
            let id = nextConnectionID
            nextConnectionID += 1
            allClosed.enter()
            let connection = Connection(id: id, fd: fd, env: env) { [self] id in
                queue.async { [self] in
                    if connections.removeValue(forKey: id) != nil { allClosed.leave() }
                }
            }
            connections[id] = connection
            connection.start()
        }
    }

    /// Answers a connection over the limit with the preface and a GOAWAY
    /// (RESOURCE_EXHAUSTED or UNAVAILABLE) and closes it, without reading.
    private func refuse(_ fd: Int32, reason: String) {
        let goAway = Strata_V1_GoAwayWire.make(code: stopping ? .unavailable : .resourceExhausted, reason: reason)
        _ = goAway.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        Glibc.close(fd)
        env.log("refused a connection: \(reason)")
    }

    /// Ends the calls `match` selects on every connection (see
    /// `Connection.endCalls`); calls `done` with how many once every
    /// connection has done so.
    func endCalls(onlyStreaming: Bool, error: RPCError, where match: @escaping @Sendable (CallContext) -> Bool,
                  done: @escaping @Sendable (Int) -> Void) {
        let open: [Connection] = queue.sync { Array(connections.values) }
        let group = DispatchGroup()
        let total = Mutex(0)
        for connection in open {
            group.enter()
            connection.endCalls(onlyStreaming: onlyStreaming, error: error, where: match) { count in
                total.withLock { $0 += count }
                group.leave()
            }
        }
        group.notify(queue: .global()) { done(total.withLock { $0 }) }
    }

    /// Graceful shutdown: stop accepting, GOAWAY every connection, let
    /// in-flight calls finish (new calls get UNAVAILABLE), and close. After
    /// `shutdownGracePeriod` the remaining connections are closed. Blocks.
    public func shutdown() {
        let open: [Connection] = queue.sync {
            stopping = true
            acceptSource?.cancel()
            acceptSource = nil
            return Array(connections.values)
        }
        for connection in open { connection.shutdown() }
        if allClosed.wait(timeout: .now() + configuration.shutdownGracePeriod.seconds) == .timedOut {
            let remaining: [Connection] = queue.sync { Array(connections.values) }
            env.log("shutdown: closing \(remaining.count) connection(s) still busy after \(configuration.shutdownGracePeriod)")
            for connection in remaining { connection.forceClose() }
            _ = allClosed.wait(timeout: .now() + 5)
        }
    }
}

import StrataProto

/// Bytes of a preface plus a GOAWAY frame, for refusing a connection.
enum Strata_V1_GoAwayWire {
    static func make(code: StatusCode, reason: String) -> [UInt8] {
        var goAway = Strata_V1_GoAway()
        goAway.code = code.rawValue
        goAway.reason = reason
        let payload: [UInt8] = (try? goAway.serializedBytes()) ?? []
        return Preface.bytes + Frame(type: .goAway, payload: payload).encoded
    }
}
