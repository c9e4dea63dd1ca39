import Foundation
import Histogram
import StrataClient
import StrataProto
import StrataWire
import Synchronization
import Testing
import StrataTestSupport

/// A plain blocking socket speaking just enough of the protocol to misbehave.
final class AbusiveConnection {
    let fd: Int32
    private var closed = false

    /// Connects (nil if refused). `receiveTimeout` bounds each read.
    init?(port: UInt16, receiveTimeout: Duration = .seconds(2)) {
        guard let fd = try? LoopbackSocket.connect(port: port, receiveTimeout: receiveTimeout, sendTimeout: receiveTimeout) else {
            return nil
        }
        self.fd = fd
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Preface and SETTINGS, then a Subscribe to `$all` from the start as call 1.
    func subscribeToAll(window: UInt32 = 0) {
        var settings = Strata_V1_Settings()
        settings.initialWindowMessages = window
        var out = Preface.bytes
        Frame(type: .settings, payload: (try? settings.serializedBytes()) ?? []).encode(into: &out)
        var headers: [UInt8] = []
        CallHeadersCodec.encode(method: StreamsMethod.subscribe, metadata: [(MetadataKey.tenant, "default"),
                                                                              (MetadataKey.authorization, "Bearer \(testAdminKey)")],
                                timeoutMs: 0, into: &headers)
        Frame(type: .headers, callID: 1, payload: headers).encode(into: &out)
        var request = Strata_V1_SubscribeRequest()
        request.all = Strata_V1_Empty()
        Frame(type: .message, flags: .endStream, callID: 1, payload: (try? request.serializedBytes()) ?? []).encode(into: &out)
        send(out)
    }

    /// Reads up to `count` bytes; 0 when the server closed (or the read timed out).
    @discardableResult
    func read(_ count: Int) -> Int {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            return max(n, 0)
        }
    }

    /// Reads until the server closes (or a read times out): the code of its
    /// GOAWAY, if it sent one.
    func goAwayCode() -> UInt32? {
        var decoder = FrameDecoder(maxPayloadSize: 1 << 20, expectPreface: true)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            decoder.append(buffer[0 ..< n])
            while let frame = try? decoder.next() {
                if frame.type == .goAway { return (try? Strata_V1_GoAway(serializedBytes: frame.payload))?.code }
            }
        }
    }

    /// Closes with a reset (SO_LINGER 0), as a crashed client would.
    func vanish() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    func close() {
        if !closed { Glibc.close(fd) }
        closed = true
    }

    deinit { close() }
}

/// Load and abuse (docs/reliability.md): beside one well-behaved client,
/// a flood of connections beyond the limit, half-open connections, clients
/// that subscribe and never read, slow readers and subscribers that vanish
/// mid-stream, for `TEST_SOAK_SECONDS` (set by `scripts/soak.sh`, 8 by
/// default; the test runs only when it is set). The server's
/// memory must stay bounded and the well-behaved client's append latency
/// within a factor of what it was alone.
@Suite("Soak: hostile clients beside a well-behaved one", .serialized)
struct SoakTests {
    static let seconds = Double(ProcessInfo.processInfo.environment["TEST_SOAK_SECONDS"] ?? "") ?? 8
    /// The documented bounds (docs/reliability.md), for this configuration
    /// (200 connections, 256 KiB write buffers) on a 2-core machine where the
    /// abusers share the cores with the server. Memory is the server's own
    /// (RssAnon), without the pages of mapped tenant files.
    static let maxResidentBytes = 256 << 20
    static let maxP50Factor = 6.0
    static let maxP99Factor = 40.0

