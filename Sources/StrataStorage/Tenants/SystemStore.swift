import Foundation
import StrataSupport
import Synchronization
import StrataLMDB

/// What an API key may do in its tenant. Ordered: each role includes the
/// ones before it.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    /// Read streams, subscribe, query history and projection state.
    case read
    /// Also append, delete streams and save snapshots.
    case write
    /// Also manage the tenant's projections and keys, and run its admin
    /// commands (stats, backup, verify, compact).
    case admin

    private var rank: Int {
        switch self {
        case .read: 0
        case .write: 1
        case .admin: 2
        }
    }

    public static func < (lhs: Role, rhs: Role) -> Bool { lhs.rank < rhs.rank }
}

/// A tenant in the registry.
public struct TenantRecord: Codable, Sendable, Equatable {
    public var name: String
    /// Nanoseconds since the epoch.
    public var createdAt: Int64
    /// The tenant's size quota in bytes (its LMDB map size); nil: the
    /// server's `storage.map_size_mib`.
    public var maxSizeBytes: Int?

    public init(name: String, createdAt: Int64, maxSizeBytes: Int?) {
        self.name = name
        self.createdAt = createdAt
        self.maxSizeBytes = maxSizeBytes
    }
}

/// An API key as stored: never the secret, only its SHA-256.
public struct KeyRecord: Codable, Sendable, Equatable {
    /// The public half of the key, shown in listings and logs.
    public var id: String
    public var tenant: String
    public var role: Role
    /// A free-text note to tell keys apart ("billing service").
    public var label: String
    /// SHA-256 of the secret half.
    public var secretHash: [UInt8]
    public var createdAt: Int64
    public var revokedAt: Int64?

