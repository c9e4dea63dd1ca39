import Foundation
import Testing
@testable import StrataStorage
import StrataSupport

/// The expected-revision matrix: each kind of expectation against a stream
/// that does not exist, one that exists (current revision 1), and one that was
/// soft-deleted after reaching revision 1.
@Suite("Expected revision")
struct ExpectedRevisionTests {
    enum StreamState: String, Sendable, CaseIterable { case missing, existing, deleted }

    struct Case: Sendable, CustomTestStringConvertible {
        let state: StreamState
        let expected: ExpectedRevision
        /// The revision written on success, or the actual revision reported on failure.
        let outcome: Result<UInt64, ActualFailure>
        var testDescription: String { "\(expected) on \(state) stream" }
    }

    struct ActualFailure: Error, Sendable, Equatable { let actual: ActualRevision }

    static let cases: [Case] = [
        Case(state: .missing, expected: .any, outcome: .success(0)),
        Case(state: .missing, expected: .noStream, outcome: .success(0)),
        Case(state: .missing, expected: .streamExists, outcome: .failure(ActualFailure(actual: .noStream))),
        Case(state: .missing, expected: .exact(0), outcome: .failure(ActualFailure(actual: .noStream))),
        Case(state: .existing, expected: .any, outcome: .success(2)),
        Case(state: .existing, expected: .noStream, outcome: .failure(ActualFailure(actual: .revision(1)))),
        Case(state: .existing, expected: .streamExists, outcome: .success(2)),
        Case(state: .existing, expected: .exact(1), outcome: .success(2)),
        Case(state: .existing, expected: .exact(0), outcome: .failure(ActualFailure(actual: .revision(1)))),
        Case(state: .existing, expected: .exact(7), outcome: .failure(ActualFailure(actual: .revision(1)))),
        Case(state: .deleted, expected: .any, outcome: .success(2)),
        Case(state: .deleted, expected: .noStream, outcome: .success(2)),
        Case(state: .deleted, expected: .streamExists, outcome: .failure(ActualFailure(actual: .deleted(lastRevision: 1)))),
        Case(state: .deleted, expected: .exact(1), outcome: .failure(ActualFailure(actual: .deleted(lastRevision: 1)))),
    ]

    @Test("append checks the expectation", arguments: cases)
    func matrix(_ testCase: Case) throws {
        let fixture = try TestStore()
        let store = fixture.store
        // Another stream first, so positions and stream numbers are not trivially 1.
        _ = try store.append(to: "other", expected: .any, events: events(3))
        if testCase.state != .missing {
            _ = try store.append(to: "order-1", expected: .noStream, events: events(2))
        }
        if testCase.state == .deleted {
            try store.deleteStream("order-1", expected: .exact(1))
        }
        let headBefore = try store.headPosition()
        switch testCase.outcome {
        case .success(let revision):
            let result = try store.append(to: "order-1", expected: testCase.expected, events: [event("Placed")])
            #expect(result.firstRevision == revision)
            #expect(result.lastRevision == revision)
            #expect(result.firstPosition == headBefore + 1)
            #expect(!result.replayed)
            let slice = try store.readStream("order-1")
            // A re-created stream shows only its new incarnation.
            #expect(slice.events.map(\.revision) == (testCase.state == .existing ? [0, 1, 2] : [revision]))
            #expect(try store.streamInfo("order-1").isDeleted == false)
        case .failure(let failure):
            #expect(throws: StorageError.wrongExpectedRevision(stream: "order-1", expected: testCase.expected, actual: failure.actual)) {
                try store.append(to: "order-1", expected: testCase.expected, events: [event("Placed")])
            }
            #expect(try store.headPosition() == headBefore, "a rejected append consumes no position")
        }
    }
}
