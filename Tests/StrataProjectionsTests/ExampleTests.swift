import Foundation
@testable import StrataProjections
import StrataStorage
import Testing
import StrataSupport

/// The shipped examples in projections/: each runs over its fixture of
/// events and must produce exactly the state (and emitted events) its
/// expected file lists. Run with checkpoints every few events, so states go
/// through JSON and back in the middle of the fixture.
@Suite("Example projections")
struct ExampleTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("projections")

    static var examples: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".lua") }.map { String($0.dropLast(4)) }.sorted()
    }

    @Test("at least the five documented examples ship")
    func present() {
        #expect(Set(Self.examples).isSuperset(of: ["counts-by-type", "account-balances", "order-totals",
                                                    "large-withdrawals", "daily-signups"]))
    }

    @Test("each example produces its expected state from its fixture", arguments: examples)
    func example(_ name: String) throws {
        let script = try String(contentsOf: Self.directory.appendingPathComponent("\(name).lua"), encoding: .utf8)
        let fixtures = Self.directory.appendingPathComponent("fixtures")
        let events = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: fixtures.appendingPathComponent("\(name).events.json"))) as? [[String: Any]])
        let expected = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: fixtures.appendingPathComponent("\(name).expected.json"))) as? [String: Any])

        var options = EngineFixture.fastOptions
        options.checkpointEvents = 3
        options.batchSize = 4
        let f = try EngineFixture(options: options)
        for event in events {
            let stream = try #require(event["stream"] as? String)
            let type = try #require(event["type"] as? String)
            let data = try JSONSerialization.data(withJSONObject: event["data"] ?? [String: Any]())
            _ = try f.store.append(to: stream, expected: .any, events: [ProposedEvent(id: UUID(), type: type, data: data)])
        }
        let fixtureHead = try f.store.headPosition()
        try f.engine.create(name: name, script: script)
        let status = try f.engine.waitForCheckpoint(name, position: fixtureHead)
        #expect(status.state == .running, "\(status.fault ?? "")")

        if let state = expected["state"] {
            let actual = try #require(try f.engine.state(name).json)
            #expect(try Self.same(JSONSerialization.jsonObject(with: Data(actual)), state), "\(String(decoding: actual, as: UTF8.self))")
        }
        if let partitions = expected["partitions"] as? [String: Any] {
            let keys = try f.engine.partitions(name, prefix: "", after: nil, limit: 1000).keys
            #expect(keys == partitions.keys.sorted())
            for (key, state) in partitions {
                let actual = try #require(try f.engine.state(name, partition: key).json)
                #expect(try Self.same(JSONSerialization.jsonObject(with: Data(actual)), state), "\(key): \(String(decoding: actual, as: UTF8.self))")
            }
        }
        let emitted = try f.store.readAll(from: .position(fixtureHead + 1), maxCount: 10_000).events
        let wanted = expected["emitted"] as? [[String: Any]] ?? []
        #expect(emitted.count == wanted.count)
        for (event, want) in zip(emitted, wanted) {
            #expect(event.stream == want["stream"] as? String)
            #expect(event.type == want["type"] as? String)
            #expect(try Self.same(JSONSerialization.jsonObject(with: event.data), want["data"] ?? [:]))
            #expect(String(decoding: event.metadata, as: UTF8.self).hasPrefix(#"{"$projection":"\#(name)""#))
        }
    }

    /// JSON equality that ignores key order and 1 vs 1.0.
    static func same(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (a as [String: Any], b as [String: Any]):
            a.count == b.count && a.allSatisfy { key, value in b[key].map { same(value, $0) } ?? false }
        case let (a as [Any], b as [Any]):
            a.count == b.count && zip(a, b).allSatisfy { same($0, $1) }
        case let (a as NSNumber, b as NSNumber):
            a.doubleValue == b.doubleValue
        case let (a as String, b as String):
            a == b
        case (is NSNull, is NSNull):
            true
        default:
            false
        }
    }
}
