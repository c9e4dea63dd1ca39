import Foundation
import StrataProtocolTestSupport
import Logging
import StrataClient
import StrataProjections
import StrataProto
@testable import StrataServer
import StrataSupport
import StrataWire
import Synchronization
import Testing
import StrataTestSupport

/// One HTTP/1.1 exchange over a plain socket: the status and the body.
func httpRequest(port: UInt16, _ request: String) throws -> (status: Int, headers: String, body: String) {
    let connection = try RawHTTP(port: port, receiveTimeout: 10)
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    let text = connection.readAll()  // the responder closes after each response
    guard let split = text.range(of: "\r\n\r\n") else { return (0, text, "") }
    let head = String(text[..<split.lowerBound])
    let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, head, String(text[split.upperBound...]))
}

func httpGet(port: UInt16, _ path: String) throws -> (status: Int, headers: String, body: String) {
    try httpRequest(port: port, "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// Prometheus text: the value of the series `name` with exactly `labels`.
func metric(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        let (series, value) = (line.split(separator: " ").first ?? "", line.split(separator: " ").last ?? "")
        let seriesName = series.split(separator: "{").first.map(String.init) ?? ""
        guard seriesName == name else { continue }
        var found: [String: String] = [:]
        if let open = series.firstIndex(of: "{") {
            let body = series[series.index(after: open) ..< (series.lastIndex(of: "}") ?? series.endIndex)]
            for pair in body.split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { continue }
                found[String(parts[0])] = String(parts[1].dropFirst().dropLast())
            }
        }
        if found == labels { return Double(value) }
    }
    return nil
}

/// Collects log records for assertions.
final class CapturedLogs: Sendable {
    struct Record: Sendable { let level: Logger.Level; let message: String; let metadata: [String: String] }
    let records = Locked<[Record]>([])

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(logs: self) }
    }

    struct CapturingHandler: LogHandler {
        let logs: CapturedLogs
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var all = metadata
            if let extra = event.metadata { all.merge(extra) { $1 } }
            let flat = all.mapValues { "\($0)" }
            logs.records.withLock { $0.append(Record(level: event.level, message: event.message.description, metadata: flat)) }
        }
    }
}

/// A plain TCP connection to an HTTP port that sends nothing.
final class RawHTTP {
    let fd: Int32
    init(port: UInt16, receiveTimeout seconds: Int = 5) throws {
        fd = try LoopbackSocket.connect(port: port, receiveTimeout: .seconds(seconds))
    }
    private var open = true
    func close() {
        if open { Glibc.close(fd) }
        open = false
    }
    /// Everything until the server closes (or the receive timeout passes).
    func readAll() -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            out += buffer[0 ..< count]
        }
        return String(decoding: out, as: UTF8.self)
    }
    deinit { close() }
}

@Suite("Metrics, health, readiness and logs")
struct ObservabilityTests {
    static let append = "/strata.v1.Streams/Append"

