import StrataStorage
import StrataWire

/// What a handler knows about its call.
public struct CallContext: Sendable {
    public let method: String
    public let tenant: String
    public let metadata: [String: String]
    public let requestID: String?
    public let deadline: ContinuousClock.Instant?
    public let peer: String
}

/// Decides whether a call may run. The server calls it for every call after
/// the headers arrive and before the handler runs; API keys and roles (a
/// later issue) plug in here.
public protocol CallAuthorizer: Sendable {
    func authorize(method: String, tenant: String, metadata: [String: String]) throws(RPCError)
}

/// Development mode: any key (or none) is accepted. The server says so at
/// start-up; never use it where the port is reachable by others.
public struct DevelopmentAuthorizer: CallAuthorizer {
    public init() {}
    public func authorize(method: String, tenant: String, metadata: [String: String]) throws(RPCError) {}
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
