import StrataStorage
import StrataSupport

/// A tenant's projections: loads them, runs each on its own queue, and
/// answers operators' commands and state queries.
///
/// Thread-safe: `runners` is a `Locked`. Commands block the calling thread
/// until the store has made the change durable; call them off the
/// cooperative pool (the server runs them on a Dispatch queue).
public final class ProjectionEngine: Sendable {
    public let store: EventStore
    public let options: ProjectionOptions
    private let runners = Locked<[String: ProjectionRunner]>([:])

    public init(store: EventStore, options: ProjectionOptions = ProjectionOptions()) {
        self.store = store
        self.options = options
    }

    /// Starts every stored projection (paused and faulted ones report their state).
    public func startAll() throws(StorageError) {
        for (record, _) in try store.projections() {
            runner(record.name).start()
        }
    }

    /// Commits what each projection has pending and stops them all.
    public func stopAll() {
        let all = runners.withLock { Array($0.values) }
        for runner in all { runner.stop() }
    }

    private func runner(_ name: String) -> ProjectionRunner {
        runners.withLock { runners in
            if let existing = runners[name] { return existing }
            let runner = ProjectionRunner(name: name, store: store, options: options)
            runners[name] = runner
            return runner
        }
    }

    private func existingRunner(_ name: String) throws(StorageError) -> ProjectionRunner {
        guard try store.projection(name) != nil else { throw .projectionNotFound(name: name) }
        return runner(name)
    }

    // MARK: - Commands

    /// Checks a script in a throwaway sandbox: syntax, load errors (with line
    /// numbers) and the shape of its table.
    public func validate(script: String, name: String) throws(ProjectionError) -> ProjectionDefinition {
        let sandbox = try LuaSandbox(limits: options.sandbox) { _ in nil }
        return try sandbox.define(script: script, name: name + ".lua")
    }

    /// Stores and starts a new projection.
    @available(*, noasync)
    @discardableResult
    public func create(name: String, script: String) throws -> ProjectionStatus {
        try ProjectionName.validate(name)
        _ = try validate(script: script, name: name)
        let existing = try store.projections()
        if existing.count >= options.maxPerTenant && !existing.contains(where: { $0.record.name == name }) {
            throw ProjectionError.tooManyProjections(limit: options.maxPerTenant)
        }
        try store.changeProjection(.create(ProjectionRecord(name: name, script: script, createdAt: 0, updatedAt: 0)))
        let runner = runner(name)
        runner.start()
        return runner.status
    }

    /// Replaces the script. Unless `compatible`, the projection is reset and
    /// rebuilds from the start; a compatible update keeps state and checkpoint.
    @available(*, noasync)
    public func update(name: String, script: String, compatible: Bool) throws {
        _ = try validate(script: script, name: name)
        let runner = try existingRunner(name)
        try runner.restart { [store] () throws(StorageError) in
            try store.changeProjection(.updateScript(name: name, script: script, reset: !compatible))
        }
    }

    @available(*, noasync)
    public func pause(_ name: String) throws(StorageError) {
        let runner = try existingRunner(name)
        runner.stop(finalState: .paused)
        defer { runner.start() }  // from what is stored, whether or not the change landed
        try store.changeProjection(.setState(name: name, state: .paused, fault: nil, faultPosition: nil, generation: nil))
    }

    /// Resumes a paused or faulted projection from its last checkpoint.
    @available(*, noasync)
    public func resume(_ name: String) throws(StorageError) {
        let runner = try existingRunner(name)
        try runner.restart { [store] () throws(StorageError) in
            try store.changeProjection(.setState(name: name, state: .running, fault: nil, faultPosition: nil, generation: nil))
        }
    }

    /// Drops state and checkpoint and rebuilds from the first event.
    @available(*, noasync)
    public func reset(_ name: String) throws(StorageError) {
        let runner = try existingRunner(name)
        try runner.restart { [store] () throws(StorageError) in try store.changeProjection(.reset(name: name)) }
    }