    @Test("/metrics during a workload: calls, appends, commits, bytes, connections, subscriptions, projections and map usage move as expected")
    func scrapeDuringWorkload() async throws {
        let fixture = try ServerFixture(projections: ProjectionOptions())
        let client = try await fixture.client()
        defer { client.close() }
        let before = try httpGet(port: fixture.metricsPort, "/metrics")
        #expect(before.status == 200)
        #expect(before.headers.contains("Content-Type: text/plain; version=0.0.4"))
        let okBefore = metric(before.body, "strata_calls_total", ["method": Self.append, "code": "OK"]) ?? 0
        let eventsBefore = metric(before.body, "strata_events_written_total", ["tenant": "acme"]) ?? 0

        _ = try await client.createProjection("counter", script: """
            return { source = { category = "order" }, init = function() return { n = 0 } end,
                     when = { Placed = function(s, e) s.n = s.n + 1 end } }
            """)
        // A live subscriber to $all that grants one message of credit, which
        // its caught-up marker uses: everything appended later is its lag.
        let subscriber = try RawConnection(port: fixture.port)
        subscriber.send(Preface.bytes)
        var settings = Strata_V1_Settings()
        settings.initialWindowMessages = 1
        try subscriber.send(.settings, settings)
        var subscribe = Strata_V1_SubscribeRequest()
        subscribe.all = Strata_V1_Empty()
        try subscriber.openCall(1, method: StreamsMethod.subscribe, request: subscribe)
        #expect(try subscriber.readFrame { $0.type == .message && $0.callID == 1 } != nil)

        // The workload: 4 writers × 25 single-event appends, concurrently,
        // while a scraper reads /metrics over and over.
        let scraped = Locked<[Double]>([])
        let writing = Atomic<Bool>(true)
        let metricsPort = fixture.metricsPort
        let scraper = Thread {
            while writing.load(ordering: .relaxed) {
                guard let page = try? httpGet(port: metricsPort, "/metrics"), page.status == 200 else {
                    scraped.withLock { $0.append(-1) }
                    return
                }
                scraped.withLock { $0.append(metric(page.body, "strata_events_written_total", ["tenant": "acme"]) ?? 0) }
            }
        }
        scraper.start()
        defer { writing.store(false, ordering: .relaxed) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0 ..< 4 {
                group.addTask {
                    for i in 0 ..< 25 {
                        _ = try await client.append(to: "order-\(writer)", expected: i == 0 ? .noStream : .exact(UInt64(i - 1)),
                                                    events: events(1, type: "Placed"))
                    }
                }
            }
            try await group.waitForAll()
        }
        writing.store(false, ordering: .relaxed)
        // Every scrape during the writes answered, and the count only grew.
        let seen = scraped.withLock { $0 }
        #expect(!seen.contains(-1))
        #expect(seen == seen.sorted())
        #expect(seen.allSatisfy { $0 >= eventsBefore && $0 <= eventsBefore + 100 })
        // One conflict, counted under its code.
        await #expect(throws: StrataClient.Error.self) {
            _ = try await client.append(to: "order-0", expected: .noStream, events: events(1, type: "Placed"))
        }
        // Wait (on the server's own status) for the projection to reach the head.
        for _ in 0 ..< 500 {
            if try await client.projectionStatus("counter").checkpointPosition >= 100 { break }
            try await Task.sleep(for: .milliseconds(10))  // polling a remote status
        }

        let during = try httpGet(port: fixture.metricsPort, "/metrics").body
        #expect(metric(during, "strata_calls_total", ["method": Self.append, "code": "OK"]) == okBefore + 100)
        #expect(metric(during, "strata_calls_total", ["method": Self.append, "code": "FAILED_PRECONDITION"]) == 1)
        #expect(metric(during, "strata_events_written_total", ["tenant": "acme"]) == eventsBefore + 100)
        #expect((metric(during, "strata_bytes_written_total", ["tenant": "acme"]) ?? 0) > 100 * 20)
        #expect(metric(during, "strata_append_duration_seconds_count") == 100)
        #expect((metric(during, "strata_append_duration_seconds_sum") ?? 0) > 0)
        // Every appended event went through a group commit (projection
        // checkpoints commit too, with no events of their own here).
        let eventsCommittedBefore = metric(before.body, "strata_commit_batch_events_sum") ?? 0
        #expect(metric(during, "strata_commit_batch_events_sum") == eventsCommittedBefore + 100)
        #expect((metric(during, "strata_commit_batch_operations_sum") ?? 0) >= 100)
        #expect((metric(during, "strata_commit_duration_seconds_count") ?? 0) >= 1)
        #expect(metric(during, "strata_connections") == 2)
        #expect((metric(during, "strata_calls_in_flight") ?? 0) >= 1)  // the subscription
        #expect(metric(during, "strata_subscriptions", ["tenant": "acme"]) == 1)
        // No credit: none of the 100 appended events could be sent.
        #expect(metric(during, "strata_subscription_max_lag_events", ["tenant": "acme"]) == 100)
        #expect(metric(during, "strata_projection_position", ["tenant": "acme", "projection": "counter"]) == 100)
        #expect(metric(during, "strata_projection_lag_events", ["tenant": "acme", "projection": "counter"]) == 0)
        #expect(metric(during, "strata_projection_state", ["tenant": "acme", "projection": "counter", "state": "running"]) == 1)
        #expect(metric(during, "strata_projection_state", ["tenant": "acme", "projection": "counter", "state": "faulted"]) == 0)
        #expect(metric(during, "strata_tenant_map_size_bytes", ["tenant": "acme"]) == Double(256 << 20))
        #expect((metric(during, "strata_tenant_map_used_bytes", ["tenant": "acme"]) ?? 0) > 0)
        #expect(metric(during, "strata_ready") == 1)
        #expect((metric(during, "strata_connections_accepted_total") ?? 0) >= 2)
        #expect((metric(during, "strata_call_duration_seconds_count", ["method": Self.append]) ?? 0) >= 100)

