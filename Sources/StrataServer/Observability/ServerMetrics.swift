import CoreMetrics
import Prometheus
import StrataStorage
import StrataSupport
import StrataWire
import Synchronization

/// The server's metrics, recorded through swift-metrics into one Prometheus
/// registry per server (so servers in one process — tests — never mix their
/// figures) and rendered as Prometheus text by `/metrics`.
///
/// Two kinds of figures:
/// - recorded as things happen: calls, append latency, commits, bytes and
///   events written, connections accepted and refused;
/// - sampled when scraped (`render`): open connections and calls,
///   subscriptions and their lag, projections, tenant map usage. The scrape
///   sets those gauges from `sample`, and removes the series of things that
///   are gone (a deleted tenant, a removed projection).
///
/// Every label value comes from a bounded set: method names the router
/// knows (anything else is `unknown`), status code names, tenant and
/// projection names (validated at creation), projection states.
///
/// Thread-safe: the handle caches are `Locked`; swift-metrics handles are
/// thread-safe; `sampled` is a `Locked`.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Live subscriptions, sampled for the subscription gauges.
    public let subscriptions = SubscriptionRegistry()
    private let factory: PrometheusMetricsFactory

    private let appendDuration: CoreMetrics.Timer
    private let commitDuration: CoreMetrics.Timer
    private let commitOperations: CoreMetrics.Recorder
    private let commitEvents: CoreMetrics.Recorder
    private let connectionsAccepted: CoreMetrics.Counter
    /// Calls open on every connection (opened and not yet ended).
    private let openCalls = Atomic<Int>(0)
    private let callCounters = Locked<[CallKey: CoreMetrics.Counter]>([:])
    private let callDurations = Locked<[String: CoreMetrics.Timer]>([:])
    private let tenantCounters = Locked<[String: TenantCounters]>([:])
    private let refusals = Locked<[String: CoreMetrics.Counter]>([:])
    /// Gauges set by the last scrape, by series (name and labels).
    private let sampled = Locked<[SeriesKey: CoreMetrics.Gauge]>([:])
    /// Supplies the sampled gauges; set once by the server before it starts.
    private let sampler = Locked<(@Sendable () -> [Sample])?>(nil)

    private struct CallKey: Hashable { let method: String; let code: StatusCode }
    private struct SeriesKey: Hashable { let name: String; let labels: [String] }
    private struct TenantCounters { let events: CoreMetrics.Counter; let bytes: CoreMetrics.Counter }

    /// A gauge value taken at scrape time.
    public struct Sample: Sendable {
        public let name: String
        public let labels: [(String, String)]
        public let value: Double
        public init(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
            self.name = name
            self.labels = labels
            self.value = value
        }
    }

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Appends and commits take from a fraction of a millisecond (relaxed)
        // to a few milliseconds (fsync); Prometheus' defaults start at 5 ms.
        let latency: [Duration] = [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
                                   .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                   .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5)]
        factory.durationHistogramBuckets = [
            "strata_append_duration_seconds": latency,
            "strata_commit_duration_seconds": latency,
            "strata_call_duration_seconds": latency,
        ]
        let sizes: [Double] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000]
        factory.valueHistogramBuckets = ["strata_commit_batch_operations": sizes, "strata_commit_batch_events": sizes]
        self.registry = registry
        self.factory = factory
        appendDuration = CoreMetrics.Timer(label: "strata_append_duration_seconds", factory: factory)
        commitDuration = CoreMetrics.Timer(label: "strata_commit_duration_seconds", factory: factory)
        commitOperations = CoreMetrics.Recorder(label: "strata_commit_batch_operations", aggregate: true, factory: factory)
        commitEvents = CoreMetrics.Recorder(label: "strata_commit_batch_events", aggregate: true, factory: factory)
        connectionsAccepted = CoreMetrics.Counter(label: "strata_connections_accepted_total", factory: factory)
    }

    // MARK: - Recorded as things happen

    /// A call was opened on a connection (its HEADERS were accepted).
    func callOpened() {
        openCalls.add(1, ordering: .relaxed)
    }

    /// Calls open now.
    public var callsInFlight: Int { openCalls.load(ordering: .relaxed) }

    /// A call ended with `code`. `method` must be one the router knows (or
    /// "unknown"); `duration` is given for unary calls. `wasOpen`: the call
    /// had been opened (`callOpened`), rather than refused at its HEADERS.
    func callEnded(method: String, code: StatusCode, duration: Duration?, wasOpen: Bool) {
        if wasOpen { openCalls.subtract(1, ordering: .relaxed) }
        let key = CallKey(method: method, code: code)
        let counter = callCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(label: "strata_calls_total", dimensions: [("method", method), ("code", code.description)],
                                  factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment()
        guard let duration else { return }
        let timer = callDurations.withLock { timers in
            if let timer = timers[method] { return timer }
            let timer = CoreMetrics.Timer(label: "strata_call_duration_seconds", dimensions: [("method", method)], factory: factory)
            timers[method] = timer
            return timer
        }
        timer.recordNanoseconds(duration.nanoseconds)
    }

    /// An append (Append or AppendMulti) was acknowledged `duration` after its request arrived.
    func appendAcknowledged(after duration: Duration) {
        appendDuration.recordNanoseconds(duration.nanoseconds)
    }

    /// A tenant's writer committed a transaction. Runs on the writer thread.
    public func committed(_ report: CommitReport) {
        commitDuration.recordNanoseconds(report.duration.nanoseconds)
        commitOperations.record(report.operations)
        commitEvents.record(report.events)
        guard report.events > 0 else { return }
        let counters = tenantCounters.withLock { all in
            if let counters = all[report.tenant] { return counters }
            let labels = [("tenant", report.tenant)]
            let counters = TenantCounters(events: CoreMetrics.Counter(label: "strata_events_written_total", dimensions: labels, factory: factory),
                                          bytes: CoreMetrics.Counter(label: "strata_bytes_written_total", dimensions: labels, factory: factory))
            all[report.tenant] = counters
            return counters
        }
        counters.events.increment(by: report.events)
        counters.bytes.increment(by: report.bytes)
    }

    func connectionAccepted() { connectionsAccepted.increment() }

    /// A connection was refused: `reason` is `limit` or `shutting_down`.
    func connectionRefused(reason: String) {
        let counter = refusals.withLock { all in
            if let counter = all[reason] { return counter }
            let counter = CoreMetrics.Counter(label: "strata_connections_refused_total", dimensions: [("reason", reason)], factory: factory)
            all[reason] = counter
            return counter
        }
        counter.increment()
    }

    /// Forgets a deleted tenant's written-bytes and -events series.
    func forgetTenant(_ tenant: String) {
        if let counters = tenantCounters.withLock({ $0.removeValue(forKey: tenant) }) {
            counters.events.destroy()
            counters.bytes.destroy()
        }
    }

    // MARK: - Sampled when scraped

    /// Sets what supplies the sampled gauges at each scrape.
    func setSampler(_ sampler: @escaping @Sendable () -> [Sample]) {
        self.sampler.withLock { $0 = sampler }
    }

    /// Prometheus text exposition format (version 0.0.4) of every metric,
    /// sampled gauges refreshed first.
    public func render() -> [UInt8] {
        let samples = sampler.withLock { $0 }?() ?? []
        sampled.withLock { gauges in
            var seen = Set<SeriesKey>()
            for sample in samples {
                let key = SeriesKey(name: sample.name, labels: sample.labels.flatMap { [$0.0, $0.1] })
                seen.insert(key)
                let gauge = gauges[key] ?? CoreMetrics.Gauge(label: sample.name, dimensions: sample.labels, factory: factory)
                gauges[key] = gauge
                gauge.record(sample.value)
            }
            for (key, gauge) in gauges where !seen.contains(key) {
                gauge.destroy()
                gauges[key] = nil
            }
        }
        return registry.emitToBuffer()
    }
}

