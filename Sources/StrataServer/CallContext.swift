import StrataStorage
import Synchronization
import StrataWire

/// Who a call acts as, once authorized.
public enum Principal: Sendable, Equatable {
    /// The server admin key: every method, every tenant.
    case serverAdmin
    /// An API key of the call's tenant.
    case key(id: String, tenant: String, role: Role)

    /// The key id, for ending a revoked key's calls; nil for the server admin.
    public var keyID: String? {
        if case .key(let id, _, _) = self { return id }
        return nil
    }
}

/// What a handler knows about its call.
public struct CallContext: Sendable {
    public let method: String
    /// The tenant the call acts for; empty for server-level methods
    /// (creating and listing tenants), which take names in their requests.
    public let tenant: String
    public let metadata: [String: String]
    public let requestID: String?
    public let deadline: ContinuousClock.Instant?
    public let peer: String
    public let principal: Principal
    /// Set when the call ends before its handler is done: the client sent
    /// CANCEL, the deadline passed, or the connection went. A handler doing
    /// long work checks it and stops; its answer is then dropped.
    public let cancellation: CallCancellation
}

/// Whether a call ended (CANCELLED, DEADLINE_EXCEEDED, a closed connection)
/// before its handler answered. Set once by the connection that owns the
/// call, read from any thread (an atomic).
public final class CallCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)

    public init() {}

    public var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    func cancel() {
        cancelled.store(true, ordering: .releasing)
    }
}

/// Decides whether a call may run and as whom. The server calls it for
/// every call after the headers arrive and before the handler runs, on the
/// connection's queue.
public protocol CallAuthorizer: Sendable {
    /// `tenant` is nil for server-level methods. Throws UNAUTHENTICATED for
    /// a missing or unknown key (or one of another tenant: the same answer
    /// whether or not that tenant exists) and PERMISSION_DENIED for a role
    /// too weak for `permission`.
    func authorize(method: String, permission: Permission, tenant: String?, metadata: [String: String]) throws(RPCError) -> Principal
    /// Moves whenever a key is revoked or a tenant removed; a call
    /// authorized at an earlier count is checked again before it runs.
    var revocationCount: UInt64 { get }
}

extension StorageEngine {
    /// The tenant a call acts for, leased for the call's work; a missing or
    /// closed tenant becomes the call's status. Shared by every service.
    func lease(for context: CallContext) throws(RPCError) -> TenantLease {
        do {
            return try lease(context.tenant)
        } catch {
            throw RPCError(error)
        }
    }
}