        // The subscriber grants credit: the server sends everything and the lag falls to zero.
        var update = Strata_V1_WindowUpdate()
        update.messages = 10_000
        try subscriber.send(.windowUpdate, callID: 1, update)
        var lag: Double?
        for _ in 0 ..< 200 {
            lag = metric(try httpGet(port: fixture.metricsPort, "/metrics").body, "strata_subscription_max_lag_events", ["tenant": "acme"])
            if lag == 0 { break }
            try await Task.sleep(for: .milliseconds(10))  // the server sends on its own queue
        }
        #expect(lag == 0)

        // The subscriber cancels: no subscription is left.
        subscriber.send(Frame(type: .cancel, callID: 1, payload: []))
        var subscriptions: Double?
        for _ in 0 ..< 200 {
            subscriptions = metric(try httpGet(port: fixture.metricsPort, "/metrics").body, "strata_subscriptions", ["tenant": "acme"])
            if subscriptions == 0 { break }
            try await Task.sleep(for: .milliseconds(10))  // the cancel is handled on the connection's queue
        }
        #expect(subscriptions == 0)
        let after = try httpGet(port: fixture.metricsPort, "/metrics").body
        #expect(metric(after, "strata_calls_total", ["method": StreamsMethod.subscribe, "code": "CANCELLED"]) == 1)
        #expect(metric(after, "strata_calls_in_flight") == 0)
    }

    @Test("a deleted tenant's series disappear; a tenant over projections.max_per_tenant is refused")
    func tenantSeriesAndProjectionLimit() async throws {
        var options = ProjectionOptions()
        options.maxPerTenant = 2
        let fixture = try ServerFixture(projections: options)
        _ = try fixture.tenants.createTenant("doomed", maxSizeBytes: nil)
        let client = try await fixture.client(tenant: "doomed")
        defer { client.close() }
        _ = try await client.append(to: "s-1", events: events(3))
        let script = "return { source = { all = true }, init = function() return { n = 0 } end, when = { Happened = function(s, e) s.n = s.n + 1 end } }"
        _ = try await client.createProjection("p1", script: script)
        _ = try await client.createProjection("p2", script: script)
        await #expect {
            _ = try await client.createProjection("p3", script: script)
        } throws: { ($0 as? StrataClient.Error)?.code == .resourceExhausted }
        let before = try httpGet(port: fixture.metricsPort, "/metrics").body
        #expect(metric(before, "strata_events_written_total", ["tenant": "doomed"]) == 3)
        #expect(metric(before, "strata_projection_state", ["tenant": "doomed", "projection": "p2", "state": "running"]) == 1)
        #expect(metric(before, "strata_projection_position", ["tenant": "doomed", "projection": "p3"]) == nil)

        _ = try fixture.tenants.deleteTenant("doomed")
        let after = try httpGet(port: fixture.metricsPort, "/metrics").body
        #expect(!after.contains("tenant=\"doomed\""), "series of a deleted tenant remain")
    }

    @Test("the HTTP responder: a silent client gets 408, connections beyond the limit are closed, and stop() closes what is open")
    func responderLimits() throws {
        let endpoint = HTTPEndpoint(host: "127.0.0.1", port: 0, maxConnections: 1, requestTimeout: .milliseconds(200),
                                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })) { _, _ in
            HTTPEndpoint.Response(status: 200, text: "fine")
        }
        let port = try endpoint.start()
        // The first connection takes the only slot (connections are accepted
        // in order); the second is closed without an answer.
        let holder = try RawHTTP(port: port)
        let refused = try RawHTTP(port: port)
        #expect(refused.readAll().isEmpty)
        // The holder stays silent: 408 after the request timeout.
        #expect(holder.readAll().hasPrefix("HTTP/1.1 408 Request Timeout"))
        holder.close()
        // Once the holder's slot is released, requests are answered again.
        var answer = ""
        for _ in 0 ..< 100 where answer.isEmpty {
            answer = (try? httpGet(port: port, "/anything").body) ?? ""
            if answer.isEmpty { Thread.sleep(forTimeInterval: 0.02) }  // the slot is released asynchronously
        }
        #expect(answer == "fine\n")
        endpoint.stop()
        // Refused, or reset unanswered once the listening socket closes.
        let afterStop = try? httpGet(port: port, "/anything")
        #expect(afterStop == nil || afterStop?.status == 0)
    }

    @Test("unknown methods are counted as `unknown`, never by the name the client sent")
    func boundedMethodLabels() async throws {
        let fixture = try ServerFixture()
        let connection = try RawConnection(port: fixture.port)
        try connection.handshake()
        try connection.openCall(1, method: "/made.up/Method-\(UUID())", request: Strata_V1_Empty())
        #expect(try trailers(connection.read(until: .trailers, callID: 1))?.code == StatusCode.unimplemented.rawValue)
        let text = try httpGet(port: fixture.metricsPort, "/metrics").body
        #expect(metric(text, "strata_calls_total", ["method": "unknown", "code": "UNIMPLEMENTED"]) == 1)
        #expect(!text.contains("made.up"))
    }

    @Test("/health, /ready, unknown paths, other methods, HEAD and malformed requests")
    func endpoints() async throws {
        let fixture = try ServerFixture()
        let port = fixture.metricsPort
        #expect(try httpGet(port: port, "/health").status == 200)
        let ready = try httpGet(port: port, "/ready")
        #expect(ready.status == 200)
        #expect(ready.body == "ready\n")
        #expect(try httpGet(port: port, "/metrics?name=x").status == 200)
        #expect(try httpGet(port: port, "/nothing").status == 404)
        let post = try httpRequest(port: port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        #expect(post.status == 405)
        #expect(post.headers.contains("Allow: GET, HEAD"))
        let head = try httpRequest(port: port, "HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(try httpRequest(port: port, "hello\r\n\r\n").status == 400)
        let huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: HTTPEndpoint.maxRequestHeadBytes) + "\r\n\r\n"
        #expect(try httpRequest(port: port, huge).status == 431)
        // The RPC side is unaffected by any of it.
        let client = try await fixture.client()
        defer { client.close() }
        _ = try await client.append(to: "s-1", events: events(1))
    }

    @Test("/ready: 503 until start-up finishes, 200 while serving, 503 while draining on shutdown")
    func readiness() async throws {
        let release = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        let fixture = try ServerFixture(extraRoutes: { router in
            router.register("/test.Slow/Wait", .tenant(.read), .unary { _, _, respond in
                DispatchQueue.global().async {
                    entered.signal()
                    release.wait()
                    respond(.success([]))
                }
            })
        })
        #expect(try httpGet(port: fixture.metricsPort, "/ready").status == 200)

        // A server whose start-up has not finished says so.
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.metricsPort = 0
        let starting = RPCServer(configuration: configuration, router: Router(), authorizer: KeyAuthorizer(system: fixture.system, adminKey: ServerFixture.adminKey))
        _ = try starting.start()
        let startingPort = try #require(starting.metricsPort)
        let notYet = try httpGet(port: startingPort, "/ready")
        #expect(notYet.status == 503)
        #expect(notYet.body == "starting\n")
        #expect(try httpGet(port: startingPort, "/health").status == 200)
        starting.markReady()
        #expect(try httpGet(port: startingPort, "/ready").status == 200)
        starting.shutdown()

        // Draining: a call is in flight, so shutdown waits; /ready says so meanwhile.
        let connection = try RawConnection(port: fixture.port)
        try connection.handshake()
        try connection.openCall(1, method: "/test.Slow/Wait", request: Strata_V1_Empty())
        entered.wait()
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            fixture.server.shutdown()
            stopped.signal()
        }
        var draining = 0
        for _ in 0 ..< 200 {
            let answer = try httpGet(port: fixture.metricsPort, "/ready")
            if answer.status == 503 {
                #expect(answer.body == "shutting down\n")
                draining = answer.status
                break
            }
            try await Task.sleep(for: .milliseconds(5))  // shutdown starts on another thread
        }
        #expect(draining == 503)
        release.signal()
        stopped.wait()
    }

    @Test("one log line per failed call, with tenant, method, request id, connection and code, and no secret")
    func failedCallLogs() async throws {
        let logs = CapturedLogs()
        let fixture = try ServerFixture(logger: logs.logger)
        let key = try fixture.key(.read)
        let client = try await fixture.client(apiKey: key)
        defer { client.close() }
        _ = try? await client.streamInfo("missing-stream")       // NOT_FOUND
        _ = try? await client.append(to: "s-1", events: events(1))  // PERMISSION_DENIED: a read key
        let failures = logs.records.withLock { $0 }.filter { $0.message.hasPrefix("call failed") }
        #expect(failures.count == 2, "one line per failed call")
        let notFound = try #require(failures.first { $0.metadata["code"] == "NOT_FOUND" })
        #expect(notFound.metadata["tenant"] == "acme")
        #expect(notFound.metadata["method"] == "/strata.v1.Streams/GetStreamInfo")
        #expect(notFound.metadata["request_id"]?.isEmpty == false)
        #expect(notFound.metadata["connection"] != nil)
        #expect(notFound.metadata["peer"]?.hasPrefix("127.0.0.1:") == true)
        #expect(notFound.level == .info)
        let denied = try #require(failures.first { $0.metadata["code"] == "PERMISSION_DENIED" })
        #expect(denied.metadata["method"] == Self.append)
        // A wrong secret for a real key id, and a caller-chosen tenant name
        // with control characters and 10,000 letters: refused, logged briefly.
        let parsed = try #require(APIKey(parsing: key))
        let wrong = try await fixture.client(apiKey: "strata_\(parsed.id)_\(String(repeating: "x", count: 43))")
        defer { wrong.close() }
        _ = try? await wrong.streamInfo("s-1")
        let noisy = try await fixture.client(tenant: "evil\u{1B}[31m" + String(repeating: "a", count: 10_000), apiKey: key)
        defer { noisy.close() }
        _ = try? await noisy.streamInfo("s-1")

        let records = logs.records.withLock { $0 }
        let refused = records.filter { $0.metadata["code"] == "UNAUTHENTICATED" }
        #expect(refused.count == 2)
        for record in refused {
            #expect(record.metadata["tenant"] == nil, "no tenant is logged before the key is accepted")
            #expect(record.message.count <= "call failed: ".count + 161)
            #expect(!StrataLogHandler.text(level: .info, message: record.message, metadata: [:]).contains("\u{1B}"))
        }
        // The keys' secrets appear nowhere in any record.
        for record in records {
            #expect(!record.message.contains(parsed.secret))
            #expect(!record.metadata.values.contains { $0.contains(parsed.secret) || $0.contains(ServerFixture.adminKey) })
            #expect(!record.message.contains(ServerFixture.adminKey))
        }
    }

    @Test("log lines: text is one line with quoted values; json is one object per line")
    func logFormats() throws {
        let text = StrataLogHandler.text(level: .info, message: "call failed: a\nb",
                                         metadata: ["tenant": "acme", "reason": "has space", "quote": "say \"hi\""])
        #expect(!text.contains("\n"))
        #expect(text.hasSuffix(#" info call failed: a\nb quote="say \"hi\"" reason="has space" tenant=acme"#))
        let json = StrataLogHandler.json(level: .error, message: "boom", metadata: ["tenant": "acme"])
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String]
        #expect(object?["level"] == "error")
        #expect(object?["message"] == "boom")
        #expect(object?["tenant"] == "acme")
        #expect(object?["time"]?.hasSuffix("Z") == true)
    }
}
