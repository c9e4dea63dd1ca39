import Foundation
import StrataProtocolTestSupport
import StrataConformance
import StrataProjections
import StrataProto
import StrataServer
import StrataSupport
import StrataWire
import Synchronization
import Testing
import StrataTestSupport

/// proto/conformance, found from this file.
private let casesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("proto/conformance").path

@Suite("The conformance suite")
struct ConformanceTests {
    @Test("every case passes against the server")
    func allCasesPass() throws {
        let fixture = try ServerFixture(projections: ProjectionOptions())
        let cases = try ConformanceCase.load(directory: casesDirectory)
        #expect(cases.count >= 79)
        let results = try ConformanceRunner(host: "127.0.0.1", port: fixture.port, adminKey: ServerFixture.adminKey).run(cases)
        for result in results where !result.passed {
            Issue.record("\(result.name): \(result.failure ?? "")")
        }
        #expect(results.count == cases.count)
        // The runner deleted the tenants it made.
        #expect(try fixture.system.tenants().map(\.name) == ["acme"])
    }

    @Test("a case file that does not decode is refused with the file, the step's path and what is wrong")
    func malformedCasesAreRefused() throws {
        let directory = TemporaryDirectory()
        func load(_ json: String) throws -> [ConformanceCase] {
            try Data(json.utf8).write(to: URL(fileURLWithPath: directory.sub("cases.json")))
            return try ConformanceCase.load(directory: directory.path)
        }
        let good = try load(#"{"area": "t", "cases": [{"name": "t.one", "rule": "§1", "steps": [{"connect": {}}, {"call": {"id": 1, "method": "/m", "tenant": null}}]}]}"#)
        #expect(good.count == 1 && good[0].name == "t.one")
        let cases: [(json: String, message: String)] = [
            (#"{"cases": [{"name": "t", "rule": "", "steps": [{"connect": {}}, {"call": {"id": 1}}]}]}"#,
             "cases.json: cases[0].steps[1].call: no value for 'method'"),
            (#"{"cases": [{"name": "t", "rule": "", "steps": [{"connect": {}, "send": {}}]}]}"#,
             "cases.json: cases[0].steps[0]: a step is one object with one key, its kind"),
            (#"{"cases": [{"name": "t", "rule": "", "steps": [{"grant": {"call": "three"}}]}]}"#,
             "cases.json: cases[0].steps[0].grant.call: expected UInt32"),
            (#"{"cases": [{"name": "t", "rule": "", "steps": []}]}"#, "cases.json: case 't' has no steps"),
        ]
        for (json, message) in cases {
            #expect {
                _ = try load(json)
            } throws: { error in
                "\(error)".hasPrefix(message) || { Issue.record("got \(error)"); return false }()
            }
        }
    }

    /// The server must answer without the Swift concurrency pool: a host
    /// process whose pool threads are all blocked (as this test process's
    /// are, at times, by tests that wait on child processes) once held a
    /// snapshot save for over ten seconds.
    @Test("snapshot saves and stream deletions are answered while every Swift concurrency pool thread is blocked")
    func answersWithoutTheConcurrencyPool() throws {
        let fixture = try ServerFixture()
        let cases = try ConformanceCase.load(directory: casesDirectory).filter {
            ["snapshots.save-load-and-limits", "streams.info-and-delete", "streams.delete-twice-with-any"].contains($0.name)
        }
        #expect(cases.count == 3)
        // One blocker per pool thread; this test's own thread may be one of
        // them, so wait for all but one to be running.
        let width = ProcessInfo.processInfo.activeProcessorCount
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        for _ in 0 ..< width {
            Task.detached { started.signal(); release.wait() }
        }
        defer { for _ in 0 ..< width { release.signal() } }
        for _ in 0 ..< max(1, width - 1) { started.wait() }
        let results = try ConformanceRunner(host: "127.0.0.1", port: fixture.port, adminKey: ServerFixture.adminKey).run(cases)
        for result in results where !result.passed {
            Issue.record("\(result.name): \(result.failure ?? "")")
        }
        #expect(results.count == 3)
    }

    @Test("the limits cases pass against a server with the small limits they name")
    func limitsCasesPass() throws {
        let fixture = try ServerFixture {
            $0.maxConnections = 4
            $0.idleTimeout = .seconds(2)
            $0.subscriptions.maxLagEvents = 5
            $0.subscriptions.maxLagDuration = .zero
        }
        let cases = try ConformanceCase.load(directory: casesDirectory + "/limits")
        #expect(cases.count == 3)
        let results = try ConformanceRunner(host: "127.0.0.1", port: fixture.port, adminKey: ServerFixture.adminKey).run(cases)
        for result in results where !result.passed {
            Issue.record("\(result.name): \(result.failure ?? "")")
        }
    }

    @Test("a server that returns a wrong status fails the case, naming the step, the status and the expected one")
    func wrongStatusIsCaught() throws {
        let fixture = try ServerFixture()
        // NOT_FOUND becomes INTERNAL on the way back.
        let proxy = try RewritingProxy(upstream: fixture.port) { frame in
            guard frame.type == .trailers, var trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload),
                  trailers.code == StatusCode.notFound.rawValue else { return frame }
            trailers.code = StatusCode.internal.rawValue
            return Frame(type: .trailers, callID: frame.callID, payload: (try? trailers.serializedBytes()) ?? [])
        }
        let cases = try ConformanceCase.load(directory: casesDirectory).filter { $0.name == "streams.read-errors" }
        let results = try ConformanceRunner(host: "127.0.0.1", port: proxy.port, adminKey: ServerFixture.adminKey).run(cases)
        let failure = try #require(results.first?.failure)
        #expect(failure.hasPrefix("step 3 (collect call 1): status INTERNAL"), "\(failure)")
        #expect(failure.contains("expected NOT_FOUND"), "\(failure)")
    }

