import StrataProto
import SwiftProtobuf
import Testing
@testable import StrataWire
import StrataTestSupport

@Suite("CallHeaders codec")
struct CallHeadersCodecTests {
    static func sample(_ seed: UInt64) -> Strata_V1_CallHeaders {
        var rng = SplitMix64(seed: seed)
        var headers = Strata_V1_CallHeaders()
        let methods = ["", "/strata.v1.Streams/Append", "/x.Y/Zé", String(repeating: "m", count: 200)]
        headers.method = methods[Int(rng.next() % UInt64(methods.count))]
        for i in 0 ..< Int(rng.next() % 5) {
            let key = i == 0 && rng.next() % 3 == 0 ? "" : "key-\(i)"
            let value = rng.next() % 4 == 0 ? "" : String(repeating: "v\(i)ü", count: Int(rng.next() % 60))
            headers.metadata[key] = value
        }
        headers.timeoutMs = [0, 1, 127, 128, 30_000, UInt64.max][Int(rng.next() % 6)]
        return headers
    }

    @Test("our bytes decode with swift-protobuf to the same message", arguments: 0 ..< 40)
    func encodeMatchesSwiftProtobuf(seed: UInt64) throws {
        let headers = Self.sample(seed)
        var bytes: [UInt8] = []
        CallHeadersCodec.encode(method: headers.method, metadata: headers.metadata.map { ($0.key, $0.value) },
                                timeoutMs: headers.timeoutMs, into: &bytes)
        #expect(try Strata_V1_CallHeaders(serializedBytes: bytes) == headers)
        // Pre-encoded entries give the same message.
        var preEncoded: [UInt8] = []
        for (key, value) in headers.metadata { CallHeadersCodec.encodeMetadataEntry(key: key, value: value, into: &preEncoded) }
        var split: [UInt8] = []
        CallHeadersCodec.encode(method: headers.method, encodedMetadata: preEncoded, timeoutMs: headers.timeoutMs, into: &split)
        #expect(try Strata_V1_CallHeaders(serializedBytes: split) == headers)
    }

    @Test("swift-protobuf's bytes decode with ours to the same message", arguments: 0 ..< 40)
    func decodeMatchesSwiftProtobuf(seed: UInt64) throws {
        let headers = Self.sample(seed)
        let bytes: [UInt8] = try headers.serializedBytes()
        #expect(try CallHeadersCodec.decode(bytes) == headers)
    }

    @Test("unknown fields of every wire type are skipped; a repeated key or scalar keeps its last value")
    func unknownAndRepeated() throws {
        var bytes: [UInt8] = []
        CallHeadersCodec.encode(method: "/a.B/C", metadata: [("tenant", "one")], timeoutMs: 5, into: &bytes)
        bytes += [0x20, 0x96, 0x01]                    // field 4, varint 150
        bytes += [0x29] + [UInt8](repeating: 7, count: 8)  // field 5, fixed64
        bytes += [0x32, 0x02, 0xFF, 0xFE]              // field 6, 2 bytes (not UTF-8: unknown, so fine)
        bytes += [0x3D, 1, 2, 3, 4]                    // field 7, fixed32
        CallHeadersCodec.encode(method: "/a.B/D", metadata: [("tenant", "two")], timeoutMs: 9, into: &bytes)
        let ours = try CallHeadersCodec.decode(bytes)
        #expect(ours.method == "/a.B/D")
        #expect(ours.metadata == ["tenant": "two"])
        #expect(ours.timeoutMs == 9)
        #expect(ours == (try Strata_V1_CallHeaders(serializedBytes: bytes)).withoutUnknownFields)
    }

    @Test("truncations, bad UTF-8, overlong varints and broken groups are refused, and odd but valid fields skipped, as swift-protobuf does")
    func malformed() throws {
        var bytes: [UInt8] = []
        CallHeadersCodec.encode(method: "/strata.v1.Streams/Append", metadata: [("tenant", "acme"), ("authorization", "Bearer k")],
                                timeoutMs: 30_000, into: &bytes)
        for cut in 1 ..< bytes.count {
            let prefix = Array(bytes[0 ..< cut])
            let theirs = (try? Strata_V1_CallHeaders(serializedBytes: prefix)) != nil
            let ours = (try? CallHeadersCodec.decode(prefix)) != nil
            #expect(ours == theirs, "cut at \(cut)")
        }
        let refused: [(String, [UInt8], CallHeadersDecodingError)] = [
            ("bad UTF-8 in method", [0x0A, 0x02, 0xC3, 0x28], .invalidUTF8),
            ("overlong varint", [0x18] + [UInt8](repeating: 0xFF, count: 10) + [0x01], .malformedVarint),
            ("field number 0", [0x02, 0x00], .invalidFieldNumber),
            ("END_GROUP without a start", [0x24], .invalidWireType(4)),
            ("wire type 7", [0x27], .invalidWireType(7)),
            ("an unterminated group", [0x23, 0x08, 0x01], .truncated),
            ("a tag beyond 32 bits", [0x80, 0x80, 0x80, 0x80, 0x10, 0x00], .invalidFieldNumber),
            // A stack-exhaustion attempt: a million nested group starts.
            ("groups nested a million deep", [UInt8](repeating: 0x0B, count: 1_000_000), .tooDeeplyNested),
        ]
        for (name, payload, expected) in refused {
            #expect(throws: expected, "\(name)") { try CallHeadersCodec.decode(payload) }
            #expect(throws: (any Error).self, "swift-protobuf on \(name)") { try Strata_V1_CallHeaders(serializedBytes: payload) }
        }
        // Accepted by both, as unknown fields.
        let skipped: [(String, [UInt8])] = [
            ("method as a varint", [0x08, 0x01]),
            ("timeout as bytes", [0x1A, 0x00]),
            ("a group holding a field", [0x23, 0x08, 0x01, 0x24]),
        ]
        for (name, payload) in skipped {
            #expect(try CallHeadersCodec.decode(payload) == Strata_V1_CallHeaders(), "\(name)")
            #expect(try Strata_V1_CallHeaders(serializedBytes: payload).withoutUnknownFields == Strata_V1_CallHeaders(), "\(name)")
        }
    }
}

extension Strata_V1_CallHeaders {
    var withoutUnknownFields: Strata_V1_CallHeaders {
        var copy = self
        copy.unknownFields = UnknownStorage()
        return copy
    }
}
