import CLMDB

/// A failed LMDB call: the C result code, LMDB's own message for it, and the
/// operation that failed, so a log line says what and where.
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The LMDB or errno result code (`MDB_MAP_FULL`, `ENOENT`, …).
    public let code: Int32
    /// What was being attempted, for example `"mdb_put(log)"`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// LMDB's text for the code (it also covers plain errno values).
    public var message: String { String(cString: mdb_strerror(code)) }

    /// The environment's map is full: a per-tenant quota, never a crash.
    public var isMapFull: Bool { code == MDB_MAP_FULL }
    /// The file is not a valid LMDB environment, or its pages do not hold
    /// together: nothing to retry, data to restore.
    public var isCorruption: Bool {
        code == MDB_CORRUPTED || code == MDB_INVALID || code == MDB_PAGE_NOTFOUND
    }

    public var description: String { "\(operation): \(message) (code \(code))" }
}

/// Turns an LMDB result code into a thrown `LMDBError`.
@inline(__always)
func lmdbCheck(_ code: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if code != MDB_SUCCESS {
        throw LMDBError(code: code, operation: operation())
    }
}
