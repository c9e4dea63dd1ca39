import Foundation
@testable import StrataClient
import StrataProto
import SwiftProtobuf
import Testing

@Suite("Hand-written ReadResponse decoder")
struct ReadResponseDecoderTests {
    static func sample() -> Strata_V1_ReadResponse {
        var page = Strata_V1_ReadResponse()
        for i in 0..<50 {
            var event = Strata_V1_RecordedEvent()
            event.id = withUnsafeBytes(of: UUID().uuid) { Data($0) }
            event.stream = i % 7 == 0 ? "ünïcode-😀-\(i)" : "s-\(i)"
            event.revision = UInt64(i * i)  // includes 0, which protobuf omits
            event.position = UInt64(1 << (i % 40))
            event.type = "T\(i)"
            event.contentType = i % 2 == 0 ? "" : "application/json"
            event.data = Data(repeating: UInt8(i), count: i * 41)
            event.metadata = i % 3 == 0 ? Data() : Data("m\(i)".utf8)
            event.recordedAt = i % 5 == 0 ? -Int64(i) : 1_795_000_000_000_000_000 + Int64(i)
            page.events.append(event)
        }
        page.endOfStream = true
        return page
    }

    @Test("decodes what swift-protobuf encodes, skipping unknown fields")
    func matches() throws {
        let reference = Self.sample()
        var bytes: [UInt8] = try reference.serializedBytes()
        bytes += [0x78, 0x05]  // unknown varint field 15
        bytes += [0x82, 0x01, 0x03, 1, 2, 3]  // unknown length-delimited field 16
        let decoded = try ReadResponseDecoder.decode(bytes)
        #expect(decoded.endOfStream)
        #expect(decoded.events == reference.events.map(StrataClient.RecordedEvent.init))
    }

    @Test("every truncation either decodes like swift-protobuf or is refused; nothing crashes")
    func truncations() throws {
        var small = Strata_V1_ReadResponse()
        small.events = Array(Self.sample().events.prefix(3))
        let bytes: [UInt8] = try small.serializedBytes()
        for length in 0..<bytes.count {
            let prefix = Array(bytes[0..<length])
            let ours = try? ReadResponseDecoder.decode(prefix)
            let theirs = try? Strata_V1_ReadResponse(serializedBytes: prefix)
            #expect((ours == nil) == (theirs == nil), "prefix of \(length) bytes")
            if let ours, let theirs {
                #expect(ours.events == theirs.events.map(StrataClient.RecordedEvent.init))
            }
        }
    }

    @Test("malformed input is refused: bad wire types, overlong lengths, invalid UTF-8")
    func malformed() {
        let cases: [[UInt8]] = [
            [0x0B],  // field 1 as a group
            [0x0A, 0x05, 0x12],  // length past the end
            [0x0A, 0x03, 0x12, 0x01, 0xFF],  // stream with invalid UTF-8
            [0x0A, 0x02, 0x10, 0x80],  // truncated varint inside an event
            [0x00],  // field number 0
            [0x0A, 0x02, 0x1A, 0x00],  // revision (varint field) sent length-delimited
        ]
        for bytes in cases {
            #expect(throws: (any Error).self, "\(bytes)") { _ = try ReadResponseDecoder.decode(bytes) }
        }
    }

    @Test("repeated long names are shared, and names of equal length but different bytes stay distinct")
    func nameCache() throws {
        var page = Strata_V1_ReadResponse()
        for i in 0..<100 {
            var event = Strata_V1_RecordedEvent()
            event.stream = "long-stream-name-\(i % 20 + 10)"  // 20 distinct names of the same length, more than the cache holds
            event.type = "AVeryLongEventTypeName\(i % 3)"
            event.contentType = "application/json"
            event.revision = UInt64(i)
            page.events.append(event)
        }
        let decoded = try ReadResponseDecoder.decode(try page.serializedBytes())
        #expect(decoded.events == page.events.map(StrataClient.RecordedEvent.init))
    }

    @Test("decodes SubscribeResponse pages and markers as swift-protobuf writes them; truncations never crash")
    func subscription() throws {
        var reference = Strata_V1_SubscribeResponse()
        reference.events = Self.sample().events
        reference.caughtUp.position = 300
        reference.caughtUp.nextRevision = 17
        reference.checkpoint.position = 1 << 33
        let bytes: [UInt8] = try reference.serializedBytes()
        let page = try ReadResponseDecoder.decodeSubscription(bytes)
        #expect(page.events == reference.events.map(StrataClient.RecordedEvent.init))
        #expect(page.caughtUp == 300 && page.caughtUpNextRevision == 17)
        #expect(page.checkpoint == 1 << 33)
        var markerOnly = Strata_V1_SubscribeResponse()
        markerOnly.caughtUp = Strata_V1_SubscriptionCaughtUp()  // position 0: an empty nested message
        let empty = try ReadResponseDecoder.decodeSubscription(try markerOnly.serializedBytes())
        #expect(empty.caughtUp == 0 && empty.events.isEmpty && empty.checkpoint == nil)
        for cut in stride(from: 0, to: bytes.count, by: 97) {
            _ = try? ReadResponseDecoder.decodeSubscription(Array(bytes[0 ..< cut]))
        }
    }
}

extension StrataClient.RecordedEvent {
    /// The reference conversion from the generated message, for comparing
    /// the hand-written decoder with swift-protobuf.
    init(_ p: Strata_V1_RecordedEvent) {
        let id = p.id.count == 16 ? p.id.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
            : UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        self.init(id: id, stream: p.stream, revision: p.revision, position: p.position, type: p.type,
                  contentType: p.contentType, data: p.data, metadata: p.metadata, recordedAt: p.recordedAt)
    }
}
