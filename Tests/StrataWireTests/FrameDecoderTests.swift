import Testing
@testable import StrataWire

@Suite("Frame codec")
struct FrameDecoderTests {
    let frames = [
        Frame(type: .settings, payload: [1, 2, 3]),
        Frame(type: .headers, callID: 1, payload: Array("hello".utf8)),
        Frame(type: .message, flags: .endStream, callID: 1, payload: []),
        Frame(type: .ping, flags: .ack, payload: [0, 0, 0, 0, 0, 0, 0, 7]),
        Frame(type: .trailers, callID: 0xFFFF_FFFF, payload: Array(repeating: 9, count: 300)),
    ]

    var stream: [UInt8] { Preface.bytes + frames.flatMap(\.encoded) }

    @Test("the header is 10 big-endian bytes: length, type, flags, call id")
    func headerLayout() {
        let bytes = Frame(type: .message, flags: .endStream, callID: 0x0102_0304, payload: [0xAA, 0xBB]).encoded
        #expect(bytes == [0, 0, 0, 2, 0x03, 0x01, 1, 2, 3, 4, 0xAA, 0xBB])
        #expect(Preface.bytes == [0x53, 0x54, 0x52, 0x41, 0x54, 0x41, 0x00, 0x01])
    }

    @Test("many frames in one read come out in order")
    func coalesced() throws {
        var decoder = FrameDecoder(maxPayloadSize: 1024, expectPreface: true)
        decoder.append(stream)
        var out: [Frame] = []
        while let frame = try decoder.next() { out.append(frame) }
        #expect(out == frames)
        #expect(decoder.bufferedBytes == 0)
    }

    @Test("frames split at every possible byte boundary decode the same", arguments: [1, 2, 3, 7, 10, 11, 64])
    func split(chunk: Int) throws {
        var decoder = FrameDecoder(maxPayloadSize: 1024, expectPreface: true)
        var out: [Frame] = []
        var index = 0
        let bytes = stream
        while index < bytes.count {
            decoder.append(bytes[index ..< min(index + chunk, bytes.count)])
            index += chunk
            while let frame = try decoder.next() { out.append(frame) }
        }
        #expect(out == frames)
    }

    @Test("an oversized frame is refused from its header, before the payload arrives")
    func oversized() {
        var decoder = FrameDecoder(maxPayloadSize: 100, expectPreface: false)
        decoder.append([0, 0, 0, 101, 0x03, 0, 0, 0, 0, 1])
        #expect(throws: FrameDecodingError.frameTooLarge(length: 101, limit: 100)) { try decoder.next() }
    }

    @Test("an unknown frame type is refused")
    func unknownType() {
        var decoder = FrameDecoder(maxPayloadSize: 100, expectPreface: false)
        decoder.append([0, 0, 0, 0, 0x7F, 0, 0, 0, 0, 1])
        #expect(throws: FrameDecodingError.unknownFrameType(0x7F)) { try decoder.next() }
    }

    @Test("a wrong preface is refused as soon as a wrong byte arrives")
    func badPreface() {
        var decoder = FrameDecoder(maxPayloadSize: 100, expectPreface: true)
        decoder.append(Array("GET".utf8))
        #expect(throws: FrameDecodingError.badPreface) { try decoder.next() }
        var partial = FrameDecoder(maxPayloadSize: 100, expectPreface: true)
        partial.append(Array("STR".utf8))
        #expect(throws: Never.self) { try partial.next() }
    }

    @Test("another protocol version is refused with the version it sent")
    func version() {
        var decoder = FrameDecoder(maxPayloadSize: 100, expectPreface: true)
        decoder.append(Preface.magic + [0, 9])
        #expect(throws: FrameDecodingError.unsupportedVersion(9)) { try decoder.next() }
    }

    @Test("status codes have gRPC's numbers")
    func statusCodes() {
        #expect(StatusCode.allCases.map(\.rawValue) == Array(0...16))
        #expect(StatusCode.failedPrecondition.rawValue == 9)
        #expect(StatusCode.unauthenticated.description == "UNAUTHENTICATED")
    }
}
