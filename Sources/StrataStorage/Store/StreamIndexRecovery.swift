import StrataLMDB

/// Brings `stream-index` up to the log when a tenant opens.
///
/// The writer keeps the newest index entries in memory (`StreamIndexTail`)
/// and writes them in bulk, so after a crash the stored index can end before
/// the log. Every log record carries its stream's name and revision, so the
/// missing entries are rebuilt from the log records after the watermark, in
/// one write transaction, before the tenant serves anything.
enum StreamIndexRecovery {
    /// Returns the watermark, which equals the log's last position afterwards.
    static func recover(env: Environment, dbs: TenantDatabases, path: String) throws -> UInt64 {
        try env.write { txn in
            let head = try txn.withCursor(dbs.log) { try $0.last().map { Keys.decodeIntegerKey($0.key) } } ?? 0
            // No watermark: a new tenant (the key is written at the first open).
            let stored = try dbs.indexWatermark(in: txn)
            let watermark = stored ?? head
            if watermark < head {
                try rebuild(after: watermark, in: txn, dbs: dbs, path: path)
            }
            if stored != head {
                try dbs.setIndexWatermark(head, in: txn)
            }
            return head
        }
    }

    private static func rebuild(after watermark: UInt64, in txn: borrowing WriteTransaction,
                                dbs: TenantDatabases, path: String) throws {
        var entries: [(stream: UInt64, revision: UInt64, position: UInt64)] = []
        var numbers: [String: UInt64] = [:]
        try txn.withCursor(dbs.log) { cursor in
            var entry = try Keys.withPosition(watermark + 1) { try cursor.seek(atOrAfter: $0) }
            while let current = entry {
                let position = Keys.decodeIntegerKey(current.key)
                guard EventRecord.isValid(current.value) else {
                    throw StorageError.corrupt(path: path, detail: "event at position \(position) does not decode")
                }
                let name = String(decoding: EventRecord.streamName(current.value), as: UTF8.self)
                let number: UInt64
                if let known = numbers[name] {
                    number = known
                } else {
                    guard let record = try dbs.loadStoredStream(name, in: txn, path: path) else {
                        throw StorageError.corrupt(path: path, detail: "event at position \(position) names stream '\(name)', which has no record")
                    }
                    number = record.number
                    numbers[name] = number
                }
                entries.append((number, EventRecord.revision(current.value), position))
                entry = try cursor.next()
            }
        }
        // In key order, so the B-tree is walked once; a stream's entries are
        // consecutive revisions from where its stored chunks end.
        entries.sort { ($0.stream, $0.revision) < ($1.stream, $1.revision) }
        var runs: [StreamIndexTail.FlushRun] = []
        var index = 0
        while index < entries.count {
            var end = index + 1
            while end < entries.count && entries[end].stream == entries[index].stream { end += 1 }
            runs.append(StreamIndexTail.FlushRun(stream: entries[index].stream, firstRevision: entries[index].revision,
                                                 positions: ArraySlice(entries[index..<end].map(\.position))))
            index = end
        }
        try dbs.storeIndexRuns(runs, in: txn, path: path)
    }
}
