import Foundation
import Testing
@testable import StrataStorage

@Suite("Reads")
struct ReadTests {
    /// Streams a (5 events), b (3), a-x (2), interleaved.
    func populated() throws -> TestStore {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try store.append(to: "a", expected: .any, events: events(2, type: "A"))
        _ = try store.append(to: "b", expected: .any, events: events(3, type: "B"))
        _ = try store.append(to: "a", expected: .any, events: events(3, type: "A"))
        _ = try store.append(to: "a-x", expected: .any, events: events(2, type: "X"))
        return fixture
    }

    @Test("a stream forwards from a revision, with a count, and paging to the end")
    func streamForwards() throws {
        let fixture = try populated()
        let store = fixture.store
        let page1 = try store.readStream("a", from: .revision(1), maxCount: 2)
        #expect(page1.events.map(\.revision) == [1, 2])
        #expect(page1.events.map(\.position) == [2, 6])
        #expect(page1.nextRevision == 3)
        let page2 = try store.readStream("a", from: .revision(3), maxCount: 10)
        #expect(page2.events.map(\.revision) == [3, 4])
        #expect(page2.nextRevision == nil)
        #expect(page2.lastRevision == 4)
        #expect(try store.readStream("a", from: .end).events.isEmpty)
        #expect(try store.readStream("a", from: .revision(99)).events.isEmpty)
    }

    @Test("a stream backwards from the end, a revision, and the start")
    func streamBackwards() throws {
        let fixture = try populated()
        let store = fixture.store
        let fromEnd = try store.readStream("a", from: .end, direction: .backwards, maxCount: 3)
        #expect(fromEnd.events.map(\.revision) == [4, 3, 2])
        #expect(fromEnd.nextRevision == 1)
        let rest = try store.readStream("a", from: .revision(1), direction: .backwards, maxCount: 10)
        #expect(rest.events.map(\.revision) == [1, 0])
        #expect(rest.nextRevision == nil)
        let beyond = try store.readStream("a", from: .revision(100), direction: .backwards, maxCount: 1)
        #expect(beyond.events.map(\.revision) == [4])
        #expect(try store.readStream("a", from: .start, direction: .backwards).events.map(\.revision) == [0])
    }

    @Test("a missing stream is not found")
    func missingStream() throws {
        let fixture = try populated()
        #expect(throws: StorageError.streamNotFound(stream: "nope")) { try fixture.store.readStream("nope") }
        #expect(throws: StorageError.streamNotFound(stream: "nope")) { try fixture.store.streamInfo("nope") }
    }

    @Test("$all forwards and backwards with bounds")
    func allDirections() throws {
        let fixture = try populated()
        let store = fixture.store
        let forwards = try store.readAll(from: .position(4), maxCount: 3)
        #expect(forwards.events.map(\.position) == [4, 5, 6])
        #expect(forwards.nextPosition == 7)
        #expect(forwards.headPosition == 10)
        let tail = try store.readAll(from: .position(9), maxCount: 5)
        #expect(tail.events.map(\.position) == [9, 10])
        #expect(tail.nextPosition == nil)
        let backwards = try store.readAll(from: .end, direction: .backwards, maxCount: 4)
        #expect(backwards.events.map(\.position) == [10, 9, 8, 7])
        #expect(backwards.nextPosition == 6)
        let start = try store.readAll(from: .position(2), direction: .backwards, maxCount: 5)
        #expect(start.events.map(\.position) == [2, 1])
        #expect(start.nextPosition == nil)
        #expect(try store.readAll(from: .end).events.isEmpty)
        #expect(try store.readAll(from: .position(11)).events.isEmpty)
    }

