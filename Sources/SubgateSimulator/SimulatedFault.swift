/// A fault the simulator injects into calls to the seed endpoints (`/_sim/faults`).
///
/// The first fault, in injection order, whose `endpoint` matches a call applies to it:
/// the answer waits `latency`, then one of
/// - `drop`: the connection is closed unanswered and nothing is applied;
/// - `hang`: no answer ever comes and nothing is applied; the connection stays open until
///   the client gives up (or the simulator stops);
/// - `dropAfterCommit`: the call is served, so whatever it changes is committed (usage
///   added, credits deducted, the gateway's forward and ledger entry made), then the
///   connection is closed without the answer: an answer lost in flight;
/// - `status`: the call is answered with that status and the seed's error body;
/// - none of them: the call is served normally.
/// A faulted call is still counted in the call statistics but never uses the rate budget
/// (a `dropAfterCommit` call is served, so it does). After `times` calls the fault is gone;
/// nil means until cleared.
public struct SimulatedFault: Sendable, Equatable {
    /// The endpoint it applies to; nil for every endpoint.
    public var endpoint: SimulatedEndpoint?
    /// The status to answer (400…599): 429 answers `RATE_LIMITED` with `Retry-After`;
    /// 400, 401, 403 and 404 their seed codes; anything else `INTERNAL_ERROR`.
    public var status: Int?
    /// `Retry-After` seconds: always sent with 429 (1 when nil), with other statuses when set.
    public var retryAfter: Int?
    /// Send `Retry-After` as an HTTP-date (the call's time plus `retryAfter`) instead of
    /// seconds: RFC 9110 §10.2.3 allows both, and a client must honour either.
    public var retryAfterAsDate: Bool
    /// How long to wait before answering (or dropping, or committing).
    public var latency: Duration?
    /// Close the connection without answering; nothing is applied.
    public var drop: Bool
    /// Never answer; nothing is applied.
    public var hang: Bool
    /// Apply the call, then close the connection without answering.
    public var dropAfterCommit: Bool
    /// How many calls it applies to; nil for every call until cleared.
    public var times: Int?

    public init(
        endpoint: SimulatedEndpoint? = nil,
        status: Int? = nil,
        retryAfter: Int? = nil,
        retryAfterAsDate: Bool = false,
        latency: Duration? = nil,
        drop: Bool = false,
        hang: Bool = false,
        dropAfterCommit: Bool = false,
        times: Int? = nil
    ) {
        self.endpoint = endpoint
        self.status = status
        self.retryAfter = retryAfter
        self.retryAfterAsDate = retryAfterAsDate
        self.latency = latency
        self.drop = drop
        self.hang = hang
        self.dropAfterCommit = dropAfterCommit
        self.times = times
    }
}
