import Foundation
import StrataLMDB

/// One inconsistency `verify` found.
public struct VerifyIssue: Sendable, Equatable, CustomStringConvertible {
    /// A stable code: `log_gap`, `undecodable_event`, `time_backwards`,
    /// `stream_missing`, `revision_gap`, `unindexed_event`, `index_mismatch`,
    /// `index_orphan`, `index_beyond_head`, `index_revision_gap`,
    /// `positions_not_monotonic`, `event_id_missing`, `event_id_mismatch`,
    /// `event_id_orphan`, `time_index_mismatch`, `checkpoint_beyond_head`,
    /// `snapshot_beyond_stream`.
    public var kind: String
    /// The log position concerned, 0 when none.
    public var position: UInt64
    /// The stream concerned, empty when none.
    public var stream: String
    public var detail: String

    public var description: String {
        var out = kind
        if position > 0 { out += " at position \(position)" }
        if !stream.isEmpty { out += " (stream '\(stream)')" }
        return out + ": " + detail
    }
}

/// What `verify` checked and found.
public struct VerifyReport: Sendable, Equatable {
    public var eventsChecked: UInt64 = 0
    public var streamsChecked: UInt64 = 0
    public var indexEntriesChecked: UInt64 = 0
    public var headPosition: UInt64 = 0
    /// The first `maxIssues` issues found.
    public var issues: [VerifyIssue] = []
    /// How many issues there were in all (more than `issues.count` when cut).
    public var issueCount: UInt64 = 0
    public var isConsistent: Bool { issueCount == 0 }
}

extension EventStore {
    /// Walks every index of the tenant in one read transaction (one
    /// consistent snapshot; appends go on meanwhile) and reports each
    /// inconsistency: the log against the stream index, the event-id index
    /// and the time index, each of those back against the log, and
    /// projection checkpoints and snapshots against the head.
    public func verify(maxIssues: Int = 1000, progress: ProgressHandler) throws(StorageError) -> VerifyReport {
        try withRead { txn in
            var verifier = Verifier(maxIssues: maxIssues)
            try verifier.run(self, txn, progress: progress)
            return verifier.report
        }
    }
}

private struct Verifier {
    let maxIssues: Int
    var report = VerifyReport()

    init(maxIssues: Int) { self.maxIssues = maxIssues }

    mutating func issue(_ kind: String, position: UInt64 = 0, stream: String = "", _ detail: String) {
        report.issueCount += 1
        if report.issues.count < maxIssues {
            report.issues.append(VerifyIssue(kind: kind, position: position, stream: stream, detail: detail))
        }
    }

