import Foundation
import StrataSupport
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

    @Test("a retry whose type, data or metadata differ from what is stored under its ids is a conflict, not a replay")
    func sameIDOtherContent() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let batch = events(2)
        _ = try store.append(to: "cart-1", expected: .noStream, events: batch)
        for change in ["type", "data", "metadata"] {
            var altered = batch
            switch change {
            case "type": altered[1].type = "Other"
            case "data": altered[1].data = Data("{\"changed\":true}".utf8)
            default: altered[1].metadata = Data("{\"m\":1}".utf8)
            }
            #expect(throws: StorageError.eventIDContentConflict(id: batch[1].id, storedStream: "cart-1", storedRevision: 1), "\(change)") {
                _ = try store.append(to: "cart-1", expected: .noStream, events: altered)
            }
        }
        // The content type is not compared; the same content still replays.
        var sameContent = batch
        sameContent[0].contentType = "application/octet-stream"
        #expect(try store.append(to: "cart-1", expected: .noStream, events: sameContent).replayed)
        #expect(try store.headPosition() == 2)
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

    @Test("concurrent appends that share a later event id: one lands, the others get the conflict, nothing else is lost")
    func concurrentSharedID() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        for round in 0..<20 {
            let shared = event("Shared")
            let outcomes = await withTaskGroup(of: Result<AppendResult, StorageError>.self) { group in
                for writer in 0..<6 {
                    group.addTask {
                        do {
                            return .success(try await store.append(to: "r\(round)-w\(writer)", expected: .noStream,
                                                                   events: [event("Own"), shared]))
                        } catch {
                            return .failure((error as? StorageError) ?? .closed(tenant: "unexpected \(error)"))
                        }
                    }
                }
                // Unrelated appends in the same batches must be unaffected.
                for bystander in 0..<4 {
                    group.addTask {
                        do {
                            return .success(try await store.append(to: "bystander-\(bystander)", expected: .any, events: events(1)))
                        } catch {
                            return .failure((error as? StorageError) ?? .closed(tenant: "unexpected \(error)"))
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = outcomes.compactMap { try? $0.get() }.filter { $0.stream.hasPrefix("r\(round)-") }
            #expect(winners.count == 1)
            let winner = try #require(winners.first)
            for case .failure(let error) in outcomes {
                #expect(error == .eventIDConflict(id: shared.id, storedStream: winner.stream, storedRevision: 1))
            }
            let bystanders = outcomes.compactMap { try? $0.get() }.filter { $0.stream.hasPrefix("bystander") }
            #expect(bystanders.count == 4)
        }
        let all = try allEvents(store)
        #expect(all.count == 120)
        let positions: [UInt64] = all.map { $0.position }
        #expect(positions == Array(1...UInt64(120)))
    }
}
