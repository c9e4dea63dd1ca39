import Foundation
import StrataClient
import StrataTestSupport
import Testing

/// Damaged data files found at start: the damaged tenant answers DATA_LOSS
/// with a message saying what is wrong; the server and the other tenants
/// carry on. (Damage inside a page is not detectable at open: LMDB keeps no
/// checksums; `strata tenant verify` is the tool for it.)
@Suite("Disk trouble: damaged tenant files", .serialized)
struct DiskTroubleTests {
    enum Damage: String, CaseIterable, Sendable {
        /// The file cut short (a bad copy, a full disk during a copy).
        case truncated
        /// Both meta pages overwritten (the first 8 KiB).
        case garbledHeader
    }

    func connect(_ server: ServerProcess, tenant: String) async throws -> StrataClient {
        try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: tenant, apiKey: testAdminKey)
    }

    @Test("a truncated or garbled tenant file: that tenant answers DATA_LOSS saying why, the server and the other tenant carry on", arguments: Damage.allCases)
    func damagedTenant(_ damage: Damage) async throws {
        let directory = NSTemporaryDirectory() + "strata-disk-trouble-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            // Without preallocation, so that the file is its data and a cut
            // at a third of it cuts into the data.
            let server = try ServerProcess(directory: directory, durability: "sync",
                                           environment: ["STRATA_STORAGE_PREALLOCATE_MIB": "0"])
            let admin = try await connect(server, tenant: "default")
            _ = try await admin.createTenant("damaged")
            _ = try await admin.createTenant("healthy")
            admin.close()
            for tenant in ["damaged", "healthy"] {
                let client = try await connect(server, tenant: tenant)
                for batch in 0 ..< 20 {
                    let events = (0 ..< 100).map { _ in
                        StrataClient.EventData(type: "Filled", data: Data(String(repeating: "x", count: 500).utf8))
                    }
                    _ = try await client.append(to: "s-\(batch % 4)", events: events)
                }
                client.close()
            }
            #expect(server.terminate().status == 0)
        }

        let file = directory + "/tenants/damaged/data.mdb"
        let handle = try #require(FileHandle(forUpdatingAtPath: file))
        let size = try handle.seekToEnd()
        #expect(size > 1_000_000)
        switch damage {
        case .truncated:
            try handle.truncate(atOffset: size / 3)
        case .garbledHeader:
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: Data(repeating: 0xA5, count: 8192))
        }
        try handle.close()

        let server = try ServerProcess(directory: directory, durability: "sync")
        let damaged = try await connect(server, tenant: "damaged")
        defer { damaged.close() }
        do {
            _ = try await damaged.streamInfo("s-0")
            Issue.record("a damaged tenant served a read")
        } catch {
            #expect(error.code == .dataLoss, "\(error)")
            let reason = damage == .truncated ? "is truncated" : "File is not an LMDB file"
            #expect(error.message.contains(reason), "\(error.message)")
        }
        await #expect(throws: StrataClient.Error.self) {
            _ = try await damaged.append(to: "s-0", events: [.init(type: "More", data: Data("{}".utf8))])
        }
        // The other tenant reads everything and takes writes; the process is alive.
        let healthy = try await connect(server, tenant: "healthy")
        defer { healthy.close() }
        var count = 0
        for try await _ in healthy.read("$all") { count += 1 }
        #expect(count == 2000)
        _ = try await healthy.append(to: "s-0", events: [.init(type: "More", data: Data("{}".utf8))])
        #expect(server.process.isRunning)
        // Verify names the trouble too, and the status says it is the data.
        let verify = try strata(["tenant", "verify", "damaged", "--port", "\(server.port)", "--api-key", testAdminKey])
        #expect(verify.status != 0)
        #expect(verify.stderr.contains("DATA_LOSS"), "\(verify.stderr)")
    }
}

@Suite("Disk trouble: a read-only data directory", .serialized)
struct ReadOnlyDataTests {
    @Test("a data directory on a file system mounted read-only: start-up refuses with a message naming it, and the data is intact once writable again",
          .enabled(if: canMountTmpfs, "needs permission to mount a tmpfs"))
    func readOnlyFileSystem() async throws {
        let disk = try TmpfsMount(size: "64m")
        defer { withExtendedLifetime(disk) {} }  // unmounted at the end, not after its last use
        let data = disk.point + "/data"
        do {
            let server = try ServerProcess(directory: data, durability: "sync")
            let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
            _ = try await client.append(to: "s-1", events: [.init(type: "Kept", data: Data("{}".utf8))])
            client.close()
            #expect(server.terminate().status == 0)
        }
        #expect(try disk.remount("ro"))
        let refused = try strata(["serve", "--port", "0", "--metrics-port", "0", "--data", data], environment: ["STRATA_ADMIN_KEY": testAdminKey])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains(data), "\(refused.stderr)")
        #expect(refused.stderr.contains("Read-only file system"), "\(refused.stderr)")

