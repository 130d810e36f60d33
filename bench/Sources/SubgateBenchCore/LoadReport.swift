import Histogram

/// The result of one load run: what `subgate-bench load` prints as a table or as JSON
/// (`--json`, one line), and what `subgate-bench table` reads back.
public struct LoadReport: Codable, Sendable, Equatable {
    public struct Latency: Codable, Sendable, Equatable {
        /// Microseconds.
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var p999: Double
        public var max: Double
        public var mean: Double
        public var count: Int
    }

    public struct Errors: Codable, Sendable, Equatable {
        public var timeout: Int
        /// Connection closed with a request in flight.
        public var closed: Int
        public var connect: Int
        /// Answers that did not parse as HTTP/1.1.
        public var `protocol`: Int
        public var total: Int { self.timeout + self.closed + self.connect + self.protocol }
    }

    public var label: String
    public var target: String
    /// `closed` or `open`.
    public var loop: String
    public var connections: Int
    public var threads: Int
    /// `fast` or `nio`: the generator's answer parser.
    public var decoder: String
    /// Open loop's target rate (requests/s); nil for a closed loop.
    public var targetRate: Double?
    /// The token mix, as `hot`, `zipf(1.0) over 10000 tokens, 5% invalid, 5% no token`.
    public var mix: String
    public var warmupSeconds: Double
    /// The measured window actually run (shorter than asked when sequential tokens ran out).
    public var durationSeconds: Double
    /// Answers that ended inside the measured window.
    public var requests: Int
    public var requestsPerSecond: Double
    /// Requests due inside the window, from their due (open loop) or send (closed loop) time
    /// to the end of their answer.
    public var latency: Latency
    /// Statuses of the measured requests ("200": n); errors are separate.
    public var statuses: [String: Int]
    /// Transport errors over the whole run.
    public var errors: Errors
    /// 2xx/3xx answers to requests with a valid token over the whole run (warm-up and drain
    /// included): what the control plane should be billed for, in answers.
    public var billableAnswers: Int
    /// billableAnswers × units per answer (1 unless `--usage N`).
    public var billableUnits: Int
    /// Every answer of the run and every request sent.
    public var responses: Int
    public var sent: Int
    public var validSent: Int
    public var tokensExhausted: Bool
    public var unsentDue: Int

    public init(label: String, plan: LoadPlan, tally: LoadTally, measuredSeconds: Double) {
        self.label = label
        self.target = plan.target.url
        switch plan.loop {
        case .closed:
            self.loop = "closed"
            self.targetRate = nil
        case .open(let schedule):
            self.loop = "open"
            self.targetRate = schedule.rate
        }
        self.connections = plan.connections
        self.threads = plan.threads
        self.decoder = plan.decoder.rawValue
        self.mix = Self.describe(plan.mix)
        self.warmupSeconds = plan.warmup.seconds
        self.durationSeconds = measuredSeconds
        self.requests = tally.completedInWindow
        self.requestsPerSecond = measuredSeconds > 0 ? Double(tally.completedInWindow) / measuredSeconds : 0
        let h = tally.latency
        func micros(_ ns: UInt64) -> Double { (Double(ns) / 1000 * 10).rounded() / 10 }
        let count = Int(h.totalCount)
        self.latency = Latency(
            p50: count > 0 ? micros(h.valueAtPercentile(50)) : 0,
            p90: count > 0 ? micros(h.valueAtPercentile(90)) : 0,
            p99: count > 0 ? micros(h.valueAtPercentile(99)) : 0,
            p999: count > 0 ? micros(h.valueAtPercentile(99.9)) : 0,
            max: count > 0 ? micros(h.max) : 0,
            mean: count > 0 ? (h.mean / 100).rounded() / 10 : 0,
            count: count
        )
        var statuses: [String: Int] = [:]
        for (status, n) in tally.measuredStatuses.enumerated() where n > 0 {
            statuses[status == 0 ? "other" : String(status)] = n
        }
        self.statuses = statuses
        self.errors = Errors(timeout: tally.timeouts, closed: tally.closedInFlight, connect: tally.connectFailures, protocol: tally.protocolErrors)
        self.billableAnswers = tally.billable
        self.billableUnits = tally.billable * plan.unitsPerBillableAnswer
        self.responses = tally.responses
        self.sent = tally.sent
        self.validSent = tally.validSent
        self.tokensExhausted = tally.tokensExhausted
        self.unsentDue = tally.unsentDue
    }

