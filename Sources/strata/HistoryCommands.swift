import ArgumentParser
import Foundation
import StrataClient

/// `strata subscribe`: prints events as they arrive.
struct SubscribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Follow a stream, a category ($ce-<category>) or $all: stored events, then live ones.",
        discussion: "Runs until interrupted (or --count events). A caught-up line marks the switch to live events.")
    @Argument(help: "A stream name, $all, or $ce-<category> for every stream named <category>-….") var target: String
    @Option(help: "start, end, or a number: the revision (stream) or position ($all, category) to continue after.")
    var from = "start"
    @Option(help: "Keep only events matching: type=<EventType> or prefix=<stream prefix> (repeatable; $all and categories).")
    var filter: [String] = []
    @Option(help: "Stop after this many events.") var count: Int?
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let subscriptionTarget: StrataClient.SubscriptionTarget
        if target == "$all" {
            subscriptionTarget = .all
        } else if target.hasPrefix("$ce-") {
            subscriptionTarget = .category(String(target.dropFirst(4)))
        } else {
            subscriptionTarget = .stream(target)
        }
        let start: StrataClient.SubscriptionStart
        switch from {
        case "start": start = .start
        case "end": start = .end
        default:
            guard let number = UInt64(from) else { throw InputError("--from takes start, end or a number, not '\(from)'") }
            if case .stream = subscriptionTarget { start = .afterRevision(number) } else { start = .afterPosition(number) }
        }
        var types: [String] = [], prefixes: [String] = []
        for spec in filter {
            if spec.hasPrefix("type=") { types.append(String(spec.dropFirst(5))) }
            else if spec.hasPrefix("prefix=") { prefixes.append(String(spec.dropFirst(7))) }
            else { throw InputError("--filter takes type=<EventType> or prefix=<stream prefix>, not '\(spec)'") }
        }
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            var delivered = 0
            if let count, count <= 0 { return }
            for try await message in client.subscribe(to: subscriptionTarget, from: start, streamPrefixes: prefixes, eventTypes: types) {
                switch message {
                case .event(let event):
                    printEvent(event, json: connection.json)
                    delivered += 1
                case .caughtUp(let position):
                    if connection.json { printJSON(CaughtUpOutput(caughtUp: position)) } else { print("-- caught up at position \(position); live from here") }
                case .checkpoint(let position):
                    if connection.json { printJSON(CheckpointOutput(checkpoint: position)) } else { print("-- checkpoint: scanned through position \(position)") }
                }
                fflush(nil)  // a pipe would otherwise hold lines back
                if let count, delivered >= count { break }
            }
        }
    }
}

/// `strata at`: a stream as it was at a time.
struct AtCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "at", abstract: "Show a stream as it was at a time: its events then and its revision.")
    @Argument(help: "Stream name.") var stream: String
    @Argument(help: "ISO 8601 time (2026-03-15T12:00:00Z), 'now', or nanoseconds since 1970.") var time: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let t = try parseTime(time, option: "time")
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            let info = try await client.streamInfo(stream, asOf: t)
            for try await event in client.read(stream, recorded: Int64.min ... t) { printEvent(event, json: connection.json) }
            if connection.json {
                printJSON(StreamAtOutput(stream: stream, at: t, revision: info.lastRevision, deleted: info.isDeleted))
            } else {
                print("-- \(stream) at \(formatTime(t)): revision \(info.lastRevision)\(info.isDeleted ? ", deleted" : "")")
            }
        }
    }
}

/// `strata between`: events recorded in a time range.
struct BetweenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "between", abstract: "Events of a stream or $all recorded between two times (inclusive).")
    @Argument(help: "Stream name, or $all.") var stream: String
    @Argument(help: "From (ISO 8601, 'now', or nanoseconds).") var from: String
    @Argument(help: "To (ISO 8601, 'now', or nanoseconds).") var to: String
    @Option(help: "Most events to print.") var count: UInt64 = 0
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let t1 = try parseTime(from, option: "from"), t2 = try parseTime(to, option: "to")
        guard t1 <= t2 else { throw InputError("'from' (\(from)) is after 'to' (\(to))") }
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            for try await event in client.read(stream, maxCount: count, recorded: t1 ... t2) { printEvent(event, json: connection.json) }
        }
    }
}

/// `strata snapshot save|load`.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Save or load aggregate snapshots.",
                                                    subcommands: [Save.self, Load.self])

    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "save", abstract: "Save a snapshot of a stream as of a revision.")
        @Argument(help: "Stream name.") var stream: String
        @Argument(help: "The revision the state includes.") var revision: UInt64
        @Argument(help: "The state: JSON, or @file to read it from a file.") var payload: String
        @Option(help: "Content type of the state.") var contentType = "application/json"
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let data: Data
            if payload.hasPrefix("@") {
                let path = String(payload.dropFirst())
                guard let contents = FileManager.default.contents(atPath: path) else { throw InputError("cannot read \(path)") }
                data = contents
            } else {
                data = Data(payload.utf8)
            }
            if contentType == "application/json",
               (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) == nil {
                throw InputError("the snapshot is not valid JSON (use --content-type for other formats)")
            }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                let saved = try await client.saveSnapshot(of: stream, revision: revision, payload: data, contentType: contentType)
                if connection.json {
                    printJSON(SnapshotOutput(saved, withPayload: false))
                } else {
                    print("saved snapshot of \(saved.stream) at revision \(saved.revision) (state as of \(formatTime(saved.recordedAt)))")
                }
            }
        }
    }

    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "load", abstract: "Load the newest snapshot at or before a revision or time.")
        @Argument(help: "Stream name.") var stream: String
        @Option(help: "At or before this revision.") var revision: UInt64?
        @Option(help: "At or before this time (ISO 8601, 'now', or nanoseconds).") var at: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            guard revision == nil || at == nil else { throw InputError("give --revision or --at, not both") }
            let point: StrataClient.AggregatePoint = if let revision { .revision(revision) }
                else if let at { .time(try parseTime(at, option: "--at")) } else { .latest }
            try await runClient {
                let client = try await connection.connect()
                defer { client.close() }
                guard let snapshot = try await client.loadSnapshot(of: stream, at: point) else {
                    FileHandle.standardError.write(Data("strata: no snapshot of \(stream) at or before that point\n".utf8))
                    throw ExitCode(3)
                }
                let payload = String(decoding: snapshot.payload, as: UTF8.self)
                if connection.json {
                    printJSON(SnapshotOutput(snapshot, withPayload: true))
                } else {
                    print("\(snapshot.stream) at revision \(snapshot.revision) (state as of \(formatTime(snapshot.recordedAt))):")
                    print(payload)
                }
            }
        }
    }
}
