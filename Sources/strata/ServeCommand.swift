import ArgumentParser
import Dispatch
import Foundation
import StrataStorage

/// `strata serve`. Until the network layer lands this opens the storage
/// engine in-process (creating the development tenant) and waits for
/// SIGINT/SIGTERM, then closes every tenant cleanly.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server (storage only for now: the network protocol is not implemented yet)."
    )

    @Option(name: .long, help: "Data directory.")
    var data: String = "./data"

    @Option(name: .long, help: "Tenant to create on first start.")
    var tenant: String = "default"

    @Option(name: .long, help: "Durability: sync (fsync every commit) or relaxed (periodic flush).")
    var durability: String = "sync"

    @Option(name: .long, help: "Per-tenant map size (quota) in MiB.")
    var mapSizeMiB: Int = 8192

    func run() throws {
        guard let durability = Durability(rawValue: durability) else {
            throw ValidationError("--durability must be 'sync' or 'relaxed', not '\(self.durability)'")
        }
        guard mapSizeMiB > 0 else { throw ValidationError("--map-size-mib must be positive") }
        var store = EventStoreOptions()
        store.durability = durability
        store.mapSize = mapSizeMiB << 20
        let engine = try StorageEngine(options: StorageEngineOptions(dataDirectory: data, store: store))
        if !engine.tenantExists(tenant) {
            try engine.createTenant(tenant).release()
            print("created tenant '\(tenant)' in \(engine.directory(of: tenant))")
        }
        let head = try engine.withTenant(tenant) { try $0.headPosition() }
        print("strata: storage open at \(data) (durability \(durability.rawValue)); tenants: \(engine.listTenants().joined(separator: ", "))")
        print("strata: tenant '\(tenant)' head position \(head)")
        print("strata: the network protocol is not implemented yet; this process runs the in-process store only.")
        print("strata: press Ctrl-C (SIGINT) or send SIGTERM to stop.")

        let stop = DispatchSemaphore(value: 0)
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let signalQueue = DispatchQueue(label: "strata.signals")
        let sources = [SIGINT, SIGTERM].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: signalQueue)
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }
        stop.wait()
        sources.forEach { $0.cancel() }
        engine.close()
        print("strata: stopped; all tenants closed")
    }
}
