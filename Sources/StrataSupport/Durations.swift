import Foundation

extension Duration {
    /// The duration in seconds, as a Double (timers, rates, logs).
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Whole nanoseconds, saturating at `Int64.max` / `Int64.min` instead of trapping.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, sumOverflow) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if sumOverflow { return seconds < 0 ? .min : .max }
        return sum
    }
}

/// Timestamps as Strata stores and sends them: nanoseconds since the Unix
/// epoch in an Int64 (enough until the year 2262).
public enum UnixNanoseconds {
    /// Now, in nanoseconds since the epoch.
    public static var now: Int64 { from(Date()) }

    /// `date` in nanoseconds since the epoch, saturating outside Int64's
    /// range. Whole seconds and the fraction convert apart, so the
    /// nanoseconds are as exact as the date's Double allows.
    public static func from(_ date: Date) -> Int64 {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite else { return interval > 0 ? .max : .min }
        let whole = interval.rounded(.down)
        // ±9.3e9 s is past Int64's ±9.22e18 ns: decide by checked arithmetic below.
        guard whole < 9.3e9 else { return .max }
        guard whole > -9.3e9 else { return .min }
        let fraction = Int64(((interval - whole) * 1e9).rounded())
        let (scaled, overflow) = Int64(whole).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return whole > 0 ? .max : .min }
        let (sum, sumOverflow) = scaled.addingReportingOverflow(fraction)
        if sumOverflow { return whole > 0 ? .max : .min }
        return sum
    }

    /// The date of a nanosecond timestamp (to Date's precision, about a
    /// microsecond today).
    public static func date(_ nanoseconds: Int64) -> Date {
        let (seconds, remainder) = nanoseconds.quotientAndRemainder(dividingBy: 1_000_000_000)
        return Date(timeIntervalSince1970: Double(seconds) + Double(remainder) / 1e9)
    }
}
