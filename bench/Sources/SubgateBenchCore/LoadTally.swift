import Histogram

/// What one event loop saw during a run. Plain counters and one histogram, touched only by
/// that loop; the loops' tallies are merged when the run ends.
public struct LoadTally: Sendable {
    /// Latencies of measured requests, in nanoseconds.
    public var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    /// Answers that ended inside the measured window (the throughput figure).
    public var completedInWindow = 0
    /// Statuses of the measured requests (index = status; 0 for anything outside 100…599).
    public var measuredStatuses = [Int](repeating: 0, count: 600)
    /// Every answer of the run, warm-up and drain included.
    public var responses = 0
    /// Answers a billing control plane should count: 2xx or 3xx to a request with a valid token.
    public var billable = 0
    /// `billable` per valid token (index in the run's token list), when asked for
    /// (`trackBillablePerToken`); empty otherwise, so the default path pays nothing for it.
    public var billablePerToken: [Int] = []
    /// Requests sent with a valid token (whole run).
    public var validSent = 0
    public var sent = 0
    public var timeouts = 0
    /// The connection closed with a request in flight.
    public var closedInFlight = 0
    public var connectFailures = 0
    /// Answers NIO's HTTP decoder could not parse.
    public var protocolErrors = 0
    public var bodyBytes = 0
    /// Sequential tokens ran out before the end.
    public var tokensExhausted = false
    /// Open loop: requests due before the end that were never sent (the target was too slow
    /// for the connections to keep up).
    public var unsentDue = 0

    public init() {}

    /// Counts billable answers per valid token too (`billablePerToken`, `count` entries).
    public mutating func trackBillablePerToken(count: Int) {
        self.billablePerToken = [Int](repeating: 0, count: count)
    }

    /// One answer ended. `intended`, `completed`: ns on one monotonic clock; `measured`: the
    /// request was due inside the window; `inWindow`: it ended inside the window; `token`: the
    /// valid token's index (for `billablePerToken`), or -1.
    @inline(__always)
    public mutating func answer(status: Int, validToken: Bool, latencyNanoseconds: Int64, measured: Bool, inWindow: Bool, token: Int = -1) {
        self.responses += 1
        if validToken && status >= 200 && status < 400 {
            self.billable += 1
            if token >= 0 && token < self.billablePerToken.count { self.billablePerToken[token] += 1 }
        }
        if inWindow { self.completedInWindow += 1 }
        if measured {
            _ = self.latency.record(UInt64(max(0, latencyNanoseconds)))
            self.measuredStatuses[(100..<600).contains(status) ? status : 0] += 1
        }
    }

    public mutating func merge(_ other: LoadTally) {
        self.latency.add(other.latency)
        self.completedInWindow += other.completedInWindow
        for i in 0..<600 { self.measuredStatuses[i] += other.measuredStatuses[i] }
        self.responses += other.responses
        self.billable += other.billable
        if self.billablePerToken.count < other.billablePerToken.count {
            self.billablePerToken += [Int](repeating: 0, count: other.billablePerToken.count - self.billablePerToken.count)
        }
        for (i, count) in other.billablePerToken.enumerated() { self.billablePerToken[i] += count }
        self.validSent += other.validSent
        self.sent += other.sent
        self.timeouts += other.timeouts
        self.closedInFlight += other.closedInFlight
        self.connectFailures += other.connectFailures
        self.protocolErrors += other.protocolErrors
        self.bodyBytes += other.bodyBytes
        self.tokensExhausted = self.tokensExhausted || other.tokensExhausted
        self.unsentDue += other.unsentDue
    }
}
