import Foundation

/// How a Crovver pool treats a consumption larger than its balance (seed 002).
public enum SimulatedCreditLimit: String, Sendable, Equatable, CaseIterable {
    /// `blocked`, nothing deducted.
    case hard
    /// Deducted anyway; the balance goes below zero and the answer is `warning`.
    case soft
}

/// What one consumption came to (seed 002's `data.result`).
public enum SimulatedConsumeResult: String, Sendable, Equatable {
    /// Credits deducted; the balance is 0 or more.
    case allowed
    /// Credits deducted on a soft-limit pool; the balance is now below zero.
    case warning
    /// A hard-limit pool without enough credits; nothing deducted.
    case blocked
}

/// One credit pool of a tenant's plan (`api_calls`, `ai_tokens`): its limit and its grants.
///
/// The balance is the unexpired grants' remaining credits minus `overdraft`, the credits a
/// soft-limit pool gave beyond them. Credits added to a pool with an overdraft repay it
/// first, so a later expiry cannot bring an old debt back.
public struct SimulatedCreditPool: Sendable, Equatable {
    public var poolKey: String
    public var limit: SimulatedCreditLimit
    /// In the order added: the base grant first.
    public private(set) var grants: [SimulatedCreditGrant]
    /// Credits consumed beyond the grants (soft limit only).
    public private(set) var overdraft: Int

    /// A pool with `credits` base credits (expiring at `expiresAt`, nil never) and add-ons.
    public init(
        poolKey: String,
        limit: SimulatedCreditLimit = .hard,
        credits: Int,
        expiresAt: Date? = nil,
        addons: [(credits: Int, expiresAt: Date?)] = []
    ) {
        self.poolKey = poolKey
        self.limit = limit
        self.grants = [SimulatedCreditGrant(grantID: "base", kind: .base, credits: credits, expiresAt: expiresAt)]
        self.overdraft = 0
        for addon in addons {
            self.addAddon(credits: addon.credits, expiresAt: addon.expiresAt)
        }
    }

    /// Credits that can be consumed at `now`; below zero for an overdrawn soft-limit pool.
    public func balance(at now: Date) -> Int {
        self.liveCredits(at: now) - self.overdraft
    }

    /// The unexpired grants' remaining credits.
    func liveCredits(at now: Date) -> Int {
        self.grants.reduce(0) { $0 + ($1.isExpired(at: now) ? 0 : $1.remaining) }
    }

    /// Adds an add-on grant (`addon_N`); it repays any overdraft first. Its id.
    @discardableResult
    public mutating func addAddon(credits: Int, expiresAt: Date?) -> String {
        let id = "addon_\(self.grants.filter { $0.kind == .addon }.count + 1)"
        var grant = SimulatedCreditGrant(grantID: id, kind: .addon, credits: credits, expiresAt: expiresAt)
        let repaid = min(self.overdraft, grant.remaining)
        grant.remaining -= repaid
        self.overdraft -= repaid
        self.grants.append(grant)
        return id
    }

    /// Indices of the grants consumption takes from at `now`, in order: the base grant
    /// first, then add-ons by earliest expiry (never-expiring ones last), ties in the
    /// order they were added. Expired and empty grants are left out.
    func fifoOrder(at now: Date) -> [Int] {
        self.grants.indices
            .filter { !self.grants[$0].isExpired(at: now) && self.grants[$0].remaining > 0 }
            .sorted { a, b in
                let (x, y) = (self.grants[a], self.grants[b])
                if x.kind != y.kind { return x.kind == .base }
                let (ex, ey) = (x.expiresAt ?? .distantFuture, y.expiresAt ?? .distantFuture)
                return ex != ey ? ex < ey : a < b
            }
    }

    /// What one consumption did.
    public struct Consumption: Sendable, Equatable {
        public var result: SimulatedConsumeResult
        /// Credits taken from each grant, in the order taken.
        public var deductions: [(grantID: String, credits: Int)]
        /// Credits put on the overdraft (soft limit).
        public var overdrawn: Int
        /// The balance afterwards.
        public var remaining: Int

        public static func == (lhs: Consumption, rhs: Consumption) -> Bool {
            lhs.result == rhs.result && lhs.overdrawn == rhs.overdrawn && lhs.remaining == rhs.remaining
                && lhs.deductions.elementsEqual(rhs.deductions) { $0.grantID == $1.grantID && $0.credits == $1.credits }
        }
    }

    /// Consumes `amount` (> 0) at `now`: FIFO over the grants; a hard-limit pool without
    /// enough credits is `blocked` and keeps everything; a soft-limit pool takes what the
    /// grants have and overdraws the rest, `warning` when the balance ends below zero.
    public mutating func consume(_ amount: Int, at now: Date) -> Consumption {
        let live = self.liveCredits(at: now)
        if self.limit == .hard && amount > live - self.overdraft {
            return Consumption(result: .blocked, deductions: [], overdrawn: 0, remaining: self.balance(at: now))
        }
        var left = amount
        var deductions: [(grantID: String, credits: Int)] = []
        for index in self.fifoOrder(at: now) where left > 0 {
            let take = min(left, self.grants[index].remaining)
            self.grants[index].remaining -= take
            left -= take
            deductions.append((self.grants[index].grantID, take))
        }
        self.overdraft += left
        let remaining = self.balance(at: now)
        return Consumption(result: remaining < 0 ? .warning : .allowed, deductions: deductions, overdrawn: left, remaining: remaining)
    }
}
