import CLMDB
import Foundation

/// Operations shared by read and write transactions. Internal: callers reach
/// them through `ReadTransaction` and `WriteTransaction`.
@inline(__always)
func lmdbGet(_ txn: OpaquePointer, _ db: Database, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
    var k = MDB_val(key)
    var v = MDB_val()
    let rc = mdb_get(txn, db.dbi, &k, &v)
    if rc == MDB_NOTFOUND { return nil }
    try lmdbCheck(rc, "mdb_get(\(db.name))")
    return v.buffer
}

@inline(__always)
func lmdbWithCursor<R>(_ txn: OpaquePointer, _ db: Database, _ body: (inout Cursor) throws -> R) throws -> R {
    var handle: OpaquePointer?
    try lmdbCheck(mdb_cursor_open(txn, db.dbi, &handle), "mdb_cursor_open(\(db.name))")
    guard let handle else { throw LMDBError(code: EINVAL, operation: "mdb_cursor_open(\(db.name))") }
    defer { mdb_cursor_close(handle) }
    var cursor = Cursor(handle: handle, database: db)
    return try body(&cursor)
}

/// A read-only transaction: a consistent snapshot of the environment that
/// never blocks the writer. Exists only inside `Environment.read`.
public struct ReadTransaction: ~Copyable {
    let handle: OpaquePointer

    /// The value stored under `key`, borrowed from the map: valid only inside
    /// this transaction.
    @available(*, noasync)
    public func borrowValue(_ db: Database, key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        try lmdbGet(handle, db, key)
    }

    /// Runs `body` with a cursor over `db`; the cursor closes when it returns.
    @available(*, noasync)
    public func withCursor<R>(_ db: Database, _ body: (inout Cursor) throws -> R) throws -> R {
        try lmdbWithCursor(handle, db, body)
    }

    /// Entry count and depth of `db`.
    public func statistics(_ db: Database) throws(LMDBError) -> MDB_stat {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle, db.dbi, &stat), "mdb_stat(\(db.name))")
        return stat
    }
}

/// The one write transaction of an environment. Exists only inside
/// `Environment.write`, which commits or aborts it.
public struct WriteTransaction: ~Copyable {
    let handle: OpaquePointer

    @available(*, noasync)
    public func borrowValue(_ db: Database, key: UnsafeRawBufferPointer) throws(LMDBError) -> UnsafeRawBufferPointer? {
        try lmdbGet(handle, db, key)
    }

    @available(*, noasync)
    public func withCursor<R>(_ db: Database, _ body: (inout Cursor) throws -> R) throws -> R {
        try lmdbWithCursor(handle, db, body)
    }

    /// Stores `value` under `key`.
    @available(*, noasync)
    public func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws(LMDBError) {
        var k = MDB_val(key)
        var v = MDB_val(value)
        try lmdbCheck(mdb_put(handle, db.dbi, &k, &v, flags.rawValue), "mdb_put(\(db.name))")
    }

    /// Reserves `count` bytes under `key` and lets `fill` write them straight
    /// into the map (`MDB_RESERVE`), saving a copy for large values.
    @available(*, noasync)
    public func put(_ db: Database, key: UnsafeRawBufferPointer, reserving count: Int, flags: PutFlags = [],
                    fill: (UnsafeMutableRawBufferPointer) -> Void) throws(LMDBError) {
        var k = MDB_val(key)
        var v = MDB_val(mv_size: count, mv_data: nil)
        try lmdbCheck(mdb_put(handle, db.dbi, &k, &v, flags.rawValue | UInt32(MDB_RESERVE)), "mdb_put(\(db.name))")
        fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    /// Deletes `key`; returns false when it was not there.
    @available(*, noasync)
    @discardableResult
    public func delete(_ db: Database, key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        var k = MDB_val(key)
        let rc = mdb_del(handle, db.dbi, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try lmdbCheck(rc, "mdb_del(\(db.name))")
        return true
    }

    /// Removes every entry of `db` (the database itself stays).
    @available(*, noasync)
    public func clear(_ db: Database) throws(LMDBError) {
        try lmdbCheck(mdb_drop(handle, db.dbi, 0), "mdb_drop(\(db.name))")
    }

    /// Opens or creates a named database inside this transaction.
    public func openDatabase(_ name: String, flags: DatabaseFlags = []) throws(LMDBError) -> Database {
        var dbi: MDB_dbi = 0
        try lmdbCheck(mdb_dbi_open(handle, name, flags.rawValue, &dbi), "mdb_dbi_open(\(name))")
        return Database(dbi: dbi, name: name)
    }

    public func statistics(_ db: Database) throws(LMDBError) -> MDB_stat {
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(handle, db.dbi, &stat), "mdb_stat(\(db.name))")
        return stat
    }
}
