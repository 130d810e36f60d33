/// What `subgate-bench settle` learns after a Subgate row: Subgate flushed until nothing was
/// pending, then the simulator's own counts.
public struct SettleReport: Codable, Sendable, Equatable {
    /// `POST /flush` calls it took.
    public var flushes: Int
    public var flushSeconds: Double
    /// Units Subgate still held when settling stopped (0 when it finished).
    public var pendingUnits: Int
    /// Calls that reached the simulator's verify / usage endpoints (since its last reset).
    public var verifyCalls: Int
    public var usageCalls: Int
    /// The most calls in any sliding 60 s, as the simulator counts them (its `max_per_minute`;
    /// for a run shorter than a minute, all of its calls).
    public var verifyMaxPerMinute: Int
    public var usageMaxPerMinute: Int
    /// Units the simulator accepted (answered 200), summed over every token.
    public var acceptedUnits: Int

    public init(flushes: Int, flushSeconds: Double, pendingUnits: Int, verifyCalls: Int, usageCalls: Int, verifyMaxPerMinute: Int, usageMaxPerMinute: Int, acceptedUnits: Int) {
        self.flushes = flushes
        self.flushSeconds = flushSeconds
        self.pendingUnits = pendingUnits
        self.verifyCalls = verifyCalls
        self.usageCalls = usageCalls
        self.verifyMaxPerMinute = verifyMaxPerMinute
        self.usageMaxPerMinute = usageMaxPerMinute
        self.acceptedUnits = acceptedUnits
    }
}

/// One row of the comparison, as `bench/run.sh` writes it (one JSON object per line).
public struct CompareRow: Codable, Sendable, Equatable {
    /// `direct`, `nginx`, `subgate-hot`, …: `direct` and `nginx` are the baselines of their group.
    public var label: String
    /// Rows are compared within a group (`c64`, `c1`).
    public var group: String
    public var load: LoadReport
    /// Subgate's resident set after the row, KiB (Subgate rows only).
    public var rssKiB: Int?
    public var settle: SettleReport?

    public init(label: String, group: String, load: LoadReport, rssKiB: Int? = nil, settle: SettleReport? = nil) {
        self.label = label
        self.group = group
        self.load = load
        self.rssKiB = rssKiB
        self.settle = settle
    }

    /// "12 345 = 12 345" when the simulator accepted exactly the billable units, else the
    /// difference (and what Subgate still held).
    public var billing: String {
        guard let settle else { return "–" }
        let expected = self.load.billableUnits
        let got = settle.acceptedUnits
        if got == expected && settle.pendingUnits == 0 {
            return "\(ReportFormat.grouped(got)) = \(ReportFormat.grouped(expected)) ✓"
        }
        var text = "\(ReportFormat.grouped(got)) vs \(ReportFormat.grouped(expected)) (\(got - expected >= 0 ? "+" : "")\(ReportFormat.grouped(got - expected))"
        if settle.pendingUnits > 0 { text += ", \(ReportFormat.grouped(settle.pendingUnits)) still pending" }
        return text + ") ✗"
    }
}

/// The one comparison table `bench/run.sh` prints: throughput with ratios to nginx and to
/// direct, latency percentiles, errors, and for Subgate rows RSS, control-plane calls and
/// billing exactness; then the c=1 rows with the median Subgate and nginx add over direct.
public enum CompareTable {
    public static func render(_ rows: [CompareRow]) -> String {
        var out: [String] = []
        var groups: [String] = []
        for row in rows where !groups.contains(row.group) { groups.append(row.group) }
        for group in groups {
            let members = rows.filter { $0.group == group }
            let direct = members.first { $0.label == "direct" }?.load
            let nginx = members.first { $0.label == "nginx" }?.load
            guard let first = members.first?.load else { continue }
            let loopText = first.targetRate.map { "open loop \(ReportFormat.grouped(Int($0))) req/s, " } ?? "closed loop, "
            out.append("[\(group)] \(loopText)\(first.connections) connection(s), \(ReportFormat.trimmed(first.warmupSeconds))s warm-up + \(ReportFormat.trimmed(first.durationSeconds))s per row")
            let header = ["target", "req/s", "÷nginx", "÷direct", "p50", "+p50 vs direct", "p90", "p99", "p99.9", "max", "errors", "RSS MiB", "verify/min", "usage/min", "units billed = billable"]
            var lines: [[String]] = []
            for row in members {
                let load = row.load
                let addedMedian: String
                if let direct, row.label != "direct" {
                    addedMedian = ReportFormat.latency(load.latency.p50 - direct.latency.p50)
                } else {
                    addedMedian = "–"
                }
                lines.append([
                    row.label,
                    ReportFormat.grouped(Int(load.requestsPerSecond.rounded())) + (load.tokensExhausted ? "*" : ""),
                    nginx.map { ReportFormat.ratio(load.requestsPerSecond, $0.requestsPerSecond) } ?? "–",
                    direct.map { ReportFormat.ratio(load.requestsPerSecond, $0.requestsPerSecond) } ?? "–",
                    ReportFormat.latency(load.latency.p50),
                    addedMedian,
                    ReportFormat.latency(load.latency.p90),
                    ReportFormat.latency(load.latency.p99),
                    ReportFormat.latency(load.latency.p999),
                    ReportFormat.latency(load.latency.max),
                    load.errorSummary,
                    row.rssKiB.map { ReportFormat.fixed(Double($0) / 1024, digits: 1) } ?? "–",
                    row.settle.map { ReportFormat.grouped($0.verifyMaxPerMinute) } ?? "–",
                    row.settle.map { ReportFormat.grouped($0.usageMaxPerMinute) } ?? "–",
                    row.billing,
                ])
            }
            out.append(contentsOf: ReportFormat.table(header: header, rows: lines, rightAligned: [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]))
            for row in members {
                out.append("  \(row.label): \(row.load.mix); \(ReportFormat.grouped(row.load.requests)) requests measured")
            }
            if members.contains(where: { $0.load.tokensExhausted }) {
                out.append("* the row's tokens ran out before the end: its window was cut short (req/s is over the shorter window)")
            }
            out.append("")
        }
        return out.joined(separator: "\n")
    }
}