    @Test("a server that mis-frames (a PING answer without ACK, a truncated frame) fails with a precise message")
    func misFramingIsCaught() throws {
        let fixture = try ServerFixture()
        let proxy = try RewritingProxy(upstream: fixture.port) { frame in
            frame.type == .ping ? Frame(type: .ping, flags: [], callID: 0, payload: frame.payload) : frame
        }
        let cases = try ConformanceCase.load(directory: casesDirectory).filter { $0.name == "framing.ping-is-answered" }
        let results = try ConformanceRunner(host: "127.0.0.1", port: proxy.port, adminKey: ServerFixture.adminKey).run(cases)
        let failure = try #require(results.first?.failure)
        #expect(failure == "step 3 (expect PING): PING(call 0, flags 0x0, 8 bytes) has flags 0x0, expected 0x1", "\(failure)")
    }

    @Test("a server that reports the wrong actual revision in a conflict's detail fails the case")
    func wrongDetailIsCaught() throws {
        let fixture = try ServerFixture()
        let proxy = try RewritingProxy(upstream: fixture.port) { frame in
            guard frame.type == .trailers, var trailers = try? Strata_V1_Trailers(serializedBytes: frame.payload),
                  trailers.detail.wrongExpectedRevision.hasActual else { return frame }
            trailers.detail.wrongExpectedRevision.actual.noStream = Strata_V1_Empty()
            return Frame(type: .trailers, callID: frame.callID, payload: (try? trailers.serializedBytes()) ?? [])
        }
        let cases = try ConformanceCase.load(directory: casesDirectory).filter { $0.name == "streams.wrong-expected-revision" }
        let results = try ConformanceRunner(host: "127.0.0.1", port: proxy.port, adminKey: ServerFixture.adminKey).run(cases)
        let failure = try #require(results.first?.failure)
        #expect(failure.contains("detail.wrongExpectedRevision.actual.revision is missing"), "\(failure)")
    }

    @Test("the case files parse, names are unique, and every message type they name is known")
    func caseFilesAreWellFormed() throws {
        let cases = try ConformanceCase.load(directory: casesDirectory) + ConformanceCase.load(directory: casesDirectory + "/limits")
        let areas = Set(cases.map { String($0.name.split(separator: ".")[0]) })
        #expect(areas == ["handshake", "framing", "calls", "auth", "streams", "snapshots", "projections", "admin", "limits"])
        #expect(cases.allSatisfy { !$0.rule.isEmpty })
        // PROTOCOL.md section 11 names the cases that check each section.
        let protocolText = try String(contentsOfFile: (casesDirectory as NSString).deletingLastPathComponent + "/PROTOCOL.md", encoding: .utf8)
        for conformanceCase in cases {
            #expect(protocolText.contains("`\(conformanceCase.name)`"), "PROTOCOL.md section 11 lists \(conformanceCase.name)")
        }
    }
}

/// A TCP proxy in front of a server that passes the client's bytes through
/// and rewrites the server's frames, to play a broken server.
final class RewritingProxy: @unchecked Sendable {
    // `listener` is set once in init; the threads own their sockets.
    let port: UInt16
    private let listener: Int32
    /// Whether the accept thread has closed `listener`; deinit shuts the
    /// socket down only while it is still open, so it never touches a
    /// number another socket has taken since.
    private let listenerClosed = LockedFlag()

    init(upstream: UInt16, rewrite: @escaping @Sendable (Frame) -> Frame) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        listen(fd, 16)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: address.sin_port)
        listener = fd
        let listenerClosed = self.listenerClosed
        // Ends when deinit shuts the listening socket down (accept fails).
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    // SIGCHLD from the CLI tests' child processes interrupts accept.
                    if errno == EINTR { continue }
                    listenerClosed.flag.withLock { closed in
                        close(fd)
                        closed = true
                    }
                    return
                }
                guard let serverFD = try? LoopbackSocket.connect(port: upstream) else {
                    close(client)
                    continue
                }
                // Each proxied connection's two descriptors are closed once,
                // by the server → client thread, after the other thread is
                // done with them: closing a number another thread still uses
                // would hit whatever socket reuses it (another test's).
                let clientDone = DispatchSemaphore(value: 0)
                // Client → server: bytes as they come.
                Thread.detachNewThread {
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { break }
                        _ = buffer.withUnsafeBytes { send(serverFD, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
                    }
                    shutdown(serverFD, Int32(SHUT_WR))
                    clientDone.signal()
                }
                // Server → client: the preface, then frames through `rewrite`.
                Thread.detachNewThread {
                    var decoder = FrameDecoder(maxPayloadSize: 64 << 20, expectPreface: true)
                    var sentPreface = false
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let n = buffer.withUnsafeMutableBytes { recv(serverFD, $0.baseAddress, $0.count, 0) }
                        if n < 0 && errno == EINTR { continue }
                        if n <= 0 { break }
                        decoder.append(buffer[0 ..< n])
                        if !sentPreface {
                            let preface = Preface.bytes
                            _ = preface.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                            sentPreface = true
                        }
                        while let frame = try? decoder.next() {
                            let bytes = rewrite(frame).encoded
                            _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        }
                    }
                    shutdown(client, Int32(SHUT_RDWR))  // ends the other thread's recv
                    clientDone.wait()
                    close(serverFD)
                    close(client)
                }
            }
        }
    }


    deinit {
        listenerClosed.flag.withLock { closed in
            if !closed { shutdown(listener, Int32(SHUT_RDWR)) }  // the accept thread then closes it
        }
    }
}

/// A Bool behind a lock, shareable with threads.
final class LockedFlag: Sendable {
    let flag = Locked(false)
}