    mutating func run(_ store: EventStore, _ txn: borrowing ReadTransaction, progress: ProgressHandler) throws {
        let dbs = store.dbs
        let view = try store.indexView(in: txn)
        let head = view.head
        report.headPosition = head
        let total = head
        func tick(_ phase: String, _ done: UInt64, _ total: UInt64, _ unit: String) throws {
            // A StorageError passes through `withRead` unchanged.
            if !progress(OperationProgress(phase: phase, done: done, total: total, unit: unit)) {
                throw StorageError.fileOperation(path: store.tenant, reason: "verify cancelled")
            }
        }

        // Streams: name ↔ number.
        var numberOf: [String: UInt64] = [:]
        var nameOf: [UInt64: String] = [:]
        try txn.withCursor(dbs.streams) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let name = String(decoding: current.key, as: UTF8.self)
                if let record = StreamRecord(decoding: current.value) {
                    numberOf[name] = record.number
                    nameOf[record.number] = name
                } else {
                    issue("stream_missing", stream: name, "the stream record does not decode")
                }
                entry = try cursor.next()
            }
        }
        report.streamsChecked = UInt64(numberOf.count)

        // 1. The log, in position order, against every index.
        var expectedPosition: UInt64 = 1
        var lastTime = Int64.min
        var nextRevision: [UInt64: UInt64] = [:]
        try txn.withCursor(dbs.log) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let position = Keys.decodeIntegerKey(current.key)
                if position != expectedPosition {
                    issue("log_gap", position: position, position > expectedPosition
                          ? "positions \(expectedPosition)…\(position - 1) are missing from the log"
                          : "position \(position) follows \(expectedPosition - 1)")
                }
                expectedPosition = position + 1
                report.eventsChecked += 1
                if report.eventsChecked % 10_000 == 0 { try tick("checking the log", position, total, "events") }
                let record = current.value
                guard EventRecord.isValid(record) else {
                    issue("undecodable_event", position: position, "the stored record is not a valid event")
                    entry = try cursor.next()
                    continue
                }
                let time = EventRecord.recordedAt(record)
                if time < lastTime {
                    issue("time_backwards", position: position, "recorded at \(time) ns, before the previous event (\(lastTime) ns)")
                }
                lastTime = max(lastTime, time)
                let id = UUID(uuid: record.loadUnaligned(fromByteOffset: 16, as: uuid_t.self))
                if let indexed = try dbs.position(ofEventID: id, in: txn) {
                    if indexed != position {
                        issue("event_id_mismatch", position: position, "the event-id index maps \(id) to position \(indexed)")
                    }
                } else {
                    issue("event_id_missing", position: position, "event id \(id) is not in the event-id index")
                }
                let stream = String(decoding: EventRecord.streamName(record), as: UTF8.self)
                let revision = EventRecord.revision(record)
                guard let number = numberOf[stream] else {
                    issue("stream_missing", position: position, stream: stream, "the log names a stream with no stream record")
                    entry = try cursor.next()
                    continue
                }
                let expected = nextRevision[number] ?? 0
                if revision != expected {
                    issue("revision_gap", position: position, stream: stream, "revision \(revision) where \(expected) was next")
                }
                nextRevision[number] = revision + 1
                if let indexed = try store.position(ofStream: number, revision: revision, in: txn, view: view) {
                    if indexed != position {
                        issue("index_mismatch", position: position, stream: stream,
                              "the stream index maps revision \(revision) to position \(indexed)")
                    }
                } else {
                    issue("unindexed_event", position: position, stream: stream, "revision \(revision) is not in the stream index")
                }
                entry = try cursor.next()
            }
        }

        // 2. The stored stream index, back against the log.
        var lastChunk: (stream: UInt64, nextRevision: UInt64, lastPosition: UInt64)?
        try txn.withCursor(dbs.streamIndex) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let number = Keys.decodeUInt64BE(current.key, at: 0)
                let first = Keys.decodeUInt64BE(current.key, at: 8)
                let name = nameOf[number] ?? ""
                if nameOf[number] == nil {
                    issue("index_orphan", "stream-index entries for stream number \(number), which has no stream record")
                }
                var lastPosition: UInt64 = 0
                if let previous = lastChunk, previous.stream == number {
                    if first != previous.nextRevision {
                        issue("index_revision_gap", stream: name, "the chunk at revision \(first) follows one ending before \(previous.nextRevision)")
                    }
                    lastPosition = previous.lastPosition
                } else if first != 0 {
                    issue("index_revision_gap", stream: name, "the stream's index starts at revision \(first), not 0")
                }
                let count = current.value.count / 8
                for offset in 0..<count {
                    let position = Keys.decodeUInt64LE(current.value, at: offset * 8)
                    let revision = first + UInt64(offset)
                    report.indexEntriesChecked += 1
                    if position <= lastPosition {
                        issue("positions_not_monotonic", position: position, stream: name,
                              "revision \(revision) is at position \(position), not after \(lastPosition)")
                    }
                    lastPosition = position
                    if position > head {
                        issue("index_beyond_head", position: position, stream: name, "revision \(revision) points past the head (\(head))")
                        continue
                    }
                    let record = try Keys.withPosition(position) { try txn.borrowValue(dbs.log, key: $0) }
                    guard let record, EventRecord.isValid(record) else {
                        issue("index_mismatch", position: position, stream: name, "revision \(revision) points at no valid event")
                        continue
                    }
                    let logStream = String(decoding: EventRecord.streamName(record), as: UTF8.self)
                    if logStream != name || EventRecord.revision(record) != revision {
                        issue("index_mismatch", position: position, stream: name,
                              "revision \(revision) points at revision \(EventRecord.revision(record)) of '\(logStream)'")
                    }
                }
                lastChunk = (number, first + UInt64(count), lastPosition)
                entry = try cursor.next()
            }
        }
        try tick("checking the stream index", head, total, "events")

        // 3. The event-id index, back against the log.
        try txn.withCursor(dbs.eventIDs) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let position = Keys.decodeUInt64LE(current.value)
                let id = UUID(uuid: current.key.loadUnaligned(as: uuid_t.self))
                let record = try Keys.withPosition(position) { try txn.borrowValue(dbs.log, key: $0) }
                if let record, EventRecord.isValid(record) {
                    let stored = UUID(uuid: record.loadUnaligned(fromByteOffset: 16, as: uuid_t.self))
                    if stored != id {
                        issue("event_id_orphan", position: position, "the event-id index maps \(id) here, but the event's id is \(stored)")
                    }
                } else {
                    issue("event_id_orphan", position: position, "the event-id index maps \(id) to a position with no event")
                }
                entry = try cursor.next()
            }
        }

        // 4. The time index.
        try txn.withCursor(dbs.timeIndex) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let time = Int64(bitPattern: Keys.decodeIntegerKey(current.key))
                let position = Keys.decodeUInt64LE(current.value)
                let record = try Keys.withPosition(position) { try txn.borrowValue(dbs.log, key: $0) }
                if let record, EventRecord.isValid(record) {
                    if EventRecord.recordedAt(record) != time {
                        issue("time_index_mismatch", position: position, "indexed at \(time) ns, recorded at \(EventRecord.recordedAt(record)) ns")
                    }
                } else {
                    issue("time_index_mismatch", position: position, "the time index entry \(time) ns points at no event")
                }
                entry = try cursor.next()
            }
        }

        // 5. Projection checkpoints and stream snapshots against the head.
        try txn.withCursor(dbs.projectionCheckpoints) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let name = String(decoding: current.key, as: UTF8.self)
                if let checkpoint = ProjectionCheckpoint(current.value) {
                    if checkpoint.position > head {
                        issue("checkpoint_beyond_head", position: checkpoint.position,
                              "projection '\(name)' is checkpointed at \(checkpoint.position), past the head (\(head))")
                    }
                } else {
                    issue("checkpoint_beyond_head", "the checkpoint of projection '\(name)' does not decode")
                }
                entry = try cursor.next()
            }
        }
        try txn.withCursor(dbs.snapshots) { cursor in
            var entry = try cursor.first()
            while let current = entry {
                let number = Keys.decodeUInt64BE(current.key, at: 0)
                let revision = Keys.decodeUInt64BE(current.key, at: 8)
                let next = nextRevision[number] ?? 0
                if revision >= next {
                    issue("snapshot_beyond_stream", stream: nameOf[number] ?? "#\(number)",
                          "a snapshot at revision \(revision), but the stream ends before \(next)")
                }
                entry = try cursor.next()
            }
        }
        try tick("done", head, total, "events")
    }
}
