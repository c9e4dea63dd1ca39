import ArgumentParser
import Foundation
import StrataClient

/// Where and as whom the client commands connect.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server address (env STRATA_HOST).") var host: String?
    @Option(help: "Server port (env STRATA_PORT).") var port: UInt16?
    @Option(help: "Tenant (env STRATA_TENANT).") var tenant: String?
    @Option(help: "API key (env STRATA_API_KEY).") var apiKey: String?
    @Flag(help: "Print JSON instead of text.") var json = false

    /// Connects as the tenant's client. `tenant` overrides --tenant;
    /// `asServerAdmin` prefers STRATA_ADMIN_KEY (for tenant management)
    /// over STRATA_API_KEY when --api-key is not given.
    func connect(tenant override: String? = nil, asServerAdmin: Bool = false) async throws -> StrataClient {
        let env = ProcessInfo.processInfo.environment
        let port = port ?? env["STRATA_PORT"].flatMap(UInt16.init) ?? 7070
        let key = apiKey ?? (asServerAdmin ? env["STRATA_ADMIN_KEY"] ?? env["STRATA_API_KEY"] : env["STRATA_API_KEY"] ?? env["STRATA_ADMIN_KEY"])
        guard let key, !key.isEmpty else {
            throw InputError("no API key: pass --api-key or set STRATA_API_KEY (the server prints a development key on its first start)")
        }
        return try await StrataClient.connect(host: host ?? env["STRATA_HOST"] ?? "127.0.0.1", port: port,
                                              tenant: override ?? tenant ?? env["STRATA_TENANT"] ?? "default",
                                              apiKey: key)
    }
}

/// Turns client errors into one clear line and a non-zero exit.
func runClient(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as StrataClient.Error {
        FileHandle.standardError.write(Data("strata: \(error.code): \(error.message)\n".utf8))
        throw ExitCode(2)
    }
}

/// A value on the command line that cannot be used: printed by
/// ArgumentParser as one line ("Error: …") with exit status 1, without the
/// usage text a ValidationError would add (the syntax was fine).
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func parseExpected(_ text: String) throws -> StrataClient.ExpectedRevision {
    switch text {
    case "any": return .any
    case "no-stream": return .noStream
    case "exists", "stream-exists": return .streamExists
    default:
        guard let revision = UInt64(text) else {
            throw InputError("--expected takes any, no-stream, exists or a revision number, not '\(text)'")
        }
        return .exact(revision)
    }
}

/// One event per line: tab-separated text, or a JSON object.
func printEvent(_ event: StrataClient.RecordedEvent, json: Bool) {
    let data = String(decoding: event.data, as: UTF8.self)
    if json {
        printJSON(EventOutput(event))
    } else {
        print("\(event.position)\t\(event.stream)@\(event.revision)\t\(event.type)\t\(formatTime(event.recordedAt))\t\(data)")
    }
}

/// A server time (nanoseconds since the Unix epoch) as ISO 8601 UTC with
/// nanoseconds, e.g. 2026-11-23T11:44:23.123456789Z.
func formatTime(_ nanoseconds: Int64) -> String {
    var seconds = time_t(nanoseconds / 1_000_000_000)
    var fraction = nanoseconds % 1_000_000_000
    if fraction < 0 {
        seconds -= 1
        fraction += 1_000_000_000
    }
    var parts = tm()
    guard gmtime_r(&seconds, &parts) != nil else { return "\(nanoseconds)ns" }
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                  parts.tm_hour, parts.tm_min, parts.tm_sec, fraction)
}