    public static func describe(_ mix: TokenMix) -> String {
        var text: String
        switch mix.selection {
        case .hot: text = "hot (1 token)"
        case .zipf(let s): text = "zipf(\(ReportFormat.trimmed(s))) over \(mix.validTokens) tokens"
        case .uniform: text = "uniform over \(mix.validTokens) tokens"
        case .sequential: text = "cold (each of \(mix.validTokens) tokens once)"
        }
        if mix.invalidShare > 0 { text += ", \(ReportFormat.trimmed(mix.invalidShare * 100))% invalid" }
        if mix.noTokenShare > 0 { text += ", \(ReportFormat.trimmed(mix.noTokenShare * 100))% no token" }
        return text
    }

    /// Non-2xx/3xx statuses of the measured window and transport errors, as `401×12 timeout×3`
    /// ("none" when there were none).
    public var errorSummary: String {
        var parts: [String] = []
        for (status, n) in self.statuses.sorted(by: { $0.key < $1.key }) {
            if let code = Int(status), (200..<400).contains(code) { continue }
            parts.append("\(status)×\(n)")
        }
        for (name, n) in [("timeout", self.errors.timeout), ("closed", self.errors.closed), ("connect", self.errors.connect), ("protocol", self.errors.protocol)] where n > 0 {
            parts.append("\(name)×\(n)")
        }
        return parts.isEmpty ? "none" : parts.joined(separator: " ")
    }

    /// The human-readable report of one run.
    public func rendered() -> String {
        var lines: [String] = []
        let loopText: String
        if let rate = self.targetRate {
            loopText = "open loop at \(ReportFormat.grouped(Int(rate.rounded()))) req/s over \(self.connections) connections (latency from each request's due time)"
        } else {
            loopText = "closed loop, \(self.connections) connections"
        }
        lines.append("\(self.label.isEmpty ? "" : self.label + ": ")\(self.target) — \(loopText), \(self.threads) thread(s), \(self.decoder) decoder")
        lines.append("tokens: \(self.mix); \(ReportFormat.trimmed(self.durationSeconds))s measured after \(ReportFormat.trimmed(self.warmupSeconds))s warm-up\(self.tokensExhausted ? " (tokens ran out: window cut short)" : "")")
        let header = ["requests/s", "p50", "p90", "p99", "p99.9", "max", "requests", "errors"]
        let row = [
            ReportFormat.grouped(Int(self.requestsPerSecond.rounded())),
            ReportFormat.latency(self.latency.p50),
            ReportFormat.latency(self.latency.p90),
            ReportFormat.latency(self.latency.p99),
            ReportFormat.latency(self.latency.p999),
            ReportFormat.latency(self.latency.max),
            ReportFormat.grouped(self.requests),
            self.errorSummary,
        ]
        lines.append(contentsOf: ReportFormat.table(header: header, rows: [row], rightAligned: Set(0..<7)))
        let statuses = self.statuses.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        lines.append("statuses (measured): \(statuses.isEmpty ? "none" : statuses)")
        lines.append("billable answers (2xx/3xx to a valid token, whole run incl. warm-up and drain): \(ReportFormat.grouped(self.billableAnswers)) → \(ReportFormat.grouped(self.billableUnits)) units")
        lines.append("sent \(ReportFormat.grouped(self.sent)), answered \(ReportFormat.grouped(self.responses))\(self.unsentDue > 0 ? ", \(ReportFormat.grouped(self.unsentDue)) due but never sent (add connections)" : "")")
        return lines.joined(separator: "\n")
    }
}
