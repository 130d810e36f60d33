/// A fault the simulator injects into calls to the seed endpoints (`/_sim/faults`).
///
/// The first fault, in injection order, whose `endpoint` matches a call applies to it:
/// the answer waits `latency`, then the connection is closed unanswered (`drop`), or the
/// call is answered with `status` and the seed's error body, or, with neither, the call is
/// served normally. A faulted call is still counted in the call statistics but never uses
/// the rate budget. After `times` calls the fault is gone; nil means until cleared.
public struct SimulatedFault: Sendable, Equatable {
    /// The endpoint it applies to; nil for every endpoint.
    public var endpoint: SimulatedEndpoint?
    /// The status to answer (400…599): 429 answers `RATE_LIMITED` with `Retry-After`;
    /// 400, 401, 403 and 404 their seed codes; anything else `INTERNAL_ERROR`.
    public var status: Int?
    /// `Retry-After` seconds: always sent with 429 (1 when nil), with other statuses when set.
    public var retryAfter: Int?
    /// How long to wait before answering (or dropping).
    public var latency: Duration?
    /// Close the connection without answering.
    public var drop: Bool
    /// How many calls it applies to; nil for every call until cleared.
    public var times: Int?

    public init(
        endpoint: SimulatedEndpoint? = nil,
        status: Int? = nil,
        retryAfter: Int? = nil,
        latency: Duration? = nil,
        drop: Bool = false,
        times: Int? = nil
    ) {
        self.endpoint = endpoint
        self.status = status
        self.retryAfter = retryAfter
        self.latency = latency
        self.drop = drop
        self.times = times
    }
}
