@testable import StrataServer
import StrataStorage
import Testing

@Suite("The per-connection authorization cache")
struct AuthorizationCacheTests {
    let writer = AuthorizationCache.Key(header: "Bearer k1", tenant: "acme", permission: .tenant(.write))
    let principal = Principal.key(id: "k1", tenant: "acme", role: .write)

    @Test("a remembered check is found again for the same header, tenant and permission only")
    func hitsOnlyTheSameCall() {
        var cache = AuthorizationCache()
        #expect(cache.principal(for: writer, revocationCount: 0) == nil)
        cache.remember(principal, for: writer, checkedAt: 0)
        #expect(cache.principal(for: writer, revocationCount: 0) == principal)
        #expect(cache.principal(for: .init(header: "Bearer k1", tenant: "other", permission: .tenant(.write)), revocationCount: 0) == nil)
        #expect(cache.principal(for: .init(header: "Bearer k1", tenant: "acme", permission: .tenant(.admin)), revocationCount: 0) == nil)
        #expect(cache.principal(for: .init(header: "Bearer k2", tenant: "acme", permission: .tenant(.write)), revocationCount: 0) == nil)
    }

    @Test("a revocation forgets every entry, and a check that raced one is not remembered")
    func revocationsForget() {
        var cache = AuthorizationCache()
        _ = cache.principal(for: writer, revocationCount: 3)
        cache.remember(principal, for: writer, checkedAt: 3)
        #expect(cache.principal(for: writer, revocationCount: 4) == nil)
        #expect(cache.principal(for: writer, revocationCount: 4) == nil)  // gone, not just hidden
        // Checked at 4, but the cache already saw 5: a revocation happened meanwhile.
        _ = cache.principal(for: writer, revocationCount: 5)
        cache.remember(principal, for: writer, checkedAt: 4)
        #expect(cache.principal(for: writer, revocationCount: 5) == nil)
    }

    @Test("it holds at most its capacity")
    func bounded() {
        var cache = AuthorizationCache()
        for index in 0 ... AuthorizationCache.capacity {
            cache.remember(principal, for: .init(header: "Bearer \(index)", tenant: "acme", permission: .tenant(.read)), checkedAt: 0)
        }
        let kept = (0 ... AuthorizationCache.capacity).filter {
            cache.principal(for: .init(header: "Bearer \($0)", tenant: "acme", permission: .tenant(.read)), revocationCount: 0) != nil
        }
        #expect(kept.count <= AuthorizationCache.capacity)
        #expect(kept.contains(AuthorizationCache.capacity))  // the newest is there
    }
}
