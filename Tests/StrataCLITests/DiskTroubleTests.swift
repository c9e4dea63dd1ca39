import Foundation
import StrataClient
import Testing

/// Damaged data files found at start: the damaged tenant answers DATA_LOSS
/// with a message saying what is wrong; the server and the other tenants
/// carry on; nothing wrong is ever served.
@Suite("Disk trouble: damaged tenant files", .serialized)
struct DiskTroubleTests {
    enum Damage: String, CaseIterable, Sendable {
        /// The file cut to half its length (a bad copy, a full disk during a copy).
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
            let server = try ServerProcess(directory: directory, durability: "sync")
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
            try handle.truncate(atOffset: size / 2)
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
