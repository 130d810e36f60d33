import Foundation

/// What a seed file (`subgate simulate --seed FILE`) sets up, parsed and checked by
/// `SimulatorSeedParser`; `Simulator.apply` creates it. Times may be relative to the
/// moment it is applied, so that a fixture does not rot.
public struct SimulatorSeed: Sendable, Equatable {
    /// A time in a seed file: an ISO-8601 instant, or seconds from when the seed is applied.
    public enum Time: Sendable, Equatable {
        /// This instant.
        case absolute(Date)
        /// This many seconds after (negative: before) the seed is applied.
        case relative(seconds: Int)

        func resolve(_ now: Date) -> Date {
            switch self {
            case .absolute(let date): date
            case .relative(let seconds): now.addingTimeInterval(TimeInterval(seconds))
            }
        }
    }

    /// `token.<name>.*`.
    public struct Token: Sendable, Equatable {
        /// The name in the file; printed beside the raw token at start.
        public var name: String
        public var sellerKey: String
        public var listingID: String
        public var subscriberID: String
        /// nil: unlimited.
        public var usageLimit: Int?
        public var usageCount: Int
        /// nil: never.
        public var expiresAt: Time?
        public var status: String
        /// A fixed raw token (`cro_sub_…`); nil: generated.
        public var raw: String?
    }

    /// `pool.<name>.*`: a pool of a tenant's plan with its base credits.
    public struct Pool: Sendable, Equatable {
        public var tenantID: String
        public var poolKey: String
        public var limit: SimulatedCreditLimit
        public var credits: Int
        public var expiresAt: Time?
    }

    /// `addon.<name>.*`: add-on credits on a tenant's pool.
    public struct Addon: Sendable, Equatable {
        public var tenantID: String
        public var poolKey: String
        public var credits: Int
        public var expiresAt: Time?
    }

    /// `tenant.<id>.*`.
    public struct Tenant: Sendable, Equatable {
        public var tenantID: String
        public var plan: String
    }

    public var sellers: [SimulatedSeller] = []
    public var listings: [SimulatedListing] = []
    public var tokens: [Token] = []
    public var crovverKeys: [String] = []
    public var tenants: [Tenant] = []
    public var pools: [Pool] = []
    public var addons: [Addon] = []

    public init() {}
}

/// A seed that cannot be applied because the simulator already has some of its entries.
public struct SimulatorSeedConflict: Error, Sendable, CustomStringConvertible {
    /// One sentence per entry that exists already.
    public var conflicts: [String]

    public var description: String { self.conflicts.joined(separator: "; ") }
}

extension SimulatorStore {
    /// What in `seed` exists already; empty when it can be applied.
    func conflicts(with seed: SimulatorSeed) -> [String] {
        var conflicts: [String] = []
        for seller in seed.sellers {
            if self.crochet.seller(key: seller.sellerKey) != nil || self.crochet.seller(id: seller.sellerID) != nil {
                conflicts.append("seller \(seller.sellerID) (or its key) exists")
            }
        }
        for listing in seed.listings where self.gateway.listings[listing.listingID] != nil {
            conflicts.append("listing \(listing.listingID) exists")
        }
        for token in seed.tokens {
            if let raw = token.raw, self.crochet.tokens[RawToken.hash(raw)] != nil {
                conflicts.append("token \(token.name)'s raw token exists")
            }
        }
        for tenant in seed.tenants where self.crovver.tenants[tenant.tenantID] != nil {
            conflicts.append("tenant \(tenant.tenantID) exists")
        }
        return conflicts
    }

    /// Creates everything `seed` describes, times resolved against `now`; the raw tokens by
    /// name. Nothing is created when any entry exists already.
    mutating func apply(_ seed: SimulatorSeed, now: Date) throws(SimulatorSeedConflict) -> [(name: String, token: String)] {
        let conflicts = self.conflicts(with: seed)
        guard conflicts.isEmpty else { throw SimulatorSeedConflict(conflicts: conflicts) }
        for seller in seed.sellers {
            try? self.crochet.createSeller(seller)
        }
        for listing in seed.listings {
            try? self.gateway.createListing(listing, sellers: self.crochet)
        }
        var created: [(name: String, token: String)] = []
        for token in seed.tokens {
            let (raw, _) = self.crochet.createToken(
                sellerKey: token.sellerKey,
                listingID: token.listingID,
                subscriberID: token.subscriberID,
                usageLimit: token.usageLimit,
                usageCount: token.usageCount,
                expiresAt: token.expiresAt?.resolve(now),
                status: token.status,
                raw: token.raw
            )
            created.append((token.name, raw))
        }
        for key in seed.crovverKeys {
            self.crovver.addKey(key)
        }
        for tenant in seed.tenants {
            let pools = seed.pools.filter { $0.tenantID == tenant.tenantID }.map { pool in
                SimulatedCreditPool(poolKey: pool.poolKey, limit: pool.limit, credits: pool.credits, expiresAt: pool.expiresAt?.resolve(now))
            }
            try? self.crovver.createTenant(SimulatedTenant(tenantID: tenant.tenantID, plan: tenant.plan, pools: pools))
        }
        for addon in seed.addons {
            _ = try? self.crovver.addAddon(tenantID: addon.tenantID, poolKey: addon.poolKey, credits: addon.credits, expiresAt: addon.expiresAt?.resolve(now))
        }
        return created
    }
}
