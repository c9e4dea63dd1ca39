import Dispatch
import Foundation
import StrataSupport
import Synchronization

/// Settings of the storage engine: where tenants live and how many stay open.
public struct StorageEngineOptions: Sendable {
    /// The data directory; tenants live in `<dataDirectory>/tenants/<name>/`.
    public var dataDirectory: String
    /// Settings every tenant store is opened with.
    public var store: EventStoreOptions
    /// The most tenant environments kept open. Beyond it the least recently
    /// used idle tenant is closed. Tenants in use are never closed, so the
    /// count can exceed this briefly while all of them are busy.
    public var maxOpenTenants: Int = 64
    /// A tenant unused for this long is closed (it reopens on the next call).
    public var idleTimeout: Duration = .seconds(300)

    public init(dataDirectory: String, store: EventStoreOptions = EventStoreOptions()) {
        self.dataDirectory = dataDirectory
        self.store = store
    }
}

/// Opens tenants' event stores on demand and closes idle ones.
///
/// Ownership: the table of open stores is guarded by `state` (a `Locked`). A
/// store is used only through a `TenantLease`; a leased store is never
/// closed, so no call can run on a closed environment.
public final class StorageEngine: Sendable {
    public let options: StorageEngineOptions

    struct OpenTenant {
        let store: EventStore
        var leases: Int
        var lastUsed: ContinuousClock.Instant
    }

    /// A tenant closed for maintenance: new leases fail with `refusal`;
    /// `drained` is signalled whenever its last lease is released.
    struct Exclusion {
        let refusal: StorageError
        let drained: DispatchSemaphore
    }

    struct State {
        var open: [String: OpenTenant] = [:]
        var closed = false
        var excluded: [String: Exclusion] = [:]
        /// Per-tenant map sizes (quotas) that differ from `options.store.mapSize`.
        var mapSizes: [String: Int] = [:]
    }

    let state = Locked(State())
    // A Dispatch timer's methods are thread-safe; it is set once in init.
    private nonisolated(unsafe) let idleTimer: DispatchSourceTimer