/// Parses a time given on the command line: ISO 8601 (with or without
/// fractional seconds and a zone; digits beyond microseconds are kept),
/// "now", or nanoseconds since the Unix epoch.
func parseTime(_ text: String, option: String) throws -> Int64 {
    if text == "now" { return StrataClient.nanoseconds(Date()) }
    if let nanoseconds = Int64(text) { return nanoseconds }
    // Split off a fraction so nanoseconds survive (Date keeps ~microseconds).
    var body = text
    var fractionNanos: Int64 = 0
    if let dot = text.firstIndex(of: ".") {
        let afterDot = text[text.index(after: dot)...]
        let digits = afterDot.prefix { $0.isNumber }
        guard !digits.isEmpty, digits.count <= 9 else { throw InputError("\(option): '\(text)' has a bad fractional second") }
        fractionNanos = Int64(digits + String(repeating: "0", count: 9 - digits.count)) ?? 0
        body = String(text[..<dot]) + String(afterDot.dropFirst(digits.count))
    }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    var date = formatter.date(from: body)
    if date == nil {
        // A time without a zone is UTC.
        formatter.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withDashSeparatorInDate]
        formatter.timeZone = TimeZone(identifier: "UTC")
        date = formatter.date(from: body)
    }
    if date == nil {
        formatter.formatOptions = [.withFullDate, .withDashSeparatorInDate]
        date = formatter.date(from: body)
    }
    guard let date else {
        throw InputError("\(option): '\(text)' is not a time (ISO 8601 such as 2026-03-15T12:00:00Z, 'now', or nanoseconds since 1970)")
    }
    let seconds = date.timeIntervalSince1970.rounded()
    guard abs(seconds) < 9_000_000_000 else { throw InputError("\(option): '\(text)' is out of range (years 1677–2262)") }
    let (nanoseconds, overflow) = Int64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow, nanoseconds <= Int64.max - fractionNanos else {
        throw InputError("\(option): '\(text)' is out of range (years 1677–2262)")
    }
    return nanoseconds + fractionNanos
}


struct AppendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "append", abstract: "Append one event to a stream.")
    @Argument(help: "Stream name.") var stream: String
    @Argument(help: "Event type.") var type: String
    @Argument(help: "Event data (JSON).") var data: String
    @Option(help: "Expected revision: any, no-stream, exists, or a revision number.") var expected = "any"
    @Option(help: "Event id (UUID) to make a retry idempotent; default: a new time-ordered id.") var id: String?
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard (try? JSONSerialization.jsonObject(with: Data(data.utf8), options: [.fragmentsAllowed])) != nil else {
            throw InputError("the event data is not valid JSON: \(data)")
        }
        let expectation = try parseExpected(expected)
        var eventID = StrataClient.makeEventID()
        if let id {
            guard let parsed = UUID(uuidString: id) else { throw InputError("--id is not a UUID: \(id)") }
            eventID = parsed
        }
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            let result = try await client.append(to: stream, expected: expectation,
                                                 events: [.init(id: eventID, type: type, data: Data(data.utf8))])
            if connection.json {
                printJSON(AppendOutput(stream: result.stream, revision: result.lastRevision, position: result.lastPosition,
                                       recordedAt: result.recordedAt, replayed: result.replayed))
            } else {
                print("appended to \(result.stream): revision \(result.lastRevision), position \(result.lastPosition)\(result.replayed ? " (already stored: replayed)" : "")")
            }
        }
    }
}

struct ReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Read a stream or $all.")
    @Argument(help: "Stream name, or $all.") var stream: String
    @Flag(help: "Read backwards.") var backwards = false
    @Option(help: "Start at this revision (stream) or position ($all).") var from: UInt64?
    @Option(help: "Most events to print.") var count: UInt64 = 100
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            let start: StrataClient.ReadStart? = from.map { stream == "$all" ? .position($0) : .revision($0) }
            for try await event in client.read(stream, from: start, direction: backwards ? .backwards : .forwards, maxCount: count) {
                printEvent(event, json: connection.json)
            }
        }
    }
}

struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show a stream's revision, times and deleted flag.")
    @Argument(help: "Stream name.") var stream: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            let info = try await client.streamInfo(stream)
            if connection.json {
                printJSON(StreamInfoOutput(stream: info.stream, lastRevision: info.lastRevision, firstVisibleRevision: info.firstVisibleRevision,
                                           deleted: info.isDeleted, createdAt: info.createdAt, lastRecordedAt: info.lastRecordedAt))
            } else {
                print("\(info.stream): last revision \(info.lastRevision)\(info.isDeleted ? ", deleted" : ""), first visible revision \(info.firstVisibleRevision)")
            }
        }
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Soft-delete a stream.")
    @Argument(help: "Stream name.") var stream: String
    @Option(help: "Expected revision: any, exists, or a revision number.") var expected = "any"
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let expectation = try parseExpected(expected)
        try await runClient {
            let client = try await connection.connect()
            defer { client.close() }
            try await client.deleteStream(stream, expected: expectation)
            if connection.json { printJSON(StreamDeletedOutput(stream: stream)) } else { print("deleted \(stream)") }
        }
    }
}
