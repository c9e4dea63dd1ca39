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

/// Whether a call was cancelled, and with which status. Set once by the
/// connection that owns the call, read from any thread (an atomic).
public final class CallCancellation: Sendable {
    /// 0 while the call runs, else the status code it ended with.
    private let code = Atomic<UInt8>(0)

    public init() {}

    /// Whether the call ended (CANCELLED, DEADLINE_EXCEEDED, …) before its handler answered.
    public var isCancelled: Bool { code.load(ordering: .acquiring) != 0 }

    /// The status the call ended with, once cancelled.
    public var status: StatusCode? {
        let raw = code.load(ordering: .acquiring)
        return raw == 0 ? nil : StatusCode(rawValue: UInt32(raw))
    }

    /// Marks the call ended with `status` (the first status wins).
    func cancel(_ status: StatusCode) {
        _ = code.compareExchange(expected: 0, desired: UInt8(clamping: status.rawValue), ordering: .acquiringAndReleasing)
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
