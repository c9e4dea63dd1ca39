/// The principals a connection's recent calls were authorized as, by
/// authorization header, tenant and permission. A client sends the same key
/// on every call, and checking a key costs a SHA-256 and a key-store lookup
/// (7 % of the server's CPU in `bench append`); a hit costs one hash of the
/// header.
///
/// Sound because an authorizer's answer for the same header, tenant and
/// permission changes only when `CallAuthorizer.revocationCount` moves: keys
/// are never edited, only created (an unknown key is never remembered: only
/// successes are) and revoked, and tenants are only created and removed.
/// Every entry is dropped when the count moves.
///
/// A value type owned by its connection's queue.
struct AuthorizationCache {
    struct Key: Hashable {
        let header: String
        let tenant: String
        let permission: Permission
    }

    /// Entries kept at most; a connection rarely uses more than a key or two.
    static let capacity = 16

    private var entries: [Key: Principal] = [:]
    /// The revocation count the entries were checked at.
    private var checkedAt: UInt64 = 0

    /// The principal remembered for `key`, if nothing was revoked since.
    mutating func principal(for key: Key, revocationCount: UInt64) -> Principal? {
        if revocationCount != checkedAt {
            entries.removeAll()
            checkedAt = revocationCount
            return nil
        }
        return entries[key]
    }

    /// Remembers a successful check made at `revocationCount` (read before
    /// the check began, so a revocation racing it drops the entry at the
    /// next lookup).
    mutating func remember(_ principal: Principal, for key: Key, checkedAt revocationCount: UInt64) {
        guard revocationCount == checkedAt else { return }
        if entries.count >= Self.capacity { entries.removeAll() }
        entries[key] = principal
    }
}
