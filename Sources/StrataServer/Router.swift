import StrataStorage
import StrataWire

/// A server-streaming response produced on demand: the connection asks for
/// at most `max` messages whenever it has credit and buffer room, on its own
/// queue, so a slow client is never sent more than it granted.
public protocol ServerStreamSource: AnyObject {
    /// Up to `max` (≥ 1) encoded messages, and whether the stream is complete.
    /// Throwing ends the call with that status.
    func next(max: Int) throws(RPCError) -> (messages: [[UInt8]], finished: Bool)
    /// Called once, on the connection's queue, before the first `next`:
    /// `wake` (callable from any thread) asks the connection to check the
    /// source's health and pull again — how a subscription learns of commits.
    func start(wake: @escaping @Sendable () -> Void)
    /// Called on the connection's queue at each wake, with or without
    /// credit; throwing ends the call with that status.
    func checkHealth() throws(RPCError)
    /// False for a stream that only ends when the client cancels it (a
    /// subscription): a graceful shutdown ends such calls with UNAVAILABLE
    /// at once instead of waiting for them.
    var endsOnItsOwn: Bool { get }
}

extension ServerStreamSource {
    /// A read has everything it needs when it is pulled.
    public func start(wake: @escaping @Sendable () -> Void) {}
    public func checkHealth() throws(RPCError) {}
    public var endsOnItsOwn: Bool { true }
}

/// How a method is served.
public enum MethodHandler: Sendable {
    /// One request, one response. The handler calls `respond` exactly once,
    /// from any thread.
    case unary(@Sendable (_ request: [UInt8], _ context: CallContext,
                          _ respond: @escaping @Sendable (Result<[UInt8], RPCError>) -> Void) -> Void)
    /// One request, a stream of responses pulled by the connection.
    case serverStreaming(@Sendable (_ request: [UInt8], _ context: CallContext) throws(RPCError) -> any ServerStreamSource)
}

/// What a method needs of the caller's key.
public enum Permission: Sendable, Hashable {
    /// A key of the tenant with at least this role (or the server admin key).
    case tenant(Role)
    /// The server admin key only; the call names no tenant.
    case serverAdmin
}

/// A registered method: what it needs and how it is served.
public struct Route: Sendable {
    public let permission: Permission
    public let handler: MethodHandler
}

/// Method path → route. Every method declares its permission where it is
/// registered, so no method can be served without one.
public struct Router: Sendable {
    private var routes: [String: Route] = [:]

    public init() {}

    public mutating func register(_ method: String, _ permission: Permission, _ handler: MethodHandler) {
        routes[method] = Route(permission: permission, handler: handler)
    }

    public func route(for method: String) -> Route? { routes[method] }

    public func handler(for method: String) -> MethodHandler? { routes[method]?.handler }

    public func permission(for method: String) -> Permission? { routes[method]?.permission }

    public var methods: [String] { routes.keys.sorted() }
}
