import Dispatch
import StrataSupport
import StrataWire

/// Lets services end other calls: those of a revoked key, of a tenant being
/// deleted or compacted. Created before the server (services are built
/// first), attached to it by the server's init.
///
/// Thread-safe: the server reference is a `Locked`.
public final class CallTerminator: Sendable {
    /// Weak: the server owns (through its router) the services that own this.
    private struct WeakServer { weak var value: RPCServer? }
    private let server = Locked(WeakServer())

    public init() {}

    func attach(_ server: RPCServer) {
        self.server.withLock { $0.value = server }
    }

    /// Ends matching calls on every connection and waits (at most
    /// `timeout`) until each connection has done so. Returns how many ended.
    @discardableResult
    func endCalls(onlyStreaming: Bool, error: RPCError, timeout: Duration = .seconds(5),
                  where match: @escaping @Sendable (CallContext) -> Bool) -> Int {
        guard let server = server.withLock({ $0.value }) else { return 0 }
        let finished = DispatchSemaphore(value: 0)
        let count = Locked(0)
        server.endCalls(onlyStreaming: onlyStreaming, error: error, where: match) { ended in
            count.withLock { $0 = ended }
            finished.signal()
        }
        _ = finished.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000)))
        return count.withLock { $0 }
    }
}
