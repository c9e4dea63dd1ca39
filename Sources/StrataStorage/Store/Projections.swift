import Foundation
import StrataLMDB

/// Whether a projection should run. `faulted` is set by the engine when a
/// script fails; resuming clears it.
public enum ProjectionRunState: String, Codable, Sendable, Hashable {
    case running
    case paused
    case faulted
}

/// A projection's definition as stored: its script and what the engine
/// should do with it. Rarely written (create, update, pause, fault).
public struct ProjectionRecord: Codable, Sendable, Hashable {
    public var name: String
    public var script: String
    public var state: ProjectionRunState
    /// Why it faulted, and at which event (nil when not faulted).
    public var fault: String?
    public var faultPosition: UInt64?
    /// Bumped by a reset or an incompatible update: commits made for an
    /// older generation are refused, so a runner that missed the reset
    /// cannot write over the new start.
    public var generation: UInt64
    /// Nanoseconds since the epoch (server clock).
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(name: String, script: String, state: ProjectionRunState = .running, generation: UInt64 = 1,
                createdAt: Int64, updatedAt: Int64) {
        self.name = name
        self.script = script
        self.state = state
        self.generation = generation
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// How far a projection got, written in the same transaction as its state.
public struct ProjectionCheckpoint: Sendable, Hashable {
    /// The last position the projection has taken into account (handled or
    /// skipped by its filter); 0 before the first event.
    public var position: UInt64
    /// Events handed to a handler so far.
    public var eventsHandled: UInt64
    /// Events emitted so far.
    public var eventsEmitted: UInt64
    /// The generation this checkpoint belongs to.
    public var generation: UInt64
    /// When it was committed (ns since the epoch; 0 if never).
    public var committedAt: Int64

    public init(position: UInt64 = 0, eventsHandled: UInt64 = 0, eventsEmitted: UInt64 = 0, generation: UInt64,
                committedAt: Int64 = 0) {
        self.position = position
        self.eventsHandled = eventsHandled
        self.eventsEmitted = eventsEmitted
        self.generation = generation
        self.committedAt = committedAt
    }

    static let encodedSize = 40

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.encodedSize)
        for value in [position, eventsHandled, eventsEmitted, generation, UInt64(bitPattern: committedAt)] {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    init?(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count == Self.encodedSize else { return nil }
        position = Keys.decodeUInt64LE(buffer, at: 0)
        eventsHandled = Keys.decodeUInt64LE(buffer, at: 8)
        eventsEmitted = Keys.decodeUInt64LE(buffer, at: 16)
        generation = Keys.decodeUInt64LE(buffer, at: 24)
        committedAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 32))
    }
}

/// Everything one projection commit writes, atomically: changed partition
/// states, the new checkpoint, emitted events and (sometimes) a state
/// snapshot for queries as of a past time.
public struct ProjectionCommit: Sendable {
    public var name: String
    public var generation: UInt64
    /// The checkpoint this commit continues from; a mismatch means another
    /// runner (or a reset) got there first, and nothing is written.
    public var expectedPosition: UInt64
    public var checkpoint: ProjectionCheckpoint
    public var states: [(partition: String, json: [UInt8])]
    /// Appended in this order, each write on its own (a stream may recur).
    public var emitted: [StreamWrite]
    /// The whole unpartitioned state at `checkpoint.position`, kept for
    /// state-as-of-T queries; the oldest beyond `keepSnapshots` are dropped.
    public var snapshot: [UInt8]?
    public var keepSnapshots: Int

    public init(name: String, generation: UInt64, expectedPosition: UInt64, checkpoint: ProjectionCheckpoint,
                states: [(partition: String, json: [UInt8])], emitted: [StreamWrite] = [], snapshot: [UInt8]? = nil,
                keepSnapshots: Int = 100) {
        self.name = name
        self.generation = generation
        self.expectedPosition = expectedPosition
        self.checkpoint = checkpoint
        self.states = states
        self.emitted = emitted
        self.snapshot = snapshot
        self.keepSnapshots = keepSnapshots
    }
}

