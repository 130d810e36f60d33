/// Everything one Subgate knows about one Crovver tenant's pool (`backend = crovver`, SPEC §6):
/// the last `remaining` Crovver answered, whether the pool was seen to be a soft-limit one,
/// whether it was last answered `blocked`, and the credits this instance has reserved or
/// billed that no Crovver answer includes yet. A plain value: `CrovverEnforcement` keeps one per
/// tenant under a lock, and the decision is a pure function of it and `now`.
///
/// Units here are credits: a request reserves `crovver_amount`, and an answer that bills `n`
/// units (`x-subgate-usage`) costs `n × crovver_amount`.
public struct CrovverTenantEntry: Sendable, Equatable {
    /// The pool's balance after the last consume Crovver answered (`nil`: never answered).
    public var remaining: Int?
    /// When that answer came (monotonic).
    public var knownAt: ContinuousClock.Instant?
    /// A `warning` (or a negative `remaining`) was seen: a soft-limit pool, served below zero.
    public var soft = false
    /// Answered `blocked`: refused without asking Crovver until then (the probe interval).
    public var blockedUntil: ContinuousClock.Instant?
    /// Crovver answered 404/400 for this tenant or pool: refused until then (`negative_ttl`).
    public var unknownUntil: ContinuousClock.Instant?
    /// Credits reserved by admitted requests whose answers have not settled.
    public var reserved = 0
    /// Credits billed (or consumed by a call still unanswered) that no Crovver answer includes.
    public var unreported = 0
    /// The lowest balance answered while other consumes for this pool were in flight: their
    /// answers may arrive in any order, and only the lowest is the balance after all of them.
    public var overlapLowest: Int?
    /// When a request last named this tenant: drives `idle_evict`.
    public var lastUsed: ContinuousClock.Instant

    public init(lastUsed: ContinuousClock.Instant) {
        self.lastUsed = lastUsed
    }

    /// `remaining` minus what this instance has reserved or billed but not seen confirmed
    /// (`nil` until Crovver has answered once).
    public var effectiveRemaining: Int? {
        guard let remaining = self.remaining else { return nil }
        return remaining - self.reserved - self.unreported
    }

    /// Holds credits Crovver has not confirmed: such an entry is never evicted.
    public var holdsUsage: Bool { self.reserved > 0 || self.unreported > 0 }
}

// MARK: - Decision

extension CrovverTenantEntry {
    /// What a request for this tenant does next.
    public enum Decision: Sendable, Equatable {
        /// Admit against the cached balance (reserve `amount`); `warning` when the pool is a
        /// soft-limit one and this request takes it (or keeps it) below zero.
        case allow(warning: Bool)
        /// Ask Crovver synchronously: consume `amount` for this request (a tenant's first
        /// request, or a probe of a pool that looked exhausted). Concurrent ones coalesce.
        case consume
        /// Refuse (429 `USAGE_LIMIT_REACHED`, or 403 for a tenant Crovver does not know).
        case reject(ProxyRejection)
    }

    /// The decision for one request costing `amount` credits, first matching row wins:
    ///
    /// | knowledge | decision |
    /// |---|---|
    /// | Crovver answered 404/400 for the tenant, within `negative_ttl` | 403 `TOKEN_INVALID` |
    /// | never answered | consume synchronously |
    /// | balance − reserved − unreported ≥ amount | allow |
    /// | seen soft (a `warning`, or below zero) | allow with the soft-limit warning |
    /// | answered `blocked`, within the probe interval | 429 |
    /// | credits of this instance still unconfirmed | 429 (their answers will tell) |
    /// | otherwise | consume synchronously: a probe |
    public func decide(amount: Int, now: ContinuousClock.Instant) -> Decision {
        if let until = self.unknownUntil, now < until { return .reject(.tenantUnknown) }
        guard let left = self.effectiveRemaining else { return .consume }
        if left >= amount { return .allow(warning: false) }
        if self.soft { return .allow(warning: true) }
        if let until = self.blockedUntil, now < until { return .reject(.usageLimitReached) }
        if self.holdsUsage { return .reject(.usageLimitReached) }
        return .consume
    }

    /// Admission: `amount` credits are reserved so concurrent requests cannot overrun the balance.
    public mutating func reserve(_ amount: Int, at now: ContinuousClock.Instant) {
        self.reserved += amount
        self.lastUsed = now
    }

