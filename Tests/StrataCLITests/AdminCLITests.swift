import Foundation
import StrataTestSupport
import Testing

@Suite("strata tenant and strata key against strata serve", .serialized)
struct AdminCLITests {
    @Test("development key printed once; tenants, keys, stats, backup, restore, verify, compact, revoke and delete from the CLI")
    func administration() throws {
        let server = try ServerProcess()
        let connection = ["--port", "\(server.port)"]
        // The development tenant's admin key, printed on the first start only.
        let devKey = try #require(server.banner.split(whereSeparator: { $0 == " " || $0 == "\n" })
            .first { $0.hasPrefix("STRATA_API_KEY=strata_") }?.dropFirst("STRATA_API_KEY=".count)).description
        let asDev = ["STRATA_API_KEY": devKey]
        #expect(try strata(["append", "hello-1", "Greeted", "{}"] + connection, environment: asDev).status == 0)
        let noKey = try strata(["read", "hello-1"] + connection, environment: ["STRATA_API_KEY": ""])
        #expect(noKey.status != 0)
        #expect(noKey.stderr.contains("no API key"), "\(noKey.stderr)")
        let badKey = try strata(["read", "hello-1"] + connection, environment: ["STRATA_API_KEY": "strata_0123456789abcdef_nope"])
        #expect(badKey.stderr.hasPrefix("strata: UNAUTHENTICATED"), "\(badKey.stderr)")

        let created = try strata(["tenant", "create", "shop", "--max-size-mib", "16"] + connection)
        #expect(created.status == 0, "\(created.stderr)")
        let quota = try strata(["tenant", "set-quota", "shop", "--max-size-mib", "32"] + connection)
        #expect(quota.stdout == "tenant 'shop' quota is now 32.0 MiB\n", "\(quota.stdout) \(quota.stderr)")
        let listed = try strata(["tenant", "list", "--json"] + connection).jsonLines()
        #expect(listed.compactMap { $0["name"] as? String } == ["default", "shop"])
        #expect(listed.last?["maxSizeBytes"] as? Int == 32 << 20)
        let notServerAdmin = try strata(["tenant", "list"] + connection, environment: asDev)
        #expect(notServerAdmin.stderr.hasPrefix("strata: PERMISSION_DENIED"), "\(notServerAdmin.stderr)")

