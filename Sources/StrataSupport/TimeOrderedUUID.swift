import Foundation
import Synchronization

extension UUID {
    /// A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74
    /// bits that are unique within this process and unpredictable across
    /// processes. Ids made this way sort by creation time, so the event-id
    /// index grows near its right edge instead of touching random pages on
    /// every append. The default for new events.
    public static func timeOrdered(now: Date = Date()) -> UUID {
        // 48 bits of milliseconds (until the year 10889); a date outside that
        // (or not finite) is clamped rather than trapping or wrapping.
        let raw = now.timeIntervalSince1970 * 1000
        let millis: UInt64 = raw.isFinite ? UInt64(max(0, min(raw, Double((1 << 48) - 1)))) : (raw > 0 ? (1 << 48) - 1 : 0)
        let (high, low) = TimeOrderedIDSource.shared.next()
        var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &bytes) { raw in
            for i in 0..<6 { raw[i] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - UInt64(i)))) }
            raw[6] = 0x70 | UInt8(truncatingIfNeeded: high & 0x0F)  // version 7
            raw[7] = UInt8(truncatingIfNeeded: high >> 8)
            raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw[8] = 0x80 | (raw[8] & 0x3F)  // RFC 9562 variant
        }
        return UUID(uuid: bytes)
    }
}

/// The random part of time-ordered ids without a system call per id: a
/// process-wide counter, started at a random value, run through SplitMix64
/// (a bijection, so distinct counter values never give the same 64 bits).
/// Lock-free; shared by every thread.
final class TimeOrderedIDSource: Sendable {
    static let shared = TimeOrderedIDSource()

    private let counter: Atomic<UInt64>
    private let salt: UInt64

    private init() {
        var generator = SystemRandomNumberGenerator()
        counter = Atomic(generator.next())
        salt = generator.next()
    }

    func next() -> (UInt64, UInt64) {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return (Self.mix(n ^ salt), Self.mix(n))
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
