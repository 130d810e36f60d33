import CoreMetrics
import SubgateCore

/// The proxy's metrics (SPEC §5), created once so that the hot path only increments.
///
/// Library code uses swift-metrics types only; the executable picks the backend (Prometheus).
public final class ProxyMetrics: Sendable {
    /// `subgate_requests_total{outcome}`: `forwarded`, `client_aborted`, `upstream_aborted`,
    /// or the lowercased `error.code` of Subgate's own answer (`bad_request`, `upstream_timeout`, …).
    private let requests: [String: Counter]
    /// `subgate_request_duration_seconds`: head received → answer written.
    let requestDuration: Timer
    /// `subgate_upstream_duration_seconds`: request head sent upstream → answer head received.
    let upstreamDuration: Timer
    /// `subgate_open_connections`: client connections currently open.
    let openConnections: Meter

    /// Every outcome label known in advance.
    public static let knownOutcomes: [String] = [
        "forwarded", "client_aborted", "upstream_aborted",
        "bad_request", "headers_too_large", "payload_too_large", "upstream_unavailable",
        "upstream_timeout", "request_timeout", "upgrade_not_supported", "expectation_failed",
        "shutting_down",
    ]

    public init() {
        var requests: [String: Counter] = [:]
        for outcome in Self.knownOutcomes {
            requests[outcome] = Counter(label: "subgate_requests_total", dimensions: [("outcome", outcome)])
        }
        self.requests = requests
        self.requestDuration = Timer(label: "subgate_request_duration_seconds", preferredDisplayUnit: .seconds)
        self.upstreamDuration = Timer(label: "subgate_upstream_duration_seconds", preferredDisplayUnit: .seconds)
        self.openConnections = Meter(label: "subgate_open_connections")
    }

    func countRequest(outcome: String) {
        if let counter = self.requests[outcome] {
            counter.increment()
        } else {
            Counter(label: "subgate_requests_total", dimensions: [("outcome", outcome)]).increment()
        }
    }
}
