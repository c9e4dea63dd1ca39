import Dispatch
import Foundation
import StrataProtocolTestSupport
@testable import StrataClient
import StrataProjections
import StrataProto
@testable import StrataServer
import StrataStorage
import StrataSupport
import StrataWire
import SwiftProtobuf
import Synchronization
import Testing
import struct StrataClient.OperationProgress

/// Who calls, in the isolation matrix.
private enum Caller: CustomStringConvertible {
    case role(Role), wrongKey, noKey, serverAdmin
    var description: String {
        switch self {
        case .role(let role): "\(role.rawValue) key"
        case .wrongKey: "unknown key"
        case .noKey: "no key"
        case .serverAdmin: "server admin key"
        }
    }
}

/// Which tenant the call names, relative to the key's own (acme).
private enum Target: String, CaseIterable {
    case own = "acme", otherExisting = "globex", missing = "nowhere"
}

@Suite("Tenants, keys and authorization")
struct TenancyTests {
    @Test("isolation matrix: every caller × all 32 methods × own, other existing and missing tenant")
    func isolationMatrix() throws {
        let fixture = try ServerFixture(projections: ProjectionOptions())
        _ = try fixture.tenants.createTenant("globex", maxSizeBytes: nil)
        let keys: [Role: String] = try Dictionary(uniqueKeysWithValues: Role.allCases.map { ($0, try fixture.key($0)) })
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        let permissions = fixture.server.permissions
        #expect(permissions.count == 32)

        var callID: UInt32 = 1
        var checked = 0
        let callers: [Caller] = Role.allCases.map { .role($0) } + [.wrongKey, .noKey, .serverAdmin]
        for (method, permission) in permissions.sorted(by: { $0.key < $1.key }) {
            for caller in callers {
                var answers: [Target: Strata_V1_Trailers] = [:]
                for target in Target.allCases {
                    let key: String? = switch caller {
                    case .role(let role): keys[role]
                    case .wrongKey: "strata_0123456789abcdef_notarealsecret"
                    case .noKey: nil
                    case .serverAdmin: ServerFixture.adminKey
                    }
                    // An empty request: authorized calls fail on validation or
                    // do harmless work; a deadline ends any live stream.
                    try raw.openCall(callID, method: method, tenant: target.rawValue, apiKey: key, timeoutMs: 300,
                                     request: Strata_V1_Empty())
                    let status = try #require(try trailers(raw.read(until: .trailers, callID: callID)), "\(method) \(caller) \(target)")
                    callID += 2
                    checked += 1
                    answers[target] = status
                    let code = StatusCode(rawValue: status.code)
                    let context = "\(method) as \(caller) on \(target): \(String(describing: code)) \(status.message)"
                    switch caller {
                    case .noKey, .wrongKey:
                        #expect(code == .unauthenticated, "\(context)")
                    case .serverAdmin:
                        #expect(code != .unauthenticated && code != .permissionDenied, "\(context)")
                    case .role(let role):
                        switch permission {
                        case .serverAdmin:
                            #expect(code == .permissionDenied, "\(context)")
                        case .tenant(let needed):
                            if target != .own {
                                #expect(code == .unauthenticated, "\(context)")
                            } else if role < needed {
                                #expect(code == .permissionDenied, "\(context)")
                            } else {
                                #expect(code != .unauthenticated && code != .permissionDenied, "\(context)")
                            }
                        }
                    }
                }
                // Another tenant's existence is not revealed: the same code,
                // and the same message but for the name the caller sent.
                if case .role = caller, permission != .serverAdmin,
                   let existing = answers[.otherExisting], let missing = answers[.missing] {
                    #expect(existing.code == missing.code)
                    #expect(existing.message.replacingOccurrences(of: "globex", with: "nowhere") == missing.message, "\(method)")
                }
            }
        }
        #expect(checked == 32 * 6 * 3)
    }

