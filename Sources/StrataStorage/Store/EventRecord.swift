import Foundation
import StrataSupport

/// The binary layout of one event in the log (format 1). Little-endian.
///
///     0  u8  format (1)          1  u8  flags (0)
///     2  u16 stream name length  4  u16 type length   6 u16 content-type length
///     8  u32 data length        12  u32 metadata length
///    16  16 bytes event id
///    32  u64 stream revision    40  i64 recorded-at (ns since the epoch)
///    48  stream name, type, content type, data, metadata
enum EventRecord {
    static let format: UInt8 = 1
    static let headerSize = 48

    static func encodedSize(streamBytes: Int, event: ProposedEvent) -> Int {
        headerSize + streamBytes + event.type.utf8.count + event.contentType.utf8.count
            + event.data.count + event.metadata.count
    }

    /// Writes the record into `out`, which has exactly `encodedSize` bytes.
    /// Straight-line stores and copies: this runs once per event on the
    /// writer thread, inside the write transaction.
    @inline(__always)
    static func encode(into out: UnsafeMutableRawBufferPointer, stream: String, revision: UInt64,
                       recordedAt: Int64, event: ProposedEvent) {
        guard let base = out.baseAddress else { return }
        let streamCount = stream.utf8.count
        let typeCount = event.type.utf8.count
        let contentTypeCount = event.contentType.utf8.count
        base.storeBytes(of: format, toByteOffset: 0, as: UInt8.self)
        base.storeBytes(of: 0, toByteOffset: 1, as: UInt8.self)
        base.storeBytes(of: UInt16(streamCount).littleEndian, toByteOffset: 2, as: UInt16.self)
        base.storeBytes(of: UInt16(typeCount).littleEndian, toByteOffset: 4, as: UInt16.self)
        base.storeBytes(of: UInt16(contentTypeCount).littleEndian, toByteOffset: 6, as: UInt16.self)
        base.storeBytes(of: UInt32(event.data.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(event.metadata.count).littleEndian, toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: event.id.uuid, toByteOffset: 16, as: uuid_t.self)
        base.storeBytes(of: revision.littleEndian, toByteOffset: 32, as: UInt64.self)
        base.storeBytes(of: recordedAt.littleEndian, toByteOffset: 40, as: Int64.self)
        let typeOffset = headerSize + streamCount
        let contentTypeOffset = typeOffset + typeCount
        let dataOffset = contentTypeOffset + contentTypeCount
        let metadataOffset = dataOffset + event.data.count
        copyUTF8(stream, to: base + headerSize)
        copyUTF8(event.type, to: base + typeOffset)
        copyUTF8(event.contentType, to: base + contentTypeOffset)
        event.data.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { (base + dataOffset).copyMemory(from: source, byteCount: bytes.count) }
        }
        event.metadata.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { (base + metadataOffset).copyMemory(from: source, byteCount: bytes.count) }
        }
    }

    @inline(__always)
    private static func copyUTF8(_ string: String, to destination: UnsafeMutableRawPointer) {
        var string = string
        string.withUTF8 { bytes in
            if let source = bytes.baseAddress { destination.copyMemory(from: source, byteCount: bytes.count) }
        }
    }

    /// Checks that a stored buffer is a complete format-1 record.
    static func isValid(_ buffer: UnsafeRawBufferPointer) -> Bool {
        guard buffer.count >= headerSize, buffer[0] == format else { return false }
        return buffer.count == headerSize + variableLength(buffer)
    }

    @inline(__always)
    static func variableLength(_ buffer: UnsafeRawBufferPointer) -> Int {
        Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            + Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
            + Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
            + Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
            + Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
    }

    @inline(__always)
    static func streamName(_ buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let count = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        return UnsafeRawBufferPointer(rebasing: buffer[headerSize ..< headerSize + count])
    }

    /// Whether the stored record has `event`'s type, data and metadata,
    /// compared in place (what makes a retry the same event).
    static func hasContent(of event: ProposedEvent, _ buffer: UnsafeRawBufferPointer) -> Bool {
        let streamCount = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        let typeCount = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        let contentTypeCount = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        let dataCount = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let metadataCount = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        let dataStart = headerSize + streamCount + typeCount + contentTypeCount
        return eventType(buffer).elementsEqual(event.type.utf8)
            && buffer[dataStart ..< dataStart + dataCount].elementsEqual(event.data)
            && buffer[dataStart + dataCount ..< dataStart + dataCount + metadataCount].elementsEqual(event.metadata)
    }

    @inline(__always)
    static func eventType(_ buffer: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let streamCount = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        let typeCount = Int(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
        let start = headerSize + streamCount
        return UnsafeRawBufferPointer(rebasing: buffer[start ..< start + typeCount])
    }

    @inline(__always)
    static func revision(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
        UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
    }

    @inline(__always)
    static func recordedAt(_ buffer: UnsafeRawBufferPointer) -> Int64 {
        Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: 40, as: Int64.self))
    }
}