/// Changes to a projection's definition, run by the writer.
public enum ProjectionChange: Sendable {
    /// A new projection; fails if the name is taken.
    case create(ProjectionRecord)
    /// A new script. `reset` clears state, checkpoint and snapshots and bumps
    /// the generation; without it they are kept (a compatible update).
    case updateScript(name: String, script: String, reset: Bool)
    /// Clears state, checkpoint and snapshots and bumps the generation.
    case reset(name: String)
    /// Pause, resume, or record a fault (only for the given generation, so a
    /// late fault report cannot touch a reset projection).
    case setState(name: String, state: ProjectionRunState, fault: String?, faultPosition: UInt64?, generation: UInt64?)
    /// Removes the definition, states, checkpoint and snapshots. Emitted
    /// events stay: the log is immutable.
    case delete(name: String)
}

/// Projection names: what may appear in a key and a CLI argument.
public enum ProjectionName {
    public static let maxBytes = 128

    public static func validate(_ name: String) throws(StorageError) {
        guard !name.isEmpty, name.utf8.count <= maxBytes else {
            throw .invalidProjection(name: name, reason: "a name has 1 to \(maxBytes) bytes")
        }
        guard name.utf8.allSatisfy({ byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x2d || byte == 0x5f || byte == 0x2e
        }) else {
            throw .invalidProjection(name: name, reason: "use letters, digits, '-', '_' and '.'")
        }
    }
}

/// Partition keys: any UTF-8 without NUL (the key separator), bounded so
/// that name + key fits an LMDB key.
public enum PartitionKey {
    public static let maxBytes = 256

    public static func validate(_ key: String, projection: String) throws(StorageError) {
        if key.utf8.count > maxBytes || key.utf8.contains(0) {
            throw .invalidProjection(name: projection, reason: "partition key '\(key.prefix(40))…' is longer than \(maxBytes) bytes or holds a NUL byte")
        }
    }
}

enum ProjectionKeys {
    /// `name` NUL `suffix`: groups a projection's entries and sorts them.
    static func key(_ name: String, _ suffix: some Sequence<UInt8>) -> [UInt8] {
        Array(name.utf8) + [0] + Array(suffix)
    }

    static func prefix(_ name: String) -> [UInt8] { Array(name.utf8) + [0] }

    static func snapshotKey(_ name: String, _ position: UInt64) -> [UInt8] {
        withUnsafeBytes(of: position.bigEndian) { key(name, $0) }
    }
}

// MARK: - Reads

extension EventStore {
    /// Every projection's definition and checkpoint, by name.
    public func projections() throws(StorageError) -> [(record: ProjectionRecord, checkpoint: ProjectionCheckpoint)] {
        try withRead { txn in
            var result: [(ProjectionRecord, ProjectionCheckpoint)] = []
            try txn.withCursor(dbs.projections) { cursor in
                var entry = try cursor.first()
                while let current = entry {
                    let record = try decodeRecord(current.value)
                    result.append((record, try checkpoint(of: record, in: txn)))
                    entry = try cursor.next()
                }
            }
            return result
        }
    }

    /// One projection's definition and checkpoint, or nil.
    public func projection(_ name: String) throws(StorageError) -> (record: ProjectionRecord, checkpoint: ProjectionCheckpoint)? {
        // A name no projection can have is a bad argument, not a missing one.
        try ProjectionName.validate(name)
        return try withRead { txn in
            guard let record = try projectionRecord(name, in: txn) else { return nil }
            return (record, try checkpoint(of: record, in: txn))
        }
    }

    /// A partition's state as of the checkpoint (JSON), with that checkpoint;
    /// nil state when the partition has none yet. Throws `.projectionNotFound`.
    public func projectionState(_ name: String, partition: String = "") throws(StorageError)
        -> (json: [UInt8]?, checkpoint: ProjectionCheckpoint) {
        try withRead { txn in
            guard let record = try projectionRecord(name, in: txn) else { throw StorageError.projectionNotFound(name: name) }
            let json = try ProjectionKeys.key(name, partition.utf8).withUnsafeBytes {
                try txn.borrowValue(dbs.projectionStates, key: $0).map { [UInt8]($0) }
            }
            return (json, try checkpoint(of: record, in: txn))
        }
    }

