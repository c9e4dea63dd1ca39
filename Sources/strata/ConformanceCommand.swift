import ArgumentParser
import Foundation
import StrataConformance

/// `strata conformance`: runs the language-neutral protocol cases in
/// proto/conformance against a server, over raw sockets.
struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the protocol conformance suite against a server.",
        discussion: """
        Creates a fresh tenant (and a second one) with a key of each role using the server admin key, runs \
        the cases, deletes the tenants. Prints each case's result and the step that failed, then \
        "N passed, N failed"; exits 1 if any case failed.
        """
    )

    @Option(help: "The server, host:port.") var server = "127.0.0.1:7070"
    @Option(help: "The server admin key (env STRATA_ADMIN_KEY).") var adminKey: String?
    @Option(help: "Directory of case files.") var cases = "proto/conformance"
    @Option(name: .customLong("case"), help: "Run only the cases whose name starts with this (repeatable).") var only: [String] = []

    func run() throws {
        guard let colon = server.lastIndex(of: ":"), let port = UInt16(server[server.index(after: colon)...]) else {
            throw ValidationError("--server must be host:port, not '\(server)'")
        }
        let host = String(server[..<colon])
        guard let key = adminKey ?? ProcessInfo.processInfo.environment["STRATA_ADMIN_KEY"], !key.isEmpty else {
            throw ValidationError("the suite needs the server admin key: --admin-key or STRATA_ADMIN_KEY")
        }
        var selected = try ConformanceCase.load(directory: cases)
        if !only.isEmpty { selected = selected.filter { c in only.contains { c.name.hasPrefix($0) } } }
        guard !selected.isEmpty else { throw ValidationError("no case matches") }
        let runner = ConformanceRunner(host: host, port: port, adminKey: key)
        let results = try runner.run(selected) { result in
            let ms = Int(result.duration.components.seconds * 1000 + result.duration.components.attoseconds / 1_000_000_000_000_000)
            if let failure = result.failure {
                print("FAIL \(result.name) (\(ms) ms): \(failure)")
            } else {
                print("ok   \(result.name) (\(ms) ms)")
            }
            fflush(nil)
        }
        let failed = results.filter { !$0.passed }.count
        print("\(results.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}
