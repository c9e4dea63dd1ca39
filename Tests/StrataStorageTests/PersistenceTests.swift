import StrataLMDB
import Foundation
import StrataTestSupport
import Testing
@testable import StrataStorage

@Suite("Persistence")
struct PersistenceTests {
    @Test("close and reopen keeps events, streams, deletions, counters and the clock")
    func reopen() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let first = try store.append(to: "a", expected: .noStream, events: events(3))
        _ = try store.append(to: "b", expected: .noStream, events: events(2))
        try store.deleteStream("b")
        let reopened = try fixture.reopen()
        defer { reopened.close() }
        #expect(try reopened.headPosition() == 5)
        #expect(try reopened.readStream("a").events.map(\.revision) == [0, 1, 2])
        #expect(try reopened.streamInfo("b").isDeleted)
        let next = try reopened.append(to: "a", expected: .exact(2), events: events(1))
        #expect(next.firstPosition == 6 && next.firstRevision == 3)
        #expect(next.recordedAt > first.recordedAt)
        let c = try reopened.append(to: "c", expected: .noStream, events: events(1))
        #expect(c.firstRevision == 0)
        // Stream numbers were not reused: "c" did not take over "a"'s index.
        #expect(try reopened.readStream("a").events.count == 4)
        #expect(try reopened.readStream("c").events.count == 1)
        // Idempotency survives a restart.
        let batch = events(1)
        _ = try reopened.append(to: "d", expected: .any, events: batch)
        reopened.close()
        let again = try EventStore(path: fixture.directory.sub("tenant"), tenant: "test", options: TestStore.defaultOptions)
        defer { again.close() }
        #expect(try again.append(to: "d", expected: .any, events: batch).replayed)
    }

    @Test("data written by a newer schema is refused with a clear error")
    func newerSchema() throws {
        let fixture = try TestStore()
        let path = fixture.directory.sub("tenant")
        fixture.store.close()
        let env = try Environment(path: path, options: EnvironmentOptions(mapSize: 256 << 20))
        let meta = try env.openDatabase("meta")
        try env.write { txn in
            try TenantDatabases.schemaVersionKey.withUnsafeBytes { key in
                try withUnsafeBytes(of: UInt32(99).littleEndian) { try txn.put(meta, key: key, value: $0) }
            }
        }
        env.close()
        #expect(throws: StorageError.newerSchema(path: path, found: 99, supported: 1)) {
            _ = try EventStore(path: path, tenant: "test", options: TestStore.defaultOptions)
        }
    }

    @Test("calls after close fail with a closed error instead of touching a closed environment")
    func closed() throws {
        let fixture = try TestStore()
        let store = fixture.store
        store.close()
        #expect(throws: StorageError.closed(tenant: "test")) { try store.headPosition() }
        #expect(throws: StorageError.closed(tenant: "test")) { try store.append(to: "a", expected: .any, events: events(1)) }
        store.close()
    }

    @Test("relaxed durability commits and flushes on close")
    func relaxed() throws {
        var options = TestStore.defaultOptions
        options.durability = .relaxed
        let fixture = try TestStore(options: options)
        _ = try fixture.store.append(to: "a", expected: .any, events: events(10))
        let reopened = try fixture.reopen(options: options)
        defer { reopened.close() }
        #expect(try reopened.headPosition() == 10)
    }

    @Test("the tenant's files open with LMDB's own tools: named databases are visible")
    func lmdbReadable() throws {
        let fixture = try TestStore()
        _ = try fixture.store.append(to: "a", expected: .any, events: events(3))
        fixture.store.close()
        let env = try Environment(path: fixture.directory.sub("tenant"), options: EnvironmentOptions(mapSize: 256 << 20))
        defer { env.close() }
        let log = try env.openDatabase("log", flags: .integerKey)
        let entries = try env.read { txn in try txn.statistics(log).entries }
        #expect(entries == 3)
    }
}