    /// Partition keys starting with `prefix`, in byte order, after `after`
    /// (exclusive), at most `limit`; and whether more follow.
    public func projectionPartitions(_ name: String, prefix: String = "", after: String? = nil,
                                     limit: Int = 100) throws(StorageError) -> (keys: [String], more: Bool) {
        try withRead { txn in
            guard try projectionRecord(name, in: txn) != nil else { throw StorageError.projectionNotFound(name: name) }
            let base = ProjectionKeys.prefix(name)
            let wanted = base + Array(prefix.utf8)
            var keys: [String] = []
            var more = false
            try txn.withCursor(dbs.projectionStates) { cursor in
                // After `after`: after + NUL is the smallest key above it (keys
                // hold no NUL); but never before the prefix's first key.
                let start = after.map { base + Array($0.utf8) + [0] }.map { $0.lexicographicallyPrecedes(wanted) ? wanted : $0 } ?? wanted
                var entry = try start.withUnsafeBytes { try cursor.seek(atOrAfter: $0) }
                while let current = entry, current.key.starts(with: wanted) {
                    if keys.count == limit { more = true; break }
                    keys.append(String(decoding: current.key.dropFirst(base.count), as: UTF8.self))
                    entry = try cursor.next()
                }
            }
            return (keys, more)
        }
    }

    /// The newest stored state snapshot at or before `position`.
    public func projectionSnapshot(_ name: String, atOrBefore position: UInt64) throws(StorageError)
        -> (position: UInt64, json: [UInt8])? {
        try withRead { txn in
            try txn.withCursor(dbs.projectionSnapshots) { cursor in
                let key = ProjectionKeys.snapshotKey(name, position)
                guard let entry = try key.withUnsafeBytes({ try cursor.seek(atOrBefore: $0) }) else { return nil }
                let base = ProjectionKeys.prefix(name)
                guard entry.key.count == base.count + 8, entry.key.starts(with: base) else { return nil }
                return (Keys.decodeUInt64BE(entry.key, at: base.count), [UInt8](entry.value))
            }
        }
    }

    /// A partition's committed state alone: one lookup, no definition or
    /// checkpoint read (the engine's loader calls this per new partition).
    public func storedPartitionState(_ name: String, partition: String) throws(StorageError) -> [UInt8]? {
        try withRead { txn in
            try ProjectionKeys.key(name, partition.utf8).withUnsafeBytes {
                try txn.borrowValue(dbs.projectionStates, key: $0).map { [UInt8]($0) }
            }
        }
    }

    func projectionRecord(_ name: String, in txn: borrowing ReadTransaction) throws -> ProjectionRecord? {
        try Array(name.utf8).withUnsafeBytes { key in
            try txn.borrowValue(dbs.projections, key: key).map { try decodeRecord($0) }
        }
    }

    private func checkpoint(of record: ProjectionRecord, in txn: borrowing ReadTransaction) throws -> ProjectionCheckpoint {
        let stored = try Array(record.name.utf8).withUnsafeBytes { key in
            try txn.borrowValue(dbs.projectionCheckpoints, key: key).flatMap { ProjectionCheckpoint($0) }
        }
        guard let stored, stored.generation == record.generation else {
            return ProjectionCheckpoint(generation: record.generation)
        }
        return stored
    }

    private func decodeRecord(_ bytes: UnsafeRawBufferPointer) throws -> ProjectionRecord {
        do {
            return try JSONDecoder().decode(ProjectionRecord.self, from: Data(bytes))
        } catch {
            throw StorageError.corrupt(path: path, detail: "a projection record does not decode: \(error)")
        }
    }
}

// MARK: - Writes

extension EventStore {
    /// Creates, updates, pauses, resets or deletes a projection. Blocks until
    /// durable; returns the record as stored (nil after a delete).
    @available(*, noasync, message: "call from the projection engine's queue")
    @discardableResult
    public func changeProjection(_ change: ProjectionChange) throws(StorageError) -> ProjectionRecord? {
        switch change {
        case .create(let record):
            try ProjectionName.validate(record.name)
        case .updateScript(let name, _, _), .reset(let name), .setState(let name, _, _, _, _), .delete(let name):
            try ProjectionName.validate(name)
        }
        let box = ResultBox<WriteOutcome>()
        enqueue(.projection(change)) { box.fill($0) }
        guard case .projectionChanged(let record) = try box.wait().get() else { return nil }
        return record
    }

