import Foundation

/// The simulated Crochet token API (seed 000) as a plain value: sellers, tokens, rate
/// budgets and usage reports. Part of `SimulatorStore`; every operation takes `now`.
struct CrochetStore: Sendable {
    /// The seller key that always exists.
    static let demoSellerKey = "am_k_demo"
    /// Its seller id.
    static let demoSellerID = "demo"
    /// Seller keys start with this (seed 000: `Authorization: Bearer am_k_…`).
    static let sellerKeyPrefix = "am_k_"

    /// The budget of `tokens/verify` and of `tokens/usage`, each, per seller key, per 60 s.
    let ratePerMinute: Int
    /// The budget of `tokens/rotate` per subscriber per 60 s (the seed: 10/min).
    let rotatePerMinute: Int

    /// By hash.
    private(set) var tokens: [String: SimulatedToken] = [:]
    /// By seller key: the demo seller and every seller created or named by a token.
    private(set) var sellers: [String: SimulatedSeller] = [
        CrochetStore.demoSellerKey: SimulatedSeller(sellerID: CrochetStore.demoSellerID, sellerKey: CrochetStore.demoSellerKey)
    ]
    /// Every `tokens/usage` call, answered or dropped, in order.
    private(set) var usageReports: [SimulatedUsageReport] = []
    /// Units accepted (answered 200) per hash.
    private(set) var acceptedUnits: [String: Int] = [:]
    private(set) var totalAcceptedUnits = 0

    private var limiter = SlidingWindowLimiter(window: 60)

    init(ratePerMinute: Int = 300, rotatePerMinute: Int = 10) {
        self.ratePerMinute = ratePerMinute
        self.rotatePerMinute = rotatePerMinute
    }

    /// Keys the API accepts.
    var sellerKeys: Set<String> { Set(self.sellers.keys) }

    // MARK: - Sellers

    /// Why a seller cannot be created.
    enum SellerProblem: Error, Equatable {
        /// Another seller has this `am_k_…` key.
        case keyTaken
        /// Another seller has this id.
        case idTaken
    }

    /// Adds a seller; its key and its id must both be new.
    mutating func createSeller(_ seller: SimulatedSeller) throws(SellerProblem) {
        guard self.sellers[seller.sellerKey] == nil else { throw .keyTaken }
        guard self.seller(id: seller.sellerID) == nil else { throw .idTaken }
        self.sellers[seller.sellerKey] = seller
    }

    func seller(id: String) -> SimulatedSeller? {
        self.sellers.values.first { $0.sellerID == id }
    }

    func seller(key: String) -> SimulatedSeller? {
        self.sellers[key]
    }

    /// The seller with this key, created when new, its id the key without `am_k_` (made
    /// unique with a suffix when another seller already has it).
    mutating func registerSeller(key: String) -> SimulatedSeller {
        if let seller = self.sellers[key] { return seller }
        let base = key.hasPrefix(Self.sellerKeyPrefix) ? String(key.dropFirst(Self.sellerKeyPrefix.count)) : key
        var id = base
        var suffix = 2
        while self.seller(id: id) != nil {
            id = "\(base)_\(suffix)"
            suffix += 1
        }
        let seller = SimulatedSeller(sellerID: id, sellerKey: key)
        self.sellers[key] = seller
        return seller
    }

    // MARK: - Tokens

    /// Stores a new token and registers its seller key; returns the raw token (the only
    /// time it exists, unless `raw` chose it) and its hash. The state is stored as given:
    /// an `active` token may be created with nothing remaining, to test what a proxy does
    /// with it.
    mutating func createToken(
        sellerKey: String = CrochetStore.demoSellerKey,
        listingID: String = "lst_demo",
        subscriberID: String = "usr_demo",
        usageLimit: Int? = 100,
        usageCount: Int = 0,
        expiresAt: Date? = nil,
        status: String = SimulatedToken.active,
        raw chosen: String? = nil
    ) -> (token: String, hash: String) {
        let raw = chosen ?? RawToken.generate()
        let hash = RawToken.hash(raw)
        _ = self.registerSeller(key: sellerKey)
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

    // MARK: - Reports and budgets

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
}
