import Foundation

/// The simulated Crochet control plane as a plain value: tokens, seller keys, rate budgets,
/// call statistics, usage reports and injected faults.
///
/// Every operation takes `now`, so tests drive time instead of sleeping; the `Simulator`
/// keeps one of these behind a lock and passes the wall clock.
struct CrochetStore: Sendable {
    /// The seller key that always exists.
    static let demoSellerKey = "am_k_demo"
    /// Seller keys start with this (seed 000: `Authorization: Bearer am_k_…`).
    static let sellerKeyPrefix = "am_k_"

    /// The budget of `tokens/verify` and of `tokens/usage`, each, per seller key, per 60 s.
    let ratePerMinute: Int
    /// The budget of `tokens/rotate` per subscriber per 60 s (the seed: 10/min).
    let rotatePerMinute: Int

    /// Start of the call statistics' minutes.
    private(set) var startedAt: Date
    /// By hash.
    private(set) var tokens: [String: SimulatedToken] = [:]
    /// Keys the API accepts: the demo key and every key a token was created for.
    private(set) var sellerKeys: Set<String> = [CrochetStore.demoSellerKey]
    /// Every `tokens/usage` call, answered or dropped, in order.
    private(set) var usageReports: [SimulatedUsageReport] = []
    /// Units accepted (answered 200) per hash.
    private(set) var acceptedUnits: [String: Int] = [:]
    private(set) var totalAcceptedUnits = 0
    /// Injected faults, in injection order.
    private(set) var faults: [SimulatedFault] = []

    private var limiter = SlidingWindowLimiter(window: 60)
    private var calls: [SimulatedEndpoint: EndpointCallLog] = [:]

    init(ratePerMinute: Int = 300, rotatePerMinute: Int = 10, now: Date) {
        self.ratePerMinute = ratePerMinute
        self.rotatePerMinute = rotatePerMinute
        self.startedAt = now
    }

    /// Back to a fresh start: no tokens, reports, statistics or faults; only the demo key.
    mutating func reset(now: Date) {
        self = CrochetStore(ratePerMinute: self.ratePerMinute, rotatePerMinute: self.rotatePerMinute, now: now)
    }

    // MARK: - Tokens

    /// Stores a new token and registers its seller key; returns the raw token (the only
    /// time it exists) and its hash. The state is stored as given: an `active` token may be
    /// created with nothing remaining, to test what a proxy does with it.
    mutating func createToken(
        sellerKey: String = CrochetStore.demoSellerKey,
        listingID: String = "lst_demo",
        subscriberID: String = "usr_demo",
        usageLimit: Int? = 100,
        usageCount: Int = 0,
        expiresAt: Date? = nil,
        status: String = SimulatedToken.active
    ) -> (token: String, hash: String) {
        let raw = RawToken.generate()
        let hash = RawToken.hash(raw)
        self.sellerKeys.insert(sellerKey)
        self.tokens[hash] = SimulatedToken(
            hash: hash,
            tokenID: RawToken.generateID(),
            sellerKey: sellerKey,
            listingID: listingID,
            subscriberID: subscriberID,
            usageCount: usageCount,
            usageLimit: usageLimit,
            expiresAt: expiresAt,
            status: status
        )
        return (raw, hash)
    }

    /// The token's state with date expiry applied; nil when unknown.
    mutating func token(hash: String, now: Date) -> SimulatedToken? {
        self.tokens[hash]?.applyDateExpiry(now: now)
        return self.tokens[hash]
    }

    /// Saves a token's new state.
    mutating func save(_ token: SimulatedToken) {
        self.tokens[token.hash] = token
    }

    /// Every token's state, by hash, with date expiry applied.
    mutating func allTokens(now: Date) -> [SimulatedToken] {
        for hash in self.tokens.keys { self.tokens[hash]?.applyDateExpiry(now: now) }
        return self.tokens.values.sorted { $0.hash < $1.hash }
    }

    /// Marks the token revoked; its new state, or nil when unknown.
    @discardableResult
    mutating func revoke(hash: String) -> SimulatedToken? {
        self.tokens[hash]?.status = SimulatedToken.revoked
        return self.tokens[hash]
    }

    /// The buyer's rotation: the old token is revoked and a new one takes over its listing,
    /// subscriber, limit, usage, expiry and status. Nil when unknown or already revoked.
    mutating func rotate(hash: String, now: Date) -> (token: String, hash: String)? {
        guard var old = self.token(hash: hash, now: now), old.status != SimulatedToken.revoked else { return nil }
        let raw = RawToken.generate()
        let newHash = RawToken.hash(raw)
        var new = old
        new.hash = newHash
        new.tokenID = RawToken.generateID()
        old.status = SimulatedToken.revoked
        self.tokens[hash] = old
        self.tokens[newHash] = new
        return (raw, newHash)
    }

    // MARK: - Statistics

    /// Calls that reached `endpoint`, rejected and faulted ones included.
    func callLog(_ endpoint: SimulatedEndpoint) -> EndpointCallLog {
        self.calls[endpoint] ?? EndpointCallLog()
    }

    mutating func recordCall(_ endpoint: SimulatedEndpoint, now: Date) {
        self.calls[endpoint, default: EndpointCallLog()].record(at: now, since: self.startedAt)
    }

    mutating func recordUsageReport(tokenHash: String, count: Int, status: Int) {
        self.usageReports.append(SimulatedUsageReport(tokenHash: tokenHash, count: count, status: status))
        if status == 200 {
            self.acceptedUnits[tokenHash, default: 0] += count
            self.totalAcceptedUnits += count
        }
    }

    /// Uses one call of `owner`'s budget for `endpoint`.
    mutating func admit(_ endpoint: SimulatedEndpoint, owner: String, now: Date) -> SlidingWindowLimiter.Decision {
        let limit = endpoint == .rotate ? self.rotatePerMinute : self.ratePerMinute
        return self.limiter.admit(.init(endpoint: endpoint, owner: owner), limit: limit, now: now)
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
