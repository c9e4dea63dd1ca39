import StrataStorage
import StrataWire
import StrataSupport

/// Encodes `strata.v1.AppendResponse` from an `AppendResult` by hand.
///
/// Why: the tenant's writer thread answers every append of a commit before
/// it starts the next one, so the time it spends encoding answers is time no
/// commit runs; swift-protobuf's generic encoder cost several times what
/// these few varints do. The bytes are the ones swift-protobuf writes
/// (fields in number order, zero and empty fields omitted) — a test checks
/// they are identical. Any change to `AppendResponse` or `AppendResult` in
/// streams.proto must change this too.
enum AppendResponseEncoder {
    static func encode(_ result: AppendResult) -> [UInt8] {
        var stream = result.stream
        return stream.withUTF8 { name in
            let streamBytes = UnsafeRawBufferPointer(name)
            let recordedAt = UInt64(bitPattern: result.recordedAt)
            let size = ProtoFields.bytesFieldSize(streamBytes)
                + ProtoFields.varintFieldSize(result.firstRevision) + ProtoFields.varintFieldSize(result.lastRevision)
                + ProtoFields.varintFieldSize(result.firstPosition) + ProtoFields.varintFieldSize(result.lastPosition)
                + ProtoFields.varintFieldSize(recordedAt) + (result.replayed ? 2 : 0)
            var out: [UInt8] = []
            out.reserveCapacity(2 + ProtoFields.varintSize(UInt64(size)) + size)
            out.append(1 << 3 | 2)  // AppendResponse.result = 1, length-delimited
            ProtoFields.appendVarint(UInt64(size), to: &out)
            ProtoFields.appendBytes(1, streamBytes, to: &out)
            ProtoFields.appendVarintField(2, result.firstRevision, to: &out)
            ProtoFields.appendVarintField(3, result.lastRevision, to: &out)
            ProtoFields.appendVarintField(4, result.firstPosition, to: &out)
            ProtoFields.appendVarintField(5, result.lastPosition, to: &out)
            ProtoFields.appendVarintField(6, recordedAt, to: &out)
            ProtoFields.appendVarintField(7, result.replayed ? 1 : 0, to: &out)
            return out
        }
    }
}
