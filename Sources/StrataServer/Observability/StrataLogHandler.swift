import Foundation
import Logging

/// How log lines are written: `text` for people (one line: time, level,
/// message, then `key=value` metadata), `json` for log shippers (one JSON
/// object per line).
public enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json
}

/// A swift-log handler writing one line per record to a file descriptor
/// (standard output by default, which systemd sends to the journal).
///
/// Each line is written with a single `write(2)`, so lines from different
/// threads never interleave. Metadata never carries secrets: the server logs
/// tenant, method, request id, connection and peer, never call metadata
/// such as `authorization`.
public struct StrataLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let format: LogFormat
    private let descriptor: Int32

    public init(level: Logger.Level, format: LogFormat, descriptor: Int32 = STDOUT_FILENO) {
        self.logLevel = level
        self.format = format
        self.descriptor = descriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = switch format {
        case .text: Self.text(level: event.level, message: event.message.description, metadata: merged)
        case .json: Self.json(level: event.level, message: event.message.description, metadata: merged)
        }
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }  // nowhere to log to: dropping the line is all that is left
            offset += written
        }
    }

    /// `2026-11-23T16:00:00.123Z info listening on … tenant=acme`.
    static func text(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        // One record, one line: line breaks and other control characters in
        // a message (which may quote a client's input) are escaped.
        let flat = message.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            ? escapedControls(message) : message
        var line = "\(timestamp()) \(level.rawValue) \(flat)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(quotedIfNeeded(metadata[key].map(String.init(describing:)) ?? ""))"
        }
        return line
    }

    static func json(level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        var object: [String: String] = ["time": timestamp(), "level": level.rawValue, "message": message]
        for (key, value) in metadata where object[key] == nil { object[key] = "\(value)" }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return #"{"level":"error","message":"unencodable log line"}"#
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// A value as is, or quoted (with `"` and `\` escaped) when it has spaces,
    /// quotes, `=` or control characters, so every line splits unambiguously.
    static func quotedIfNeeded(_ value: String) -> String {
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar != "\"" && scalar != "=" && scalar != "\\" && scalar.value != 0x7F
        }
        if plain { return value }
        return "\"" + escapedControls(value, quotes: true) + "\""
    }

    /// `\n`, `\r`, `\t` and `\u00XX` for control characters, and with
    /// `quotes` also `\"` and `\\`; the rest as is.
    static func escapedControls(_ text: String, quotes: Bool = false) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"" where quotes: out += "\\\""
            case "\\" where quotes: out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// UTC, milliseconds, RFC 3339.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }
}