        let key = try #require(try strata(["key", "create", "--tenant", "shop", "--role", "write", "--label", "checkout", "--json"] + connection)
            .jsonLines().first)
        let secret = try #require(key["secret"] as? String)
        let keyID = try #require(key["id"] as? String)
        let asWriter = ["STRATA_API_KEY": secret, "STRATA_TENANT": "shop"]
        #expect(try strata(["append", "cart-1", "Added", #"{"sku":"a"}"#] + connection, environment: asWriter).status == 0)
        let writerListsKeys = try strata(["key", "list"] + connection, environment: asWriter)
        #expect(writerListsKeys.stderr.hasPrefix("strata: PERMISSION_DENIED"), "\(writerListsKeys.stderr)")
        let keys = try strata(["key", "list", "--tenant", "shop"] + connection)
        #expect(keys.stdout.contains(keyID) && keys.stdout.contains("checkout") && !keys.stdout.contains(secret))

        let stats = try #require(try strata(["tenant", "stats", "shop", "--json"] + connection).jsonLines().first)
        #expect(stats["events"] as? Int == 1)
        #expect(stats["maxSizeBytes"] as? Int == 32 << 20)

        let backup = try strata(["tenant", "backup", "shop", "--to", "shop-1"] + connection)
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(backup.stdout.hasPrefix("backed up as shop/shop-1"), "\(backup.stdout)")
        #expect(FileManager.default.fileExists(atPath: server.directory + "/backups/shop/shop-1/backup.json"))
        #expect(backup.stderr.contains("copying"), "progress bar: \(backup.stderr)")
        let restored = try strata(["tenant", "restore", "shop-copy", "--from", "shop/shop-1"] + connection)
        #expect(restored.status == 0, "\(restored.stderr)")
        let verified = try #require(try strata(["tenant", "verify", "shop-copy", "--json"] + connection).jsonLines().first)
        #expect(verified["consistent"] as? Bool == true)
        #expect(verified["eventsChecked"] as? Int == 1)
        let compacted = try strata(["tenant", "compact", "shop-copy"] + connection)
        #expect(compacted.status == 0, "\(compacted.stderr)")
        #expect(compacted.stdout.hasPrefix("compacted: "))

        let revoked = try strata(["key", "revoke", keyID, "--tenant", "shop"] + connection)
        #expect(revoked.status == 0, "\(revoked.stderr)")
        let afterRevoke = try strata(["append", "cart-1", "Added", "{}"] + connection, environment: asWriter)
        #expect(afterRevoke.stderr.hasPrefix("strata: UNAUTHENTICATED"), "\(afterRevoke.stderr)")

        let unconfirmed = try strata(["tenant", "delete", "shop"] + connection)
        #expect(unconfirmed.status != 0)
        #expect(unconfirmed.stderr.contains("--confirm shop"), "\(unconfirmed.stderr)")
        let deleted = try strata(["tenant", "delete", "shop", "--confirm", "shop"] + connection)
        #expect(deleted.status == 0, "\(deleted.stderr)")
        #expect(try strata(["tenant", "list", "--json"] + connection).jsonLines().compactMap { $0["name"] as? String } == ["default", "shop-copy"])

        // A restart does not print the development key again.
        _ = server.terminate()
        let again = try ServerProcess(directory: server.directory)
        #expect(!again.banner.contains("STRATA_API_KEY="))
        #expect(try strata(["read", "hello-1"] + ["--port", "\(again.port)"], environment: asDev).status == 0)
    }

    @Test("production mode refuses to start without a server admin key, and starts with one")
    func productionMode() throws {
        let directory = NSTemporaryDirectory() + "strata-cli-prod-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let refused = try strata(["serve", "--port", "0", "--data", directory], environment: ["STRATA_SERVER_DEVELOPMENT_MODE": "false"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("production mode needs a server admin key"), "\(refused.stderr)")
        let short = try strata(["serve", "--port", "0", "--data", directory], environment: ["STRATA_ADMIN_KEY": "short"])
        #expect(short.stderr.contains("auth.admin_key"), "\(short.stderr)")

        let server = try ServerProcess(directory: directory, environment: ["STRATA_SERVER_DEVELOPMENT_MODE": "false"])
        #expect(!server.banner.contains("DEVELOPMENT"))
        #expect(!server.banner.contains("STRATA_API_KEY="))
        let created = try strata(["tenant", "create", "prod", "--port", "\(server.port)"])
        #expect(created.status == 0, "\(created.stderr)")
    }
}

@Suite("strata serve start-up checks", .serialized)
struct StartupCheckTests {
    @Test("a second server on the same data directory, or on a taken RPC or metrics port, refuses to start with a message saying why")
    func refusals() throws {
        let first = try ServerProcess()
        let otherData = NSTemporaryDirectory() + "strata-cli-startup-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: otherData) }

        let sameData = try strata(["serve", "--port", "0", "--metrics-port", "0", "--data", first.directory],
                                  environment: ["STRATA_ADMIN_KEY": testAdminKey])
        #expect(sameData.status != 0)
        #expect(sameData.stderr.contains("data directory \(first.directory) is in use by another strata process (pid \(first.process.processIdentifier))"),
                "\(sameData.stderr)")

        let samePort = try strata(["serve", "--port", "\(first.port)", "--metrics-port", "0", "--data", otherData],
                                  environment: ["STRATA_ADMIN_KEY": testAdminKey])
        #expect(samePort.status != 0)
        #expect(samePort.stderr.contains("cannot listen on the RPC port 127.0.0.1:\(first.port): the port is already in use"),
                "\(samePort.stderr)")

        let sameMetricsPort = try strata(["serve", "--port", "0", "--metrics-port", "\(first.metricsPort)", "--data", otherData],
                                         environment: ["STRATA_ADMIN_KEY": testAdminKey])
        #expect(sameMetricsPort.status != 0)
        #expect(sameMetricsPort.stderr.contains("cannot listen on the metrics port 127.0.0.1:\(first.metricsPort): the port is already in use"),
                "\(sameMetricsPort.stderr)")
        // Nothing was left behind by the refused starts: no tenant was created in their data directory.
        #expect(!FileManager.default.fileExists(atPath: otherData + "/tenants/default"))

        // The first server is untouched, and once it stops the directory is free.
        #expect(try strata(["tenant", "list", "--port", "\(first.port)"]).status == 0)
        #expect(first.terminate().status == 0)
        let second = try ServerProcess(directory: first.directory)
        #expect(second.banner.contains("listening on"))
    }
}