/// Borrowed views of one event's fields (see `RecordedEvent.withFieldBytes`).
public struct EventFieldBytes {
    /// 16 bytes, the UUID as stored.
    public let id: UnsafeRawBufferPointer
    public let stream: UnsafeRawBufferPointer
    public let type: UnsafeRawBufferPointer
    public let contentType: UnsafeRawBufferPointer
    public let data: UnsafeRawBufferPointer
    public let metadata: UnsafeRawBufferPointer
    public let revision: UInt64
    public let position: UInt64
    public let recordedAt: Int64

    public init(id: UnsafeRawBufferPointer, stream: UnsafeRawBufferPointer, type: UnsafeRawBufferPointer,
                contentType: UnsafeRawBufferPointer, data: UnsafeRawBufferPointer, metadata: UnsafeRawBufferPointer,
                revision: UInt64, position: UInt64, recordedAt: Int64) {
        self.id = id
        self.stream = stream
        self.type = type
        self.contentType = contentType
        self.data = data
        self.metadata = metadata
        self.revision = revision
        self.position = position
        self.recordedAt = recordedAt
    }
}

/// An event as stored: its record copied out of the map once (one
/// allocation, an array), with fields decoded from that copy when they are
/// read. Reading `$all` therefore costs one allocation per event, whatever the
/// caller touches.
public struct RecordedEvent: Sendable, Hashable {
    /// The global position in the tenant's log (gapless, from 1).
    public let position: UInt64
    /// The stored record (see `EventRecord`).
    let record: [UInt8]

    /// Copies a borrowed record; the caller has checked it with `EventRecord.isValid`.
    init(position: UInt64, borrowing buffer: UnsafeRawBufferPointer) {
        self.position = position
        self.record = [UInt8](buffer)
    }

    private func field<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        record.withUnsafeBytes(body)
    }

    private func u16(_ offset: Int) -> Int {
        field { Int(UInt16(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self))) }
    }

    private func u32(_ offset: Int) -> Int {
        field { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
    }

    private func string(at start: Int, count: Int) -> String {
        field { String(decoding: UnsafeRawBufferPointer(rebasing: $0[start ..< start + count]), as: UTF8.self) }
    }

    public var id: UUID {
        field { bytes in
            var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &uuid) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[16 ..< 32])) }
            return UUID(uuid: uuid)
        }
    }

    /// The event's fields as borrowed bytes, for encoders that copy them
    /// straight into a wire format without building Swift values first. The
    /// buffers are valid only inside `body`.
    public func withFieldBytes<R>(_ body: (EventFieldBytes) throws -> R) rethrows -> R {
        try record.withUnsafeBytes { bytes in
            let streamCount = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let typeCount = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
            let contentTypeCount = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
            let dataCount = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
            let metadataCount = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
            var offset = EventRecord.headerSize
            func take(_ count: Int) -> UnsafeRawBufferPointer {
                defer { offset += count }
                return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + count])
            }
            return try body(EventFieldBytes(
                id: UnsafeRawBufferPointer(rebasing: bytes[16 ..< 32]),
                stream: take(streamCount), type: take(typeCount), contentType: take(contentTypeCount),
                data: take(dataCount), metadata: take(metadataCount),
                revision: EventRecord.revision(bytes), position: position, recordedAt: EventRecord.recordedAt(bytes)))
        }
    }

    /// Bytes of the stored record (fields plus a fixed 48-byte header): a
    /// cheap upper bound of the event's encoded size, for paging by bytes.
    public var storedByteCount: Int { record.count }

    public var revision: UInt64 { field { EventRecord.revision($0) } }
    /// Commit time, nanoseconds since the Unix epoch (server clock).
    public var recordedAt: Int64 { field { EventRecord.recordedAt($0) } }

    public var stream: String { string(at: EventRecord.headerSize, count: u16(2)) }
    public var type: String { string(at: EventRecord.headerSize + u16(2), count: u16(4)) }
    public var contentType: String { string(at: EventRecord.headerSize + u16(2) + u16(4), count: u16(6)) }

    public var data: Data {
        let start = EventRecord.headerSize + u16(2) + u16(4) + u16(6)
        return Data(record[start ..< start + u32(8)])
    }

    public var metadata: Data {
        let start = EventRecord.headerSize + u16(2) + u16(4) + u16(6) + u32(8)
        return Data(record[start ..< start + u32(12)])
    }
}
