import Foundation
import StrataFuzzing
import Testing

/// The fuzz targets in the ordinary test run: every saved input (the seed
/// corpus and every crash the fuzzer ever found, `corpus/<target>/`) is
/// replayed, then each target gets thousands of random inputs. A broken
/// invariant aborts the test process with the reason, as it would the fuzzer.
@Suite("Fuzz targets: saved inputs and random inputs")
struct FuzzTargetTests {
    static let corpus = Bundle.module.resourceURL!.appendingPathComponent("corpus")

    @Test("every saved input replays without breaking an invariant", arguments: FuzzTarget.allCases)
    func savedInputs(_ target: FuzzTarget) throws {
        let directory = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(!files.isEmpty, "corpus/\(target.rawValue) has seeds")
        for file in files.sorted() {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            data.withUnsafeBytes { target.run($0) }
        }
    }

    /// `TEST_FUZZ_ITERATIONS` raises the count for a longer local run.
    static let iterations = Int(ProcessInfo.processInfo.environment["TEST_FUZZ_ITERATIONS"] ?? "") ?? 5_000

    @Test("5,000 random inputs per target, and mutations of the saved ones", arguments: FuzzTarget.allCases)
    func randomInputs(_ target: FuzzTarget) throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0 ..< Self.iterations {
            let length = Int.random(in: 0 ... 300, using: &generator)
            let bytes = (0 ..< length).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }
            bytes.withUnsafeBytes { target.run($0) }
        }
        let directory = Self.corpus.appendingPathComponent(target.rawValue)
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            let seed = Array(try Data(contentsOf: directory.appendingPathComponent(file)))
            for _ in 0 ..< 500 where !seed.isEmpty {
                var mutated = seed
                for _ in 0 ..< Int.random(in: 1 ... 4, using: &generator) {
                    mutated[Int.random(in: 0 ..< mutated.count, using: &generator)] = UInt8.random(in: 0 ... 255, using: &generator)
                }
                mutated.withUnsafeBytes { target.run($0) }
            }
        }
    }
}
