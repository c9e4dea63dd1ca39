import StrataProjections
import StrataStorage
import StrataSupport

/// The projection engines of every tenant that has projections. Each engine
/// holds a lease on its tenant, so a tenant with running projections stays
/// open while the server runs.
///
/// Thread-safe: `engines` is a `Locked`; engines are created under it (opening a
/// tenant is quick) and started outside it.
public final class ProjectionManager: Sendable {
    private struct Entry: Sendable {
        let engine: ProjectionEngine
        let lease: TenantLease
    }

    let storage: StorageEngine
    public let options: ProjectionOptions
    private struct State: ~Copyable {
        var engines: [String: Entry] = [:]
        /// Tenants under maintenance (between `stop(tenant:)` and
        /// `restart(tenant:)` or `forget(tenant:)`): no engine may start for
        /// them, even one whose lease was taken just before the stop.
        var suspended: Set<String> = []
    }
    private let engines = Locked(State())

    public init(storage: StorageEngine, options: ProjectionOptions = ProjectionOptions()) {
        self.storage = storage
        self.options = options
    }

    /// Starts the projections of every tenant that has some. A tenant that
    /// cannot be opened is reported through `log` and skipped.
    public func startAll(log: (String) -> Void = { _ in }) {
        for tenant in storage.listTenants() {
            do {
                let lease = try storage.lease(tenant)
                guard try !lease.store.projections().isEmpty else {
                    lease.release()
                    continue
                }
                lease.release()
                let engine = try engine(for: tenant)
                log("projections: tenant '\(tenant)': \(try engine.list().count) projection(s) started")
            } catch {
                log("projections: tenant '\(tenant)' not started: \(error)")
            }
        }
    }

    /// The tenant's engine, created and started on first use.
    public func engine(for tenant: String) throws(StorageError) -> ProjectionEngine {
        if let entry = engines.withLock({ $0.engines[tenant] }) { return entry.engine }
        let lease = try storage.lease(tenant)
        let (entry, created) = try engines.withLock { state throws(StorageError) -> (Entry?, Bool) in
            if state.suspended.contains(tenant) { return (nil, false) }
            if let existing = state.engines[tenant] { return (existing, false) }
            let entry = Entry(engine: ProjectionEngine(store: lease.store, options: options), lease: lease)
            state.engines[tenant] = entry
            return (entry, true)
        }
        guard let entry else {
            lease.release()
            throw .tenantBusy(name: tenant, reason: "it is under maintenance")
        }
        if !created {
            lease.release()
            return entry.engine
        }
        try entry.engine.startAll()
        return entry.engine
    }

    /// Tenants whose projection engines are running now.
    public var runningTenants: [String] {
        engines.withLock { $0.engines.keys.sorted() }
    }

    /// The tenant's engine if its projections are running; never opens one.
    public func runningEngine(for tenant: String) -> ProjectionEngine? {
        engines.withLock { $0.engines[tenant]?.engine }
    }

    /// Commits what the tenant's projections have pending, stops them and
    /// releases the tenant (before maintenance or deletion); none start for
    /// it until `restart(tenant:)` or `forget(tenant:)`. Returns how many
    /// projections were running.
    @discardableResult
    public func stop(tenant: String) -> Int {
        let stopped = engines.withLock { state -> Entry? in
            state.suspended.insert(tenant)
            return state.engines.removeValue(forKey: tenant)
        }
        guard let entry = stopped else { return 0 }
        let count = (try? entry.engine.list().count) ?? 0
        entry.engine.stopAll()
        entry.lease.release()
        return count
    }

    /// Ends the suspension of a deleted tenant (its name may be reused).
    public func forget(tenant: String) {
        _ = engines.withLock { $0.suspended.remove(tenant) }
    }

    /// Starts the tenant's projections again after maintenance, if it has any.
    public func restart(tenant: String) throws(StorageError) {
        forget(tenant: tenant)
        let lease = try storage.lease(tenant)
        defer { lease.release() }
        if try !lease.store.projections().isEmpty { _ = try engine(for: tenant) }
    }

    /// Commits what every projection has pending, stops them and releases
    /// the tenants. Call before closing the storage engine.
    public func stopAll() {
        let all = engines.withLock { state -> [Entry] in
            defer { state.engines.removeAll() }
            return Array(state.engines.values)
        }
        for entry in all {
            entry.engine.stopAll()
            entry.lease.release()
        }
    }
}