    /// Stops the projection and removes its definition, state, checkpoint and
    /// snapshots. Events it emitted stay in the log.
    @available(*, noasync)
    public func delete(_ name: String) throws(StorageError) {
        let runner = try existingRunner(name)
        runner.stop()
        try store.changeProjection(.delete(name: name))
        runners.withLock { _ = $0.removeValue(forKey: name) }
    }

    // MARK: - Queries

    public func status(_ name: String) throws(StorageError) -> ProjectionStatus {
        try existingRunner(name).status
    }

    /// Waits until the projection has committed everything up to `position`
    /// (or faulted, or paused, or `timeout` passed), then returns its status.
    @available(*, noasync)
    public func waitForCheckpoint(_ name: String, position: UInt64, timeout: Duration = .seconds(10)) throws(StorageError) -> ProjectionStatus {
        try existingRunner(name).waitForCheckpoint(position, timeout: timeout)
    }

    public func list() throws(StorageError) -> [ProjectionStatus] {
        try store.projections().map { runner($0.record.name).status }
    }

    /// The stored script of a projection.
    public func script(_ name: String) throws(StorageError) -> String {
        guard let (record, _) = try store.projection(name) else { throw .projectionNotFound(name: name) }
        return record.script
    }

    /// A partition's state (JSON) as of the last checkpoint.
    public func state(_ name: String, partition: String = "") throws(StorageError) -> (json: [UInt8]?, checkpoint: ProjectionCheckpoint) {
        try store.projectionState(name, partition: partition)
    }

    public func partitions(_ name: String, prefix: String, after: String?, limit: Int) throws(StorageError) -> (keys: [String], more: Bool) {
        try store.projectionPartitions(name, prefix: prefix, after: after, limit: limit)
    }

    /// A partition's state as it was at the last event recorded at or before
    /// `time`: the newest stored snapshot before then (unpartitioned
    /// projections) or the start, then the events up to that point, replayed
    /// through the current script in a fresh sandbox. Emits are ignored.
    public func state(_ name: String, partition: String = "", at time: Int64) throws -> (json: [UInt8]?, position: UInt64) {
        guard let (record, _) = try store.projection(name) else { throw StorageError.projectionNotFound(name: name) }
        let target = try store.position(at: time)
        return (try replay(record, partition: partition, through: target), target)
    }

    func replay(_ record: ProjectionRecord, partition: String, through target: UInt64) throws -> [UInt8]? {
        // The loader runs only once events are handled, after the seed is known.
        let seed = ReplaySeed()
        let sandbox = try LuaSandbox(limits: options.sandbox) { key in key == "" ? seed.json : nil }
        let definition = try sandbox.define(script: record.script, name: record.name + ".lua")
        try sandbox.setEmitting(false)
        var start: UInt64 = 0
        if !definition.partitioned, let snapshot = try store.projectionSnapshot(record.name, atOrBefore: target) {
            (start, seed.json) = snapshot
        }
        let own = ProjectionRunner.ownOutputPrefix(record.name)
        var position = start
        while position < target {
            let slice = try store.readAll(from: .position(position + 1), maxCount: options.batchSize,
                                          filter: definition.filter, scanLimit: options.batchSize * 16)
            for event in slice.events where event.position <= target {
                try event.withFieldBytes { fields in
                    guard definition.accepts(stream: fields.stream),
                          !ProjectionRunner.isOutput(fields.metadata, prefix: own) else { return }
                    try sandbox.handle(fields)
                }
            }
            guard let next = slice.nextPosition else { break }
            position = next - 1
        }
        return try sandbox.stateJSON(partition: partition)
    }
}

/// The stored state a replay starts from, set after the script is defined
/// (whether it is partitioned decides whether a snapshot applies). Used on
/// the replaying thread only.
private final class ReplaySeed {
    var json: [UInt8]?
}
