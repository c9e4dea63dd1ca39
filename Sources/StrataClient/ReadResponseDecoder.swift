import Foundation
import StrataWire

/// Decodes `strata.v1.ReadResponse` pages straight into client events.
///
/// Why by hand: decoding through the generated message (a
/// `Strata_V1_RecordedEvent` per event, then copying it into a
/// `StrataClient.RecordedEvent` and destroying it) was over half of the
/// client's CPU when streaming `$all`. This reads the protobuf wire format
/// directly, bounds-checking every length, skipping unknown fields as
/// protobuf requires, and refusing malformed input with an error. A test
/// checks it against swift-protobuf on varied pages and on every truncation.
/// Any change to `ReadResponse` or `RecordedEvent` in streams.proto must
/// change this too.
package enum ReadResponseDecoder {
    package struct Page {
        package var events: [StrataClient.RecordedEvent] = []
        package var endOfStream = false
    }

    struct Malformed: Error {}

    package static func decode(_ bytes: [UInt8]) throws(RPCError) -> Page {
        do {
            return try bytes.withUnsafeBytes { buffer throws(Malformed) in
                var reader = Reader(buffer: buffer)
                var page = Page()
                var names = NameCache()
                while !reader.atEnd {
                    let (field, wireType) = try reader.tag()
                    switch (field, wireType) {
                    case (1, 2): page.events.append(try event(try reader.lengthDelimited(), names: &names))
                    case (2, 0): page.endOfStream = try reader.varint() != 0
                    default: try reader.skip(wireType)
                    }
                }
                return page
            }
        } catch {
            throw RPCError(.internal, "malformed ReadResponse from the server")
        }
    }

    /// A `SubscribeResponse`: events (field 1, as in ReadResponse), caught_up
    /// (2) and checkpoint (3), each `{ uint64 position = 1; }`.
    struct SubscriptionPage {
        var events: [StrataClient.RecordedEvent] = []
        var caughtUp: UInt64?
        /// Stream subscriptions: the next revision at the caught-up point.
        var caughtUpNextRevision: UInt64 = 0
        var checkpoint: UInt64?
    }

    static func decodeSubscription(_ bytes: [UInt8]) throws(RPCError) -> SubscriptionPage {
        do {
            return try bytes.withUnsafeBytes { buffer throws(Malformed) in
                var reader = Reader(buffer: buffer)
                var page = SubscriptionPage()
                var names = NameCache()
                while !reader.atEnd {
                    let (field, wireType) = try reader.tag()
                    switch (field, wireType) {
                    case (1, 2): page.events.append(try event(try reader.lengthDelimited(), names: &names))
                    case (2, 2):
                        let (position, nextRevision) = try positionMessage(try reader.lengthDelimited())
                        page.caughtUp = position
                        page.caughtUpNextRevision = nextRevision
                    case (3, 2): page.checkpoint = try positionMessage(try reader.lengthDelimited()).position
                    case (1...3, _): throw Malformed()
                    default: try reader.skip(wireType)
                    }
                }
                return page
            }
        } catch {
            throw RPCError(.internal, "malformed SubscribeResponse from the server")
        }
    }

    /// `{ uint64 position = 1; uint64 next_revision = 2; }` (checkpoints have only the first).
    private static func positionMessage(_ buffer: UnsafeRawBufferPointer) throws(Malformed) -> (position: UInt64, nextRevision: UInt64) {
        var reader = Reader(buffer: buffer)
        var position: UInt64 = 0, nextRevision: UInt64 = 0
        while !reader.atEnd {
            let (field, wireType) = try reader.tag()
            switch (field, wireType) {
            case (1, 0): position = try reader.varint()
            case (2, 0): nextRevision = try reader.varint()
            case (1...2, _): throw Malformed()
            default: try reader.skip(wireType)
            }
        }
        return (position, nextRevision)
    }

    private static func event(_ buffer: UnsafeRawBufferPointer, names: inout NameCache) throws(Malformed) -> StrataClient.RecordedEvent {
        var reader = Reader(buffer: buffer)
        var id = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        var stream = "", type = "", contentType = ""
        var data = Data(), metadata = Data()
        var revision: UInt64 = 0, position: UInt64 = 0
        var recordedAt: Int64 = 0
        while !reader.atEnd {
            let (field, wireType) = try reader.tag()
            switch (field, wireType) {
            case (1, 2):
                let bytes = try reader.lengthDelimited()
                if bytes.count == 16 { id = UUID(uuid: bytes.loadUnaligned(as: uuid_t.self)) }
            case (2, 2): stream = try names.string(try reader.lengthDelimited())
            case (3, 0): revision = try reader.varint()
            case (4, 0): position = try reader.varint()
            case (5, 2): type = try names.string(try reader.lengthDelimited())
            case (6, 2): contentType = try names.string(try reader.lengthDelimited())
            case (7, 2): data = Data(try reader.lengthDelimited())
            case (8, 2): metadata = Data(try reader.lengthDelimited())
            case (9, 0): recordedAt = Int64(bitPattern: try reader.varint())
            case (1...9, _): throw Malformed()  // a known field with the wrong wire type
            default: try reader.skip(wireType)
            }
        }
        return StrataClient.RecordedEvent(id: id, stream: stream, revision: revision, position: position, type: type,
                                          contentType: contentType, data: data, metadata: metadata, recordedAt: recordedAt)
    }

    fileprivate static func string(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> String {
        guard let string = UTF8Validation.string(bytes) else { throw Malformed() }
        return string
    }

    /// Stream names, types and content types repeat within a page: the same
    /// bytes give the same String, shared instead of allocated per event.
    /// A few recent entries, compared by bytes; lives for one page.
    struct NameCache {
        private var entries: [(bytes: UnsafeRawBufferPointer, string: String)] = []
        private var next = 0
        private static let capacity = 16

        mutating func string(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> String {
            // Short strings are stored inline by String: nothing to share.
            if bytes.count <= 15 { return try ReadResponseDecoder.string(bytes) }
            for entry in entries where entry.bytes.count == bytes.count
                && memcmp(entry.bytes.baseAddress!, bytes.baseAddress!, bytes.count) == 0 {
                return entry.string
            }
            let string = try ReadResponseDecoder.string(bytes)
            if entries.count < Self.capacity {
                entries.append((bytes, string))
            } else {
                entries[next] = (bytes, string)
                next = (next + 1) % Self.capacity
            }
            return string
        }
    }

    /// A bounds-checked cursor over protobuf wire bytes.
    private struct Reader {
        let buffer: UnsafeRawBufferPointer
        var offset = 0

        var atEnd: Bool { offset >= buffer.count }

        mutating func varint() throws(Malformed) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard offset < buffer.count, shift < 64 else { throw Malformed() }
                let byte = buffer[offset]
                offset += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
        }

        mutating func tag() throws(Malformed) -> (UInt64, UInt64) {
            let start = offset
            let key = try varint()
            // Field numbers run from 1 to 2^29 - 1 and a tag takes at most 5
            // bytes, as swift-protobuf checks (found by the payloads fuzz target).
            guard key >> 3 != 0, key < UInt64(UInt32.max), offset - start <= 5 else { throw Malformed() }
            return (key >> 3, key & 7)
        }

        mutating func lengthDelimited() throws(Malformed) -> UnsafeRawBufferPointer {
            let length = try varint()
            guard length <= UInt64(buffer.count - offset) else { throw Malformed() }
            let start = offset
            offset += Int(length)
            return UnsafeRawBufferPointer(rebasing: buffer[start ..< offset])
        }

        mutating func skip(_ wireType: UInt64) throws(Malformed) {
            switch wireType {
            case 0: _ = try varint()
            case 1: try advance(8)
            case 2: _ = try lengthDelimited()
            case 5: try advance(4)
            default: throw Malformed()  // groups (3, 4) and undefined types
            }
        }

        private mutating func advance(_ count: Int) throws(Malformed) {
            guard count <= buffer.count - offset else { throw Malformed() }
            offset += count
        }
    }
}
