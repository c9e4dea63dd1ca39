import CLMDB

/// A position in a database, valid only inside the closure that received it.
/// Every entry it returns is borrowed from the map (see `BorrowedEntry`).
public struct Cursor: ~Copyable {
    let handle: OpaquePointer
    let database: Database

    @inline(__always)
    private func move(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws(LMDBError) -> BorrowedEntry? {
        var k = key.map { MDB_val($0) } ?? MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_cursor_get(\(database.name))")
        return BorrowedEntry(key: k.buffer, value: v.buffer)
    }

    @available(*, noasync) public func first() throws(LMDBError) -> BorrowedEntry? { try move(MDB_FIRST) }
    @available(*, noasync) public func last() throws(LMDBError) -> BorrowedEntry? { try move(MDB_LAST) }
    @available(*, noasync) public func next() throws(LMDBError) -> BorrowedEntry? { try move(MDB_NEXT) }
    @available(*, noasync) public func previous() throws(LMDBError) -> BorrowedEntry? { try move(MDB_PREV) }

    /// The first entry whose key is ≥ `key`.
    @available(*, noasync)
    public func seek(atOrAfter key: UnsafeRawBufferPointer) throws(LMDBError) -> BorrowedEntry? {
        try move(MDB_SET_RANGE, key: key)
    }

    /// The last entry whose key is ≤ `key`.
    @available(*, noasync)
    public func seek(atOrBefore key: UnsafeRawBufferPointer) throws(LMDBError) -> BorrowedEntry? {
        if let entry = try seek(atOrAfter: key) {
            if entry.key.elementsEqual(key) { return entry }
            return try previous()
        }
        return try last()
    }
}
