import CLMDB

/// Flags for opening a named database.
public struct DatabaseFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let create = DatabaseFlags(rawValue: UInt32(MDB_CREATE))
    /// Keys are native unsigned integers (here always 64-bit), compared as numbers.
    public static let integerKey = DatabaseFlags(rawValue: UInt32(MDB_INTEGERKEY))
}

/// Flags for a put.
public struct PutFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Fail with `MDB_KEYEXIST` instead of overwriting.
    public static let noOverwrite = PutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    /// The key sorts after every existing key: LMDB skips the search and fills
    /// pages completely. Fails with `MDB_KEYEXIST` when the key does not.
    public static let append = PutFlags(rawValue: UInt32(MDB_APPEND))
}

/// A named database inside an environment: a handle valid while the
/// environment is open, freely shared between threads.
public struct Database: Sendable, Hashable {
    let dbi: MDB_dbi
    public let name: String
}

/// A key/value pair borrowed from the memory map. Both views are valid only
/// until the transaction ends or its next write; copy what you keep.
public struct BorrowedEntry {
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
}

extension MDB_val {
    @inline(__always)
    init(_ buffer: UnsafeRawBufferPointer) {
        self.init(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
    }

    @inline(__always)
    var buffer: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mv_data, count: mv_size)
    }
}
