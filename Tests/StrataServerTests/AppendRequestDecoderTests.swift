import Foundation
import StrataProto
@testable import StrataServer
import StrataStorage
import StrataWire
import SwiftProtobuf
import Testing
import StrataSupport

/// The reference: swift-protobuf's decoding, then the conversion the server
/// used before the hand-written decoder.
enum ReferenceAppendDecoding {
    static func write(_ bytes: [UInt8], index: Int? = nil) throws -> StreamWrite {
        try write(from: Strata_V1_AppendRequest(serializedBytes: bytes), index: index)
    }

    static func write(from request: Strata_V1_AppendRequest, index: Int? = nil) throws -> StreamWrite {
        var events: [ProposedEvent] = []
        for (i, event) in request.events.enumerated() {
            let id: UUID
            if event.id.isEmpty {
                id = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))  // assigned by the server: compared apart
            } else if event.id.count == 16 {
                id = event.id.withUnsafeBytes { UUID(uuid: $0.loadUnaligned(as: uuid_t.self)) }
            } else {
                let prefix = index.map { "writes[\($0)]." } ?? ""
                throw RPCError.invalidArgument(field: "\(prefix)events[\(i)].id", reason: "an event id has 16 bytes, not \(event.id.count)")
            }
            events.append(ProposedEvent(id: id, type: event.type,
                                        contentType: event.contentType.isEmpty ? "application/json" : event.contentType,
                                        data: event.data, metadata: event.metadata))
        }
        return StreamWrite(stream: request.stream, expected: ExpectedRevision(proto: request.hasExpected ? request.expected : nil),
                           events: events)
    }
}

@Suite("Hand-written AppendRequest decoder")
struct AppendRequestDecoderTests {
    /// Server-assigned ids are random: blank them on both sides before comparing.
    static func comparable(_ write: StreamWrite, blanking ids: Set<Int>) -> StreamWrite {
        var copy = write
        for i in ids where i < copy.events.count { copy.events[i].id = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) }
        return copy
    }

    static func sample(_ seed: UInt64) -> (Strata_V1_AppendRequest, Set<Int>) {
        // A linear congruential sequence: enough variety, replayable by seed.
        var state = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        var request = Strata_V1_AppendRequest()
        request.stream = ["", "order-1", "ünïcode-😀-\(seed)"][Int(next() % 3)]
        switch next() % 5 {
        case 0: break
        case 1: request.expected.any = Strata_V1_Empty()
        case 2: request.expected.noStream = Strata_V1_Empty()
        case 3: request.expected.streamExists = Strata_V1_Empty()
        default: request.expected.exact = next() % 3 == 0 ? 0 : next()
        }
        var blank: Set<Int> = []
        for i in 0 ..< Int(next() % 12) {
            var event = Strata_V1_ProposedEvent()
            if next() % 4 == 0 { blank.insert(i) } else { event.id = Data((0 ..< 16).map { _ in UInt8(truncatingIfNeeded: next()) }) }
            event.type = next() % 5 == 0 ? "" : "Type\(i)"
            event.contentType = ["", "application/json", "application/x-custom"][Int(next() % 3)]
            event.data = Data(repeating: UInt8(i), count: Int(next() % 300))
            event.metadata = next() % 2 == 0 ? Data() : Data("m\(i)".utf8)
            request.events.append(event)
        }
        return (request, blank)
    }

    @Test("decodes what swift-protobuf encodes exactly as the reference conversion does", arguments: 0 ..< 40)
    func matchesReference(seed: UInt64) throws {
        let (request, blank) = Self.sample(seed)
        var bytes: [UInt8] = try request.serializedBytes()
        if seed % 2 == 0 { bytes += [0x78, 0x05, 0x82, 0x01, 0x02, 0x01, 0x02] }  // unknown fields 15 and 16
        let ours = try AppendRequestDecoder.decode(bytes)
        let reference = try ReferenceAppendDecoding.write(bytes)
        #expect(Self.comparable(ours, blanking: blank) == reference)
        for i in blank { #expect(ours.events[i].id != UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))) }
    }

    @Test("AppendMulti: each write decodes as the reference does, with its index in id errors")
    func multi() throws {
        var request = Strata_V1_AppendMultiRequest()
        var blanks: [Set<Int>] = []
        for seed in UInt64(0) ..< 5 {
            let (write, blank) = Self.sample(seed + 100)
            request.writes.append(write)
            blanks.append(blank)
        }
        let ours = try AppendRequestDecoder.decodeMulti(try request.serializedBytes())
        #expect(ours.count == 5)
        for (i, write) in ours.enumerated() {
            #expect(Self.comparable(write, blanking: blanks[i]) == (try ReferenceAppendDecoding.write(from: request.writes[i], index: i)))
        }
        var bad = request
        bad.writes[3].events = [Strata_V1_ProposedEvent()]
        bad.writes[3].events[0].id = Data([1, 2, 3])
        #expect(throws: RPCError.invalidArgument(field: "writes[3].events[0].id", reason: "an event id has 16 bytes, not 3")) {
            _ = try AppendRequestDecoder.decodeMulti(try bad.serializedBytes())
        }
    }

    @Test("a repeated expected message merges as protobuf merges; the last oneof field wins")
    func repeatedExpected() throws {
        var first = Strata_V1_AppendRequest()
        first.expected.exact = 7
        var second = Strata_V1_AppendRequest()
        second.expected = Strata_V1_ExpectedRevision()  // present but empty: keeps exact 7
        var third = Strata_V1_AppendRequest()
        third.expected.noStream = Strata_V1_Empty()
        for parts in [[first, second], [first, third], [third, first]] {
            var bytes: [UInt8] = []
            for part in parts { bytes += try part.serializedBytes() as [UInt8] }
            #expect(try AppendRequestDecoder.decode(bytes).expected == (try ReferenceAppendDecoding.write(bytes)).expected)
        }
    }

    @Test("every truncation is refused exactly when swift-protobuf refuses it; bad ids name the event")
    func truncationsAndBadIDs() throws {
        let (request, _) = Self.sample(7)
        let bytes: [UInt8] = try request.serializedBytes()
        for cut in 0 ..< bytes.count {
            let prefix = Array(bytes[0 ..< cut])
            let theirs = (try? ReferenceAppendDecoding.write(prefix)) != nil
            let ours = (try? AppendRequestDecoder.decode(prefix)) != nil
            #expect(ours == theirs, "cut at \(cut)")
        }
        var bad = Strata_V1_AppendRequest()
        bad.events = [Strata_V1_ProposedEvent(), Strata_V1_ProposedEvent()]
        bad.events[1].id = Data(repeating: 1, count: 17)
        #expect(throws: RPCError.invalidArgument(field: "events[1].id", reason: "an event id has 16 bytes, not 17")) {
            _ = try AppendRequestDecoder.decode(try bad.serializedBytes())
        }
        // Malformed contents of an Empty inside expected are refused too.
        let malformedEmpty: [UInt8] = [0x12, 0x03, 0x0A, 0x01, 0x80]  // expected.any = { truncated varint }
        #expect((try? ReferenceAppendDecoding.write(malformedEmpty)) == nil)
        #expect(throws: RPCError.self) { _ = try AppendRequestDecoder.decode(malformedEmpty) }
    }
}