    @Test("a revoked key fails from its next call, and its open subscription ends at once with UNAUTHENTICATED")
    func revocationOnLiveConnection() async throws {
        let fixture = try ServerFixture()
        let readKey = try fixture.key(.read)
        let admin = try await fixture.client(apiKey: try fixture.key(.admin))
        defer { admin.close() }
        _ = try await admin.append(to: "s", events: events(1))

        let connection = try ClientConnection.connect(host: "127.0.0.1", port: fixture.port)
        defer { connection.close() }
        var request = Strata_V1_SubscribeRequest()
        request.all = Strata_V1_Empty()
        let (_, subscription) = try connection.open(method: StreamsMethod.subscribe, kind: .serverStreaming,
                                                    metadata: [(MetadataKey.tenant, "acme"), (MetadataKey.authorization, "Bearer \(readKey)")],
                                                    timeout: nil, request: try request.serializedBytes())
        #expect(try await subscription.next() != nil)  // the stored event: the key works
        let reader = try await fixture.client(apiKey: readKey)
        defer { reader.close() }
        _ = try await reader.streamInfo("s")

        let keyID = try #require(APIKey(parsing: readKey)).id
        let revoked = try await admin.revokeKey(keyID)
        #expect(revoked.revokedAt != nil)
        // No event is appended: the subscription ends because of the revocation alone.
        do {
            while try await subscription.next() != nil {}
            Issue.record("the subscription ended without an error")
        } catch {
            #expect(error.code == .unauthenticated)
            #expect(error.message.contains("revoked"), "\(error.message)")
        }
        // The same open connection: the next call is refused.
        let refused = await #expect(throws: StrataClient.Error.self) { _ = try await reader.streamInfo("s") }
        #expect(refused?.code == .unauthenticated)
        // A call whose HEADERS arrived before the revocation and whose request
        // arrives after it is refused too.
        let second = try fixture.key(.read)
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        var headers = Strata_V1_CallHeaders()
        headers.method = StreamsMethod.subscribe
        headers.metadata = [MetadataKey.tenant: "acme", MetadataKey.authorization: "Bearer \(second)"]
        try raw.send(.headers, callID: 1, headers)
        _ = try await admin.revokeKey(try #require(APIKey(parsing: second)).id)
        try raw.send(.message, flags: .endStream, callID: 1, request)
        let late = try trailers(raw.read(until: .trailers, callID: 1))
        #expect(late?.code == StatusCode.unauthenticated.rawValue, "\(String(describing: late))")
        // Listing shows the key revoked, never a secret.
        let listed = try await admin.keys().first { $0.id == keyID }
        #expect(listed?.revokedAt != nil)
    }

    @Test("a role too weak is PERMISSION_DENIED; a key only works for its own tenant")
    func rolesThroughTheClient() async throws {
        let fixture = try ServerFixture()
        _ = try fixture.tenants.createTenant("globex", maxSizeBytes: nil)
        let reader = try await fixture.client(apiKey: try fixture.key(.read))
        defer { reader.close() }
        let denied = await #expect(throws: StrataClient.Error.self) { _ = try await reader.append(to: "s", events: events(1)) }
        #expect(denied?.code == .permissionDenied)
        #expect(denied?.message.contains("'write'") == true, "\(denied?.message ?? "")")
        let writer = try await fixture.client(apiKey: try fixture.key(.write))
        defer { writer.close() }
        _ = try await writer.append(to: "s", events: events(1))
        let notAdmin = await #expect(throws: StrataClient.Error.self) { _ = try await writer.createKey(role: .read) }
        #expect(notAdmin?.code == .permissionDenied)
        let elsewhere = try await fixture.client(tenant: "globex", apiKey: try fixture.key(.admin))
        defer { elsewhere.close() }
        let refused = await #expect(throws: StrataClient.Error.self) { _ = try await elsewhere.streamInfo("s") }
        #expect(refused?.code == .unauthenticated)
        let tenantAdmin = try await fixture.client(apiKey: try fixture.key(.admin))
        defer { tenantAdmin.close() }
        let noTenants = await #expect(throws: StrataClient.Error.self) { _ = try await tenantAdmin.tenants() }
        #expect(noTenants?.code == .permissionDenied)
    }

    @Test("a backup taken during appends restores to a consistent prefix that verify accepts")
    func backupDuringAppendsRestores() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "warmup", events: events(100))
        // Appends go on while the backup runs.
        let appender = Task {
            var batches = 0
            while !Task.isCancelled {
                _ = try await client.append(to: "stream-\(batches % 7)", events: events(20))
                batches += 1
            }
            return batches
        }
        let progress = ProgressLog()
        let backup = try await client.backupTenant(name: "during-appends") { progress.add($0) }
        appender.cancel()
        _ = try? await appender.value
        let head = try await client.tenantStats().headPosition
        #expect(backup.headPositionAtLeast >= 100)
        #expect(backup.bytes > 0)
        #expect(backup.path == "acme/during-appends")
        let backupDirectory = fixture.tenants.backupPath(tenant: "acme", name: "during-appends")
        #expect(FileManager.default.fileExists(atPath: backupDirectory + "/data.mdb"))
        #expect(FileManager.default.fileExists(atPath: backupDirectory + "/backup.json"))
        #expect(progress.all.last?.unit == "bytes")
        #expect(progress.all.last.map { $0.done > 0 } == true)

