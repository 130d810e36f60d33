import Foundation
import NIOHTTP1

/// The whole simulated control plane as a plain value: the Crochet token API, Crovver's
/// credit pools and the Crochet gateway, plus what they share: call statistics and
/// injected faults.
///
/// Every operation takes `now`, so tests drive time instead of sleeping; the `Simulator`
/// keeps one of these behind a lock and passes the wall clock. Nothing here does I/O: the
/// gateway's call to a seller comes back as a `SimulatorAction.forward` for the channel
/// handler to make, and its outcome goes to `finishForward`.
struct SimulatorStore: Sendable {
    /// Seed 000: sellers, tokens, usage reports, the per-minute budgets.
    var crochet: CrochetStore
    /// Seed 002: tenants, pools, consume events.
    var crovver: CrovverStore
    /// Seed 001: listings, relay requests, the mock provider's payments, the ledger.
    var gateway: GatewayStore
    /// The admin API's prefix.
    static let adminPrefix = "/_sim"
    /// Start of the call statistics' minutes.
    private(set) var startedAt: Date
    /// Injected faults, in injection order.
    private(set) var faults: [SimulatedFault] = []
    private var calls: [SimulatedEndpoint: EndpointCallLog] = [:]

    init(ratePerMinute: Int = 300, rotatePerMinute: Int = 10, now: Date) {
        self.crochet = CrochetStore(ratePerMinute: ratePerMinute, rotatePerMinute: rotatePerMinute)
        self.crovver = CrovverStore()
        self.gateway = GatewayStore()
        self.startedAt = now
    }

    /// Back to a fresh start: nothing but the demo seller and the demo Crovver key; the
    /// configured budgets stay and the call minutes restart.
    mutating func reset(now: Date) {
        self = SimulatorStore(ratePerMinute: self.crochet.ratePerMinute, rotatePerMinute: self.crochet.rotatePerMinute, now: now)
    }

    // MARK: - Routing

    /// Decides what becomes of a request on its arrival: a seed endpoint's call is counted
    /// and meets any injected fault; an admin call is answered at once.
    mutating func plan(_ request: SimulatorRequest, now: Date) -> SimulatorPlan {
        if request.path.hasPrefix(Self.adminPrefix + "/") || request.path == Self.adminPrefix {
            return SimulatorPlan(latency: nil, outcome: .respond(self.admin(request, now: now)))
        }
        guard let endpoint = SimulatedEndpoint(path: Substring(request.path)) else {
            let paths = SimulatedEndpoint.allCases.map(\.pattern).joined(separator: ", ")
            return SimulatorPlan(
                latency: nil,
                outcome: .respond(.error(.notFound, "NOT_FOUND", "No such endpoint. This simulator serves POST \(paths) and the admin API under \(Self.adminPrefix)."))
            )
        }
        guard request.method == .POST else {
            return SimulatorPlan(
                latency: nil,
                outcome: .respond(.error(.notFound, "NOT_FOUND", "\(endpoint.pattern) takes POST, not \(request.method.rawValue)."))
            )
        }
        return self.arrive(endpoint, request, now: now)
    }

    /// A call reached `endpoint`: count it, then apply the first matching fault, if any.
    mutating func arrive(_ endpoint: SimulatedEndpoint, _ request: SimulatorRequest, now: Date) -> SimulatorPlan {
        self.recordCall(endpoint, now: now)
        guard let fault = self.takeFault(for: endpoint) else {
            return SimulatorPlan(latency: nil, outcome: .serve(endpoint))
        }
        let outcome: SimulatorPlan.Outcome
        if fault.drop {
            outcome = .drop
        } else if fault.hang {
            outcome = .hang
        } else if fault.dropAfterCommit {
            outcome = .serveThenDrop(endpoint)
        } else if let status = fault.status {
            outcome = .respond(Self.faultResponse(status: status, retryAfter: fault.retryAfter, asDate: fault.retryAfterAsDate, now: now))
        } else {
            outcome = .serve(endpoint)
        }
        if endpoint == .usage {
            switch outcome {
            case .drop, .hang: self.crochet.recordUsageReport(JSONValue.parse(request.body), status: 0)
            case .respond(let response): self.crochet.recordUsageReport(JSONValue.parse(request.body), status: Int(response.status.code))
            case .serve, .serveThenDrop: break  // recorded when served
            }
        }
        return SimulatorPlan(latency: fault.latency, outcome: outcome)
    }

    /// Serves a call that met no fault (or only a latency or commit-then-drop fault).
    mutating func serve(_ endpoint: SimulatedEndpoint, _ request: SimulatorRequest, now: Date) -> SimulatorAction {
        switch endpoint {
        case .verify: return .respond(self.crochet.verify(request, now: now))
        case .usage: return .respond(self.crochet.reportUsage(request, now: now))
        case .rotate: return .respond(self.crochet.rotate(request, now: now))
        case .consume: return .respond(self.crovver.consume(request, now: now))
        case .gateway: return self.gateway.call(request, accounts: self.crochet, now: now)
        }
    }

    /// The gateway's answer once the seller's endpoint answered (or failed to).
    mutating func finishForward(_ forward: GatewayForward, _ outcome: SellerOutcome, now: Date) -> SimulatorResponse {
        self.gateway.finishForward(forward, outcome, now: now)
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7 IMF-fixdate).
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    /// The seed's error body for an injected status; `Retry-After` in seconds, or with
    /// `asDate` as the HTTP-date `now + retryAfter`.
    static func faultResponse(status: Int, retryAfter: Int?, asDate: Bool = false, now: Date = Date()) -> SimulatorResponse {
        let code: String
        switch status {
        case 400: code = "BAD_REQUEST"
        case 401: code = "UNAUTHORIZED"
        case 403: code = "FORBIDDEN"
        case 404: code = "NOT_FOUND"
        case 429: code = "RATE_LIMITED"
        default: code = "INTERNAL_ERROR"
        }
        var headers: [(name: String, value: String)] = []
        if status == 429 || retryAfter != nil {
            let seconds = retryAfter ?? 1
            headers.append(("Retry-After", asDate ? Self.httpDate(now.addingTimeInterval(TimeInterval(seconds))) : String(seconds)))
        }
        return .error(
            HTTPResponseStatus(statusCode: status),
            code,
            "Injected fault: this call was answered \(status) by the simulator's \(Self.adminPrefix)/faults.",
            headers: headers
        )
    }

    // MARK: - Statistics

    /// Calls that reached `endpoint`, rejected and faulted ones included.
    func callLog(_ endpoint: SimulatedEndpoint) -> EndpointCallLog {
        self.calls[endpoint] ?? EndpointCallLog()
    }

    mutating func recordCall(_ endpoint: SimulatedEndpoint, now: Date) {
        self.calls[endpoint, default: EndpointCallLog()].record(at: now, since: self.startedAt)
    }

    // MARK: - Faults

    mutating func injectFault(_ fault: SimulatedFault) {
        self.faults.append(fault)
    }

    /// Removes every fault; how many there were.
    @discardableResult
    mutating func clearFaults() -> Int {
        defer { self.faults.removeAll() }
        return self.faults.count
    }

    /// The first fault for `endpoint`, used up by one call.
    mutating func takeFault(for endpoint: SimulatedEndpoint) -> SimulatedFault? {
        guard let index = self.faults.firstIndex(where: { $0.endpoint == nil || $0.endpoint == endpoint }) else {
            return nil
        }
        let fault = self.faults[index]
        if let times = fault.times {
            if times <= 1 {
                self.faults.remove(at: index)
            } else {
                self.faults[index].times = times - 1
            }
        }
        return fault
    }
}
