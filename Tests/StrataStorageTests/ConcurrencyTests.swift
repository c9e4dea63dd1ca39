import Foundation
import Testing
@testable import StrataStorage
import StrataSupport

@Suite("Concurrent appends")
struct ConcurrencyTests {
    @Test("positions stay gapless and in commit order under concurrent appends with conflicts")
    func gaplessUnderConflicts() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        let tasks = 32
        let appendsPerTask = 40
        // Half the appends use a stale exact revision and must fail without
        // consuming positions.
        let succeeded = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var ok = 0
                    for i in 0..<appendsPerTask {
                        let stream = "s-\(task % 4)"
                        let expected: ExpectedRevision = i % 2 == 0 ? .any : .exact(UInt64.max - 1)
                        do {
                            _ = try await store.append(to: stream, expected: expected, events: events(1 + i % 3))
                            ok += 1 + i % 3
                        } catch StorageError.wrongExpectedRevision {
                            continue
                        }
                    }
                    return ok
                }
            }
            return try await group.reduce(0, +)
        }
        let all = try allEvents(store)
        #expect(all.count == succeeded)
        #expect(all.map(\.position) == Array(1...UInt64(succeeded)))
        // Commit times never go back along the log.
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.recordedAt <= $1.recordedAt })
        // Every stream's revisions are contiguous from 0.
        for stream in 0..<4 {
            let revisions = try store.readStream("s-\(stream)", maxCount: .max).events.map(\.revision)
            #expect(revisions == Array(0..<UInt64(revisions.count)))
        }
        #expect(store.commitStatistics.batches < store.commitStatistics.operations, "appends were grouped into shared commits")
    }

    @Test("many writers with the same expectation: exactly one wins each round")
    func oneWinnerPerRound() async throws {
        let fixture = try TestStore()
        let store = fixture.store
        let writers = 16
        let rounds = 30
        var current: ExpectedRevision = .noStream
        var winningIDs: [UUID] = []
        for round in 0..<rounds {
            let expected = current
            let outcomes = await withTaskGroup(of: (UUID, Result<AppendResult, any Error>).self) { group in
                for _ in 0..<writers {
                    group.addTask {
                        let proposed = event("Round", "{\"round\":\(round)}")
                        do {
                            return (proposed.id, .success(try await store.append(to: "contended", expected: expected, events: [proposed])))
                        } catch {
                            return (proposed.id, .failure(error))
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = outcomes.compactMap { outcome -> (UUID, AppendResult)? in
                if case .success(let result) = outcome.1 { return (outcome.0, result) }
                return nil
            }
            #expect(winners.count == 1, "round \(round)")
            for case (_, .failure(let error)) in outcomes {
                #expect(error as? StorageError == .wrongExpectedRevision(
                    stream: "contended", expected: expected,
                    actual: .revision(UInt64(round))))
            }
            guard let (id, result) = winners.first else { return }
            #expect(result.firstRevision == UInt64(round))
            winningIDs.append(id)
            current = .exact(result.lastRevision)
        }
        let stored = try store.readStream("contended", maxCount: .max).events
        #expect(stored.map(\.id) == winningIDs)
        #expect(stored.map(\.revision) == Array(0..<UInt64(rounds)))
        #expect(try store.headPosition() == UInt64(rounds))
    }

    @Test("blocking appends from many OS threads all land exactly once")
    func manyThreads() throws {
        let fixture = try TestStore()
        let store = fixture.store
        let threads = 24
        let perThread = 50
        let group = DispatchGroup()
        let failures = Locked<[String]>([])
        for t in 0..<threads {
            group.enter()
            Thread {
                var revision: UInt64?
                for _ in 0..<perThread {
                    do {
                        let result = try store.append(to: "t-\(t)", expected: revision.map { .exact($0) } ?? .noStream, events: events(1))
                        revision = result.lastRevision
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        #expect(failures.withLock { $0 } == [])
        let all = try allEvents(store)
        #expect(all.count == threads * perThread)
        #expect(Set(all.map(\.id)).count == all.count)
        #expect(all.map(\.position) == Array(1...UInt64(threads * perThread)))
    }
}

