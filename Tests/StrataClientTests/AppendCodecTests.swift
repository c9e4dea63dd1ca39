import Foundation
@testable import StrataClient
import StrataProto
import StrataWire
import SwiftProtobuf
import Testing

/// The client's hand-written AppendRequest encoder and AppendResponse
/// decoder (`AppendCodec`) against swift-protobuf, the reference.
@Suite("Client append codec")
struct AppendCodecTests {
    typealias EventData = StrataClient.EventData

    /// What swift-protobuf writes for the same request.
    static func reference(_ stream: String, _ expected: StrataClient.ExpectedRevision, _ events: [EventData]) throws -> [UInt8] {
        var request = Strata_V1_AppendRequest()
        request.stream = stream
        request.expected = expected.proto
        request.events = events.map(\.proto)
        return try request.serializedBytes()
    }

    static let id = UUID(uuidString: "0190F0E4-7C1A-7B3D-8E2F-0123456789AB")!

    static let eventSets: [[EventData]] = [
        [],
        [EventData(id: id, type: "Happened", data: Data("{}".utf8))],
        // Empty type, content type, data and metadata are omitted.
        [EventData(id: id, type: "", contentType: "", data: Data(), metadata: Data())],
        // Multi-byte lengths (128 and 16,384 are where a varint grows), non-ASCII text.
        [EventData(id: id, type: "Bestellung aufgegeben ✓", contentType: "application/octet-stream",
                   data: Data(repeating: 7, count: 128), metadata: Data(repeating: 1, count: 16_384)),
         EventData(id: UUID(), type: String(repeating: "t", count: 200), data: Data(repeating: 0, count: 70_000))],
        (0..<100).map { EventData(type: "E\($0)", data: Data("{\"n\":\($0)}".utf8)) },
    ]

    static let expectations: [StrataClient.ExpectedRevision] = [.any, .noStream, .streamExists, .exact(0), .exact(1), .exact(127), .exact(128), .exact(.max)]

    @Test("the request bytes are swift-protobuf's, for every expectation and varied events")
    func requestMatchesSwiftProtobuf() throws {
        for stream in ["orders-1", "", "ström/🚀", String(repeating: "s", count: 300)] {
            for expected in Self.expectations {
                for events in Self.eventSets {
                    let encoded = AppendCodec.encodeRequest(stream: stream, expected: expected, events: events)
                    #expect(encoded == (try Self.reference(stream, expected, events)),
                            "stream \(stream.prefix(20)), \(expected), \(events.count) events")
                }
            }
        }
    }

    @Test("the response decodes as swift-protobuf decodes it: zeros, extremes, unknown fields, a repeated result")
    func responseMatchesSwiftProtobuf() throws {
        var full = Strata_V1_AppendResult()
        full.stream = "ström-1"
        full.firstRevision = 0
        full.lastRevision = 127
        full.firstPosition = 128
        full.lastPosition = .max
        full.recordedAt = -1
        full.replayed = true
        var positive = full
        positive.recordedAt = 1_733_500_000_000_000_000
        positive.replayed = false
        for result in [Strata_V1_AppendResult(), full, positive] {
            var response = Strata_V1_AppendResponse()
            response.result = result
            let bytes: [UInt8] = try response.serializedBytes()
            #expect(try AppendCodec.decodeResponse(bytes) == StrataClient.AppendResult(result))
        }
        // An empty response is an all-default result.
        #expect(try AppendCodec.decodeResponse([]) == StrataClient.AppendResult(Strata_V1_AppendResult()))
        // Unknown fields (a varint 9 at the top, a string 15 inside) are skipped,
        // and a second `result` merges into the first.
        var first = Strata_V1_AppendResponse()
        first.result.stream = "a"
        first.result.lastRevision = 5
        var second = Strata_V1_AppendResponse()
        second.result.firstPosition = 9
        var bytes: [UInt8] = [9 << 3, 42]
        bytes += try first.serializedBytes()
        bytes += [1 << 3 | 2, 3, 15 << 3 | 2, 1, 0x41]  // result { field 15: "A" }
        bytes += try second.serializedBytes()
        let reference = try Strata_V1_AppendResponse(serializedBytes: bytes)
        #expect(try AppendCodec.decodeResponse(bytes) == StrataClient.AppendResult(reference.result))
        // A known field with the wrong wire type is skipped, as swift-protobuf
        // skips it: `result` as a varint, and `last_revision` as a string inside.
        let mistyped: [UInt8] = [1 << 3, 7, 1 << 3 | 2, 5, 3 << 3 | 2, 1, 0x41, 2 << 3, 4]
        let mistypedReference = try Strata_V1_AppendResponse(serializedBytes: mistyped)
        #expect(mistypedReference.result.firstRevision == 4)
        #expect(try AppendCodec.decodeResponse(mistyped) == StrataClient.AppendResult(mistypedReference.result))
    }

    @Test("a truncated or malformed response is refused, as swift-protobuf refuses it")
    func malformedResponse() throws {
        var response = Strata_V1_AppendResponse()
        response.result.stream = "orders"
        response.result.lastPosition = 300
        let bytes: [UInt8] = try response.serializedBytes()
        for cut in 1 ..< bytes.count {
            let prefix = Array(bytes.prefix(cut))
            let swiftProtobufRefuses = (try? Strata_V1_AppendResponse(serializedBytes: prefix)) == nil
            #expect(swiftProtobufRefuses)
            #expect(throws: ProtoDecodingError.self) { try AppendCodec.decodeResponse(prefix) }
        }
        // Invalid UTF-8 in the stream name.
        #expect(throws: ProtoDecodingError.invalidUTF8) { try AppendCodec.decodeResponse([1 << 3 | 2, 3, 1 << 3 | 2, 1, 0xFF]) }
    }
}
