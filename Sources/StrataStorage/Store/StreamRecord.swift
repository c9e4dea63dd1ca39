/// The state of one stream, stored in the `streams` database under its name.
///
/// Layout (format 1, little-endian, 56 bytes):
///
///     0 u8 format   1 u8 flags (bit 0: deleted)   2..7 reserved
///     8 u64 stream number
///    16 u64 next revision (events ever appended)
///    24 u64 first visible revision (reads start here after a re-creation)
///    32 i64 created at   40 i64 last recorded at   48 i64 deleted at (0: never)
struct StreamRecord: Equatable {
    static let format: UInt8 = 1
    static let size = 56

    var number: UInt64
    var nextRevision: UInt64
    var firstVisibleRevision: UInt64
    var isDeleted: Bool
    var createdAt: Int64
    var lastRecordedAt: Int64
    var deletedAt: Int64

    /// What an expectation is checked against.
    var actual: ActualRevision {
        if nextRevision == 0 { return .noStream }
        if isDeleted { return .deleted(lastRevision: nextRevision - 1) }
        return .revision(nextRevision - 1)
    }

    init(number: UInt64, createdAt: Int64) {
        self.number = number
        self.nextRevision = 0
        self.firstVisibleRevision = 0
        self.isDeleted = false
        self.createdAt = createdAt
        self.lastRecordedAt = createdAt
        self.deletedAt = 0
    }

    init?(decoding buffer: UnsafeRawBufferPointer) {
        guard buffer.count == Self.size, buffer[0] == Self.format else { return nil }
        isDeleted = buffer[1] & 1 != 0
        number = Keys.decodeUInt64LE(buffer, at: 8)
        nextRevision = Keys.decodeUInt64LE(buffer, at: 16)
        firstVisibleRevision = Keys.decodeUInt64LE(buffer, at: 24)
        createdAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 32))
        lastRecordedAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 40))
        deletedAt = Int64(bitPattern: Keys.decodeUInt64LE(buffer, at: 48))
    }

    func withEncoded<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.withUnsafeMutableBytes { out in
            out[0] = Self.format
            out[1] = isDeleted ? 1 : 0
            out.storeBytes(of: number.littleEndian, toByteOffset: 8, as: UInt64.self)
            out.storeBytes(of: nextRevision.littleEndian, toByteOffset: 16, as: UInt64.self)
            out.storeBytes(of: firstVisibleRevision.littleEndian, toByteOffset: 24, as: UInt64.self)
            out.storeBytes(of: createdAt.littleEndian, toByteOffset: 32, as: Int64.self)
            out.storeBytes(of: lastRecordedAt.littleEndian, toByteOffset: 40, as: Int64.self)
            out.storeBytes(of: deletedAt.littleEndian, toByteOffset: 48, as: Int64.self)
        }
        return try bytes.withUnsafeBytes(body)
    }

    func info(name: String) -> StreamInfo {
        StreamInfo(stream: name, lastRevision: nextRevision - 1, firstVisibleRevision: firstVisibleRevision,
                   isDeleted: isDeleted, createdAt: createdAt, lastRecordedAt: lastRecordedAt,
                   deletedAt: deletedAt == 0 ? nil : deletedAt)
    }
}