@Suite("Storage engine")
struct StorageEngineTests {
    @Test("tenant names are validated", arguments: ["", "UPPER", "has space", "-lead", "trail-", "dot.s", String(repeating: "a", count: 64)])
    func invalidNames(name: String) throws {
        let directory = TemporaryDirectory()
        let engine = try StorageEngine(options: StorageEngineOptions(dataDirectory: directory.path))
        defer { engine.close() }
        #expect(throws: (any Error).self) { try engine.createTenant(name) }
        #expect { try engine.lease(name) } throws: { error in
            if case .invalidTenantName = error as? StorageError { return true }
            return false
        }
    }

    @Test("tenants are created under tenants/<name>, opened lazily and isolated")
    func lifecycle() throws {
        let directory = TemporaryDirectory()
        var options = StorageEngineOptions(dataDirectory: directory.path)
        options.store.mapSize = 64 << 20
        let engine = try StorageEngine(options: options)
        defer { engine.close() }
        #expect(throws: StorageError.tenantNotFound(name: "acme")) { try engine.lease("acme") }
        try engine.createTenant("acme").release()
        try engine.createTenant("globex-2").release()
        #expect(throws: StorageError.tenantExists(name: "acme")) { try engine.createTenant("acme") }
        #expect(engine.listTenants() == ["acme", "globex-2"])
        #expect(FileManager.default.fileExists(atPath: directory.sub("tenants/acme/data.mdb")))
        try engine.withTenant("acme") { _ = try $0.append(to: "s", expected: .any, events: events(2)) }
        try engine.withTenant("globex-2") { store in
            let head = try store.headPosition()
            #expect(head == 0)
            #expect(throws: StorageError.streamNotFound(stream: "s")) { try store.readStream("s") }
        }
    }

    @Test("at most maxOpenTenants idle tenants stay open; idle ones close and reopen on demand")
    func boundedAndIdle() throws {
        let directory = TemporaryDirectory()
        var options = StorageEngineOptions(dataDirectory: directory.path)
        options.store.mapSize = 64 << 20
        options.maxOpenTenants = 2
        options.idleTimeout = .seconds(3600)
        let engine = try StorageEngine(options: options)
        defer { engine.close() }
        for name in ["t1", "t2", "t3"] {
            try engine.createTenant(name).release()
        }
        #expect(engine.openTenants.count == 2)
        #expect(!engine.openTenants.contains("t1"), "the least recently used tenant was closed")
        // A leased tenant is never closed, even over the bound.
        let held = try engine.lease("t1")
        let other = try engine.lease("t2")
        let third = try engine.lease("t3")
        #expect(engine.openTenants == ["t1", "t2", "t3"])
        _ = try held.store.append(to: "s", expected: .any, events: events(1))
        held.release(); other.release(); third.release()
        // Data survives closing and reopening.
        for name in ["t1", "t2", "t3", "t1"] { try engine.withTenant(name) { _ = try $0.headPosition() } }
        #expect(try engine.withTenant("t1") { try $0.headPosition() } == 1)
    }

    @Test("an idle tenant is closed after the idle timeout")
    func idleTimeout() async throws {
        let directory = TemporaryDirectory()
        var options = StorageEngineOptions(dataDirectory: directory.path)
        options.store.mapSize = 64 << 20
        options.idleTimeout = .milliseconds(1)
        let engine = try StorageEngine(options: options)
        defer { engine.close() }
        try engine.createTenant("sleepy").release()
        let held = try engine.lease("sleepy")
        engine.closeIdleTenants()
        #expect(engine.openTenants == ["sleepy"], "a leased tenant stays open")
        held.release()
        try await Task.sleep(for: .milliseconds(5))  // let the 1 ms idle timeout pass (time is the condition here)
        engine.closeIdleTenants()
        #expect(engine.openTenants.isEmpty)
        #expect(try engine.withTenant("sleepy") { try $0.headPosition() } == 0)
    }
}
