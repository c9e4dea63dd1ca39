import Foundation
import StrataWire

/// Encodes `strata.v1.AppendRequest` and decodes `strata.v1.AppendResponse`
/// by hand, for `StrataClient.append`.
///
/// Why: with 64 callers on two cores, client and server share the CPU, and
/// every microsecond a caller spends between an answer and its next request
/// makes its request likelier to miss the next group commit. swift-protobuf
/// (building a generated message per event, then a generic size pass and an
/// encoding pass; and a generic decoder for the answer) was about a sixth of
/// the client's CPU per append. The bytes written are the ones swift-protobuf
/// writes (fields in number order, empty fields omitted, a set oneof always
/// written), and the decoder gives what swift-protobuf's decoding gives; tests
/// check both against swift-protobuf. A change to `AppendRequest`,
/// `ProposedEvent`, `ExpectedRevision`, `AppendResponse` or `AppendResult` in
/// the protos must change this too.
enum AppendCodec {
    /// `AppendRequest { string stream = 1; ExpectedRevision expected = 2; repeated ProposedEvent events = 3; }`
    static func encodeRequest(stream: String, expected: StrataClient.ExpectedRevision,
                              events: [StrataClient.EventData]) -> [UInt8] {
        // ExpectedRevision { oneof kind { Empty any = 1; Empty no_stream = 2; Empty stream_exists = 3; uint64 exact = 4; } }
        let expectedSize: Int
        switch expected {
        case .any, .noStream, .streamExists: expectedSize = 2  // the tag, then length 0
        case .exact(let revision): expectedSize = 1 + ProtoFields.varintSize(revision)
        }
        let eventSizes = events.map(eventSize)
        var size = stringFieldSize(stream) + 1 + ProtoFields.varintSize(UInt64(expectedSize)) + expectedSize
        for eventSize in eventSizes { size += 1 + ProtoFields.varintSize(UInt64(eventSize)) + eventSize }

        var out: [UInt8] = []
        out.reserveCapacity(size)
        appendString(1, stream, to: &out)
        out.append(2 << 3 | 2)
        ProtoFields.appendVarint(UInt64(expectedSize), to: &out)
        switch expected {
        case .any: out.append(1 << 3 | 2); out.append(0)
        case .noStream: out.append(2 << 3 | 2); out.append(0)
        case .streamExists: out.append(3 << 3 | 2); out.append(0)
        case .exact(let revision):
            out.append(4 << 3)  // written even when 0: a oneof member that is set
            ProtoFields.appendVarint(revision, to: &out)
        }
        for (event, eventSize) in zip(events, eventSizes) {
            out.append(3 << 3 | 2)
            ProtoFields.appendVarint(UInt64(eventSize), to: &out)
            // ProposedEvent { bytes id = 1; string type = 2; string content_type = 3; bytes data = 4; bytes metadata = 5; }
            withUnsafeBytes(of: event.id.uuid) { ProtoFields.appendBytes(1, $0, to: &out) }
            appendString(2, event.type, to: &out)
            appendString(3, event.contentType, to: &out)
            event.data.withUnsafeBytes { ProtoFields.appendBytes(4, $0, to: &out) }
            event.metadata.withUnsafeBytes { ProtoFields.appendBytes(5, $0, to: &out) }
        }
        assert(out.count == size, "AppendCodec computed \(size) bytes but wrote \(out.count)")
        return out
    }

    /// `AppendResponse { AppendResult result = 1; }`. Unknown fields are
    /// skipped; a repeated `result` merges into the one before, as in protobuf.
    static func decodeResponse(_ bytes: [UInt8]) throws(ProtoDecodingError) -> StrataClient.AppendResult {
        try bytes.withUnsafeBufferPointer { (buffer) throws(ProtoDecodingError) in
            var reader = ProtoReader(buffer)
            var result = Fields()
            while !reader.atEnd {
                let (field, wireType) = try reader.tag()
                if field == 1 && wireType == 2 {
                    try result.merge(try reader.nested())
                } else {
                    try reader.skip(field: field, wireType: wireType)
                }
            }
            return StrataClient.AppendResult(stream: result.stream, firstRevision: result.firstRevision,
                                             lastRevision: result.lastRevision, firstPosition: result.firstPosition,
                                             lastPosition: result.lastPosition, recordedAt: result.recordedAt,
                                             replayed: result.replayed)
        }
    }

    /// `AppendResult { string stream = 1; uint64 first_revision = 2; uint64 last_revision = 3;
    /// uint64 first_position = 4; uint64 last_position = 5; int64 recorded_at = 6; bool replayed = 7; }`
    private struct Fields {
        var stream = ""
        var firstRevision: UInt64 = 0, lastRevision: UInt64 = 0
        var firstPosition: UInt64 = 0, lastPosition: UInt64 = 0
        var recordedAt: Int64 = 0
        var replayed = false

        mutating func merge(_ reader: ProtoReader) throws(ProtoDecodingError) {
            var reader = reader
            while !reader.atEnd {
                let (field, wireType) = try reader.tag()
                switch (field, wireType) {
                case (1, 2): stream = try reader.string()
                case (2, 0): firstRevision = try reader.varint()
                case (3, 0): lastRevision = try reader.varint()
                case (4, 0): firstPosition = try reader.varint()
                case (5, 0): lastPosition = try reader.varint()
                case (6, 0): recordedAt = Int64(bitPattern: try reader.varint())
                case (7, 0): replayed = try reader.varint() != 0
                default: try reader.skip(field: field, wireType: wireType)
                }
            }
        }
    }

    private static func eventSize(_ event: StrataClient.EventData) -> Int {
        18  // the id: tag, length 16, 16 bytes
            + stringFieldSize(event.type) + stringFieldSize(event.contentType)
            + dataFieldSize(event.data) + dataFieldSize(event.metadata)
    }

    private static func stringFieldSize(_ string: String) -> Int {
        let count = string.utf8.count
        return count == 0 ? 0 : 1 + ProtoFields.varintSize(UInt64(count)) + count
    }

    private static func dataFieldSize(_ data: Data) -> Int {
        data.isEmpty ? 0 : 1 + ProtoFields.varintSize(UInt64(data.count)) + data.count
    }

    private static func appendString(_ field: UInt8, _ string: String, to out: inout [UInt8]) {
        guard !string.isEmpty else { return }
        out.append(field << 3 | 2)
        ProtoFields.appendVarint(UInt64(string.utf8.count), to: &out)
        out.append(contentsOf: string.utf8)
    }
}
