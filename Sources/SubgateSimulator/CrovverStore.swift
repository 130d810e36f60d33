import Foundation

/// The simulated Crovver credit API (seed 002) as a plain value: the accepted keys,
/// tenants with their plan's pools, and every processed consumption by idempotency key.
/// Part of `SimulatorStore`; every operation that depends on time takes `now`.
struct CrovverStore: Sendable {
    /// The secret key that always exists (`Authorization: Bearer sk_test_demo` or
    /// `x-service-key: sk_test_demo`).
    static let demoKey = "sk_test_demo"
    /// Secret keys start with this (seed 002: `Authorization: Bearer sk_live_…`).
    static let secretKeyPrefix = "sk_"
    /// The largest `amount` one call may consume, so that balances cannot overflow.
    static let maxAmount = 1_000_000_000
    /// The longest idempotency key.
    static let maxIdempotencyKeyLength = 255

    /// Keys the API accepts, as a Bearer secret key (`sk_…`) or as `x-service-key`.
    private(set) var keys: Set<String> = [CrovverStore.demoKey]
    /// By tenant id.
    private(set) var tenants: [String: SimulatedTenant] = [:]
    /// Every processed consumption, in order.
    private(set) var events: [SimulatedConsumeEvent] = []
    /// Index into `events` by idempotency key.
    private var eventByKey: [String: Int] = [:]

    // MARK: - Set-up

    mutating func addKey(_ key: String) {
        self.keys.insert(key)
    }

    /// Why a tenant, pool or add-on cannot be created.
    enum SetupProblem: Error, Equatable {
        /// A tenant with this id exists.
        case tenantExists
        /// No tenant with this id.
        case unknownTenant
        /// The tenant already has a pool with this key.
        case poolExists(String)
        /// The tenant has no pool with this key.
        case unknownPool(String)
        /// Credits below zero.
        case credits
    }

    /// Adds a tenant; its id must be new, its pool keys distinct and its credits ≥ 0.
    mutating func createTenant(_ tenant: SimulatedTenant) throws(SetupProblem) {
        guard self.tenants[tenant.tenantID] == nil else { throw .tenantExists }
        var seen: Set<String> = []
        for pool in tenant.pools {
            guard seen.insert(pool.poolKey).inserted else { throw .poolExists(pool.poolKey) }
            guard pool.grants.allSatisfy({ $0.credits >= 0 && $0.remaining >= 0 }) else { throw .credits }
        }
        self.tenants[tenant.tenantID] = tenant
    }

    /// Adds a pool to a tenant's plan.
    mutating func addPool(tenantID: String, _ pool: SimulatedCreditPool) throws(SetupProblem) {
        guard var tenant = self.tenants[tenantID] else { throw .unknownTenant }
        guard tenant.pool(pool.poolKey) == nil else { throw .poolExists(pool.poolKey) }
        guard pool.grants.allSatisfy({ $0.credits >= 0 && $0.remaining >= 0 }) else { throw .credits }
        tenant.pools.append(pool)
        self.tenants[tenantID] = tenant
    }

    /// Adds an add-on grant to a tenant's pool; its grant id.
    mutating func addAddon(tenantID: String, poolKey: String, credits: Int, expiresAt: Date?) throws(SetupProblem) -> String {
        guard var tenant = self.tenants[tenantID] else { throw .unknownTenant }
        guard let index = tenant.poolIndex(poolKey) else { throw .unknownPool(poolKey) }
        guard credits >= 0 else { throw .credits }
        let id = tenant.pools[index].addAddon(credits: credits, expiresAt: expiresAt)
        self.tenants[tenantID] = tenant
        return id
    }

    /// The pool's balance at `now`; nil when the tenant or the pool is unknown.
    func balance(tenantID: String, poolKey: String, now: Date) -> Int? {
        self.tenants[tenantID]?.pool(poolKey)?.balance(at: now)
    }

    /// The tenant's processed consumptions, in order.
    func events(tenantID: String) -> [SimulatedConsumeEvent] {
        self.events.filter { $0.tenantID == tenantID }
    }

    // MARK: - Consumption

    /// What `consume` did with one call.
    enum ConsumeOutcome: Sendable, Equatable {
        /// Processed now.
        case processed(SimulatedConsumeEvent)
        /// The idempotency key was processed before: its event, unchanged but for `replays`.
        case alreadyProcessed(SimulatedConsumeEvent)
    }

    /// Why a consumption was refused before any pool was touched.
    enum ConsumeProblem: Error, Equatable {
        /// No tenant with the call's `tenantId`.
        case unknownTenant
        /// The tenant's plan has no pool with the call's `poolKey`.
        case unknownPool
    }

    /// Consumes `amount` from the tenant's pool under `idempotencyKey`; a key seen before
    /// answers its first outcome (whatever tenant, pool or amount come with it now) and
    /// deducts nothing. Unknown tenants and pools are not remembered under the key.
    mutating func consume(
        tenantID: String,
        poolKey: String,
        amount: Int,
        idempotencyKey: String,
        metadata: String?,
        now: Date
    ) throws(ConsumeProblem) -> ConsumeOutcome {
        if let index = self.eventByKey[idempotencyKey] {
            self.events[index].replays += 1
            return .alreadyProcessed(self.events[index])
        }
        guard var tenant = self.tenants[tenantID] else { throw .unknownTenant }
        guard let poolIndex = tenant.poolIndex(poolKey) else { throw .unknownPool }
        let consumption = tenant.pools[poolIndex].consume(amount, at: now)
        self.tenants[tenantID] = tenant
        let event = SimulatedConsumeEvent(
            idempotencyKey: idempotencyKey,
            tenantID: tenantID,
            poolKey: poolKey,
            amount: amount,
            consumption: consumption,
            metadata: metadata,
            at: now,
            replays: 0
        )
        self.eventByKey[idempotencyKey] = self.events.count
        self.events.append(event)
        return .processed(event)
    }
}
