import StrataStorage
import StrataWire

/// Checks every call's `authorization: Bearer <key>` against the server
/// admin key and the API keys in the system store.
///
/// Each call looks its key up in the system store, whose in-memory copy is
/// updated by every change right after it commits, so a revoked key or a
/// deleted tenant fails from the very next call on every connection.
public struct KeyAuthorizer: CallAuthorizer {
    private let system: SystemStore
    /// SHA-256 of the server admin key.
    private let adminKeyHash: [UInt8]

    public init(system: SystemStore, adminKey: String) {
        self.system = system
        self.adminKeyHash = APIKey.hash(adminKey)
    }

    public var revocationCount: UInt64 { system.revocationCount }

    public func authorize(method: String, permission: Permission, tenant: String?,
                          metadata: [String: String]) throws(RPCError) -> Principal {
        guard let header = metadata[MetadataKey.authorization], !header.isEmpty else {
            throw RPCError(.unauthenticated, "missing 'authorization' metadata: send 'Bearer <api key>'")
        }
        guard header.hasPrefix("Bearer ") else {
            throw RPCError(.unauthenticated, "the 'authorization' metadata must be 'Bearer <api key>'")
        }
        let token = String(header.dropFirst("Bearer ".count))
        // One answer for a malformed key, an unknown key, a revoked key and a
        // key of another tenant (existing or not): nothing to probe with.
        let refusal = RPCError(.unauthenticated, tenant.map { "the API key is not valid for tenant '\($0)'" } ?? "the API key is not valid")
        // A stored key's id is looked up first, so a call costs one SHA-256:
        // the admin key is only hashed for tokens that name no stored key
        // (a generated admin key has the same shape as an API key).
        let parsed = APIKey(parsing: token)
        let record: KeyRecord?
        do {
            record = try parsed.flatMap { try system.key(id: $0.id) }
        } catch {
            throw RPCError(.internal, "cannot read the key store: \(error)")
        }
        guard let parsed, let record else {
            if APIKey.constantTimeEqual(APIKey.hash(token), adminKeyHash) { return .serverAdmin }
            throw refusal
        }
        guard record.revokedAt == nil, tenant == nil || record.tenant == tenant,
              APIKey.constantTimeEqual(parsed.secretHash, record.secretHash) else {
            throw refusal
        }
        switch permission {
        case .serverAdmin:
            throw RPCError(.permissionDenied, "\(method) needs the server admin key")
        case .tenant(let needed) where record.role < needed:
            throw RPCError(.permissionDenied, "\(method) needs a key with role '\(needed.rawValue)'; key \(record.id) has role '\(record.role.rawValue)'")
        case .tenant:
            return .key(id: record.id, tenant: record.tenant, role: record.role)
        }
    }
}
