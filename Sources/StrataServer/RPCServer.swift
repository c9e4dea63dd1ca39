import Dispatch
import Foundation
import Logging
import StrataProjections
import StrataSupport
import StrataWire

/// The RPC server: a listening socket, its connections, the router they
/// share, and the metrics endpoint. `StrataApplication` builds it with every
/// service; tests may build one with a router of their own.
///
/// `@unchecked Sendable`: `listenFD`, `acceptSource`, `connections`,
/// `nextConnectionID`, `stopping`, `ready` and `endpoint` are confined to
/// `queue`.
public final class RPCServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    /// The server's metrics (rendered by `GET /metrics`).
    public let metrics: ServerMetrics
    private let env: ConnectionEnvironment
    private var logger: Logger { env.logger }
    private let queue = DispatchQueue(label: "strata.server.accept")
    private var listenFD: Int32 = -1
    private var acceptSource: DispatchSourceRead?
    private var connections: [UInt64: Connection] = [:]
    private var nextConnectionID: UInt64 = 1
    private var stopping = false
    /// Start-up has finished (`markReady`): `/ready` answers 200 until shutdown.
    private var ready = false
    private var endpoint: HTTPEndpoint?
    private var endpointPort: UInt16?
    private let allClosed = DispatchGroup()
    /// The tenant registry and maintenance, when built with every service.
    public let tenants: TenantDirectory?

    public init(configuration: ServerConfiguration, router: Router,
                authorizer: any CallAuthorizer, calls: CallTerminator? = nil, tenants: TenantDirectory? = nil,
                metrics: ServerMetrics = ServerMetrics(), logger: Logger = Logger(label: "strata")) {
        self.configuration = configuration
        self.metrics = metrics
        self.env = ConnectionEnvironment(configuration: configuration, router: router, authorizer: authorizer,
                                         logger: logger, metrics: metrics)
        self.tenants = tenants
        calls?.attach(self)
        metrics.setSampler { [weak self] in self?.samples() ?? [] }
    }

    /// Binds and starts accepting, and starts the metrics endpoint when
    /// configured. Returns the bound port (useful with port 0).
    @discardableResult
    public func start() throws(StartError) -> UInt16 {
        // A vanished peer must not kill the process (sends also use MSG_NOSIGNAL).
        signal(SIGPIPE, SIG_IGN)
        let (fd, port): (Int32, UInt16)
        do {
            (fd, port) = try Socket.listen(host: configuration.host, port: configuration.port, backlog: 512)
        } catch {
            throw StartError(what: "the RPC port \(configuration.host):\(configuration.port)", cause: error)
        }
        if let metricsPort = configuration.metricsPort {
            let endpoint = HTTPEndpoint(host: configuration.metricsHost, port: metricsPort, logger: logger) { [weak self] method, path in
                self?.respond(path: path) ?? HTTPEndpoint.Response(status: 503, text: "stopped")
            }
            do {
                let bound = try endpoint.start()
                queue.sync {
                    self.endpoint = endpoint
                    endpointPort = bound
                }
            } catch {
                Glibc.close(fd)
                throw StartError(what: "the metrics port \(configuration.metricsHost):\(metricsPort)", cause: error)
            }
        }
        queue.sync {
            listenFD = fd
            acceptSource = Socket.startAcceptSource(fd, queue: queue) { [self] in acceptAll() }
        }
        return port
    }

    /// The metrics endpoint's bound port, once started (nil when disabled).
    public var metricsPort: UInt16? { queue.sync { endpointPort } }

    /// Start-up has finished: `/ready` answers 200 from now until shutdown.
    public func markReady() {
        queue.sync { ready = true }
    }

    /// Whether the server takes calls now: started, start-up finished, not shutting down.
    public var isReady: Bool { queue.sync { ready && !stopping && acceptSource != nil } }

    /// `/metrics`, `/health` and `/ready`.
    private func respond(path: String) -> HTTPEndpoint.Response {
        switch path {
        case "/metrics":
            return HTTPEndpoint.Response(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
        case "/health":
            // Alive: the process answers. Readiness is /ready's business.
            return HTTPEndpoint.Response(status: 200, text: "ok")
        case "/ready":
            let (ready, stopping) = queue.sync { (self.ready && acceptSource != nil, self.stopping) }
            if stopping { return HTTPEndpoint.Response(status: 503, text: "shutting down") }
            return ready ? HTTPEndpoint.Response(status: 200, text: "ready") : HTTPEndpoint.Response(status: 503, text: "starting")
        default:
            return HTTPEndpoint.Response(status: 404, text: "not found; try /metrics, /health or /ready")
        }
    }

    /// The gauges sampled at each scrape.
    private func samples() -> [ServerMetrics.Sample] {
        typealias Sample = ServerMetrics.Sample
        var out = [Sample("strata_connections", [], Double(connectionCount)),
                   Sample("strata_calls_in_flight", [], Double(metrics.callsInFlight)),
                   Sample("strata_ready", [], isReady ? 1 : 0)]
        var subscriptionTenants = Set<String>()
        for (tenant, figures) in metrics.subscriptions.byTenant() {
            subscriptionTenants.insert(tenant)
            out.append(Sample("strata_subscriptions", [("tenant", tenant)], Double(figures.count)))
            out.append(Sample("strata_subscription_max_lag_events", [("tenant", tenant)], Double(figures.maxLag)))
        }
        guard let tenants else { return out }
        let stores = tenants.engine.openStores
        out.append(Sample("strata_open_tenants", [], Double(stores.count)))
        for store in stores {
            guard let usage = try? store.usage() else { continue }  // closed meanwhile
            let labels = [("tenant", store.tenant)]
            out.append(Sample("strata_tenant_map_size_bytes", labels, Double(usage.mapSize)))
            out.append(Sample("strata_tenant_map_used_bytes", labels, Double(usage.usedBytes)))
            if !subscriptionTenants.contains(store.tenant) {
                out.append(Sample("strata_subscriptions", labels, 0))
                out.append(Sample("strata_subscription_max_lag_events", labels, 0))
            }
        }
        for tenant in tenants.projections.runningTenants {
            guard let engine = tenants.projections.runningEngine(for: tenant),
                  let statuses = try? engine.list() else { continue }
            for status in statuses {
                let labels = [("tenant", tenant), ("projection", status.name)]
                out.append(Sample("strata_projection_position", labels, Double(status.position)))
                out.append(Sample("strata_projection_lag_events", labels, Double(status.lag)))
                for state in ProjectionStatus.State.allCases {
                    out.append(Sample("strata_projection_state", labels + [("state", state.rawValue)], status.state == state ? 1 : 0))
                }
            }
        }
        return out
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
                if errno != EAGAIN && errno != EWOULDBLOCK { logger.error("accept failed: \(String(cString: strerror(errno)))") }
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
            env.metrics.connectionAccepted()
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
        env.metrics.connectionRefused(reason: stopping ? "shutting_down" : "limit")
        logger.notice("refused a connection: \(reason)")
    }

    /// Ends the calls `match` selects on every connection (see
    /// `Connection.endCalls`); calls `done` with how many once every
    /// connection has done so.
    func endCalls(onlyStreaming: Bool, error: RPCError, where match: @escaping @Sendable (CallContext) -> Bool,
                  done: @escaping @Sendable (Int) -> Void) {
        let open: [Connection] = queue.sync { Array(connections.values) }
        let group = DispatchGroup()
        let total = Locked(0)
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
    /// `grace` (default: the configured `shutdownGracePeriod`) the remaining
    /// connections are closed. Blocks.
    public func shutdown(grace: Duration? = nil) {
        let grace = grace ?? configuration.shutdownGracePeriod
        let open: [Connection] = queue.sync {
            stopping = true
            acceptSource?.cancel()
            acceptSource = nil
            return Array(connections.values)
        }
        for connection in open { connection.shutdown() }
        if allClosed.wait(timeout: .now() + grace.seconds) == .timedOut {
            let remaining: [Connection] = queue.sync { Array(connections.values) }
            logger.warning("shutdown: closing \(remaining.count) connection(s) still busy after \(grace)")
            for connection in remaining { connection.forceClose() }
            _ = allClosed.wait(timeout: .now() + 5)
        }
        let endpoint: HTTPEndpoint? = queue.sync { defer { self.endpoint = nil }; return self.endpoint }
        endpoint?.stop()
    }
}

import StrataProto

/// The server could not start: which port, and why.
public struct StartError: Error, Sendable, CustomStringConvertible {
    public let what: String
    public let cause: SocketError
    public var description: String {
        if cause.code == EADDRINUSE {
            return "cannot listen on \(what): the port is already in use (another Strata, or another program; pick another port or stop it)"
        }
        if cause.code == EACCES {
            return "cannot listen on \(what): permission denied (ports below 1024 need privileges)"
        }
        return "cannot listen on \(what): \(cause)"
    }
}

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
