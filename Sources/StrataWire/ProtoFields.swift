/// Protobuf wire-format pieces for the hand-written encoders
/// (`CallHeadersCodec` here; `RecordedEventEncoder` and
/// `AppendResponseEncoder` in the server; `AppendCodec` in the client):
/// varints and length-delimited
/// fields, proto3 style (a zero or empty field is omitted). Inlinable: the
/// `$all` encoder calls them several times per event.
public enum ProtoFields {
    @inlinable @inline(__always)
    public static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    @inlinable @inline(__always)
    public static func bytesFieldSize(_ bytes: UnsafeRawBufferPointer) -> Int {
        bytes.isEmpty ? 0 : 1 + varintSize(UInt64(bytes.count)) + bytes.count
    }

    @inlinable @inline(__always)
    public static func varintFieldSize(_ value: UInt64) -> Int {
        value == 0 ? 0 : 1 + varintSize(value)
    }

    @inlinable @inline(__always)
    public static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    @inlinable @inline(__always)
    public static func appendVarintField(_ field: UInt8, _ value: UInt64, to out: inout [UInt8]) {
        guard value != 0 else { return }
        out.append(field << 3)
        appendVarint(value, to: &out)
    }

    @inlinable @inline(__always)
    public static func appendBytes(_ field: UInt8, _ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        out.append(field << 3 | 2)
        appendVarint(UInt64(bytes.count), to: &out)
        out.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
    }
}
