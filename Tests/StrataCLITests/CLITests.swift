import Foundation
import StrataTestSupport
import Testing

/// The `strata` binary next to the test bundle (`swift test` builds both).
private let strataBinary: URL = {
    let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("strata")
    if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
    // Fallback: the package's default build directory.
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/strata")
}()

struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// Each stdout line parsed as a JSON object.
    func jsonLines() throws -> [[String: Any]] {
        try lines.map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            return try #require(object as? [String: Any], "not a JSON object: \(line)")
        }
    }
}

/// Reads a pipe to its end on a background thread, so a child that fills
/// one pipe while the test reads the other cannot stall.
final class PipeDrain: @unchecked Sendable {
    // `data` is written by the thread before `done` is signalled and read only after waiting.
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    convenience init(_ pipe: Pipe) {
        self.init(pipe.fileHandleForReading)
    }

    init(_ handle: FileHandle) {
        Thread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }.start()
    }

    func wait() -> String {
        done.wait()
        done.signal()  // later calls return at once
        return String(decoding: data, as: UTF8.self)
    }
}

/// The server admin key every test server runs with (STRATA_ADMIN_KEY).
let testAdminKey = "cli-test-server-admin-key-0123456789"

/// Runs `strata` with `arguments` to completion, with the test admin key as
/// STRATA_API_KEY unless `environment` says otherwise.
func strata(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = strataBinary
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(["STRATA_API_KEY": testAdminKey]) { $1 }
        .merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = PipeDrain(out), stderr = PipeDrain(err)
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: stdout.wait(), stderr: stderr.wait())
}

/// `strata serve` on an ephemeral loopback port with a temporary data directory.
final class ServerProcess {
    let process = Process()
    let directory: String
    let port: UInt16
    /// The port of /metrics, /health and /ready.
    let metricsPort: UInt16
    private let stderr: PipeDrain
    private let stdoutHandle: FileHandle
    /// Reads what the server logs after its banner, so a chatty server never
    /// blocks on a full pipe; set once the banner is read.
    private var rest: PipeDrain?
    /// Everything the server printed up to and including the "metrics on" line.
    private(set) var banner = ""

    /// Whether `deinit` removes the directory (not when the caller owns it).
    private let ownsDirectory: Bool

