import StrataLMDB
import Foundation
import StrataTestSupport
@testable import StrataStorage
import Testing

@Suite("Verify, backup, compaction and the system store")
struct AdministrationTests {
    /// Three streams, one past a 64-revision chunk, some index entries still
    /// in memory (flushed every 100 events).
    private func populated() throws -> TestStore {
        var options = TestStore.defaultOptions
        options.indexFlushEvents = 100
        let fixture = try TestStore(options: options)
        for round in 0..<10 {
            try fixture.store.append(to: "long", expected: .any, events: events(15))
            try fixture.store.append(to: "short-\(round % 2)", expected: .any, events: events(2))
        }
        return fixture
    }

    @Test("a healthy tenant verifies clean, with index entries on disk and in memory")
    func healthy() throws {
        let fixture = try populated()
        var reports: [OperationProgress] = []
        let report = try fixture.store.verify { reports.append($0); return true }
        #expect(report.isConsistent, "\(report.issues)")
        #expect(report.eventsChecked == 170)
        #expect(report.streamsChecked == 3)
        #expect(report.headPosition == 170)
        #expect(reports.last?.phase == "done")
    }

    @Test("verify finds deliberately corrupted index entries, each by kind and position")
    func corruption() throws {
        let fixture = try populated()
        fixture.store.close()
        // Corrupt the closed tenant with LMDB directly.
        let env = try Environment(path: fixture.directory.sub("tenant"), options: EnvironmentOptions(mapSize: 256 << 20, maxDatabases: 16))
        let victimID: UUID = try env.write { txn in
            let log = try txn.openDatabase("log", flags: .integerKey)
            let index = try txn.openDatabase("stream-index")
            let ids = try txn.openDatabase("event-ids")
            let streams = try txn.openDatabase("streams")
            // 1. Drop the second chunk (revisions 64…127) of "long".
            let long = try Array("long".utf8).withUnsafeBytes { try #require(try txn.borrowValue(streams, key: $0)).map { $0 } }
            let number = try #require(long.withUnsafeBytes { StreamRecord(decoding: $0) })
            let removed = try Keys.withStreamRevision(number.number, 64) { try txn.delete(index, key: $0) }
            #expect(removed)
            // 2. Point the event id of position 5 at position 6.
            let record = try Keys.withPosition(5) { try #require(try txn.borrowValue(log, key: $0)).map { $0 } }
            let id = record.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(fromByteOffset: 16, as: uuid_t.self)) }
            try withUnsafeBytes(of: id.uuid) { key in
                try Keys.withPositionValue(6) { try txn.put(ids, key: key, value: $0) }
            }
            return id
        }
        env.close()
        let store = try EventStore(path: fixture.directory.sub("tenant"), tenant: "test", options: TestStore.defaultOptions)
        defer { store.close() }
        let report = try store.verify { _ in true }
        let kinds = Set(report.issues.map(\.kind))
        #expect(kinds.contains("unindexed_event"))
        #expect(kinds.contains("index_revision_gap"))
        #expect(kinds.contains("event_id_mismatch"))
        #expect(kinds.contains("event_id_orphan"))
        // 64 revisions of "long" lost their index entries, one report each.
        #expect(report.issues.filter { $0.kind == "unindexed_event" }.count == 64)
        #expect(report.issues.allSatisfy { $0.kind != "unindexed_event" || $0.stream == "long" })
        #expect(report.issues.first { $0.kind == "event_id_mismatch" }?.position == 5)
        #expect(report.issues.first { $0.kind == "event_id_orphan" }?.detail.contains(victimID.uuidString) == true)
        let limited = try store.verify(maxIssues: 3) { _ in true }
        #expect(limited.issues.count == 3)
        #expect(limited.issueCount == report.issueCount)
    }

    @Test("cancelling verify through its progress handler stops it with an error")
    func cancelVerify() throws {
        let fixture = try populated()
        #expect(throws: StorageError.self) { _ = try fixture.store.verify { _ in false } }
    }

    @Test("a backup opens as a tenant with the same events, and the engine restores and compacts")
    func backupRestoreCompact() throws {
        let directory = TemporaryDirectory()
        var options = StorageEngineOptions(dataDirectory: directory.path)
        options.store.mapSize = 64 << 20
        let engine = try StorageEngine(options: options)
        defer { engine.close() }
        let lease = try engine.createTenant("source")
        for i in 0..<50 { try lease.store.append(to: "s-\(i % 5)", expected: .any, events: events(20)) }
        var copied: UInt64 = 0
        let manifest = try lease.store.backup(to: directory.sub("backups/one")) { copied = $0.done; return true }
        lease.release()
        #expect(manifest.headPositionAtLeast == 1000)
        #expect(copied == manifest.bytes)
        #expect(throws: StorageError.self) { _ = try engine.lease("source").store.backup(to: directory.sub("backups/one")) { _ in true } }

        let exclusion = try engine.exclude("copy", refusal: .tenantNotFound(name: "copy"))
        try engine.restore(exclusion, from: directory.sub("backups/one/data.mdb")) { _ in true }
        exclusion.end()
        let copy = try engine.lease("copy")
        #expect(try copy.store.verify { _ in true }.isConsistent)
        #expect(try copy.store.headPosition() == 1000)
        copy.release()

        // Compaction: excluded tenants refuse leases meanwhile.
        let compaction = try engine.exclude("source", refusal: .tenantBusy(name: "source", reason: "compacting"))
        #expect(throws: StorageError.tenantBusy(name: "source", reason: "compacting")) { _ = try engine.lease("source") }
        #expect(throws: StorageError.self) { _ = try engine.exclude("source", refusal: .tenantBusy(name: "source", reason: "again")) }
        try compaction.closeWhenIdle(timeout: .seconds(1))
        let sizes = try engine.compact(compaction) { _ in true }
        compaction.end()
        #expect(sizes.after <= sizes.before)
        let after = try engine.lease("source")
        defer { after.release() }
        #expect(try after.store.headPosition() == 1000)
        #expect(try after.store.verify { _ in true }.isConsistent)
    }