    /// Commits a projection's progress; `completion` runs on the writer thread.
    public func submitProjectionCommit(_ commit: ProjectionCommit,
                                       completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        do {
            for (partition, _) in commit.states { try PartitionKey.validate(partition, projection: commit.name) }
            for write in commit.emitted { try validate([write]) }
        } catch {
            completion(.failure(error))
            return
        }
        enqueue(.projectionCommit(commit)) { completion($0.map { _ in () }) }
    }

    /// Commits a projection's progress and waits until it is durable.
    @available(*, noasync, message: "call from the projection engine's queue")
    public func commitProjection(_ commit: ProjectionCommit) throws(StorageError) {
        let box = ResultBox<Void>()
        submitProjectionCommit(commit) { box.fill($0) }
        try box.wait().get()
    }
}

/// Aborts a writer transaction (see `commitProjection`); never expected,
/// since emitted events are validated before they are queued.
struct ProjectionAppendAborted: Error {
    let error: StorageError
}

extension WriteBatch {
    mutating func changeProjection(_ change: ProjectionChange, in txn: borrowing WriteTransaction) throws -> ProjectionRecord? {
        switch change {
        case .create(var record):
            if try loadProjection(record.name, in: txn) != nil { throw StorageError.projectionExists(name: record.name) }
            record.createdAt = commitTime
            record.updatedAt = commitTime
            try storeProjection(record, in: txn)
            return record
        case let .updateScript(name, script, reset):
            guard var record = try loadProjection(name, in: txn) else { throw StorageError.projectionNotFound(name: name) }
            record.script = script
            record.updatedAt = commitTime
            if reset {
                try clearProjectionData(name, in: txn)
                record.generation += 1
                if record.state == .faulted { record.state = .running }
                record.fault = nil
                record.faultPosition = nil
            }
            try storeProjection(record, in: txn)
            return record
        case .reset(let name):
            guard var record = try loadProjection(name, in: txn) else { throw StorageError.projectionNotFound(name: name) }
            try clearProjectionData(name, in: txn)
            record.generation += 1
            if record.state == .faulted { record.state = .running }
            record.fault = nil
            record.faultPosition = nil
            record.updatedAt = commitTime
            try storeProjection(record, in: txn)
            return record
        case let .setState(name, state, fault, faultPosition, generation):
            guard var record = try loadProjection(name, in: txn) else { throw StorageError.projectionNotFound(name: name) }
            if let generation, generation != record.generation {
                throw StorageError.projectionConflict(name: name, reason: "it was reset meanwhile")
            }
            record.state = state
            record.fault = state == .faulted ? fault : nil
            record.faultPosition = state == .faulted ? faultPosition : nil
            record.updatedAt = commitTime
            try storeProjection(record, in: txn)
            return record
        case .delete(let name):
            guard try loadProjection(name, in: txn) != nil else { throw StorageError.projectionNotFound(name: name) }
            try clearProjectionData(name, in: txn)
            _ = try Array(name.utf8).withUnsafeBytes { try txn.delete(dbs.projections, key: $0) }
            return nil
        }
    }

