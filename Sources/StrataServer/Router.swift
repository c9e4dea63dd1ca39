import Dispatch
import StrataStorage
import StrataWire
import SwiftProtobuf

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

    /// Registers a method served from bytes: the hand-written codecs on the
    /// hot path and tests use it; services use the typed helpers below.
    public mutating func register(_ method: String, _ permission: Permission, _ handler: MethodHandler) {
        routes[method] = Route(permission: permission, handler: handler)
    }

    public func route(for method: String) -> Route? { routes[method] }

    public func permission(for method: String) -> Permission? { routes[method]?.permission }

    public var methods: [String] { routes.keys.sorted() }
}

/// A group of methods the server serves: it registers each of them, with the
/// permission it needs, on the router. `StrataApplication` registers every
/// service; adding an RPC is a `.proto` change, a method here and its tests.
public protocol RPCService: Sendable {
    func register(in router: inout Router)
}

/// Answers one unary call, once, from any thread.
public struct UnaryResponder<Response: SwiftProtobuf.Message>: Sendable {
    fileprivate let respond: @Sendable (Result<[UInt8], RPCError>) -> Void

    public func succeed(_ response: Response) { respond(MessageCodec.encode(response)) }
    public func fail(_ error: any Error) { respond(.failure(RPCError(any: error))) }
    public func callAsFunction(_ result: Result<Response, some Error>) {
        switch result {
        case .success(let response): succeed(response)
        case .failure(let error): fail(error)
        }
    }
}

extension Router {
    /// A unary method answered by `handler`'s return value. On `queue` when
    /// given (work that touches the disk or waits must not hold a
    /// connection's queue), else on the connection's queue. A thrown error
    /// becomes the call's status (`RPCError(any:)`).
    public mutating func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ permission: Permission, _: Request.Type, on queue: DispatchQueue? = nil,
        _ handler: @escaping @Sendable (Request, CallContext) throws -> Response
    ) {
        register(method, permission, .unary { bytes, context, respond in
            let run: @Sendable () -> Void = {
                // Queued behind other work, the call may have been cancelled
                // or run out of time meanwhile: nobody waits for its answer.
                guard !context.cancellation.isCancelled else { return }
                do {
                    let request = try MessageCodec.decode(Request.self, bytes)
                    respond(MessageCodec.encode(try handler(request, context)))
                } catch {
                    respond(.failure(RPCError(any: error)))
                }
            }
            if let queue { queue.async(execute: run) } else { run() }
        })
    }

    /// A unary method that answers later through its responder (after a
    /// group commit, say), on the connection's queue until then. A thrown
    /// error answers at once.
    public mutating func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ method: String, _ permission: Permission, _: Request.Type, answering _: Response.Type,
        _ handler: @escaping @Sendable (Request, CallContext, UnaryResponder<Response>) throws -> Void
    ) {
        register(method, permission, .unary { bytes, context, respond in
            do {
                let request = try MessageCodec.decode(Request.self, bytes)
                try handler(request, context, UnaryResponder(respond: respond))
            } catch {
                respond(.failure(RPCError(any: error)))
            }
        })
    }

    /// A server-streaming method: `handler` returns the source the
    /// connection pulls messages from as the client grants credit.
    public mutating func serverStreaming<Request: SwiftProtobuf.Message>(
        _ method: String, _ permission: Permission, _: Request.Type,
        _ handler: @escaping @Sendable (Request, CallContext) throws(RPCError) -> any ServerStreamSource
    ) {
        register(method, permission, .serverStreaming { bytes, context throws(RPCError) in
            try handler(try MessageCodec.decode(Request.self, bytes), context)
        })
    }
}

/// Requests and responses of the typed helpers, through swift-protobuf.
enum MessageCodec {
    static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, _ bytes: [UInt8]) throws(RPCError) -> M {
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw RPCError(.invalidArgument, "request is not a valid \(M.protoMessageName): \(error)")
        }
    }

    static func encode(_ message: some SwiftProtobuf.Message) -> Result<[UInt8], RPCError> {
        do {
            return .success(try message.serializedBytes())
        } catch {
            return .failure(RPCError(.internal, "cannot encode response: \(error)"))
        }
    }
}
