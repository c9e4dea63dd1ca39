import Testing
@testable import StrataWire

@Suite("UTF-8 validation")
struct UTF8ValidationTests {
    func string(_ bytes: [UInt8]) -> String? { bytes.withUnsafeBytes { UTF8Validation.string($0) } }

    @Test("ASCII, multi-byte text and the empty string come back unchanged")
    func valid() {
        for text in ["", "order-1", "ünïcode-😀-stream", "日本語", String(repeating: "a", count: 10_000) + "é"] {
            #expect(string(Array(text.utf8)) == text)
        }
    }

    @Test("invalid UTF-8 is refused, never repaired", arguments: [
        [0xC3, 0x28], [0xFF], [0x61, 0x80], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xED, 0xA0, 0x80],  // lone surrogate
        [0xC0, 0xAF],  // overlong
    ] as [[UInt8]])
    func invalid(bytes: [UInt8]) {
        #expect(string(bytes) == nil)
    }
}
