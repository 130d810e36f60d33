import Foundation

/// A Crovver tenant (`workspace_123`): its plan and the plan's credit pools.
public struct SimulatedTenant: Sendable, Equatable {
    /// The external tenant id the seller's application uses (`tenantId`).
    public var tenantID: String
    /// The plan's name; informational.
    public var plan: String
    /// One per pool key, in the order defined.
    public var pools: [SimulatedCreditPool]

    public init(tenantID: String, plan: String = "default", pools: [SimulatedCreditPool]) {
        self.tenantID = tenantID
        self.plan = plan
        self.pools = pools
    }

    /// The pool with this key, if the plan defines it.
    public func pool(_ poolKey: String) -> SimulatedCreditPool? {
        self.pools.first { $0.poolKey == poolKey }
    }

    func poolIndex(_ poolKey: String) -> Int? {
        self.pools.firstIndex { $0.poolKey == poolKey }
    }
}

/// One `credits/consume` call that was processed (any result, `blocked` included), kept
/// under its idempotency key so that a repeat answers it again without deducting.
public struct SimulatedConsumeEvent: Sendable, Equatable {
    public var idempotencyKey: String
    public var tenantID: String
    public var poolKey: String
    public var amount: Int
    /// The pool's answer: result, grants taken from, overdraft, balance afterwards.
    public var consumption: SimulatedCreditPool.Consumption
    /// The request's `metadata` object as JSON text; nil when it had none.
    public var metadata: String?
    public var at: Date
    /// How many times the same key came again (answered `alreadyProcessed: true`).
    public var replays: Int

    public var result: SimulatedConsumeResult { self.consumption.result }
    public var remaining: Int { self.consumption.remaining }
}