    @Test("$all filters by stream prefix and by event type")
    func allFilters() throws {
        let fixture = try populated()
        let store = fixture.store
        let prefixed = try store.readAll(filter: EventFilter(streamPrefixes: ["a"]))
        #expect(prefixed.events.map(\.stream) == ["a", "a", "a", "a", "a", "a-x", "a-x"])
        let typed = try store.readAll(filter: EventFilter(eventTypes: ["B", "X"]))
        #expect(typed.events.map(\.position) == [3, 4, 5, 9, 10])
        let both = try store.readAll(filter: EventFilter(streamPrefixes: ["a-"], eventTypes: ["A", "X"]))
        #expect(both.events.map(\.position) == [9, 10])
        let backwards = try store.readAll(from: .end, direction: .backwards, maxCount: 2, filter: EventFilter(eventTypes: ["A"]))
        #expect(backwards.events.map(\.position) == [8, 7])
    }

    @Test("a scan limit bounds a filtered read and its next position skips what was scanned")
    func scanLimit() throws {
        let fixture = try populated()
        let store = fixture.store
        let filter = EventFilter(eventTypes: ["X"])
        let first = try store.readAll(maxCount: 10, filter: filter, scanLimit: 4)
        #expect(first.events.isEmpty)
        #expect(first.nextPosition == 5)
        let second = try store.readAll(from: .position(5), maxCount: 10, filter: filter, scanLimit: 100)
        #expect(second.events.map(\.position) == [9, 10])
        #expect(second.nextPosition == nil)
    }

    @Test("stream info reports revision and times")
    func info() throws {
        let fixture = try populated()
        let store = fixture.store
        let info = try store.streamInfo("a")
        #expect(info.lastRevision == 4)
        #expect(!info.isDeleted)
        let events = try store.readStream("a").events
        #expect(info.createdAt == events.first?.recordedAt)
        #expect(info.lastRecordedAt == events.last?.recordedAt)
    }
}

@Suite("Soft delete")
struct SoftDeleteTests {
    @Test("a deleted stream reads as deleted; its events stay in $all and in time queries")
    func deletedStream() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let written = try store.append(to: "doc-1", expected: .any, events: events(3))
        _ = try store.append(to: "doc-2", expected: .any, events: events(1))
        try store.deleteStream("doc-1", expected: .exact(2))
        #expect(throws: StorageError.streamDeleted(stream: "doc-1")) { try store.readStream("doc-1") }
        let info = try store.streamInfo("doc-1")
        #expect(info.isDeleted && info.deletedAt != nil && info.lastRevision == 2)
        #expect(try store.readAll().events.count == 4)
        let history = try store.readStream("doc-1", recordedFrom: written.recordedAt, to: written.recordedAt)
        #expect(history.events.map(\.revision) == [0, 1, 2])
    }

    @Test("deleting checks its expectation, and deleting twice with any succeeds")
    func deleteExpectations() throws {
        let fixture = try TestStore()
        let store = fixture.store
        #expect(throws: StorageError.streamNotFound(stream: "x")) { try store.deleteStream("x") }
        _ = try store.append(to: "x", expected: .any, events: events(2))
        #expect(throws: StorageError.wrongExpectedRevision(stream: "x", expected: .exact(0), actual: .revision(1))) {
            try store.deleteStream("x", expected: .exact(0))
        }
        try store.deleteStream("x", expected: .streamExists)
        try store.deleteStream("x", expected: .any)
        #expect(throws: StorageError.streamDeleted(stream: "x")) { try store.deleteStream("x", expected: .exact(1)) }
    }

    @Test("appending re-creates a deleted stream: revisions continue, reads start at the new incarnation")
    func recreate() throws {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try store.append(to: "x", expected: .any, events: events(2))
        try store.deleteStream("x")
        let result = try store.append(to: "x", expected: .noStream, events: events(2))
        #expect(result.firstRevision == 2)
        let slice = try store.readStream("x")
        #expect(slice.events.map(\.revision) == [2, 3])
        #expect(try store.readStream("x", from: .revision(0), direction: .backwards).events.isEmpty)
        #expect(try store.readStream("x", from: .end, direction: .backwards, maxCount: 10).events.map(\.revision) == [3, 2])
        let info = try store.streamInfo("x")
        #expect(!info.isDeleted && info.firstVisibleRevision == 2)
    }
}