    @Test("a cancelled backup leaves nothing behind and the name can be used again")
    func cancelledBackup() throws {
        let fixture = try populated()
        let directory = fixture.directory.sub("backups/cut")
        #expect(throws: StorageError.self) { _ = try fixture.store.backup(to: directory) { _ in false } }
        #expect(!FileManager.default.fileExists(atPath: directory))
        let manifest = try fixture.store.backup(to: directory) { _ in true }
        #expect(manifest.headPositionAtLeast == 170)
        #expect(FileManager.default.fileExists(atPath: directory + "/backup.json"))
    }

    @Test("closeWhenIdle waits for leases and gives up after its timeout")
    func drainTimeout() throws {
        let directory = TemporaryDirectory()
        let engine = try StorageEngine(options: StorageEngineOptions(dataDirectory: directory.path))
        defer { engine.close() }
        let held = try engine.createTenant("busy")
        let exclusion = try engine.exclude("busy", refusal: .tenantBusy(name: "busy", reason: "test"))
        #expect(throws: StorageError.tenantBusy(name: "busy", reason: "still in use after 0.05 seconds")) {
            try exclusion.closeWhenIdle(timeout: .milliseconds(50))
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { held.release() }
        try exclusion.closeWhenIdle(timeout: .seconds(5))
        exclusion.end()
        #expect(try engine.lease("busy").store.headPosition() == 0)
    }

    @Test("a retired tenant's files leave its name at once and go for good at the next removal of leftovers")
    func retireAndRemoveLeftovers() throws {
        let directory = TemporaryDirectory()
        let engine = try StorageEngine(options: StorageEngineOptions(dataDirectory: directory.path))
        defer { engine.close() }
        let lease = try engine.createTenant("gone")
        lease.release()
        let exclusion = try engine.exclude("gone", refusal: .tenantNotFound(name: "gone"))
        try exclusion.closeWhenIdle(timeout: .seconds(5))
        let retired = try engine.retireFiles(of: exclusion)
        exclusion.end()
        #expect(!engine.tenantExists("gone"))
        #expect(engine.listTenants().isEmpty)
        #expect(FileManager.default.fileExists(atPath: retired.path))
        #expect((retired.path as NSString).lastPathComponent.hasPrefix(".deleted-gone-"))
        // As after a crash before the files were removed: start-up's sweep takes them.
        let notes = engine.removeLeftovers()
        #expect(notes.count == 1 && notes[0].contains(".deleted-gone-"))
        #expect(!FileManager.default.fileExists(atPath: retired.path))
        #expect(engine.removeLeftovers().isEmpty)
    }

    @Test("the system store keeps tenants and keys; removing a tenant removes its keys")
    func systemStore() throws {
        let directory = TemporaryDirectory()
        let system = try SystemStore(dataDirectory: directory.path)
        defer { system.close() }
        try system.insertTenant(TenantRecord(name: "acme", createdAt: 1, maxSizeBytes: 1 << 20))
        #expect(throws: StorageError.tenantExists(name: "acme")) { try system.insertTenant(TenantRecord(name: "acme", createdAt: 2, maxSizeBytes: nil)) }
        let key = KeyRecord(id: "00112233aabbccdd", tenant: "acme", role: .write, label: "svc", secretHash: [1, 2, 3], createdAt: 5)
        try system.insertKey(key)
        #expect(throws: StorageError.tenantNotFound(name: "ghost")) {
            try system.insertKey(KeyRecord(id: "ffff", tenant: "ghost", role: .read, label: "", secretHash: [], createdAt: 1))
        }
        #expect(try system.key(id: key.id) == key)
        #expect(throws: StorageError.keyNotFound(id: key.id)) { _ = try system.revokeKey(id: key.id, tenant: "other", at: 9) }
        let revoked = try system.revokeKey(id: key.id, tenant: "acme", at: 9)
        #expect(revoked.revokedAt == 9)
        #expect(try system.revokeKey(id: key.id, tenant: "acme", at: 10).revokedAt == 9)
        #expect(Role.read < Role.write && Role.write < Role.admin)
        try system.removeTenant("acme")
        #expect(try system.tenants().isEmpty)
        #expect(try system.key(id: key.id) == nil)
    }
}
