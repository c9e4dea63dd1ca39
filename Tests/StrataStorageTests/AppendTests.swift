import Foundation
import Testing
@testable import StrataStorage
import StrataSupport

@Suite("Append")
struct AppendTests {
    @Test("an append returns its revisions, positions and commit time, and the events read back")
    func roundTrip() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let proposed = [
            ProposedEvent(type: "Opened", contentType: "application/json", data: Data(#"{"owner":"ann"}"#.utf8), metadata: Data("m1".utf8)),
            ProposedEvent(type: "Deposited", contentType: "application/octet-stream", data: Data([0, 1, 2, 255])),
        ]
        let before = CommitClock.wallNanoseconds()
        let result = try store.append(to: "account-1", expected: .noStream, events: proposed)
        #expect(result.firstRevision == 0 && result.lastRevision == 1)
        #expect(result.firstPosition == 1 && result.lastPosition == 2)
        #expect(result.recordedAt >= before)
        let read = try store.readStream("account-1").events
        #expect(read.count == 2)
        for (stored, original) in zip(read, proposed) {
            #expect(stored.id == original.id)
            #expect(stored.type == original.type)
            #expect(stored.contentType == original.contentType)
            #expect(stored.data == original.data)
            #expect(stored.metadata == original.metadata)
            #expect(stored.stream == "account-1")
            #expect(stored.recordedAt == result.recordedAt)
        }
        #expect(read.map(\.position) == [1, 2])
    }

    @Test("a batch with one invalid event writes nothing")
    func batchAtomicity() throws {
        let fixture = try TestStore()
        let store = fixture.store
        var batch = events(5)
        batch[3].type = ""
        #expect(throws: StorageError.invalidEvent(stream: "s", index: 3, reason: "empty event type")) {
            try store.append(to: "s", expected: .any, events: batch)
        }
        var big = events(3)
        big[2].data = Data(count: 2 << 20)
        #expect(throws: StorageError.eventTooLarge(stream: "s", index: 2, size: 2 << 20, limit: 1 << 20)) {
            try store.append(to: "s", expected: .any, events: big)
        }
        #expect(try store.headPosition() == 0)
        #expect(throws: StorageError.streamNotFound(stream: "s")) { try store.readStream("s") }
    }

    @Test("stream names are validated", arguments: [
        ("", "empty"),
        ("$all", "names starting with '$' are reserved"),
        (String(repeating: "a", count: 257), "257 bytes; the limit is 256"),
    ])
    func streamNames(name: String, reason: String) throws {
        let fixture = try TestStore()
        #expect(throws: StorageError.invalidStreamName(stream: name, reason: reason)) {
            try fixture.store.append(to: name, expected: .any, events: events(1))
        }
    }

    @Test("limits on event type, events per append and duplicate ids are enforced")
    func limits() throws {
        var options = TestStore.defaultOptions
        options.limits.maxEventsPerAppend = 10
        options.limits.maxEventBytes = 100
        let fixture = try TestStore(options: options)
        let store = fixture.store
        #expect(throws: StorageError.tooManyEvents(count: 11, limit: 10)) {
            try store.append(to: "s", expected: .any, events: events(11))
        }
        let longType = String(repeating: "t", count: 257)
        #expect(throws: StorageError.invalidEvent(stream: "s", index: 0, reason: "event type is 257 bytes; the limit is 256")) {
            try store.append(to: "s", expected: .any, events: [event(longType)])
        }
        var withMetadata = event()
        withMetadata.data = Data(count: 60)
        withMetadata.metadata = Data(count: 41)
        #expect(throws: StorageError.eventTooLarge(stream: "s", index: 0, size: 101, limit: 100)) {
            try store.append(to: "s", expected: .any, events: [withMetadata])
        }
        let id = UUID()
        #expect(throws: StorageError.duplicateEventID(id: id)) {
            try store.append(to: "s", expected: .any, events: [event(id: id), event(id: id)])
        }
        #expect(throws: StorageError.noEvents(stream: "s")) {
            try store.append(to: "s", expected: .any, events: [])
        }
        #expect(try store.headPosition() == 0)
    }

    @Test("the async API appends and reports conflicts like the blocking one")
    func asyncAppend() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        let first = try await store.append(to: "a", expected: .noStream, events: events(2))
        #expect(first.lastRevision == 1)
        await #expect(throws: StorageError.wrongExpectedRevision(stream: "a", expected: .exact(0), actual: .revision(1))) {
            try await store.append(to: "a", expected: .exact(0), events: events(1))
        }
        try await store.deleteStream("a")
        #expect(try store.streamInfo("a").isDeleted)
    }
}

@Suite("Multi-stream append")
struct MultiStreamAppendTests {
    @Test("all writes commit together with contiguous positions")
    func commitsTogether() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let results = try store.appendMulti([
            StreamWrite(stream: "order-1", expected: .noStream, events: events(2)),
            StreamWrite(stream: "stock-9", expected: .any, events: events(3)),
        ])
        #expect(results.map(\.firstPosition) == [1, 3])
        #expect(results.map(\.lastPosition) == [2, 5])
        #expect(Set(results.map(\.recordedAt)).count == 1, "one commit, one time")
    }

    @Test("one failed expectation writes nothing for any stream")
    func oneFailureWritesNothing() throws {
        let fixture = try TestStore()
        let store = fixture.store
        _ = try store.append(to: "stock-9", expected: .noStream, events: events(1))
        #expect(throws: StorageError.wrongExpectedRevision(stream: "stock-9", expected: .exact(5), actual: .revision(0))) {
            try store.appendMulti([
                StreamWrite(stream: "order-1", expected: .noStream, events: events(2)),
                StreamWrite(stream: "stock-9", expected: .exact(5), events: events(1)),
            ])
        }
        #expect(throws: StorageError.streamNotFound(stream: "order-1")) { try store.readStream("order-1") }
        #expect(try store.headPosition() == 1)
        #expect(try store.streamInfo("stock-9").lastRevision == 0)
    }

    @Test("the same stream twice is refused")
    func duplicateStream() throws {
        let fixture = try TestStore()
        #expect(throws: StorageError.duplicateStream(stream: "a")) {
            try fixture.store.appendMulti([
                StreamWrite(stream: "a", expected: .any, events: events(1)),
                StreamWrite(stream: "a", expected: .any, events: events(1)),
            ])
        }
    }
}
