import StrataStorage

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
            appendVarint(UInt64(size), to: &out)
            appendBytes(1, f.id, to: &out)
            appendBytes(2, f.stream, to: &out)
            appendVarintField(3, f.revision, to: &out)
            appendVarintField(4, f.position, to: &out)
            appendBytes(5, f.type, to: &out)
            appendBytes(6, f.contentType, to: &out)
            appendBytes(7, f.data, to: &out)
            appendBytes(8, f.metadata, to: &out)
            appendVarintField(9, UInt64(bitPattern: f.recordedAt), to: &out)
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
        appendVarint(UInt64(varintFieldSize(position) + varintFieldSize(nextRevision)), to: &out)
        appendVarintField(1, position, to: &out)
        appendVarintField(2, nextRevision, to: &out)
    }

    /// Appends SubscribeResponse.checkpoint (field 3) = { position }.
    static func appendCheckpoint(_ position: UInt64, to out: inout [UInt8]) {
        appendPositionMessage(field: 3, position, to: &out)
    }

    private static func appendPositionMessage(field: UInt8, _ position: UInt64, to out: inout [UInt8]) {
        out.append(field << 3 | 2)
        appendVarint(UInt64(varintFieldSize(position)), to: &out)
        appendVarintField(1, position, to: &out)
    }

    private static func eventSize(_ f: EventFieldBytes) -> Int {
        bytesFieldSize(f.id) + bytesFieldSize(f.stream) + varintFieldSize(f.revision) + varintFieldSize(f.position)
            + bytesFieldSize(f.type) + bytesFieldSize(f.contentType) + bytesFieldSize(f.data) + bytesFieldSize(f.metadata)
            + varintFieldSize(UInt64(bitPattern: f.recordedAt))
    }

    @inline(__always)
    private static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    @inline(__always)
    private static func bytesFieldSize(_ bytes: UnsafeRawBufferPointer) -> Int {
        bytes.isEmpty ? 0 : 1 + varintSize(UInt64(bytes.count)) + bytes.count
    }

    @inline(__always)
    private static func varintFieldSize(_ value: UInt64) -> Int {
        value == 0 ? 0 : 1 + varintSize(value)
    }

    @inline(__always)
    private static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    @inline(__always)
    private static func appendVarintField(_ field: UInt8, _ value: UInt64, to out: inout [UInt8]) {
        guard value != 0 else { return }
        out.append(field << 3)
        appendVarint(value, to: &out)
    }

    @inline(__always)
    private static func appendBytes(_ field: UInt8, _ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        out.append(field << 3 | 2)
        appendVarint(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }
}
