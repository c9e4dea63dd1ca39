import StrataProto
@testable import StrataServer
@testable import StrataStorage
import SwiftProtobuf
import Testing
import StrataSupport

@Suite("AppendResponse encoded by hand")
struct AppendResponseEncoderTests {
    static let results: [AppendResult] = [
        AppendResult(stream: "orders-1", firstRevision: 0, lastRevision: 0, firstPosition: 1, lastPosition: 1,
                     recordedAt: 1_795_000_000_000_000_000, replayed: false),
        AppendResult(stream: "", firstRevision: 0, lastRevision: 0, firstPosition: 0, lastPosition: 0, recordedAt: 0, replayed: false),
        AppendResult(stream: "ünïcode-strøm-" + String(repeating: "x", count: 300), firstRevision: 127, lastRevision: 128,
                     firstPosition: 16_383, lastPosition: 16_384, recordedAt: -1, replayed: true),
        AppendResult(stream: "s", firstRevision: .max, lastRevision: .max, firstPosition: .max - 1, lastPosition: .max,
                     recordedAt: .min, replayed: true),
    ]

    @Test("writes exactly what swift-protobuf writes, and decodes back to the same result", arguments: results)
    func matchesSwiftProtobuf(_ result: AppendResult) throws {
        var response = Strata_V1_AppendResponse()
        response.result = result.proto
        let reference: [UInt8] = try response.serializedBytes()
        let encoded = AppendResponseEncoder.encode(result)
        #expect(encoded == reference)
        let decoded = try Strata_V1_AppendResponse(serializedBytes: encoded)
        #expect(decoded.result == result.proto)
    }
}
