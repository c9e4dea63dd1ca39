import Foundation

/// One case from `proto/conformance/*.json`: a name, the PROTOCOL.md rule it
/// checks, and steps run in order on one or more connections.
public struct ConformanceCase: Sendable {
    public let name: String
    public let rule: String
    /// Each step is one JSON object with exactly one key (the step's kind);
    /// kept as JSON text so the case stays Sendable.
    let steps: [String]
    public let file: String

    /// Loads every `*.json` file of `directory`, in name order. Each file is
    /// `{"area": "...", "cases": [{"name", "rule", "steps": [...]}]}`.
    public static func load(directory: String) throws -> [ConformanceCase] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        var cases: [ConformanceCase] = []
        var names = Set<String>()
        for file in files {
            let path = (directory as NSString).appendingPathComponent(file)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let list = root["cases"] as? [[String: Any]] else {
                throw ConformanceError("\(file): expected {\"area\": …, \"cases\": [...]}")
            }
            for (index, entry) in list.enumerated() {
                guard let name = entry["name"] as? String, let rule = entry["rule"] as? String,
                      let steps = entry["steps"] as? [[String: Any]], !steps.isEmpty else {
                    throw ConformanceError("\(file): case \(index) needs name, rule and steps")
                }
                guard names.insert(name).inserted else { throw ConformanceError("\(file): case name '\(name)' is used twice") }
                let encoded = try steps.enumerated().map { (number, step) throws -> String in
                    guard step.count == 1, let kind = step.keys.first, StepKind(rawValue: kind) != nil else {
                        throw ConformanceError("\(file): \(name): step \(number + 1) must be one of \(StepKind.allCases.map(\.rawValue)), as {\"kind\": {...}}")
                    }
                    return String(decoding: try JSONSerialization.data(withJSONObject: step, options: [.sortedKeys]), as: UTF8.self)
                }
                cases.append(ConformanceCase(name: name, rule: rule, steps: encoded, file: file))
            }
        }
        return cases
    }
}

/// The kinds of step a case may use (see proto/conformance/README.md).
enum StepKind: String, CaseIterable {
    case connect, send, call, expect, collect, silence, grant, cancel, `repeat`
}