        #expect(try disk.remount("rw"))
        let server = try ServerProcess(directory: data, durability: "sync")
        let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
        defer { client.close() }
        var types: [String] = []
        for try await event in client.read("s-1") { types.append(event.type) }
        #expect(types == ["Kept"])
    }
}

@Suite("Disk trouble: the disk fills up", .serialized)
struct DiskFullTests {
    /// The tenant's map (8 GiB by default) is far larger than the file
    /// system under it, so the disk runs out first: LMDB's commit fails
    /// writing pages (a short write, which LMDB reports as EIO).
    @Test("the disk fills during appends: RESOURCE_EXHAUSTED naming the disk, nothing partial stored, reads go on, writes resume once space is freed",
          .enabled(if: canMountTmpfs, "needs permission to mount a tmpfs"))
    func diskFills() async throws {
        let disk = try TmpfsMount(size: "6m")
        defer { withExtendedLifetime(disk) {} }  // unmounted at the end, not after its last use
        let data = disk.point + "/data"
        let payload = Data(("{\"pad\":\"" + String(repeating: "x", count: 60_000) + "\"}").utf8)
        var acknowledged: [UUID] = []
        do {
            let server = try ServerProcess(directory: data, durability: "sync")
            let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
            var failure: StrataClient.Error?
            for _ in 0 ..< 200 {  // 12 MB into 6 MB
                let event = StrataClient.EventData(type: "Padded", data: payload)
                do {
                    _ = try await client.append(to: "fill", expected: acknowledged.isEmpty ? .noStream : .exact(UInt64(acknowledged.count - 1)),
                                                events: [event])
                    acknowledged.append(event.id)
                } catch {
                    failure = error
                    break
                }
            }
            let error = try #require(failure, "6 MB never filled")
            #expect(error.code == .resourceExhausted)
            #expect(error.reason == .quotaExceeded(limit: "disk-space", value: 0))
            #expect(error.message.contains("no space left on the disk holding"), "\(error.message)")
            #expect(error.message.contains("nothing of this write was stored"), "\(error.message)")
            #expect(acknowledged.count > 10)

            // Reads go on and show exactly what was acknowledged; a retry
            // still fails the same way and stores nothing.
            #expect(try await readIDs(client, "fill") == acknowledged)
            let retry = await #expect(throws: StrataClient.Error.self) {
                _ = try await client.append(to: "fill", expected: .exact(UInt64(acknowledged.count - 1)),
                                            events: [StrataClient.EventData(type: "Padded", data: payload)])
            }
            #expect(retry?.code == .resourceExhausted)
            #expect(try await readIDs(client, "fill") == acknowledged)

            // Space freed (the file system grows): the same expectation now
            // holds, so the failed appends left no trace in the revisions.
            #expect(try disk.remount("size=64m"))
            let event = StrataClient.EventData(type: "AfterSpace", data: Data("{}".utf8))
            let result = try await client.append(to: "fill", expected: .exact(UInt64(acknowledged.count - 1)), events: [event])
            #expect(result.lastRevision == UInt64(acknowledged.count))
            acknowledged.append(event.id)
            client.close()
            let stopped = server.terminate()
            #expect(stopped.status == 0)
            // An operator must act on a full disk: it is logged as an error.
            #expect(stopped.output.contains(" error call failed: tenant 'default': no space left on the disk holding"), "\(stopped.output)")
        }
        // After a restart every acknowledged event is there once, in order.
        let server = try ServerProcess(directory: data, durability: "sync")
        let client = try await StrataClient.connect(host: "127.0.0.1", port: server.port, tenant: "default", apiKey: testAdminKey)
        defer { client.close() }
        #expect(try await readIDs(client, "fill") == acknowledged)
        let verify = try strata(["tenant", "verify", "default", "--port", "\(server.port)", "--api-key", testAdminKey])
        #expect(verify.status == 0, "\(verify.stderr)")
    }

    private func readIDs(_ client: StrataClient, _ stream: String) async throws -> [UUID] {
        var ids: [UUID] = []
        for try await event in client.read(stream) { ids.append(event.id) }
        return ids
    }
}
