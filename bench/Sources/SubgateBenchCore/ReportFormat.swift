/// Number and table formatting for the bench's reports, without Foundation.
public enum ReportFormat {
    /// `value` with exactly `digits` decimals.
    public static func fixed(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let negative = value < 0
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return String(value) }
        let integer = Int(scaled)
        var whole = String(integer / Int(scale))
        if negative && integer != 0 { whole = "-" + whole }
        guard digits > 0 else { return whole }
        var fraction = String(integer % Int(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return whole + "." + fraction
    }

    /// Up to three decimals, trailing zeros dropped: 1, 0.05, 99.9.
    public static func trimmed(_ value: Double) -> String {
        var text = self.fixed(value, digits: 3)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }

    /// 1 234 567 (thin groups with a space, as SPEC's figures are written).
    public static func grouped(_ value: Int) -> String {
        let digits = String(abs(value))
        var out = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(" ") }
            out.append(ch)
        }
        return value < 0 ? "-" + out : out
    }

    /// A latency given in microseconds: `85µs`, `1.24ms`, `2.1s`.
    public static func latency(_ micros: Double) -> String {
        if micros < 1000 { return "\(self.fixed(micros, digits: micros < 10 ? 1 : 0))µs" }
        if micros < 1_000_000 { return "\(self.fixed(micros / 1000, digits: micros < 100_000 ? 2 : 1))ms" }
        return "\(self.fixed(micros / 1_000_000, digits: 2))s"
    }

    /// `x` to two decimals, as in `0.34×`; "–" when there is nothing to compare with.
    public static func ratio(_ value: Double, _ base: Double) -> String {
        guard base > 0, value.isFinite else { return "–" }
        return self.fixed(value / base, digits: 2) + "×"
    }

    /// Columns padded to their widest cell; `rightAligned` column indices are right-aligned.
    public static func table(header: [String], rows: [[String]], rightAligned: Set<Int>) -> [String] {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (i, cell) in cells.enumerated() {
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                parts.append(rightAligned.contains(i) ? pad + cell : cell + pad)
            }
            var text = parts.joined(separator: "  ")
            while text.hasSuffix(" ") { text.removeLast() }
            return text
        }
        return [line(header)] + rows.map(line)
    }
}