    /// Resident memory of the process: `VmRSS` (all of it, including pages
    /// of the tenants' memory-mapped files, which the kernel can drop) or
    /// `RssAnon` (the process's own memory: buffers, heaps, stacks).
    static func residentBytes(_ pid: Int32, _ field: String = "RssAnon") -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kib = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib * 1024
    }

    /// Sequential single-event appends for `duration`: latencies in µs.
    static func appendLatencies(_ client: StrataClient, for duration: Duration) async throws -> [UInt64] {
        var latencies: [UInt64] = []
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            let started = ContinuousClock.now
            _ = try await client.append(to: "good-1", events: [.init(type: "Good", data: Data("{}".utf8))])
            let elapsed = ContinuousClock.now - started
            latencies.append(UInt64(elapsed.components.seconds) * 1_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000_000))
        }
        return latencies
    }

    static func percentile(_ values: [UInt64], _ p: Double) -> UInt64 {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    @Test("hostile clients: memory stays bounded, the well-behaved client's latency stays within a factor, the server stays ready",
          .enabled(if: ProcessInfo.processInfo.environment["TEST_SOAK_SECONDS"] != nil,
                   "runs alone, by scripts/soak.sh (its abusers would slow every other suite of a full run)"),
          .disabled(if: ProcessInfo.processInfo.environment["TEST_SANITIZER"] != nil, "timing bounds are for uninstrumented builds"))
    func soak() async throws {
        let server = try ServerProcess(environment: [
            "STRATA_SERVER_MAX_CONNECTIONS": "200",
            "STRATA_SERVER_MAX_WRITE_BUFFER_BYTES": "262144",
            "STRATA_SERVER_HANDSHAKE_TIMEOUT_SECONDS": "1",
            "STRATA_SERVER_IDLE_TIMEOUT_SECONDS": "2",
            "STRATA_SUBSCRIPTION_MAX_LAG_EVENTS": "2000",
            "STRATA_SUBSCRIPTION_MAX_LAG_SECONDS": "1",
        ])
        let pid = server.process.processIdentifier
        let port = server.port
        let client = try await StrataClient.connect(host: "127.0.0.1", port: port, tenant: "default", apiKey: testAdminKey)
        defer { client.close() }
        // A backlog that subscribers stream: 20,000 events of 1 KiB.
        let payload = Data(("{\"pad\":\"" + String(repeating: "p", count: 1000) + "\"}").utf8)
        for batch in 0 ..< 40 {
            _ = try await client.append(to: "backlog-\(batch % 8)", events: (0 ..< 500).map { _ in .init(type: "Backlog", data: payload) })
        }
        let baseline = try await Self.appendLatencies(client, for: .seconds(2))
        let startRSS = Self.residentBytes(pid)
        let startTotal = Self.residentBytes(pid, "VmRSS")
        #expect(startRSS > 0 && startTotal > 0, "/proc/\(pid)/status has RssAnon and VmRSS")
        // The well-behaved subscriber follows the well-behaved stream throughout.
        let follower = try await StrataClient.connect(host: "127.0.0.1", port: port, tenant: "default", apiKey: testAdminKey)
        defer { follower.close() }
        let followed = Atomic<Int>(0)
        let following = Task {
            for try await message in follower.subscribe(to: .stream("good-1")) {
                if case .event = message { followed.add(1, ordering: .relaxed) }
            }
        }

        let running = Atomic<Bool>(true)
        let refused = Atomic<Int>(0), floods = Atomic<Int>(0), vanished = Atomic<Int>(0), stalled = Atomic<Int>(0)
        let peakRSS = Atomic<Int>(startRSS), peakTotal = Atomic<Int>(startTotal)
        var threads: [Thread] = []
        func spawn(_ body: @escaping @Sendable () -> Void) {
            let thread = Thread(block: body)
            threads.append(thread)
            thread.start()
        }
        // The flood: bursts of 250 connections, beyond the limit of 200, twice a second.
        spawn {
            while running.load(ordering: .relaxed) {
                let burst = (0 ..< 250).compactMap { _ in AbusiveConnection(port: port, receiveTimeout: .milliseconds(500)) }
                floods.add(burst.count, ordering: .relaxed)
                for connection in burst {
                    connection.send(Preface.bytes)
                    // Beyond the limit: the preface, GOAWAY RESOURCE_EXHAUSTED, the close.
                    if connection.goAwayCode() == StatusCode.resourceExhausted.rawValue { refused.add(1, ordering: .relaxed) }
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        // Half-open: connections that never send a byte (the handshake timeout closes them).
        spawn {
            while running.load(ordering: .relaxed) {
                let idle = (0 ..< 40).compactMap { _ in AbusiveConnection(port: port, receiveTimeout: .seconds(3)) }
                for connection in idle { connection.read(64 * 1024) }
            }
        }
        // Subscribers that never read: the server's buffer for each fills, then the lag limit ends them.
        spawn {
            while running.load(ordering: .relaxed) {
                let stuck = (0 ..< 20).compactMap { _ in AbusiveConnection(port: port) }
                for connection in stuck { connection.subscribeToAll(window: 1 << 20) }
                stalled.add(stuck.count, ordering: .relaxed)
                Thread.sleep(forTimeInterval: 3)  // never reading, on purpose
            }
        }
        // Slow readers: 1 KiB every 50 ms.
        spawn {
            let slow = (0 ..< 10).compactMap { _ in AbusiveConnection(port: port, receiveTimeout: .milliseconds(200)) }
            for connection in slow { connection.subscribeToAll(window: 1 << 20) }
            while running.load(ordering: .relaxed) {
                for connection in slow { connection.read(1024) }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        // Subscribers that vanish mid-stream with a reset, 20 a second.
        spawn {
            while running.load(ordering: .relaxed) {
                guard let connection = AbusiveConnection(port: port) else { continue }
                connection.subscribeToAll(window: 1 << 20)
                connection.read(64 * 1024)
                connection.vanish()
                vanished.add(1, ordering: .relaxed)
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        // The server's memory, sampled.
        spawn {
            while running.load(ordering: .relaxed) {
                let rss = Self.residentBytes(pid)
                if rss > peakRSS.load(ordering: .relaxed) { peakRSS.store(rss, ordering: .relaxed) }
                let total = Self.residentBytes(pid, "VmRSS")
                if total > peakTotal.load(ordering: .relaxed) { peakTotal.store(total, ordering: .relaxed) }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }

        // The well-behaved client appends while the abuse goes on.
        let underAbuse = try await Self.appendLatencies(client, for: .seconds(Self.seconds))
        running.store(false, ordering: .relaxed)
        for thread in threads { while !thread.isFinished { try await Task.sleep(for: .milliseconds(20)) } }  // joining plain threads

        // The subscriber, which followed all along, gets every event (the
        // last ones may still be on their way: a marker append, then stop).
        _ = try await client.append(to: "good-1", events: [.init(type: "Good", data: Data("{}".utf8))])
        let total = baseline.count + underAbuse.count + 1
        for _ in 0 ..< 500 where followed.load(ordering: .relaxed) < total {
            try await Task.sleep(for: .milliseconds(20))  // the subscriber is another connection; nothing to await here
        }
        following.cancel()
        #expect(followed.load(ordering: .relaxed) == total, "the well-behaved subscriber got \(followed.load(ordering: .relaxed)) of \(total) events")
        #expect(try httpStatus(port: server.metricsPort, "/ready") == 200)
        _ = try await client.append(to: "good-1", events: [.init(type: "Good", data: Data("{}".utf8))])

        let p99Alone = Self.percentile(baseline, 0.99), p99Abused = Self.percentile(underAbuse, 0.99)
        let factor = Double(p99Abused) / Double(max(p99Alone, 1))
        let p50Factor = Double(Self.percentile(underAbuse, 0.5)) / Double(max(Self.percentile(baseline, 0.5), 1))
        let peak = peakRSS.load(ordering: .relaxed)
        print("soak: \(Self.seconds) s; well-behaved appends \(baseline.count) alone (p50 \(Self.percentile(baseline, 0.5)) µs, p99 \(p99Alone) µs), "
              + "\(underAbuse.count) under abuse (p50 \(Self.percentile(underAbuse, 0.5)) µs, p99 \(p99Abused) µs): p50 ×\(String(format: "%.1f", p50Factor)), p99 ×\(String(format: "%.1f", factor)); "
              + "server memory (RssAnon) \(startRSS >> 20) MiB before, peak \(peak >> 20) MiB (VmRSS, with mapped files, \(startTotal >> 20) → \(peakTotal.load(ordering: .relaxed) >> 20) MiB); \(floods.load(ordering: .relaxed)) flood connections "
              + "(\(refused.load(ordering: .relaxed)) refused at the limit), \(stalled.load(ordering: .relaxed)) non-reading subscribers, "
              + "\(vanished.load(ordering: .relaxed)) vanished subscribers")
        #expect(peak < Self.maxResidentBytes, "peak RssAnon \(peak >> 20) MiB")
        #expect(p50Factor < Self.maxP50Factor, "p50 went up \(p50Factor) times")
        #expect(factor < Self.maxP99Factor, "p99 went from \(p99Alone) µs to \(p99Abused) µs")
        #expect(refused.load(ordering: .relaxed) > 0, "the flood went beyond the connection limit")
        #expect(server.terminate().status == 0)
    }
}