    /// A fresh temporary directory, or `directory` (kept) to restart on existing data.
    init(directory: String? = nil, durability: String = "relaxed", environment: [String: String] = [:]) throws {
        self.directory = directory ?? NSTemporaryDirectory() + "strata-cli-test-\(UUID().uuidString)"
        ownsDirectory = directory == nil
        process.executableURL = strataBinary
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data", self.directory,
                             "--durability", durability]
        process.environment = ProcessInfo.processInfo.environment.merging(["STRATA_ADMIN_KEY": testAdminKey]) { $1 }
            .merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        stderr = PipeDrain(err)
        stdoutHandle = out.fileHandleForReading
        // The server logs its bound ports once it listens: wait for those lines.
        var port: UInt16?
        var metricsPort: UInt16?
        while port == nil || metricsPort == nil {
            let chunk = stdoutHandle.availableData
            if chunk.isEmpty { break }  // the server exited
            banner += String(decoding: chunk, as: UTF8.self)
            if let range = banner.range(of: #"listening on 127\.0\.0\.1:(\d+);"#, options: .regularExpression) {
                port = UInt16(banner[range].dropFirst("listening on 127.0.0.1:".count).dropLast())
            }
            if let range = banner.range(of: #"metrics on http://127\.0\.0\.1:(\d+)/"#, options: .regularExpression) {
                metricsPort = UInt16(banner[range].dropFirst("metrics on http://127.0.0.1:".count).dropLast())
            }
        }
        guard let port, let metricsPort else {
            process.waitUntilExit()
            throw CLIError("strata serve did not start: \(banner) \(stderr.wait())")
        }
        self.port = port
        self.metricsPort = metricsPort
        rest = PipeDrain(stdoutHandle)
    }

    /// Sends SIGTERM and waits: the exit status and what it printed afterwards.
    func terminate() -> (status: Int32, output: String) {
        process.terminate()
        return waitForExit()
    }

    /// Waits for the server to exit by itself (after signals a test sent).
    func waitForExit() -> (status: Int32, output: String) {
        let rest = self.rest?.wait() ?? ""
        process.waitUntilExit()
        return (process.terminationStatus, rest)
    }

    /// SIGKILL: no shutdown, no flush, as in a crash.
    func kill() {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        _ = stderr.wait()
        if ownsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("strata CLI against strata serve", .serialized)
struct CLITests {
    @Test("serve, append, read (both directions, --from, --count), info and delete; --json; SIGTERM stops the server")
    func roundTrip() throws {
        let server = try ServerProcess()
        #expect(server.banner.contains("DEVELOPMENT MODE"))
        let connection = ["--port", "\(server.port)"]

        let first = try strata(["append", "order-1", "OrderPlaced", #"{"total":12}"#, "--expected", "no-stream", "--json"] + connection)
        #expect(first.status == 0, "\(first.stderr)")
        let appended = try #require(try first.jsonLines().first)
        #expect(appended["revision"] as? Int == 0)
        #expect(appended["stream"] as? String == "order-1")

        let second = try strata(["append", "order-1", "OrderPaid", #"{"amount":12}"#, "--expected", "0"] + connection)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.hasPrefix("appended to order-1: revision 1"))
        _ = try strata(["append", "order-2", "OrderPlaced", "{}"] + connection)

        let forwards = try strata(["read", "order-1", "--json"] + connection)
        #expect(forwards.status == 0, "\(forwards.stderr)")
        let events = try forwards.jsonLines()
        #expect(events.map { $0["type"] as? String } == ["OrderPlaced", "OrderPaid"])
        #expect(events.map { $0["revision"] as? Int } == [0, 1])
        #expect(events.first?["data"] as? String == #"{"total":12}"#)

        let backwards = try strata(["read", "order-1", "--backwards", "--count", "1", "--json"] + connection)
        #expect(try backwards.jsonLines().map { $0["type"] as? String } == ["OrderPaid"])

        let all = try strata(["read", "$all", "--from", "2"] + connection)
        #expect(all.status == 0)
        #expect(all.lines.count == 2)  // positions 2 and 3 (positions start at 1)
        #expect(all.lines.first?.contains("order-1@1\tOrderPaid") == true)

        let info = try strata(["info", "order-1"] + connection)
        #expect(info.stdout.trimmingCharacters(in: .newlines) == "order-1: last revision 1, first visible revision 0")

        let deleted = try strata(["delete", "order-1", "--expected", "1", "--json"] + connection)
        #expect(deleted.status == 0, "\(deleted.stderr)")
        let infoAfter = try strata(["info", "order-1", "--json"] + connection)
        #expect(try infoAfter.jsonLines().first?["deleted"] as? Bool == true)

        let stopped = server.terminate()
        #expect(stopped.status == 0)
        #expect(stopped.output.contains(" notice stopped"))
    }

    @Test("bench append --runs prints every run and then their median, lowest and highest; every run appends on new streams")
    func benchAppendRuns() throws {
        let server = try ServerProcess()
        let connection = ["--port", "\(server.port)"]
        let bench = try strata(["bench", "append", "--runs", "3", "--events", "40", "--connections", "2", "--concurrency", "2"] + connection)
        #expect(bench.status == 0, "\(bench.stderr)")
        let runs = bench.lines.filter { $0.hasPrefix("appended 40 events in ") }
        #expect(runs.count == 3, "\(bench.stdout)")
        let rates = runs.compactMap { line -> Double? in
            guard let range = line.range(of: #": (\d+) events/s"#, options: .regularExpression) else { return nil }
            return Double(line[range].dropFirst(2).dropLast(" events/s".count))
        }
        #expect(rates.count == 3)
        let summary = try #require(bench.lines.last)
        let sorted = rates.sorted()
        #expect(summary == "3 runs: median \(Int(sorted[1])) events/s (lowest \(Int(sorted[0])), highest \(Int(sorted[2])))")
        // 3 runs × 2 × 2 callers × 10 appends, on 12 streams of 10 events each.
        let all = try strata(["read", "$all", "--count", "1000", "--json"] + connection)
        let events = try all.jsonLines()
        #expect(events.count == 120)
        let streams = Dictionary(grouping: events) { $0["stream"] as? String ?? "" }
        #expect(streams.count == 12)
        #expect(streams.values.allSatisfy { $0.count == 10 })

        let refused = try strata(["bench", "append", "--runs", "0"] + connection)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--runs must be positive"), "\(refused.stderr)")
        _ = server.terminate()
    }

    @Test("errors are one line on stderr with a non-zero exit, and nothing is appended")
    func errors() throws {
        let server = try ServerProcess()
        let connection = ["--port", "\(server.port)"]
        _ = try strata(["append", "account-1", "Opened", "{}"] + connection)

        let conflict = try strata(["append", "account-1", "Opened", "{}", "--expected", "no-stream"] + connection)
        #expect(conflict.status != 0)
        #expect(conflict.stdout.isEmpty)
        #expect(conflict.stderr.split(separator: "\n").count == 1)
        #expect(conflict.stderr.hasPrefix("strata: FAILED_PRECONDITION: wrong expected revision on stream 'account-1': expected no stream, actual revision 0"),
                "\(conflict.stderr)")

        let badJSON = try strata(["append", "account-1", "Deposited", "{not json"] + connection)
        #expect(badJSON.status != 0)
        #expect(badJSON.stderr == "Error: the event data is not valid JSON: {not json\n", "\(badJSON.stderr)")

        let badExpected = try strata(["append", "account-1", "Deposited", "{}", "--expected", "soon"] + connection)
        #expect(badExpected.status != 0)
        #expect(badExpected.stderr.split(separator: "\n").count == 1)
        #expect(badExpected.stderr.contains("--expected takes"))

        let badStream = try strata(["append", "", "Deposited", "{}"] + connection)
        #expect(badStream.status != 0)
        #expect(badStream.stderr.hasPrefix("strata: INVALID_ARGUMENT: invalid stream name"), "\(badStream.stderr)")

        let unknownTenant = try strata(["info", "account-1", "--tenant", "nobody"] + connection)
        #expect(unknownTenant.status != 0)
        #expect(unknownTenant.stderr == "strata: NOT_FOUND: tenant 'nobody' not found\n", "\(unknownTenant.stderr)")

        // None of the refused appends landed.
        let info = try strata(["info", "account-1", "--json"] + connection)
        #expect(try info.jsonLines().first?["lastRevision"] as? Int == 0)

        let unreachable = try strata(["info", "account-1", "--port", "1"])
        #expect(unreachable.status != 0)
        #expect(unreachable.stderr.hasPrefix("strata: UNAVAILABLE: cannot connect to 127.0.0.1:1"), "\(unreachable.stderr)")
    }

    @Test("serve refuses a bad configuration with a message naming the key", arguments: [
        ("storage:\n  durability: sometimes\n", "configuration key 'storage.durability': must be 'sync' or 'relaxed', not 'sometimes'"),
        ("server:\n  prot: 7070\n", "configuration key 'server.prot': unknown key"),
        ("server:\n  max_connections: many\n", "configuration key 'server.max_connections': must be a positive whole number, not 'many'"),
        ("server:\n  port: 70000\n", "configuration key 'server.port': must be a whole number from 0 to 65535, not '70000'"),
        ("logging:\n  level: loud\n", "configuration key 'logging.level': must be one of trace, debug, info, notice, warning, error, critical, not 'loud'"),
        ("logging:\n  format: xml\n", "configuration key 'logging.format': must be text or json, not 'xml'"),
        ("metrics:\n  port: 7070\nserver:\n  port: 7070\n", "configuration key 'metrics.port': must differ from server.port (both are 7070)"),
        ("metrics:\n  enabled: perhaps\n", "configuration key 'metrics.enabled': must be true or false, not 'perhaps'"),
        ("server: [1, 2]\n", "configuration key 'server': must be a mapping of settings"),
        ("server:\n  port: [7070\n", "is not valid YAML"),
    ])
    func badConfiguration(yaml: String, message: String) throws {
        let directory = NSTemporaryDirectory() + "strata-cli-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/strata.yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try strata(["serve", "--config", file, "--data", directory + "/data"])
        #expect(result.status != 0)
        #expect(result.stderr.contains(message), "\(result.stderr)")
        if !message.contains("YAML") && !message.contains("differ") && !message.contains("mapping") {
            #expect(result.stderr.contains(file), "the message says which file: \(result.stderr)")
        }
        // Refused before anything was created.
        #expect(!FileManager.default.fileExists(atPath: directory + "/data"))
    }

    @Test("environment variables and flags override the file, and a bad environment value names its variable's key")
    func layering() throws {
        let directory = NSTemporaryDirectory() + "strata-cli-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/strata.yaml"
        try "storage:\n  durability: relaxed\nlogging:\n  level: warning\n".write(toFile: file, atomically: true, encoding: .utf8)
        let bad = try strata(["serve", "--config", file, "--data", directory + "/data"], environment: ["STRATA_LOG_LEVEL": "shouty"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("configuration key 'logging.level': must be one of"), "\(bad.stderr)")
        #expect(bad.stderr.contains("not 'shouty' (from environment variable STRATA_LOG_LEVEL)"), "\(bad.stderr)")
        let unknown = try strata(["serve", "--config", file, "--data", directory + "/data"], environment: ["STRATA_SERVER_PROT": "1"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("configuration key 'STRATA_SERVER_PROT': unknown environment variable"), "\(unknown.stderr)")
        // A flag beats the environment, which beats the file: the flag's bad value is the one reported.
        let flag = try strata(["serve", "--config", file, "--data", directory + "/data", "--durability", "never"],
                              environment: ["STRATA_DURABILITY": "sync"])
        #expect(flag.stderr.contains("not 'never' (from the command line)"), "\(flag.stderr)")
    }

    @Test("subscribe prints stored then live events; at, between and snapshot save/load answer from history")
    func history() throws {
        let server = try ServerProcess()
        let connection = ["--port", "\(server.port)"]
        _ = try strata(["append", "order-1", "Placed", #"{"total":5}"#] + connection)
        // A subscriber to the category, stopping after three events (one stored, two live).
        let subscriber = Process()
        subscriber.executableURL = strataBinary
        subscriber.arguments = ["subscribe", "$ce-order", "--count", "3", "--json"] + connection
        subscriber.environment = ProcessInfo.processInfo.environment.merging(["STRATA_API_KEY": testAdminKey]) { $1 }
        let out = Pipe(), err = Pipe()
        subscriber.standardOutput = out
        subscriber.standardError = err
        try subscriber.run()
        let outDrain = PipeDrain(out), errDrain = PipeDrain(err)
        _ = try strata(["append", "invoice-1", "Issued", "{}"] + connection)  // another category
        _ = try strata(["append", "order-1", "Paid", "{}"] + connection)
        _ = try strata(["append", "order-2", "Placed", "{}"] + connection)
        subscriber.waitUntilExit()
        let printed = outDrain.wait()
        #expect(subscriber.terminationStatus == 0, "\(errDrain.wait())")
        let lines = printed.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.compactMap { $0["stream"] as? String } == ["order-1", "order-1", "order-2"])
        #expect(lines.contains { $0["caughtUp"] != nil })

        // at: the stream as of its first event's time, then as of a far future time.
        let events = try strata(["read", "order-1", "--json"] + connection).jsonLines()
        let firstTime = try #require(events.first?["recordedAt"] as? Int)
        let atFirst = try strata(["at", "order-1", "\(firstTime)"] + connection)
        #expect(atFirst.status == 0, "\(atFirst.stderr)")
        #expect(atFirst.lines.count == 2)
        #expect(atFirst.lines.last?.hasSuffix(": revision 0") == true, "\(atFirst.stdout)")
        let atFuture = try strata(["at", "order-1", "2100-01-01T00:00:00Z", "--json"] + connection)
        #expect(try atFuture.jsonLines().last?["revision"] as? Int == 1)
        let before = try strata(["at", "order-1", "2001-01-01"] + connection)
        #expect(before.status != 0 && before.stderr.hasPrefix("strata: NOT_FOUND"))
        let badTime = try strata(["at", "order-1", "yesterday"] + connection)
        #expect(badTime.status != 0 && badTime.stderr.contains("is not a time"))
        let farFuture = try strata(["at", "order-1", "3000-01-01T00:00:00Z"] + connection)
        #expect(farFuture.status != 0 && farFuture.stderr.contains("out of range"), "\(farFuture.stderr)")
        let epoch = try strata(["at", "order-1", "0"] + connection)  // 1970, not "now"
        #expect(epoch.status != 0 && epoch.stderr.hasPrefix("strata: NOT_FOUND"), "\(epoch.stdout)")

        // between: everything from 1970 to now, and nothing in an empty range.
        let all = try strata(["between", "$all", "1970-01-01T00:00:00Z", "now"] + connection)
        #expect(all.lines.count == 4)
        let none = try strata(["between", "$all", "2000-01-01T00:00:00.5Z", "2000-01-01T00:00:01Z"] + connection)
        #expect(none.status == 0 && none.lines.isEmpty)

        // snapshot save and load.
        let saved = try strata(["snapshot", "save", "order-1", "1", #"{"paid":true}"#] + connection)
        #expect(saved.status == 0, "\(saved.stderr)")
        let loaded = try strata(["snapshot", "load", "order-1", "--json"] + connection)
        let snapshot = try #require(try loaded.jsonLines().first)
        #expect(snapshot["revision"] as? Int == 1 && snapshot["payload"] as? String == #"{"paid":true}"#)
        let missing = try strata(["snapshot", "load", "order-1", "--revision", "0"] + connection)
        #expect(missing.status == 3 && missing.stderr.contains("no snapshot"))
        let notJSON = try strata(["snapshot", "save", "order-1", "1", "{oops"] + connection)
        #expect(notJSON.status != 0 && notJSON.stderr.contains("not valid JSON"))
    }
}