    /// Settlement: the reservation ends; `billed` credits become unreported.
    public mutating func settle(reserved: Int, billed: Int) {
        self.reserved = max(0, self.reserved - reserved)
        self.unreported += max(0, billed)
    }

    /// A consume of `units` credits (a synchronous one or a batch), counted in `unreported`
    /// when it was opened, has an answer. Failures that leave it to be retried never reach here.
    /// `othersInFlight`: another consume for this pool was still unanswered when this answer
    /// came, so answers may be out of order (a replayed batch beside a first consume after a
    /// restart, several first consumes under `fail_mode = open`).
    public mutating func applyConsume(
        units: Int,
        answer: CrovverConsumeOutcome,
        amount: Int,
        now: ContinuousClock.Instant,
        probeInterval: Duration,
        negativeTTL: Duration,
        othersInFlight: Bool = false
    ) {
        switch answer {
        case .answered(let result, let remaining, let alreadyProcessed):
            self.unreported = max(0, self.unreported - units)
            // While consumes overlap, the balance after all of them is the lowest answered (each
            // consume only lowers it), whatever order the answers arrive in: keep the lowest
            // until the last of them has answered.
            let lowest = min(remaining, self.overlapLowest ?? remaining)
            self.overlapLowest = othersInFlight ? lowest : nil
            if alreadyProcessed || othersInFlight {
                // A replayed answer's balance is the first call's, possibly older than what a
                // later answer said: it may only lower the cached balance, never raise it (and
                // says nothing when none is cached).
                self.remaining = self.remaining.map { min($0, lowest) } ?? (alreadyProcessed ? nil : lowest)
            } else {
                self.remaining = lowest
            }
            self.knownAt = now
            self.unknownUntil = nil
            if result == .warning || remaining < 0 { self.soft = true }
            if result == .blocked && !self.soft {
                self.blockedUntil = now + probeInterval
            } else if remaining >= amount || self.soft {
                // Credit again (a top-up, or the pool is soft): no longer blocked.
                self.blockedUntil = nil
            }
        case .rejected(let status):
            // These credits can never be consumed under this key.
            self.unreported = max(0, self.unreported - units)
            // 404 (and 400, a tenant id Crovver will not take): the tenant or its pool is
            // unknown. Another 4xx (409, 422, …) says nothing about the tenant.
            if CrovverConsumeOutcome.meansUnknownTenant(status) { self.unknownUntil = now + negativeTTL }
        case .unauthorized, .rateLimited, .failed, .unknown:
            break
        }
    }

    /// Credits of a consume that will never be retried (it was certainly not applied, or was
    /// given up) stop counting against the balance.
    public mutating func abandon(units: Int) {
        self.unreported = max(0, self.unreported - units)
    }
}

// MARK: - Crovver's answers

/// `data.result` of `POST /credits/consume` (seed 002).
public enum CrovverResult: String, Sendable, Equatable {
    /// Deducted; the balance is ≥ 0.
    case allowed
    /// Deducted; a soft-limit pool is now below zero.
    case warning
    /// Not deducted: a hard-limit pool has too little.
    case blocked
}

/// The answer to one `POST {crovver_url}/credits/consume`, reduced to what Subgate acts on.
public enum CrovverConsumeOutcome: Sendable, Equatable {
    /// 200 with `data`. `alreadyProcessed`: the key was seen before; nothing was deducted now
    /// and the result is the first call's.
    case answered(result: CrovverResult, remaining: Int, alreadyProcessed: Bool)
    /// A 4xx other than 401/403/408/429 (400, 404, 409, 422, …): the tenant or pool is
    /// unknown, or the request was refused as it stands. The credits can never be consumed
    /// under this key, so it is not retried.
    case rejected(status: Int)

    /// A `rejected` status that means the tenant or its pool is unknown (refused for `negative_ttl`).
    public static func meansUnknownTenant(_ status: Int) -> Bool { status == 400 || status == 404 }
    /// 401: `crovver_key` is wrong; nothing was deducted.
    case unauthorized
    /// 429: pause consume calls until `Retry-After` has passed.
    case rateLimited(retryAfter: Duration?)
    /// Certainly not applied: connect failed, 5xx before any effect.
    case failed(reason: String)
    /// Sent but unanswered (timeout, reset): it may have been applied. The same key is retried.
    case unknown(reason: String)
}
