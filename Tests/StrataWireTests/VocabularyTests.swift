import Foundation
import StrataProto
import StrataSupport
import StrataWire
import Testing

/// The vocabulary client, server and storage share: revisions and their
/// protobuf form, durations, timestamps, event ids.
@Suite("Shared vocabulary")
struct VocabularyTests {
    @Test("every expected and actual revision survives its protobuf form; unset means any and no stream")
    func revisionsRoundTrip() {
        let expected: [ExpectedRevision] = [.any, .noStream, .streamExists, .exact(0), .exact(.max)]
        for revision in expected {
            #expect(ExpectedRevision(proto: revision.proto) == revision)
        }
        #expect(ExpectedRevision(proto: nil) == .any)
        #expect(ExpectedRevision(proto: Strata_V1_ExpectedRevision()) == .any)
        let actual: [ActualRevision] = [.noStream, .deleted(lastRevision: 7), .revision(0), .revision(.max)]
        for revision in actual {
            #expect(ActualRevision(proto: revision.proto) == revision)
        }
        #expect(ActualRevision(proto: Strata_V1_ActualRevision()) == .noStream)
    }

    @Test("durations convert to seconds and saturate in nanoseconds instead of trapping")
    func durations() {
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.nanoseconds(42).nanoseconds == 42)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        #expect(Duration.seconds(Int64.min).nanoseconds == .min)
        #expect(Duration.seconds(-2).nanoseconds == -2_000_000_000)
    }

    @Test("timestamps in nanoseconds since the epoch convert both ways and saturate")
    func timestamps() {
        let date = Date(timeIntervalSince1970: 1_700_000_000.25)
        #expect(UnixNanoseconds.from(date) == 1_700_000_000_250_000_000)
        #expect(abs(UnixNanoseconds.date(1_700_000_000_250_000_123).timeIntervalSince1970 - 1_700_000_000.250_000_123) < 1e-6)
        #expect(UnixNanoseconds.from(.distantFuture) == .max)
        // The last representable second (April 2262) still converts exactly.
        #expect(UnixNanoseconds.from(Date(timeIntervalSince1970: 9_223_372_035)) == 9_223_372_035_000_000_000)
        #expect(UnixNanoseconds.from(Date(timeIntervalSince1970: 9_223_372_037)) == .max)
        #expect(UnixNanoseconds.from(Date(timeIntervalSince1970: -1e12)) == .min)
    }

    @Test("time-ordered ids are version 7, distinct, and sort by their millisecond")
    func timeOrderedIDs() {
        let early = UUID.timeOrdered(now: Date(timeIntervalSince1970: 1_000))
        let late = UUID.timeOrdered(now: Date(timeIntervalSince1970: 2_000))
        #expect(early.uuidString < late.uuidString)
        #expect(early.uuid.6 >> 4 == 7)
        #expect(early.uuid.8 >> 6 == 0b10)
        // Beyond 48 bits of milliseconds, or not finite: clamped, never a trap.
        #expect(UUID.timeOrdered(now: Date(timeIntervalSince1970: 1e20)).uuidString.hasPrefix("FFFFFFFF-FFFF-7"))
        #expect(UUID.timeOrdered(now: Date(timeIntervalSince1970: -5)).uuidString.hasPrefix("00000000-0000-7"))
        let many = Set((0..<10_000).map { _ in UUID.timeOrdered() })
        #expect(many.count == 10_000)
    }
}
