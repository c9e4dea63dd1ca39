import ArgumentParser
import Dispatch
import Foundation
import StrataServer
import StrataStorage

/// `strata serve`: the server with the Streams service on the storage
/// engine. Settings come from flags, then `STRATA_*` environment variables,
/// then the defaults below.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the Strata server.",
        discussion: """
        Every option can also be set with an environment variable (STRATA_HOST, STRATA_PORT, STRATA_DATA, \
        STRATA_DURABILITY, STRATA_MAP_SIZE_MIB, STRATA_DEV_TENANT); a flag wins over the variable.
        """
    )

    @Option(help: "Address to listen on (env STRATA_HOST).") var host: String?
    @Option(help: "Port to listen on; 0 picks a free one (env STRATA_PORT).") var port: UInt16?
    @Option(help: "Data directory (env STRATA_DATA).") var data: String?
    @Option(help: "sync (fsync every commit) or relaxed (periodic flush) (env STRATA_DURABILITY).") var durability: String?
    @Option(help: "Per-tenant map size, the size quota, in MiB (env STRATA_MAP_SIZE_MIB).") var mapSizeMib: Int?
    @Option(help: "Tenant created on first start in development mode (env STRATA_DEV_TENANT).") var devTenant: String?

    private func setting(_ flag: String?, _ variable: String, _ fallback: String) -> String {
        flag ?? ProcessInfo.processInfo.environment[variable] ?? fallback
    }

    func run() throws {
        let host = setting(host, "STRATA_HOST", "127.0.0.1")
        guard let port = UInt16(setting(port.map(String.init), "STRATA_PORT", "7070")) else {
            throw ValidationError("STRATA_PORT must be a port number (0–65535)")
        }
        let data = setting(data, "STRATA_DATA", "./data")
        let durabilityName = setting(durability, "STRATA_DURABILITY", "sync")
        guard let durability = Durability(rawValue: durabilityName) else {
            throw ValidationError("durability must be 'sync' or 'relaxed', not '\(durabilityName)'")
        }
        guard let mapSizeMiB = Int(setting(mapSizeMib.map(String.init), "STRATA_MAP_SIZE_MIB", "8192")), mapSizeMiB > 0 else {
            throw ValidationError("the map size must be a positive number of MiB")
        }
        let devTenant = setting(devTenant, "STRATA_DEV_TENANT", "default")

        var store = EventStoreOptions()
        store.durability = durability
        store.mapSize = mapSizeMiB << 20
        let engine = try StorageEngine(options: StorageEngineOptions(dataDirectory: data, store: store))
        if !engine.tenantExists(devTenant) {
            try engine.createTenant(devTenant).release()
            print("strata: created tenant '\(devTenant)' in \(engine.directory(of: devTenant))")
        }
        var configuration = ServerConfiguration()
        configuration.host = host
        configuration.port = port
        let server = StrataServer(configuration: configuration, engine: engine)
        let bound = try server.start()
        print("strata: listening on \(host):\(bound); data in \(data) (durability \(durability.rawValue)); tenants: \(engine.listTenants().joined(separator: ", "))")
        print("strata: DEVELOPMENT MODE: any API key is accepted. Do not expose this port.")
        print("strata: try `strata append demo-1 Greeted '{\"hello\":\"world\"}'` then `strata read demo-1`")
        fflush(nil)

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
        print("strata: shutting down: finishing in-flight calls")
        fflush(nil)
        sources.forEach { $0.cancel() }
        server.shutdown()
        engine.close()
        print("strata: stopped")
    }
}
