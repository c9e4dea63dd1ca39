import CLMDB
import Glibc

/// A failed LMDB call: the named result code, LMDB's own message for it, and
/// the operation that failed, so a log line says what and where.
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An LMDB or errno result code. Compare against the named constants
    /// (`.mapFull`, `.keyExists`, …); `rawValue` is the C value.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// The environment's map is full (`MDB_MAP_FULL`): a per-tenant quota.
        public static let mapFull = Code(rawValue: MDB_MAP_FULL)
        /// The transaction has too many dirty pages (`MDB_TXN_FULL`).
        public static let transactionFull = Code(rawValue: MDB_TXN_FULL)
        /// The key is already there (`MDB_KEYEXIST`, a put with no-overwrite or append).
        public static let keyExists = Code(rawValue: MDB_KEYEXIST)
        /// The key is not there (`MDB_NOTFOUND`); the wrapper answers nil instead.
        public static let notFound = Code(rawValue: MDB_NOTFOUND)
        /// A key or value of a size LMDB does not take (`MDB_BAD_VALSIZE`).
        public static let badValueSize = Code(rawValue: MDB_BAD_VALSIZE)
        /// The transaction failed earlier and must be aborted (`MDB_BAD_TXN`).
        public static let badTransaction = Code(rawValue: MDB_BAD_TXN)
        /// Pages that do not hold together (`MDB_CORRUPTED`).
        public static let corrupted = Code(rawValue: MDB_CORRUPTED)
        /// The file is not an LMDB environment (`MDB_INVALID`).
        public static let invalid = Code(rawValue: MDB_INVALID)
        /// A page the tree points to is missing (`MDB_PAGE_NOTFOUND`).
        public static let pageNotFound = Code(rawValue: MDB_PAGE_NOTFOUND)
        /// Every reader slot is taken (`MDB_READERS_FULL`).
        public static let readersFull = Code(rawValue: MDB_READERS_FULL)
        /// Another process grew the map (`MDB_MAP_RESIZED`).
        public static let mapResized = Code(rawValue: MDB_MAP_RESIZED)
        /// The environment's version does not match the library's (`MDB_VERSION_MISMATCH`).
        public static let versionMismatch = Code(rawValue: MDB_VERSION_MISMATCH)
        /// A call LMDB refused as invalid (`EINVAL`), e.g. a null handle.
        public static let invalidArgument = Code(rawValue: EINVAL)
        /// No such file or directory (`ENOENT`).
        public static let noSuchFile = Code(rawValue: ENOENT)
        /// An input/output error from the file system (`EIO`).
        public static let ioError = Code(rawValue: EIO)
        /// The disk is full (`ENOSPC`).
        public static let noSpace = Code(rawValue: ENOSPC)
        /// The owner's disk quota is used up (`EDQUOT`).
        public static let diskQuotaExceeded = Code(rawValue: EDQUOT)
        /// Out of memory (`ENOMEM`).
        public static let outOfMemory = Code(rawValue: ENOMEM)

        /// LMDB's text for the code (it also covers plain errno values).
        public var description: String { String(cString: mdb_strerror(rawValue)) }
    }

    public let code: Code
    /// What was being attempted, for example `"mdb_put(log)"`.
    public let operation: String

    public init(_ code: Code, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// An errno value from a system call made on LMDB's behalf.
    public init(errno: Int32, operation: String) {
        self.init(Code(rawValue: errno), operation: operation)
    }

    /// LMDB's text for the code.
    public var message: String { code.description }

    /// The environment's map is full: a per-tenant quota, never a crash.
    public var isMapFull: Bool { code == .mapFull }
    /// The file is not a valid LMDB environment, or its pages do not hold
    /// together: nothing to retry, data to restore.
    public var isCorruption: Bool {
        code == .corrupted || code == .invalid || code == .pageNotFound
    }

    public var description: String { "\(operation): \(message) (code \(code.rawValue))" }
}

/// Turns an LMDB result code into a thrown `LMDBError`.
@inline(__always)
func lmdbCheck(_ code: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if code != MDB_SUCCESS {
        throw LMDBError(LMDBError.Code(rawValue: code), operation: operation())
    }
}