        let restoreProgress = ProgressLog()
        let restored = try await client.restoreTenant("acme-copy", fromBackup: backup.path) { restoreProgress.add($0) }
        #expect(restored.name == "acme-copy")
        #expect(restoreProgress.all.last?.done == UInt64(StorageEngine.fileSize(backupDirectory + "/data.mdb")))
        let copy = try await fixture.client(tenant: "acme-copy")
        defer { copy.close() }
        let verified = try await copy.verifyTenant()
        #expect(verified.isConsistent, "\(verified.issues)")
        #expect(verified.eventsChecked >= backup.headPositionAtLeast)
        // A prefix: the copy's log is exactly the original's first events.
        let copied = try await all(copy.read("$all"))
        let original = try await all(client.read("$all", maxCount: UInt64(copied.count)))
        #expect(copied.count <= Int(head))
        #expect(copied.map(\.id) == original.map(\.id))
        #expect(copied.map(\.position) == Array(1...UInt64(copied.count)))
        // The restored tenant takes writes, and an existing name is refused.
        _ = try await copy.append(to: "after-restore", events: events(1))
        let again = await #expect(throws: StrataClient.Error.self) { _ = try await client.restoreTenant("acme-copy", fromBackup: backup.path) }
        #expect(again?.code == .alreadyExists)
        let sameName = await #expect(throws: StrataClient.Error.self) { _ = try await client.backupTenant(name: "during-appends") }
        #expect(sameName?.code == .alreadyExists)
        // A backup without its backup.json (partial, or not one) is not restorable.
        try FileManager.default.createDirectory(atPath: fixture.tenants.backupPath(tenant: "acme", name: "partial"), withIntermediateDirectories: true)
        let partial = await #expect(throws: StrataClient.Error.self) { _ = try await client.restoreTenant("from-partial", fromBackup: "acme/partial") }
        #expect(partial?.code == .notFound)
        let unqualified = await #expect(throws: StrataClient.Error.self) { _ = try await client.restoreTenant("x", fromBackup: "during-appends") }
        #expect(unqualified?.code == .invalidArgument)
        let escape = await #expect(throws: StrataClient.Error.self) { _ = try await client.backupTenant(name: "../outside") }
        #expect(escape?.code == .invalidArgument)
    }

    @Test("deleting a tenant ends its subscriptions, stops its projections, removes its keys and files")
    func deleteWithSubscriptionsAndProjections() async throws {
        let fixture = try ServerFixture(projections: ProjectionOptions())
        let admin = try await fixture.client()
        defer { admin.close() }
        _ = try await admin.createTenant("doomed")
        let doomedKey = try fixture.key(.admin, tenant: "doomed")
        let doomed = try await fixture.client(tenant: "doomed", apiKey: doomedKey)
        defer { doomed.close() }
        _ = try await doomed.append(to: "order-1", events: events(3))
        _ = try await doomed.createProjection("counter", script: """
            return { source = { all = true }, init = function() return { n = 0 } end,
                     when = { ["$any"] = function(s, e) s.n = s.n + 1 end } }
            """)

        let connection = try ClientConnection.connect(host: "127.0.0.1", port: fixture.port)
        defer { connection.close() }
        var request = Strata_V1_SubscribeRequest()
        request.all = Strata_V1_Empty()
        let (_, subscription) = try connection.open(method: StreamsMethod.subscribe, kind: .serverStreaming,
                                                    metadata: [(MetadataKey.tenant, "doomed"), (MetadataKey.authorization, "Bearer \(doomedKey)")],
                                                    timeout: nil, request: try request.serializedBytes())
        #expect(try await subscription.next() != nil)

        let wrongConfirmation = await #expect(throws: StrataClient.Error.self) { _ = try await admin.deleteTenant("doomed", confirm: "doom") }
        #expect(wrongConfirmation?.code == .invalidArgument)
        let result = try await admin.deleteTenant("doomed", confirm: "doomed")
        #expect(result.callsEnded >= 1)
        #expect(result.projectionsStopped == 1)
        #expect(result.keysRemoved == 1)
        do {
            while try await subscription.next() != nil {}
            Issue.record("the subscription ended without an error")
        } catch {
            #expect(error.code == .notFound, "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: fixture.engine.directory(of: "doomed")))
        #expect(try await admin.tenants().map(\.name) == ["acme"])
        let gone = await #expect(throws: StrataClient.Error.self) { _ = try await doomed.streamInfo("order-1") }
        #expect(gone?.code == .unauthenticated)
        // The name can be used again, for an empty tenant.
        _ = try await admin.createTenant("doomed")
        let reborn = try await fixture.client(tenant: "doomed")
        defer { reborn.close() }
        #expect(try await reborn.tenantStats().events == 0)
    }

    @Test("a full tenant answers RESOURCE_EXHAUSTED naming its quota and keeps serving reads; its neighbour is unaffected")
    func fullTenantBesideHealthyOne() async throws {
        let fixture = try ServerFixture()
        let admin = try await fixture.client()
        defer { admin.close() }
        let small = try await admin.createTenant("small", maxSizeBytes: 1 << 20)
        #expect(small.maxSizeBytes == 1 << 20)
        let tooSmall = await #expect(throws: StrataClient.Error.self) { _ = try await admin.createTenant("tiny", maxSizeBytes: 4096) }
        #expect(tooSmall?.code == .invalidArgument)
        let client = try await fixture.client(tenant: "small")
        defer { client.close() }
        let payload = Data(("{\"pad\":\"" + String(repeating: "x", count: 60_000) + "\"}").utf8)
        var appended = 0
        var failure: StrataClient.Error?
        for _ in 0..<100 {
            do {
                _ = try await client.append(to: "big", events: [StrataClient.EventData(type: "Padded", data: payload)])
                appended += 1
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "1 MiB never filled")
        #expect(error.code == .resourceExhausted)
        #expect(error.reason == .quotaExceeded(limit: "tenant-map-size", value: 1 << 20))
        #expect(appended > 0)
        // Reads go on, and nothing partial was written.
        let stored = try await all(client.read("big"))
        #expect(stored.count == appended)
        let stats = try await client.tenantStats()
        #expect(stats.maxSizeBytes == 1 << 20)
        #expect(stats.events == UInt64(appended))
        // The neighbour appends as usual.
        let neighbour = try await fixture.client()
        defer { neighbour.close() }
        _ = try await neighbour.append(to: "fine", events: events(10))
        #expect(try await all(neighbour.read("fine")).count == 10)
        // Raising the quota lets the tenant write again; lowering it below
        // what is in use is refused.
        let outOfRange = await #expect(throws: StrataClient.Error.self) { _ = try await admin.setTenantQuota("small", maxSizeBytes: 4096) }
        #expect(outOfRange?.code == .invalidArgument)
        let raised = try await admin.setTenantQuota("small", maxSizeBytes: 4 << 20)
        #expect(raised.maxSizeBytes == 4 << 20)
        for _ in 0..<30 { _ = try await client.append(to: "big", events: [StrataClient.EventData(type: "Padded", data: payload)]) }
        let belowUse = await #expect(throws: StrataClient.Error.self) { _ = try await admin.setTenantQuota("small", maxSizeBytes: 2 << 20) }
        #expect(belowUse?.code == .invalidArgument)
        #expect(belowUse?.message.contains("bytes tenant 'small' uses") == true, "\(belowUse?.message ?? "")")
        #expect(try await client.tenantStats().maxSizeBytes == 4 << 20)
        #expect(try await admin.tenants().first { $0.name == "small" }?.maxSizeBytes == 4 << 20)
    }

    @Test("start-up reconciles the registry with the disk: unregistered directories join, vanished ones leave, leftovers go")
    func reconcile() throws {
        let fixture = try ServerFixture()
        // A tenant directory from before the registry, one registered tenant
        // whose directory is gone, and the leftover of an interrupted deletion.
        try fixture.engine.createTenant("legacy").release()
        try fixture.system.insertTenant(TenantRecord(name: "vanished", createdAt: 1, maxSizeBytes: 2 << 20))
        let leftover = (fixture.engine.directory(of: "x") as NSString).deletingLastPathComponent + "/.deleted-old-1"
        try FileManager.default.createDirectory(atPath: leftover, withIntermediateDirectories: true)
        let notes = try fixture.tenants.reconcile()
        #expect(notes.count == 3, "\(notes)")
        #expect(try fixture.system.tenants().map(\.name).sorted() == ["acme", "legacy"])
        #expect(!FileManager.default.fileExists(atPath: leftover))
        #expect(try fixture.tenants.reconcile().isEmpty)
    }

    @Test("long admin operations beyond limits.max_admin_operations are refused with RESOURCE_EXHAUSTED, not queued")
    func operationLimit() throws {
        let fixture = try ServerFixture()
        _ = try fixture.tenants.createTenant("globex", maxSizeBytes: nil)
        // Leases keep both tenants busy, so their compactions wait to drain.
        let acme = try fixture.engine.lease("acme"), globex = try fixture.engine.lease("globex")
        let raw = try RawConnection(port: fixture.port)
        try raw.handshake()
        // One connection processes frames in order: calls 1 and 3 hold the
        // two slots (the default limit) before call 5 arrives.
        try raw.openCall(1, method: AdminMethod.compactTenant, tenant: "acme", request: Strata_V1_CompactTenantRequest())
        try raw.openCall(3, method: AdminMethod.compactTenant, tenant: "globex", request: Strata_V1_CompactTenantRequest())
        try raw.openCall(5, method: AdminMethod.verifyTenant, tenant: "acme", request: Strata_V1_VerifyTenantRequest())
        let refused = try trailers(raw.read(until: .trailers, callID: 5))
        #expect(refused?.code == StatusCode.resourceExhausted.rawValue)
        #expect(refused?.message.contains("limits.max_admin_operations") == true, "\(refused?.message ?? "")")
        acme.release()
        globex.release()
        // Both compactions finish, in either order.
        var ended: [UInt32: UInt32] = [:]
        while ended.count < 2, let frame = try raw.readFrame() {
            if frame.type == .trailers { ended[frame.callID] = try Strata_V1_Trailers(serializedBytes: frame.payload).code }
        }
        #expect(ended == [1: StatusCode.ok.rawValue, 3: StatusCode.ok.rawValue])
        // The slots are free again.
        try raw.openCall(7, method: AdminMethod.verifyTenant, tenant: "acme", request: Strata_V1_VerifyTenantRequest())
        #expect(try trailers(raw.read(until: .trailers, callID: 7))?.code == StatusCode.ok.rawValue)
    }

    @Test("compaction keeps every event, verify accepts the result, and stats report it")
    func compactKeepsEverything() async throws {
        let fixture = try ServerFixture()
        let client = try await fixture.client()
        defer { client.close() }
        for i in 0..<20 { _ = try await client.append(to: "s-\(i % 3)", events: events(50)) }
        let before = try await client.tenantStats()
        let progress = ProgressLog()
        let sizes = try await client.compactTenant { progress.add($0) }
        #expect(sizes.bytesAfter > 0 && sizes.bytesAfter <= sizes.bytesBefore)
        #expect(!progress.all.isEmpty)
        let after = try await client.tenantStats()
        #expect(after.events == before.events && after.headPosition == before.headPosition)
        #expect(try await client.verifyTenant().isConsistent)
        _ = try await client.append(to: "s-0", events: events(1))
        #expect(try await all(client.read("s-0")).count == 7 * 50 + 1)
    }
}

private func all(_ sequence: ReadSequence) async throws -> [StrataClient.RecordedEvent] {
    var out: [StrataClient.RecordedEvent] = []
    for try await event in sequence { out.append(event) }
    return out
}

/// Progress reports collected from a callback.
final class ProgressLog: Sendable {
    private let items = Locked<[OperationProgress]>([])
    func add(_ progress: OperationProgress) { items.withLock { $0.append(progress) } }
    var all: [OperationProgress] { items.withLock { $0 } }
}