    public init(options: StorageEngineOptions) throws(StorageError) {
        self.options = options
        do {
            try FileManager.default.createDirectory(atPath: Self.tenantsDirectory(options.dataDirectory),
                                                    withIntermediateDirectories: true)
        } catch {
            throw .fileOperation(path: Self.tenantsDirectory(options.dataDirectory), reason: "cannot create the tenants directory: \(error.localizedDescription)")
        }
        idleTimer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "strata.storage.idle"))
        let interval = max(options.idleTimeout / 4, .milliseconds(10))
        idleTimer.schedule(deadline: .now() + interval.seconds, repeating: interval.seconds)
        idleTimer.setEventHandler { [weak self] in self?.closeIdleTenants() }
        idleTimer.resume()
    }

    deinit {
        idleTimer.cancel()
    }

    static func tenantsDirectory(_ data: String) -> String { (data as NSString).appendingPathComponent("tenants") }

    /// The directory of a tenant's environment.
    public func directory(of tenant: String) -> String {
        (Self.tenantsDirectory(options.dataDirectory) as NSString).appendingPathComponent(tenant)
    }

    /// Creates a tenant's environment. Fails if it exists.
    @discardableResult
    public func createTenant(_ name: String) throws(StorageError) -> TenantLease {
        try TenantName.validate(name)
        let path = directory(of: name)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            throw .tenantExists(name: name)
        }
        return try lease(name, create: true)
    }

    /// Whether a tenant's environment exists on disk.
    public func tenantExists(_ name: String) -> Bool {
        (try? TenantName.validate(name)) != nil && FileManager.default.fileExists(atPath: directory(of: name))
    }

    /// Tenants on disk, sorted by name.
    public func listTenants() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Self.tenantsDirectory(options.dataDirectory))) ?? []
        return names.filter { (try? TenantName.validate($0)) != nil }.sorted()
    }

    /// Names of the tenants whose environments are open now.
    public var openTenants: [String] {
        state.withLock { $0.open.keys.sorted() }
    }

    /// The stores open now, without leasing them (metrics): their `usage()`
    /// fails with `.closed` once closed, never touches a closed environment.
    public var openStores: [EventStore] {
        state.withLock { $0.open.values.map(\.store) }
    }

    /// Opens the tenant if needed and leases its store. Fails with
    /// `.tenantNotFound` for a tenant that was never created.
    public func lease(_ name: String) throws(StorageError) -> TenantLease {
        try TenantName.validate(name)
        return try lease(name, create: false)
    }

    /// Runs `body` with the tenant's store leased.
    public func withTenant<R>(_ name: String, _ body: (EventStore) throws -> R) throws -> R {
        let lease = try lease(name)
        defer { lease.release() }
        return try body(lease.store)
    }

    private func lease(_ name: String, create: Bool) throws(StorageError) -> TenantLease {
        let result: Result<EventStore, StorageError> = state.withLock { state in
            if state.closed { return .failure(.closed(tenant: name)) }
            if let exclusion = state.excluded[name] { return .failure(exclusion.refusal) }
            if var entry = state.open[name] {
                entry.leases += 1
                entry.lastUsed = .now
                state.open[name] = entry
                return .success(entry.store)
            }
            let path = directory(of: name)
            if !create && !FileManager.default.fileExists(atPath: path) {
                return .failure(.tenantNotFound(name: name))
            }
            evictIfFull(&state)
            var storeOptions = options.store
            storeOptions.mapSize = state.mapSizes[name] ?? options.store.mapSize
            do {
                let store = try EventStore(path: path, tenant: name, options: storeOptions)
                state.open[name] = OpenTenant(store: store, leases: 1, lastUsed: .now)
                return .success(store)
            } catch {
                return .failure(EventStore.storageError(error, tenant: name, mapSize: storeOptions.mapSize))
            }
        }
        return TenantLease(store: try result.get(), engine: self)
    }

    /// Closes the least recently used idle tenants until there is room for one more.
    private func evictIfFull(_ state: inout State) {
        while state.open.count >= options.maxOpenTenants {
            let idle = state.open.filter { $0.value.leases == 0 }.min { $0.value.lastUsed < $1.value.lastUsed }
            guard let (name, entry) = idle else { return }
            entry.store.close()
            state.open[name] = nil
        }
    }

    fileprivate func release(_ tenant: String) {
        state.withLock { state in
            if var entry = state.open[tenant] {
                entry.leases -= 1
                entry.lastUsed = .now
                state.open[tenant] = entry
                if entry.leases == 0 { state.excluded[tenant]?.drained.signal() }
            }
        }
    }

    /// Closes tenants that have been idle (no lease) for `idleTimeout`.
    public func closeIdleTenants() {
        state.withLock { state in
            let now = ContinuousClock.now
            for (name, entry) in state.open where entry.leases == 0 && now - entry.lastUsed >= options.idleTimeout {
                entry.store.close()
                state.open[name] = nil
            }
        }
    }

    /// Closes every tenant (finishing queued writes) and refuses new leases.
    public func close() {
        idleTimer.cancel()
        let stores = state.withLock { state -> [EventStore] in
            state.closed = true
            defer { state.open.removeAll() }
            return state.open.values.map(\.store)
        }
        for store in stores { store.close() }
    }
}

/// A tenant's store, kept open while the lease lives. Call `release()` when
/// done (it is also released when the lease is deinitialized).
public final class TenantLease: Sendable {
    public let store: EventStore
    private let engine: StorageEngine
    private let released = Atomic<Bool>(false)

    fileprivate init(store: EventStore, engine: StorageEngine) {
        self.store = store
        self.engine = engine
    }

    public func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) {
            engine.release(store.tenant)
        }
    }

    deinit { release() }
}