    public init(id: String, tenant: String, role: Role, label: String, secretHash: [UInt8], createdAt: Int64, revokedAt: Int64? = nil) {
        self.id = id
        self.tenant = tenant
        self.role = role
        self.label = label
        self.secretHash = secretHash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// The system environment, `<data>/system/`: the tenant registry and the
/// API keys. Small and rarely written: every change is one LMDB transaction.
///
/// Key records are also kept decoded in memory (`keyCache`), because the
/// server looks a key up on every call and decoding its JSON each time
/// cost a third of the single-append throughput. The server process is the
/// only writer of this environment, and every change updates the cache
/// right after its commit, so a revocation is seen from the next call on.
///
/// | database  | key           | value                 |
/// |-----------|---------------|-----------------------|
/// | `meta`    | setting name  | setting value         |
/// | `tenants` | tenant name   | `TenantRecord` (JSON) |
/// | `keys`    | key id        | `KeyRecord` (JSON)    |
///
/// Thread-safe: LMDB serializes writers and readers need no lock.
public final class SystemStore: Sendable {
    public let path: String
    private let env: Environment
    /// Transactions run behind it; `close()` waits for them and refuses later ones.
    private let gate = ReadGate()
    private let meta: Database
    private let tenantsDB: Database
    private let keysDB: Database
    /// Decoded key records by id. Misses are filled while holding the lock,
    /// so a fill can never overwrite a newer record written meanwhile (the
    /// writer updates the cache after its commit, under the same lock).
    private let keyCache = Locked<[String: KeyRecord]>([:])
    private let revocations = Atomic<UInt64>(0)

    /// Goes up (after the change is visible) with every key revocation and
    /// tenant removal: a call authorized earlier needs checking again only
    /// when this has moved.
    public var revocationCount: UInt64 { revocations.load(ordering: .acquiring) }

    static let schemaVersion: UInt32 = 1

    /// Opens (creating if needed) the system environment in `<data>/system/`.
    public init(dataDirectory: String) throws(StorageError) {
        let path = (dataDirectory as NSString).appendingPathComponent("system")
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let env = try Environment(path: path, options: EnvironmentOptions(mapSize: 64 << 20, maxDatabases: 4, maxReaders: 126))
            (meta, tenantsDB, keysDB) = try env.write { txn in
                let meta = try txn.openDatabase("meta", flags: .create)
                let key = Array("schema-version".utf8)
                if let stored = try key.withUnsafeBytes({ try txn.borrowValue(meta, key: $0) }) {
                    let version = stored.count == 4 ? UInt32(littleEndian: stored.loadUnaligned(as: UInt32.self)) : .max
                    if version > Self.schemaVersion {
                        throw StorageError.newerSchema(path: path, found: version, supported: Self.schemaVersion)
                    }
                } else {
                    try key.withUnsafeBytes { k in
                        try withUnsafeBytes(of: Self.schemaVersion.littleEndian) { try txn.put(meta, key: k, value: $0) }
                    }
                }
                return (meta, try txn.openDatabase("tenants", flags: .create), try txn.openDatabase("keys", flags: .create))
            }
            self.env = env
        } catch {
            throw EventStore.storageError(error, tenant: "(system)", mapSize: 64 << 20)
        }
    }

    /// Waits for running transactions, then closes the environment; later
    /// calls fail with `closed` (an admin operation still finishing when the
    /// server shuts down gets an error, never a closed environment).
    public func close() { gate.close { env.close() } }

    // MARK: - Tenants

    public func tenants() throws(StorageError) -> [TenantRecord] {
        try readAll(tenantsDB)
    }

    public func tenant(_ name: String) throws(StorageError) -> TenantRecord? {
        try readOne(tenantsDB, key: name)
    }

    /// Registers a tenant; fails with `.tenantExists` if the name is taken.
    public func insertTenant(_ record: TenantRecord) throws(StorageError) {
        try mutate { txn throws in
            if try Self.get(txn, tenantsDB, record.name) != nil { throw StorageError.tenantExists(name: record.name) }
            try Self.put(txn, tenantsDB, record.name, record)
        }
    }

    public func updateTenant(_ record: TenantRecord) throws(StorageError) {
        try mutate { txn throws in
            guard try Self.get(txn, tenantsDB, record.name) != nil else { throw StorageError.tenantNotFound(name: record.name) }
            try Self.put(txn, tenantsDB, record.name, record)
        }
    }

    /// Removes a tenant and every key of it, in one transaction (keys are
    /// found inside it, so one created meanwhile goes too). Returns how many
    /// keys were removed.
    @discardableResult
    public func removeTenant(_ name: String) throws(StorageError) -> Int {
        let removed = try mutate { txn throws -> Int in
            let doomed: [String] = try txn.withCursor(keysDB) { cursor in
                var ids: [String] = []
                var entry = try cursor.first()
                while let current = entry {
                    // A record that does not decode is kept: never guessed at.
                    if let record = try? JSONDecoder().decode(KeyRecord.self, from: Data(current.value)), record.tenant == name {
                        ids.append(record.id)
                    }
                    entry = try cursor.next()
                }
                return ids
            }
            for id in doomed { try Self.delete(txn, keysDB, id) }
            guard try Self.delete(txn, tenantsDB, name) else { throw StorageError.tenantNotFound(name: name) }
            return doomed.count
        }
        keyCache.withLock { cache in
            cache = cache.filter { $0.value.tenant != name }
        }
        revocations.add(1, ordering: .releasing)
        return removed
    }

    // MARK: - Keys

    public func key(id: String) throws(StorageError) -> KeyRecord? {
        try keyCache.withLock { cache throws(StorageError) -> KeyRecord? in
            if let cached = cache[id] { return cached }
            let record: KeyRecord? = try readOne(keysDB, key: id)
            if let record { cache[id] = record }
            return record
        }
    }

    /// Every key of `tenant` (revoked ones too), oldest first.
    public func keys(tenant: String) throws(StorageError) -> [KeyRecord] {
        let all: [KeyRecord] = try readAll(keysDB)
        return all.filter { $0.tenant == tenant }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Stores a new key; its tenant must be registered.
    public func insertKey(_ record: KeyRecord) throws(StorageError) {
        try mutate { txn throws in
            guard try Self.get(txn, tenantsDB, record.tenant) != nil else { throw StorageError.tenantNotFound(name: record.tenant) }
            if try Self.get(txn, keysDB, record.id) != nil { throw StorageError.keyExists(id: record.id) }
            try Self.put(txn, keysDB, record.id, record)
        }
        keyCache.withLock { $0[record.id] = record }
    }

    /// Marks a key of `tenant` revoked (idempotent: an already revoked key
    /// keeps its first revocation time). A key of another tenant is
    /// reported as not found.
    public func revokeKey(id: String, tenant: String, at time: Int64) throws(StorageError) -> KeyRecord {
        let record = try mutate { txn throws in
            guard let bytes = try Self.get(txn, keysDB, id), var record = try? JSONDecoder().decode(KeyRecord.self, from: Data(bytes)),
                  record.tenant == tenant else {
                throw StorageError.keyNotFound(id: id)
            }
            if record.revokedAt == nil {
                record.revokedAt = time
                try Self.put(txn, keysDB, id, record)
            }
            return record
        }
        keyCache.withLock { $0[id] = record }
        revocations.add(1, ordering: .releasing)
        return record
    }

    // MARK: - Plumbing

    private func mutate<R>(_ body: (borrowing WriteTransaction) throws -> R) throws(StorageError) -> R {
        do {
            return try gate.enter(orThrow: .closed(tenant: "(system)")) { try env.write(body) }
        } catch {
            throw EventStore.storageError(error, tenant: "(system)", mapSize: 64 << 20)
        }
    }

    private func readOne<T: Decodable>(_ db: Database, key: String) throws(StorageError) -> T? {
        do {
            let bytes: [UInt8]? = try gate.enter(orThrow: .closed(tenant: "(system)")) {
                try env.read { txn in
                    try Array(key.utf8).withUnsafeBytes { try txn.borrowValue(db, key: $0).map { Array($0) } }
                }
            }
            guard let bytes else { return nil }
            return try decode(T.self, bytes, key: key)
        } catch {
            throw EventStore.storageError(error, tenant: "(system)", mapSize: 64 << 20)
        }
    }

    private func readAll<T: Decodable>(_ db: Database) throws(StorageError) -> [T] {
        do {
            let entries: [(String, [UInt8])] = try gate.enter(orThrow: .closed(tenant: "(system)")) {
                try env.read { txn in
                    try txn.withCursor(db) { cursor in
                        var out: [(String, [UInt8])] = []
                        var entry = try cursor.first()
                        while let current = entry {
                            out.append((String(decoding: current.key, as: UTF8.self), Array(current.value)))
                            entry = try cursor.next()
                        }
                        return out
                    }
                }
            }
            return try entries.map { (key, bytes) throws in try decode(T.self, bytes, key: key) }
        } catch {
            throw EventStore.storageError(error, tenant: "(system)", mapSize: 64 << 20)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], key: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw StorageError.corrupt(path: path, detail: "system record '\(key)' does not decode: \(error)")
        }
    }

    private static func get(_ txn: borrowing WriteTransaction, _ db: Database, _ key: String) throws -> [UInt8]? {
        try Array(key.utf8).withUnsafeBytes { try txn.borrowValue(db, key: $0).map { Array($0) } }
    }

    private static func put(_ txn: borrowing WriteTransaction, _ db: Database, _ key: String, _ value: some Encodable) throws {
        let bytes = try JSONEncoder().encode(value)
        try Array(key.utf8).withUnsafeBytes { k in try bytes.withUnsafeBytes { try txn.put(db, key: k, value: $0) } }
    }

    @discardableResult
    private static func delete(_ txn: borrowing WriteTransaction, _ db: Database, _ key: String) throws -> Bool {
        try Array(key.utf8).withUnsafeBytes { try txn.delete(db, key: $0) }
    }
}
