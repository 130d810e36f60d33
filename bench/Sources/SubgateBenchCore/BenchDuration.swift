/// Durations as the bench's options and scripts write them: `10s`, `500ms`, `2m`, `1.5s`,
/// `1h`; a bare number is seconds.
public enum BenchDuration {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(text)
        var scale = 1.0
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        return .nanoseconds(Int64((value * scale * 1_000_000_000).rounded()))
    }

    /// `10s`, `1.5s`, `250ms`: how reports print a duration.
    public static func describe(_ duration: Duration) -> String {
        let seconds = duration.seconds
        if seconds >= 1 || seconds == 0 {
            return seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(Self.fixed(seconds, 1))s"
        }
        return "\(Int((seconds * 1000).rounded()))ms"
    }

    static func fixed(_ value: Double, _ digits: Int) -> String {
        ReportFormat.fixed(value, digits: digits)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double {
        let (whole, atto) = self.components
        return Double(whole) + Double(atto) / 1e18
    }

    /// The duration in nanoseconds, saturating.
    public var nanoseconds: Int64 {
        let (whole, atto) = self.components
        let (product, overflow) = whole.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return whole < 0 ? .min : .max }
        return product &+ atto / 1_000_000_000
    }
}
