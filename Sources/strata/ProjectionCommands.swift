import ArgumentParser
import Foundation
import StrataClient

/// `strata projection …`: load, inspect and operate Lua projections.
struct ProjectionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projection", abstract: "Load, inspect and operate Lua projections (see projections/README.md).",
        subcommands: [Load.self, Update.self, List.self, Status.self, State.self, Partitions.self,
                      Pause.self, Resume.self, Reset.self, Delete.self])

    static func readScript(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw InputError("cannot read \(path)") }
        guard let text = String(data: data, encoding: .utf8) else { throw InputError("\(path) is not UTF-8 text") }
        return text
    }

    static func render(_ info: ProjectionInfo, json: Bool) {
        if json {
            printJSON(ProjectionOutput(info))
            return
        }
        var line = "\(info.name): \(info.state.rawValue)"
        line += ", checkpoint \(info.checkpointPosition), position \(info.position) of \(info.headPosition) (lag \(info.lag))"
        line += ", \(info.eventsHandled) handled, \(info.eventsEmitted) emitted"
        if info.state == .running { line += String(format: ", %.0f events/s", info.eventsPerSecond) }
        if info.progress < 1 { line += String(format: ", %.1f%% scanned", info.progress * 100) }
        if info.partitioned { line += ", partitioned" }
        print(line)
        if info.state == .faulted { print("  fault at position \(info.faultPosition): \(info.fault)") }
    }

    /// Connects, runs one call that answers with a status, and prints it.
    static func show(_ connection: ConnectionOptions,
                     _ call: @escaping (StrataClient) async throws -> ProjectionInfo) async throws {
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            render(try await call(client), json: connection.json)
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "load", abstract: "Load a projection script and start it.")
        @Argument(help: "The Lua file.") var file: String
        @Option(help: "Projection name (default: the file name without .lua).") var name: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let script = try ProjectionCommand.readScript(file)
            let name = self.name ?? ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            try await ProjectionCommand.show(connection) { try await $0.createProjection(name, script: script) }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "update", abstract: "Replace a projection's script (a reset and rebuild unless --compatible).")
        @Argument(help: "Projection name.") var name: String
        @Argument(help: "The Lua file.") var file: String
        @Flag(help: "Keep state and checkpoint: the new script continues from the old state.") var compatible = false
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let script = try ProjectionCommand.readScript(file)
            try await ProjectionCommand.show(connection) { try await $0.updateProjection(name, script: script, compatible: compatible) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List projections with their status.")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                let all = try await client.projections()
                if connection.json {
                    printJSON(all.map(ProjectionOutput.init))
                } else if all.isEmpty {
                    print("no projections")
                } else {
                    all.forEach { ProjectionCommand.render($0, json: false) }
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a projection's status.")
        @Argument(help: "Projection name.") var name: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await ProjectionCommand.show(connection) { try await $0.projectionStatus(name) }
        }
    }

    struct State: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "state", abstract: "Print a projection's state (JSON) as of its checkpoint or a past time.")
        @Argument(help: "Projection name.") var name: String
        @Option(help: "Partition key (for partitioned projections).") var partition = ""
        @Option(help: "As of this time: ISO 8601 (nanoseconds allowed), 'now', or nanoseconds since the epoch.") var at: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let time = try at.map { try parseTime($0, option: "--at") }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                let state = try await client.projectionState(name, partition: partition, at: time)
                guard let json = state.json else {
                    FileHandle.standardError.write(Data("strata: no state\(partition.isEmpty ? "" : " for partition '\(partition)'") at position \(state.position)\n".utf8))
                    throw ExitCode(1)
                }
                print(String(decoding: json, as: UTF8.self))
            }
        }
    }

    struct Partitions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "partitions", abstract: "List partition keys, in order.")
        @Argument(help: "Projection name.") var name: String
        @Option(help: "Only keys starting with this.") var prefix = ""
        @Option(help: "Start after this key.") var after: String?
        @Option(help: "At most this many keys (all pages when omitted).") var limit: Int?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            if let limit, limit <= 0 || limit > 1000 { throw InputError("--limit must be 1 to 1000") }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                var after = self.after
                var printed = 0
                while true {
                    let page = try await client.projectionPartitions(name, prefix: prefix, after: after,
                                                                     limit: min(limit.map { $0 - printed } ?? 1000, 1000))
                    page.keys.forEach { print($0) }
                    printed += page.keys.count
                    guard page.more, let last = page.keys.last, limit.map({ printed < $0 }) ?? true else { break }
                    after = last
                }
            }
        }
    }

    /// pause, resume and reset: a name in, the status out.
    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a projection at its position.")
        @Argument(help: "Projection name.") var name: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await ProjectionCommand.show(connection) { try await $0.pauseProjection(name) }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused or faulted projection from its checkpoint.")
        @Argument(help: "Projection name.") var name: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await ProjectionCommand.show(connection) { try await $0.resumeProjection(name) }
        }
    }

    struct Reset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset", abstract: "Drop a projection's state and rebuild it from the first event, showing progress.")
        @Argument(help: "Projection name.") var name: String
        @Flag(help: "Return at once instead of showing progress until it has caught up.") var noWait = false
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                var info = try await client.resetProjection(name)
                let target = info.headPosition
                while !noWait && info.state == .running && info.checkpointPosition < target {
                    if !connection.json {
                        let share = target == 0 ? 1 : Double(info.checkpointPosition) / Double(target)
                        let filled = Int(share * 30)
                        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
                        FileHandle.standardError.write(Data(String(format: "\r[%@] %5.1f%% position %llu of %llu", bar, share * 100,
                                                                   info.checkpointPosition, target).utf8))
                    }
                    try await Task.sleep(for: .milliseconds(200))  // polling a status for display, not synchronising
                    info = try await client.projectionStatus(name)
                }
                if !noWait && !connection.json { FileHandle.standardError.write(Data("\n".utf8)) }
                ProjectionCommand.render(info, json: connection.json)
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete", abstract: "Delete a projection and its state (emitted events stay).")
        @Argument(help: "Projection name.") var name: String
        @Flag(help: "Confirm the deletion.") var yes = false
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            guard yes else { throw InputError("deleting '\(name)' removes its state; add --yes to confirm") }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                try await client.deleteProjection(name)
                if connection.json { printJSON(ProjectionDeletedOutput(deleted: name)) } else { print("deleted projection '\(name)'") }
            }
        }
    }
}
