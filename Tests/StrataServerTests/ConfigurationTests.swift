import Foundation
import StrataProjections
import StrataServer
import StrataStorage
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static let shippedFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("config/strata.yaml")

    @Test("config/strata.yaml states exactly the built-in defaults")
    func shippedFileIsTheDefaults() throws {
        let yaml = try String(contentsOf: Self.shippedFile, encoding: .utf8)
        let fromFile = try StrataConfiguration.load(yaml: yaml, environment: [:], overrides: [:])
        let defaults = StrataConfiguration()
        #expect(fromFile.server.host == defaults.server.host)
        #expect(fromFile.server.port == defaults.server.port)
        #expect(fromFile.server.maxConnections == defaults.server.maxConnections)
        #expect(fromFile.server.maxConcurrentCallsPerConnection == defaults.server.maxConcurrentCallsPerConnection)
        #expect(fromFile.server.maxFrameSize == defaults.server.maxFrameSize)
        #expect(fromFile.server.initialWindowMessages == defaults.server.initialWindowMessages)
        #expect(fromFile.server.idleTimeout == defaults.server.idleTimeout)
        #expect(fromFile.server.handshakeTimeout == defaults.server.handshakeTimeout)
        #expect(fromFile.server.maxWriteBufferBytes == defaults.server.maxWriteBufferBytes)
        #expect(fromFile.server.shutdownGracePeriod == defaults.server.shutdownGracePeriod)
        #expect(fromFile.server.readPageSize == defaults.server.readPageSize)
        #expect(fromFile.server.developmentMode == defaults.server.developmentMode)
        #expect(fromFile.storage.dataDirectory == defaults.storage.dataDirectory)
        #expect(fromFile.storage.store.durability == defaults.storage.store.durability)
        #expect(fromFile.storage.store.flushInterval == defaults.storage.store.flushInterval)
        #expect(fromFile.storage.store.mapSize == defaults.storage.store.mapSize)
        #expect(fromFile.storage.maxOpenTenants == defaults.storage.maxOpenTenants)
        #expect(fromFile.storage.idleTimeout == defaults.storage.idleTimeout)
        #expect(fromFile.storage.store.maxBatchEvents == defaults.storage.store.maxBatchEvents)
        #expect(fromFile.storage.store.preallocationStep == defaults.storage.store.preallocationStep)
        #expect(fromFile.storage.store.indexFlushEvents == defaults.storage.store.indexFlushEvents)
        #expect(fromFile.storage.store.indexFlushInterval == defaults.storage.store.indexFlushInterval)
        #expect(fromFile.storage.store.limits == defaults.storage.store.limits)
        #expect(fromFile.storage.store.snapshotsPerStream == defaults.storage.store.snapshotsPerStream)
        #expect(fromFile.server.subscriptions.checkpointInterval == defaults.server.subscriptions.checkpointInterval)
        #expect(fromFile.server.subscriptions.maxLagEvents == defaults.server.subscriptions.maxLagEvents)
        #expect(fromFile.server.subscriptions.maxLagDuration == defaults.server.subscriptions.maxLagDuration)
        #expect(fromFile.developmentTenant == defaults.developmentTenant)
        #expect(fromFile.projections == defaults.projections)
        #expect(fromFile.server.metricsHost == defaults.server.metricsHost)
        #expect(fromFile.server.metricsPort == 7071)
        #expect(fromFile.logLevel == .info)
        #expect(fromFile.logFormat == .text)
        #expect(fromFile.shutdownTimeout == defaults.shutdownTimeout)
        // Every key the loader knows is documented in the file.
        for key in StrataConfiguration.keys {
            let name = String(key.split(separator: ".")[1])
            // Keys with no default value (secrets, optional paths) are shown commented out.
            #expect(yaml.contains("\n  \(name):") || yaml.contains("\n  # \(name):"), "config/strata.yaml documents \(key)")
        }
    }

    @Test("config/strata.service lets a graceful shutdown finish before systemd's SIGKILL, and runs `strata serve --config`")
    func systemdUnit() throws {
        let unit = try String(contentsOf: Self.shippedFile.deletingLastPathComponent().appendingPathComponent("strata.service"),
                              encoding: .utf8)
        let settings = Dictionary(unit.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }
            .map { line -> (String, String) in
                let parts = line.split(separator: "=", maxSplits: 1)
                return (String(parts[0]), String(parts[1]))
            }, uniquingKeysWith: { first, _ in first })
        let stopTimeout = try #require(settings["TimeoutStopSec"].flatMap { Int64($0) })
        #expect(.seconds(stopTimeout) > StrataConfiguration().shutdownTimeout)
        #expect(settings["KillSignal"] == "SIGTERM")
        #expect(settings["ExecStart"]?.hasSuffix("strata serve --config /etc/strata/strata.yaml") == true)
        #expect(settings["EnvironmentFile"] == "/etc/strata/strata.env")
    }

    @Test("layers: file < environment < flags")
    func layering() throws {
        let yaml = "server:\n  port: 8000\n  host: 0.0.0.0\nstorage:\n  durability: relaxed\n"
        let configuration = try StrataConfiguration.load(
            yaml: yaml,
            environment: ["STRATA_PORT": "9000", "STRATA_SERVER_MAX_CONNECTIONS": "7", "HOME": "/root"],
            overrides: ["server.port": "9100"])
        #expect(configuration.server.port == 9100)
        #expect(configuration.server.host == "0.0.0.0")
        #expect(configuration.server.maxConnections == 7)
        #expect(configuration.storage.store.durability == .relaxed)
    }

    @Test("storage.preallocate_mib: MiB written ahead of each tenant's data; 0 turns it off")
    func preallocation() throws {
        #expect(StrataConfiguration().storage.store.preallocationStep == 4 << 20)
        let off = try StrataConfiguration.load(yaml: "storage:\n  preallocate_mib: 0\n", environment: [:], overrides: [:])
        #expect(off.storage.store.preallocationStep == 0)
        let more = try StrataConfiguration.load(yaml: "", environment: ["STRATA_STORAGE_PREALLOCATE_MIB": "16"], overrides: [:])
        #expect(more.storage.store.preallocationStep == 16 << 20)
    }

    @Test("metrics and logging: disabled metrics serve no endpoint; levels and formats from any layer")
    func metricsAndLogging() throws {
        let off = try StrataConfiguration.load(yaml: "metrics:\n  enabled: false\n  port: 9999\n", environment: [:], overrides: [:])
        #expect(off.server.metricsPort == nil)
        let moved = try StrataConfiguration.load(yaml: "metrics:\n  port: 9999\n  host: 0.0.0.0\nlogging:\n  format: json\n",
                                                 environment: ["STRATA_LOG_LEVEL": "debug"], overrides: ["metrics.port": "9998"])
        #expect(moved.server.metricsPort == 9998)
        #expect(moved.server.metricsHost == "0.0.0.0")
        #expect(moved.logLevel == .debug)
        #expect(moved.logFormat == .json)
    }

    @Test("bad configuration names the key", arguments: [
        ("server:\n  prot: 7070\n", "server.prot"),
        ("server:\n  port: seventy\n", "server.port"),
        ("server:\n  port: 70000\n", "server.port"),
        ("storage:\n  durability: sometimes\n", "storage.durability"),
        ("limits:\n  max_event_bytes: -1\n", "limits.max_event_bytes"),
        ("development:\n  tenant: Not Valid\n", "development.tenant"),
        ("subscription:\n  max_lag_seconds: -3\n", "subscription.max_lag_seconds"),
        ("subscription:\n  checkpoint_interval: 0\n", "subscription.checkpoint_interval"),
        ("limits:\n  max_snapshot_bytes: 4194304\n", "limits.max_snapshot_bytes"),
        ("server: 3\n", "server"),
        ("metrics:\n  port: 7070\n", "metrics.port"),
        ("metrics:\n  enabled: sometimes\n", "metrics.enabled"),
        ("logging:\n  level: loud\n", "logging.level"),
        ("logging:\n  format: xml\n", "logging.format"),
        ("server:\n  shutdown_timeout_seconds: 5\n", "server.shutdown_timeout_seconds"),
        ("storage:\n  preallocate_mib: -4\n", "storage.preallocate_mib"),
        ("storage:\n  preallocate_mib: lots\n", "storage.preallocate_mib"),
        ("storage:\n  preallocate_mib: 1025\n", "storage.preallocate_mib"),
    ])
    func badFile(yaml: String, key: String) {
        #expect {
            _ = try StrataConfiguration.load(yaml: yaml, environment: [:], overrides: [:])
        } throws: { ($0 as? ConfigurationError)?.key == key }
    }

    @Test("an unknown STRATA_ variable is refused by name; invalid YAML is refused")
    func badEnvironmentAndSyntax() {
        #expect {
            _ = try StrataConfiguration.load(yaml: nil, environment: ["STRATA_PROT": "1"], overrides: [:])
        } throws: { ($0 as? ConfigurationError)?.key == "STRATA_PROT" }
        #expect(throws: ConfigurationError.self) {
            _ = try StrataConfiguration.load(yaml: "server: [unclosed", environment: [:], overrides: [:])
        }
    }
}
