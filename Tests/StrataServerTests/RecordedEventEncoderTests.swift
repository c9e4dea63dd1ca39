import Foundation
import StrataTestSupport
import StrataProto
@testable import StrataServer
import StrataStorage
import SwiftProtobuf
import Testing
import StrataSupport

@Suite("Hand-written ReadResponse encoder")
struct RecordedEventEncoderTests {
    @Test("writes the same bytes as swift-protobuf for varied events, and decodes with the generated code")
    func matchesSwiftProtobuf() throws {
        let directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("strata-encoder-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = EventStoreOptions()
        options.mapSize = 64 << 20
        let store = try EventStore(path: directory, tenant: "t", options: options)
        defer { store.close() }
        _ = try store.append(to: "ünïcode-stream-😀", expected: .any, events: [
            ProposedEvent(type: "A", data: Data()),  // revision 0, empty data and metadata
            ProposedEvent(type: "B", contentType: "application/octet-stream", data: Data(repeating: 7, count: 300),
                          metadata: Data("meta".utf8)),
        ])
        _ = try store.append(to: "s", expected: .any, events: (0..<200).map { i in
            ProposedEvent(type: "T\(i)", data: Data(repeating: UInt8(i), count: i * 97))
        })
        let events = try store.readAll(maxCount: 1000).events
        #expect(events.count == 202)
        for end in [false, true] {
            var handWritten: [UInt8] = []
            for event in events { RecordedEventEncoder.appendEvent(event, to: &handWritten) }
            if end { RecordedEventEncoder.appendEndOfStream(to: &handWritten) }
            var reference = Strata_V1_ReadResponse()
            reference.events = events.map(StreamsService.proto)
            reference.endOfStream = end
            let expected: [UInt8] = try reference.serializedBytes()
            #expect(handWritten == expected)
            let decoded = try Strata_V1_ReadResponse(serializedBytes: handWritten)
            #expect(decoded == reference)
        }
    }

    @Test("SubscribeResponse markers are the bytes swift-protobuf writes", arguments: [UInt64(0), 1, 127, 128, 1 << 40, UInt64.max])
    func subscriptionMarkers(position: UInt64) throws {
        for nextRevision in [UInt64(0), 1, 300, position] {
            var caughtUp: [UInt8] = []
            RecordedEventEncoder.appendCaughtUp(position, nextRevision: nextRevision, to: &caughtUp)
            var reference = Strata_V1_SubscribeResponse()
            reference.caughtUp.position = position
            reference.caughtUp.nextRevision = nextRevision
            #expect(caughtUp == (try reference.serializedBytes()))
        }
        var reference: Strata_V1_SubscribeResponse

        var checkpoint: [UInt8] = []
        RecordedEventEncoder.appendCheckpoint(position, to: &checkpoint)
        reference = Strata_V1_SubscribeResponse()
        reference.checkpoint.position = position
        #expect(checkpoint == (try reference.serializedBytes()))
    }
}
