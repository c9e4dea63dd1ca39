import StrataWire

/// One call on a connection. Confined to the connection's queue.
final class ServerCall {
    let id: UInt32
    let handler: MethodHandler
    let context: CallContext
    /// What the method needs; checked again when the request arrives if a
    /// key was revoked since `authorizedAt`.
    let permission: Permission
    let authorizedAt: UInt64
    /// The protocol state shared with the client's implementation: request
    /// received or not, credit left, ended.
    var lifecycle: CallLifecycle
    /// The running server-streaming source; nil for unary calls and once ended.
    var source: (any ServerStreamSource)?
    /// When the request message arrived (call durations are measured from here).
    var requestArrivedAt: ContinuousClock.Instant?

    init(id: UInt32, handler: MethodHandler, context: CallContext, permission: Permission, authorizedAt: UInt64,
         initialWindow: Int) {
        self.id = id
        self.permission = permission
        self.authorizedAt = authorizedAt
        self.handler = handler
        self.context = context
        let kind: CallLifecycle.Kind = switch handler {
        case .unary: .unary
        case .serverStreaming: .serverStreaming
        }
        self.lifecycle = CallLifecycle(kind: kind, initialWindow: initialWindow)
    }

    /// Ends the call and drops its stream source (releasing its tenant
    /// lease). `status` other than OK tells a handler still working that
    /// it may stop (`CallContext.cancellation`).
    func end(_ status: StatusCode) {
        if status != .ok { context.cancellation.cancel() }
        lifecycle.end()
        source = nil
    }
}
