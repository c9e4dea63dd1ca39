import Foundation
import StrataTestSupport
import Testing

/// `strata projection …` against `strata serve`, as an operator would use it.
@Suite("strata projection commands", .serialized)
struct ProjectionCLITests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("projections")

    @Test("load, status, state, partitions, pause, resume, reset, update and delete; bad input gets one-line errors")
    func lifecycle() throws {
        let server = try ServerProcess()
        let c = ["--port", "\(server.port)"]
        for (stream, body) in [("order-1", #"{"customer":"alice","amount":120}"#), ("order-2", #"{"customer":"bob","amount":80}"#),
                               ("order-3", #"{"customer":"alice","amount":30}"#)] {
            #expect(try strata(["append", stream, "OrderPlaced", body] + c).status == 0)
        }
        let file = Self.examples.appendingPathComponent("order-totals.lua").path
        let loaded = try strata(["projection", "load", file, "--json"] + c)
        #expect(loaded.status == 0, "\(loaded.stderr)")
        #expect(try loaded.jsonLines().first?["name"] as? String == "order-totals")

        // Wait (bounded) until it has committed the three events.
        var status: [String: Any] = [:]
        for _ in 0 ..< 200 {
            status = try strata(["projection", "status", "order-totals", "--json"] + c).jsonLines().first ?? [:]
            if status["checkpointPosition"] as? Int == 3 { break }
            Thread.sleep(forTimeInterval: 0.02)  // polling a remote status
        }
        #expect(status["state"] as? String == "running" && status["checkpointPosition"] as? Int == 3)
        #expect(try strata(["projection", "partitions", "order-totals"] + c).lines == ["alice", "bob"])
        let alice = try strata(["projection", "state", "order-totals", "--partition", "alice"] + c)
        let state = try JSONSerialization.jsonObject(with: Data(alice.stdout.utf8)) as? [String: Int]
        #expect(state?["total"] == 150 && state?["orders"] == 2)
        let asOfNow = try strata(["projection", "state", "order-totals", "--partition", "bob", "--at", "now"] + c)
        #expect((try JSONSerialization.jsonObject(with: Data(asOfNow.stdout.utf8)) as? [String: Int])?["total"] == 80)
        #expect(try strata(["projection", "list"] + c).stdout.contains("order-totals: running"))

        #expect(try strata(["projection", "pause", "order-totals"] + c).stdout.contains("paused"))
        #expect(try strata(["projection", "resume", "order-totals"] + c).stdout.contains("running"))
        let reset = try strata(["projection", "reset", "order-totals"] + c)
        #expect(reset.status == 0 && reset.stdout.contains("checkpoint 3"), "\(reset.stdout)\(reset.stderr)")
        #expect(try strata(["projection", "update", "order-totals", file, "--compatible"] + c).status == 0)

        // Bad input: one line on stderr, non-zero exit, nothing changed.
        let broken = NSTemporaryDirectory() + "broken-\(UUID().uuidString).lua"
        try "return {\n  source = }\n".write(toFile: broken, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: broken) }
        let refused = try strata(["projection", "load", broken, "--name", "broken"] + c)
        #expect(refused.status != 0 && refused.stderr.contains("broken.lua:2:"), "\(refused.stderr)")
        let missing = try strata(["projection", "status", "nope"] + c)
        #expect(missing.status != 0 && missing.stderr.contains("NOT_FOUND"), "\(missing.stderr)")
        let unconfirmed = try strata(["projection", "delete", "order-totals"] + c)
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--yes"))
        #expect(try strata(["projection", "delete", "order-totals", "--yes"] + c).status == 0)
        #expect(try strata(["projection", "list"] + c).stdout.contains("no projections"))
    }
}
