/// Renders values in the configuration file's own syntax, so that what `subgate check`
/// prints can be pasted back into a file.
enum ConfigRendering {
    /// The largest unit that divides the duration exactly: `1h`, `10m`, `90s`, `100ms`, `0s`.
    static func duration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        // The parser only produces whole, non-negative milliseconds; anything else was built
        // in code, and Swift's own rendering is more honest than a rounded one.
        guard duration >= .zero, !overflow, attoseconds % attosecondsPerMillisecond == 0 else {
            return "\(duration)"
        }
        let total = milliseconds + attoseconds / attosecondsPerMillisecond
        if total == 0 { return "0s" }
        if total % 3_600_000 == 0 { return "\(total / 3_600_000)h" }
        if total % 60_000 == 0 { return "\(total / 60_000)m" }
        if total % 1000 == 0 { return "\(total / 1000)s" }
        return "\(total)ms"
    }

    /// The largest 1024-based suffix that divides the size exactly: `10m`, `16k`, `1000`.
    static func size(_ bytes: Int) -> String {
        let mebibyte = 1024 * 1024
        if bytes != 0, bytes % mebibyte == 0 { return "\(bytes / mebibyte)m" }
        if bytes != 0, bytes % 1024 == 0 { return "\(bytes / 1024)k" }
        return "\(bytes)"
    }

    /// `300/min` or `5/s`.
    static func rate(_ rate: Rate) -> String {
        if rate.per == .seconds(1) { return "\(rate.count)/s" }
        if rate.per == .seconds(60) { return "\(rate.count)/min" }
        // Not expressible in the file's syntax; only code can build such a rate.
        return "\(rate.count) per \(self.duration(rate.per))"
    }

    /// `<redacted>` when set, `(unset)` when not: whether a secret is set is useful to see,
    /// its value never is.
    static func secret(_ secret: Secret?) -> String {
        secret == nil ? "(unset)" : "<redacted>"
    }
}
