import StrataProto
import StrataWire

/// The admission step between a call's HEADERS and its handler: which
/// tenant the call names, and whether its key may call the method there.
/// Keeps the connection's cache of recent answers (`AuthorizationCache`), so
/// a client that sends the same key on every call is checked once until
/// something is revoked.
///
/// A value type owned by its connection's queue.
struct CallAdmission {
    /// Who the call acts as, for which tenant, and the revocation count the
    /// answer was made at (a call whose request arrives after a revocation
    /// is checked again: `recheck`).
    struct Admitted {
        let tenant: String
        let principal: Principal
        let authorizedAt: UInt64
    }

    let authorizer: any CallAuthorizer
    private var cache = AuthorizationCache()

    init(authorizer: any CallAuthorizer) {
        self.authorizer = authorizer
    }

    /// Admits a call to `method` (needing `permission`) with `headers`, or
    /// throws the status that refuses it: INVALID_ARGUMENT for a tenant
    /// method that names no tenant, UNAUTHENTICATED or PERMISSION_DENIED
    /// from the authorizer.
    mutating func admit(method: String, permission: Permission, metadata: [String: String]) throws(RPCError) -> Admitted {
        var tenant = ""
        if permission != .serverAdmin {
            guard let named = metadata[MetadataKey.tenant], !named.isEmpty else {
                throw RPCError.invalidArgument(field: "metadata.tenant", reason: "every call names its tenant")
            }
            tenant = named
        }
        // Read before the check: a revocation racing it moves the count and
        // makes the request's arrival check again.
        let authorizedAt = authorizer.revocationCount
        let cacheKey = metadata[MetadataKey.authorization].map {
            AuthorizationCache.Key(header: $0, tenant: tenant, permission: permission)
        }
        if let cacheKey, let known = cache.principal(for: cacheKey, revocationCount: authorizedAt) {
            return Admitted(tenant: tenant, principal: known, authorizedAt: authorizedAt)
        }
        let principal = try authorizer.authorize(method: method, permission: permission,
                                                 tenant: tenant.isEmpty ? nil : tenant, metadata: metadata)
        if let cacheKey { cache.remember(principal, for: cacheKey, checkedAt: authorizedAt) }
        return Admitted(tenant: tenant, principal: principal, authorizedAt: authorizedAt)
    }

    /// Checks an admitted call again if anything was revoked since it was
    /// admitted (its key, or its tenant): a call must not run on a key
    /// revoked between its HEADERS and its request.
    func recheck(method: String, permission: Permission, tenant: String, metadata: [String: String],
                 authorizedAt: UInt64) throws(RPCError) {
        guard authorizer.revocationCount != authorizedAt else { return }
        _ = try authorizer.authorize(method: method, permission: permission,
                                     tenant: tenant.isEmpty ? nil : tenant, metadata: metadata)
    }
}
