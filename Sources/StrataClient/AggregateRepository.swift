import Foundation

/// Loads, changes and saves an event-sourced aggregate: state folded from a
/// stream by `apply`, snapshotted (as JSON) every `snapshotEvery` events so a
/// long stream loads quickly, appended with the expected revision it was
/// loaded at, and retried on a conflict by running the caller's decision
/// again on fresh state.
///
///     let accounts = AggregateRepository(client: client, initial: Account(), snapshotEvery: 100) { account, event in
///         try account.applying(event)
///     }
///     let (account, _) = try await accounts.update("account-42") { account, _ in
///         [try account.withdraw(10)]
///     }
public struct AggregateRepository<State: Codable & Sendable>: Sendable {
    public let client: StrataClient
    public let initial: State
    /// Events between snapshots; 0 never snapshots.
    public let snapshotEvery: UInt64
    public let apply: @Sendable (State, StrataClient.RecordedEvent) throws -> State

    public init(client: StrataClient, initial: State, snapshotEvery: UInt64 = 100,
                apply: @escaping @Sendable (State, StrataClient.RecordedEvent) throws -> State) {
        self.client = client
        self.initial = initial
        self.snapshotEvery = snapshotEvery
        self.apply = apply
    }

    /// An aggregate as loaded.
    public struct Loaded: Sendable {
        public let state: State
        /// The stream's revision the state includes; nil for a stream with no events.
        public let revision: UInt64?
        /// The revision of the snapshot the load started from, if any.
        public let snapshotRevision: UInt64?
    }

    /// Why an update gave up.
    public enum UpdateError: Error, Sendable {
        /// Every attempt met a concurrent writer; the last conflict is attached.
        case tooManyConflicts(attempts: Int, last: StrataClient.Error)
    }

    /// Loads the aggregate now, or as it was at a revision or a time: the
    /// newest snapshot at or before that point, then the events after it.
    public func load(_ stream: String, at point: StrataClient.AggregatePoint = .latest) async throws -> Loaded {
        let history: StrataClient.AggregateHistory
        do {
            history = try await client.loadAggregate(stream, at: point)
        } catch {
            if error.reason == .streamNotFound(stream: stream) {
                return Loaded(state: initial, revision: nil, snapshotRevision: nil)
            }
            throw error
        }
        var state = initial
        if let snapshot = history.snapshot {
            state = try JSONDecoder().decode(State.self, from: snapshot.payload)
        }
        for event in history.events { state = try apply(state, event) }
        return Loaded(state: state, revision: history.revision, snapshotRevision: history.snapshot?.revision)
    }

    /// Loads the aggregate, asks `decide` for new events, and appends them
    /// expecting the revision it loaded. On a conflict (another writer came
    /// first) it loads again and asks again, up to `maxAttempts` times.
    /// Saves a snapshot when `snapshotEvery` events have passed since the last.
    /// Returns the new state and the append's result (nil when `decide`
    /// returned no events).
    @discardableResult
    public func update(_ stream: String, maxAttempts: Int = 5,
                       _ decide: (State, _ revision: UInt64?) throws -> [StrataClient.EventData]) async throws
        -> (state: State, result: StrataClient.AppendResult?) {
        var lastConflict: StrataClient.Error?
        for _ in 0 ..< max(1, maxAttempts) {
            let loaded = try await load(stream)
            let events = try decide(loaded.state, loaded.revision)
            if events.isEmpty { return (loaded.state, nil) }
            let expected: StrataClient.ExpectedRevision = loaded.revision.map { .exact($0) } ?? .noStream
            let outcome: Result<StrataClient.AppendResult, StrataClient.Error>
            do {
                outcome = .success(try await client.append(to: stream, expected: expected, events: events))
            } catch {
                outcome = .failure(error)
            }
            let result: StrataClient.AppendResult
            switch outcome {
            case .success(let appended):
                result = appended
            case .failure(let error) where error.code == .failedPrecondition:
                lastConflict = error
                continue
            case .failure(let error):
                throw error
            }
            // Fold what was just written, as the server stored it.
            var state = loaded.state
            for (offset, event) in events.enumerated() {
                let recorded = StrataClient.RecordedEvent(
                    id: event.id, stream: stream, revision: result.firstRevision + UInt64(offset),
                    position: result.firstPosition + UInt64(offset), type: event.type, contentType: event.contentType,
                    data: event.data, metadata: event.metadata, recordedAt: result.recordedAt)
                state = try apply(state, recorded)
            }
            let sinceSnapshot = result.lastRevision + 1 - (loaded.snapshotRevision.map { $0 + 1 } ?? 0)
            if snapshotEvery > 0 && sinceSnapshot >= snapshotEvery, let payload = try? JSONEncoder().encode(state) {
                // Best effort: the append is committed, so a failed snapshot
                // must not look like a failed update (a caller retrying it
                // would apply its decision twice). The next update tries again.
                _ = try? await client.saveSnapshot(of: stream, revision: result.lastRevision, payload: payload)
            }
            return (state, result)
        }
        throw UpdateError.tooManyConflicts(attempts: max(1, maxAttempts), last: lastConflict ?? StrataClient.Error(.failedPrecondition, "conflict"))
    }
}