    /// Writes emitted events, states, the checkpoint and a snapshot, after
    /// checking that the commit continues the stored checkpoint. Nothing is
    /// written when a check fails.
    mutating func commitProjection(_ commit: ProjectionCommit, in txn: borrowing WriteTransaction) throws {
        guard let record = try loadProjection(commit.name, in: txn) else {
            throw StorageError.projectionNotFound(name: commit.name)
        }
        guard record.generation == commit.generation else {
            throw StorageError.projectionConflict(name: commit.name, reason: "it was reset or updated meanwhile")
        }
        let nameKey = Array(commit.name.utf8)
        let stored = try nameKey.withUnsafeBytes { key in
            try txn.borrowValue(dbs.projectionCheckpoints, key: key).flatMap { ProjectionCheckpoint($0) }
        }
        let storedPosition = stored.flatMap { $0.generation == commit.generation ? $0.position : nil } ?? 0
        guard storedPosition == commit.expectedPosition else {
            throw StorageError.projectionConflict(
                name: commit.name,
                reason: "its checkpoint is at \(storedPosition), this commit continues from \(commit.expectedPosition)")
        }
        // The appends check everything before writing; past this point only
        // LMDB errors can fail, and they abort the whole transaction.
        do {
            for write in commit.emitted { _ = try appendForProjection([write], in: txn) }
        } catch let error as StorageError where !commit.emitted.isEmpty {
            // A later write failing after an earlier one was applied must not
            // commit half of them: abort the whole transaction instead.
            throw ProjectionAppendAborted(error: error)
        }
        for (partition, json) in commit.states {
            try ProjectionKeys.key(commit.name, partition.utf8).withUnsafeBytes { key in
                try json.withUnsafeBytes { try txn.put(dbs.projectionStates, key: key, value: $0) }
            }
        }
        var checkpoint = commit.checkpoint
        checkpoint.generation = commit.generation
        checkpoint.committedAt = commitTime
        try nameKey.withUnsafeBytes { key in
            try checkpoint.encoded.withUnsafeBytes { try txn.put(dbs.projectionCheckpoints, key: key, value: $0) }
        }
        if let snapshot = commit.snapshot {
            try ProjectionKeys.snapshotKey(commit.name, checkpoint.position).withUnsafeBytes { key in
                try snapshot.withUnsafeBytes { try txn.put(dbs.projectionSnapshots, key: key, value: $0) }
            }
            try pruneSnapshots(commit.name, keep: max(1, commit.keepSnapshots), in: txn)
        }
    }

    private func loadProjection(_ name: String, in txn: borrowing WriteTransaction) throws -> ProjectionRecord? {
        try Array(name.utf8).withUnsafeBytes { key in
            try txn.borrowValue(dbs.projections, key: key).map { bytes in
                do {
                    return try JSONDecoder().decode(ProjectionRecord.self, from: Data(bytes))
                } catch {
                    throw StorageError.corrupt(path: "projections", detail: "record of '\(name)' does not decode: \(error)")
                }
            }
        }
    }

    private func storeProjection(_ record: ProjectionRecord, in txn: borrowing WriteTransaction) throws {
        let value = try JSONEncoder().encode(record)
        try Array(record.name.utf8).withUnsafeBytes { key in
            try value.withUnsafeBytes { try txn.put(dbs.projections, key: key, value: $0) }
        }
    }

    /// Deletes a projection's states, checkpoint and snapshots.
    private func clearProjectionData(_ name: String, in txn: borrowing WriteTransaction) throws {
        let prefix = ProjectionKeys.prefix(name)
        for db in [dbs.projectionStates, dbs.projectionSnapshots] {
            var keys: [[UInt8]] = []
            try txn.withCursor(db) { cursor in
                var entry = try prefix.withUnsafeBytes { try cursor.seek(atOrAfter: $0) }
                while let current = entry, current.key.starts(with: prefix) {
                    keys.append([UInt8](current.key))
                    entry = try cursor.next()
                }
            }
            for key in keys { _ = try key.withUnsafeBytes { try txn.delete(db, key: $0) } }
        }
        _ = try Array(name.utf8).withUnsafeBytes { try txn.delete(dbs.projectionCheckpoints, key: $0) }
    }

    private func pruneSnapshots(_ name: String, keep: Int, in txn: borrowing WriteTransaction) throws {
        let prefix = ProjectionKeys.prefix(name)
        var keys: [[UInt8]] = []
        try txn.withCursor(dbs.projectionSnapshots) { cursor in
            var entry = try prefix.withUnsafeBytes { try cursor.seek(atOrAfter: $0) }
            while let current = entry, current.key.starts(with: prefix) {
                keys.append([UInt8](current.key))
                entry = try cursor.next()
            }
        }
        for key in keys.dropLast(keep) { _ = try key.withUnsafeBytes { try txn.delete(dbs.projectionSnapshots, key: $0) } }
    }
}
