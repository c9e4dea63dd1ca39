import StrataStorage
import StrataWire

/// Encodes `strata.v1.ReadResponse` pages straight from stored event records.
///
/// Why by hand: streaming `$all` is the hottest path of the server, and
/// building a `Strata_V1_RecordedEvent` per event (five Swift strings and
/// data values) then serializing it cost about a quarter of all CPU in a read
/// benchmark. This writes the same bytes swift-protobuf writes (proto3: zero
/// and empty fields omitted, fields in number order) — a test checks the
/// output is byte-identical and decodes with the generated code. Any change
/// to `ReadResponse` or `RecordedEvent` in streams.proto must change this too.
enum RecordedEventEncoder {
    /// Appends field 1 of ReadResponse (one RecordedEvent) for `event`.
    static func appendEvent(_ event: RecordedEvent, to out: inout [UInt8]) {
        event.withFieldBytes { f in
            let size = eventSize(f)
            out.append(0x0A)  // ReadResponse.events = 1, length-delimited
            ProtoFields.appendVarint(UInt64(size), to: &out)
            ProtoFields.appendBytes(1, f.id, to: &out)
            ProtoFields.appendBytes(2, f.stream, to: &out)
            ProtoFields.appendVarintField(3, f.revision, to: &out)
            ProtoFields.appendVarintField(4, f.position, to: &out)
            ProtoFields.appendBytes(5, f.type, to: &out)
            ProtoFields.appendBytes(6, f.contentType, to: &out)
            ProtoFields.appendBytes(7, f.data, to: &out)
            ProtoFields.appendBytes(8, f.metadata, to: &out)
            ProtoFields.appendVarintField(9, UInt64(bitPattern: f.recordedAt), to: &out)
        }
    }

    /// Appends events from `events[index...]` to one message: at most
    /// `maxEvents`, and while their stored bytes stay within `byteBudget`
    /// (counting `message`'s bytes already there) — but always at least one,
    /// so a large event still goes out. Advances `index`; returns the count.
    @discardableResult
    static func appendPage(of events: [RecordedEvent], from index: inout Int, maxEvents: Int, byteBudget: Int,
                           to message: inout [UInt8]) -> Int {
        var bytes = message.count
        var count = 0
        while index < events.count && count < maxEvents {
            let event = events[index]
            if count > 0 && bytes + event.storedByteCount > byteBudget { break }
            bytes += event.storedByteCount
            appendEvent(event, to: &message)
            count += 1
            index += 1
        }
        return count
    }

    /// Appends ReadResponse.end_of_stream = true (field 2).
    static func appendEndOfStream(to out: inout [UInt8]) {
        out.append(0x10)
        out.append(0x01)
    }

    /// Appends SubscribeResponse.caught_up (field 2) = { position, next_revision }.
    static func appendCaughtUp(_ position: UInt64, nextRevision: UInt64 = 0, to out: inout [UInt8]) {
        out.append(2 << 3 | 2)
        ProtoFields.appendVarint(UInt64(ProtoFields.varintFieldSize(position) + ProtoFields.varintFieldSize(nextRevision)), to: &out)
        ProtoFields.appendVarintField(1, position, to: &out)
        ProtoFields.appendVarintField(2, nextRevision, to: &out)
    }

    /// Appends SubscribeResponse.checkpoint (field 3) = { position }.
    static func appendCheckpoint(_ position: UInt64, to out: inout [UInt8]) {
        appendPositionMessage(field: 3, position, to: &out)
    }

    private static func appendPositionMessage(field: UInt8, _ position: UInt64, to out: inout [UInt8]) {
        out.append(field << 3 | 2)
        ProtoFields.appendVarint(UInt64(ProtoFields.varintFieldSize(position)), to: &out)
        ProtoFields.appendVarintField(1, position, to: &out)
    }

    private static func eventSize(_ f: EventFieldBytes) -> Int {
        ProtoFields.bytesFieldSize(f.id) + ProtoFields.bytesFieldSize(f.stream) + ProtoFields.varintFieldSize(f.revision) + ProtoFields.varintFieldSize(f.position)
            + ProtoFields.bytesFieldSize(f.type) + ProtoFields.bytesFieldSize(f.contentType) + ProtoFields.bytesFieldSize(f.data) + ProtoFields.bytesFieldSize(f.metadata)
            + ProtoFields.varintFieldSize(UInt64(bitPattern: f.recordedAt))
    }
}
