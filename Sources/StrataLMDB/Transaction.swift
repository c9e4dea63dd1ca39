import CLMDB

/// A running transaction, as the operations shared by read and write
/// transactions see it: opaque outside this module.
public struct TransactionHandle {
    let pointer: OpaquePointer
}

/// What read and write transactions both do: look up, iterate and count.
/// One implementation serves both (the extension below).
public protocol TransactionReads: ~Copyable {
    var handle: TransactionHandle { get }
}

extension TransactionReads where Self: ~Copyable {
    /// The value stored under `key`, borrowed from the map: valid only inside
    /// this transaction (and, in a write transaction, until its next write).
    @available(*, noasync)
    public func borrowValue(_ db: Database, key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        var k = MDB_val(key)
        var v = MDB_val()
        let rc = mdb_get(handle.pointer, db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_get(\(db.name))")
        return v.buffer
    }

    /// Runs `body` with a cursor over `db`; the cursor closes when it returns.
    @available(*, noasync)
    public func withCursor<R>(_ db: Database, _ body: (inout Cursor) throws -> R) throws -> R {
        var cursor: OpaquePointer?
        try lmdbCheck(mdb_cursor_open(handle.pointer, db.dbi, &cursor), "mdb_cursor_open(\(db.name))")
        guard let cursor else { throw LMDBError(.invalidArgument, operation: "mdb_cursor_open(\(db.name))") }
        defer { mdb_cursor_close(cursor) }
        var wrapped = Cursor(handle: cursor, database: db)
        return try body(&wrapped)
    }

    /// Entry count and tree shape of `db`.
    public func statistics(_ db: Database) throws(LMDBError) -> DatabaseStatistics {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle.pointer, db.dbi, &stat), "mdb_stat(\(db.name))")
        return DatabaseStatistics(stat)
    }
}

/// What `mdb_stat` tells of a database, in Swift's types.
public struct DatabaseStatistics: Sendable, Equatable {
    public let entries: Int
    public let depth: Int
    public let branchPages: Int
    public let leafPages: Int
    public let overflowPages: Int
    public let pageSize: Int

    init(_ stat: MDB_stat) {
        entries = stat.ms_entries
        depth = Int(stat.ms_depth)
        branchPages = stat.ms_branch_pages
        leafPages = stat.ms_leaf_pages
        overflowPages = stat.ms_overflow_pages
        pageSize = Int(stat.ms_psize)
    }
}

/// A read-only transaction: a consistent snapshot of the environment that
/// never blocks the writer. Exists only inside `Environment.read`.
public struct ReadTransaction: TransactionReads, ~Copyable {
    public let handle: TransactionHandle
}

/// The one write transaction of an environment. Exists only inside
/// `Environment.write`, which commits or aborts it.
public struct WriteTransaction: TransactionReads, ~Copyable {
    public let handle: TransactionHandle

    /// Stores `value` under `key`.
    @available(*, noasync)
    public func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws(LMDBError) {
        var k = MDB_val(key)
        var v = MDB_val(value)
        try lmdbCheck(mdb_put(handle.pointer, db.dbi, &k, &v, flags.rawValue), "mdb_put(\(db.name))")
    }

    /// Reserves `count` bytes under `key` and lets `fill` write them straight
    /// into the map (`MDB_RESERVE`), saving a copy for large values.
    @available(*, noasync)
    public func put(_ db: Database, key: UnsafeRawBufferPointer, reserving count: Int, flags: PutFlags = [],
                    fill: (UnsafeMutableRawBufferPointer) -> Void) throws(LMDBError) {
        var k = MDB_val(key)
        var v = MDB_val(mv_size: count, mv_data: nil)
        try lmdbCheck(mdb_put(handle.pointer, db.dbi, &k, &v, flags.rawValue | UInt32(MDB_RESERVE)), "mdb_put(\(db.name))")
        fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    /// Deletes `key`; returns false when it was not there.
    @available(*, noasync)
    @discardableResult
    public func delete(_ db: Database, key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        var k = MDB_val(key)
        let rc = mdb_del(handle.pointer, db.dbi, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try lmdbCheck(rc, "mdb_del(\(db.name))")
        return true
    }

    /// Opens or creates a named database inside this transaction.
    public func openDatabase(_ name: String, flags: DatabaseFlags = []) throws(LMDBError) -> Database {
        var dbi: MDB_dbi = 0
        try lmdbCheck(mdb_dbi_open(handle.pointer, name, flags.rawValue, &dbi), "mdb_dbi_open(\(name))")
        return Database(dbi: dbi, name: name)
    }
}
