/// Key encodings. Single-number keys (the log's positions, the time index's
/// times) are native 64-bit integers in databases opened with
/// `MDB_INTEGERKEY`, which LMDB compares as integers (cheaper than `memcmp`).
/// Composite keys are big-endian so LMDB's byte-wise ordering is numeric
/// ordering. Values are little-endian because they are never compared.
enum Keys {
    /// The log key of a global position (`MDB_INTEGERKEY`).
    @inline(__always)
    static func withPosition<R>(_ position: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: position, body)
    }

    /// Decodes an `MDB_INTEGERKEY` key.
    @inline(__always)
    static func decodeIntegerKey(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
        buffer.loadUnaligned(as: UInt64.self)
    }

    /// The stream-index key: (stream number, revision).
    @inline(__always)
    static func withStreamRevision<R>(_ stream: UInt64, _ revision: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: (stream.bigEndian, revision.bigEndian), body)
    }

    /// The time-index key: a commit time in nanoseconds since the epoch (`MDB_INTEGERKEY`).
    @inline(__always)
    static func withTime<R>(_ nanoseconds: Int64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        // Times before 1970 are clamped to 0 so the unsigned ordering holds.
        try withUnsafeBytes(of: UInt64(max(0, nanoseconds)), body)
    }

    @inline(__always)
    static func decodeUInt64BE(_ buffer: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
        UInt64(bigEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    static func decodeUInt64LE(_ buffer: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Position values in the indexes are stored little-endian.
    @inline(__always)
    static func withPositionValue<R>(_ position: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: position.littleEndian, body)
    }
}
