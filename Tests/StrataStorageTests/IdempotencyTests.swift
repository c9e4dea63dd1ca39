import Foundation
import Testing
@testable import StrataStorage

@Suite("Idempotent retries")
struct IdempotencyTests {
    @Test("re-sending the same events with the same expectation returns the original result and writes nothing")
    func retryReturnsOriginal() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let batch = events(3)
        let original = try store.append(to: "cart-1", expected: .noStream, events: batch)
        _ = try store.append(to: "other", expected: .any, events: events(2))
        let retried = try store.append(to: "cart-1", expected: .noStream, events: batch)
        #expect(retried.replayed)
        #expect(retried.firstRevision == original.firstRevision && retried.lastRevision == original.lastRevision)
        #expect(retried.firstPosition == original.firstPosition && retried.lastPosition == original.lastPosition)
        #expect(retried.recordedAt == original.recordedAt)
        #expect(try store.headPosition() == 5)
        #expect(try store.readStream("cart-1").events.count == 3)
    }

    @Test("a retry with an exact expectation after later appends still returns the original")
    func retryAfterLaterAppends() throws {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try store.append(to: "cart-1", expected: .noStream, events: events(1))
        let batch = events(2)
        let original = try store.append(to: "cart-1", expected: .exact(0), events: batch)
        _ = try store.append(to: "cart-1", expected: .exact(2), events: events(1))
        let retried = try store.append(to: "cart-1", expected: .exact(0), events: batch)
        #expect(retried.replayed && retried.firstRevision == original.firstRevision)
        #expect(try store.streamInfo("cart-1").lastRevision == 3)
    }

    @Test("an id stored under another stream is a conflict naming where it is")
    func idReuseOtherStream() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let reused = event()
        _ = try store.append(to: "a", expected: .any, events: [event(), reused])
        #expect(throws: StorageError.eventIDConflict(id: reused.id, storedStream: "a", storedRevision: 1)) {
            try store.append(to: "b", expected: .any, events: [reused])
        }
        #expect(throws: StorageError.eventIDConflict(id: reused.id, storedStream: "a", storedRevision: 1)) {
            try store.append(to: "b", expected: .any, events: [event(), reused])
        }
        #expect(try store.headPosition() == 2)
    }

    @Test("the same ids with an expectation that would place them elsewhere are a conflict")
    func retryWithDifferentExpectation() throws {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try store.append(to: "a", expected: .any, events: events(2))
        let batch = events(1)
        _ = try store.append(to: "a", expected: .exact(1), events: batch)
        #expect(throws: StorageError.eventIDConflict(id: batch[0].id, storedStream: "a", storedRevision: 2)) {
            try store.append(to: "a", expected: .exact(0), events: batch)
        }
        #expect(throws: StorageError.eventIDConflict(id: batch[0].id, storedStream: "a", storedRevision: 2)) {
            try store.append(to: "a", expected: .noStream, events: batch)
        }
    }

    @Test("a retry that adds new events to stored ones is a conflict, not a partial write")
    func partialOverlap() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let batch = events(2)
        _ = try store.append(to: "a", expected: .any, events: batch)
        let extended = batch + events(1)
        #expect(throws: StorageError.eventIDConflict(id: batch[0].id, storedStream: "a", storedRevision: 0)) {
            try store.append(to: "a", expected: .any, events: extended)
        }
        #expect(try store.headPosition() == 2)
    }

    @Test("a multi-stream append retried as a whole replays every stream")
    func multiStreamRetry() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let writes = [
            StreamWrite(stream: "x", expected: .noStream, events: events(1)),
            StreamWrite(stream: "y", expected: .noStream, events: events(2)),
        ]
        let original = try store.appendMulti(writes)
        let retried = try store.appendMulti(writes)
        #expect(retried.allSatisfy { $0.replayed })
        #expect(retried.map(\.lastPosition) == original.map(\.lastPosition))
        #expect(try store.headPosition() == 3)
    }
}
