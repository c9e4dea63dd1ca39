import Foundation

/// One case from `proto/conformance/*.json`: a name, the PROTOCOL.md rule it
/// checks, and steps run in order on one or more connections.
public struct ConformanceCase: Sendable {
    public let name: String
    public let rule: String
    let steps: [ConformanceStep]
    public let file: String

    /// A case file: `{"area": "...", "cases": [{"name", "rule", "steps": [...]}]}`.
    private struct File: Decodable {
        struct Entry: Decodable {
            let name: String
            let rule: String
            let steps: [ConformanceStep]
        }
        let area: String?
        let cases: [Entry]
    }

    /// Loads every `*.json` file of `directory`, in name order. A file that
    /// does not decode is refused with where and why ("streams.json:
    /// cases[3].steps[2].call: no value for 'method'").
    public static func load(directory: String) throws -> [ConformanceCase] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        var cases: [ConformanceCase] = []
        var names = Set<String>()
        for file in files {
            let path = (directory as NSString).appendingPathComponent(file)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let decoded: File
            do {
                decoded = try JSONDecoder().decode(File.self, from: data)
            } catch let error as DecodingError {
                throw ConformanceError("\(file): \(Self.describe(error))")
            }
            for entry in decoded.cases {
                guard !entry.steps.isEmpty else { throw ConformanceError("\(file): case '\(entry.name)' has no steps") }
                guard names.insert(entry.name).inserted else { throw ConformanceError("\(file): case name '\(entry.name)' is used twice") }
                cases.append(ConformanceCase(name: entry.name, rule: entry.rule, steps: entry.steps, file: file))
            }
        }
        return cases
    }

    /// "cases[3].steps[2].call: no value for 'method'".
    private static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch error {
        case let .keyNotFound(key, context):
            return "\(path(context.codingPath)): no value for '\(key.stringValue)'"
        case let .typeMismatch(type, context):
            return "\(path(context.codingPath)): expected \(type)"
        case let .valueNotFound(type, context):
            return "\(path(context.codingPath)): expected \(type), found null"
        case let .dataCorrupted(context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
