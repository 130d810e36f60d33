import Foundation

/// Everything one Subgate knows about one token hash: the control plane's last definitive
/// word, and the units this instance has admitted or billed that the control plane has not
/// confirmed yet. A plain value: the verdict cache keeps one per hash under its shard's lock,
/// and the decision below is a pure function of it, so unit tests drive it with any clock.
public struct TokenEntry: Sendable, Equatable {
    /// The last `{valid:true}` data (kept when a later verify says `{valid:false}`: SPEC §3
    /// decides such a token by what it was last seen as).
    public var info: TokenInfo?
    /// The last definitive verify answered `{valid:false}` (or 403/404).
    public var lastVerdictInvalid = false
    /// When the last definitive verify answer arrived (monotonic).
    public var verifiedAt: ContinuousClock.Instant?
    /// When a request last asked for this token (monotonic): drives polling and `idle_evict`.
    public var lastUsed: ContinuousClock.Instant
    /// Units admitted (reserved at admission), whose answers have not settled yet.
    public var reserved = 0
    /// Units billed by this instance and not yet accepted (or dropped) by the control plane.
    public var unreported = 0

    public init(lastUsed: ContinuousClock.Instant) {
        self.lastUsed = lastUsed
    }

    /// `remaining` minus what this instance has admitted or billed but not seen confirmed
    /// (`nil`: unlimited, or never seen valid).
    public var effectiveRemaining: Int? {
        guard let remaining = self.info?.remaining else { return nil }
        return remaining - self.reserved - self.unreported
    }

    /// Holds units the control plane has not confirmed: such an entry is never evicted.
    public var holdsUsage: Bool { self.reserved > 0 || self.unreported > 0 }
}

// MARK: - Freshness

extension TokenEntry {
    public enum Freshness: Sendable, Equatable {
        /// Decide from the entry; nothing to do.
        case fresh
        /// Decide from the entry and refresh it in the background (a warm request never waits).
        case stale
        /// No usable verdict: the request waits for a verify.
        case unusable
    }

    /// How usable the entry is at `now`. `ttl == .zero` is "verify every request" (the seed's
    /// table under 1 req/s), with a one-second floor. A negative verdict is usable for `negativeTTL` only; a positive
    /// one is fresh for `ttl` and may be served stale (while being refreshed) up to `staleMax`.
    public func freshness(now: ContinuousClock.Instant, ttl: Duration, negativeTTL: Duration, staleMax: Duration) -> Freshness {
        guard let verifiedAt = self.verifiedAt else { return .unusable }
        let age = now - verifiedAt
        if self.lastVerdictInvalid {
            return age < negativeTTL ? .fresh : .unusable
        }
        // "Verify every request" is the seed's advice under 1 req/s: requests a second or more
        // apart. A verdict younger than a second still decides, so a burst that arrives before
        // the measured rate has caught up does not turn into one verify per request.
        if ttl == .zero { return age < .seconds(1) ? .fresh : .unusable }
        if age < ttl { return .fresh }
        return age < ttl + staleMax ? .stale : .unusable
    }

    /// Whether the entry may decide a request while the control plane is failing: any
    /// definitive verdict younger than `staleMax` (SPEC §2 `stale_max`).
    public func usableWhileFailing(now: ContinuousClock.Instant, staleMax: Duration) -> Bool {
        guard let verifiedAt = self.verifiedAt else { return false }
        return now - verifiedAt < staleMax
    }
}

// MARK: - Decision (SPEC §3 step 5)

public enum EnforcementDecision: Sendable, Equatable {
    case allow
    case reject(ProxyRejection)
}

extension TokenEntry {
    /// The SPEC §3 table, first matching row wins, for an entry with a definitive verdict.
    /// `now` is wall-clock time, compared with `expires_at`.
    public func decide(now: Date) -> EnforcementDecision {
        if self.lastVerdictInvalid {
            // Never seen valid, or last seen revoked: plainly invalid.
            guard let info = self.info, info.status != "revoked" else { return .reject(.tokenInvalid) }
            if let expiresAt = info.expiresAt, expiresAt <= now { return .reject(.tokenExpired) }
            // Last seen with nothing remaining, now {valid:false}: the control plane expired
            // it for usage, which the buyer must hear as the limit, not as a bad token.
            if let left = self.effectiveRemaining, left <= 0 { return .reject(.usageLimitReached) }
            if info.status == "expired" { return .reject(.tokenExpired) }
            // Seen valid with units left, now invalid: rotated or cancelled.
            return .reject(.tokenInvalid)
        }
        guard let info = self.info else { return .reject(.tokenInvalid) }
        if let expiresAt = info.expiresAt, expiresAt <= now { return .reject(.tokenExpired) }
        if let left = self.effectiveRemaining, left <= 0 { return .reject(.usageLimitReached) }
        if info.status == "expired" { return .reject(.tokenExpired) }
        if info.status != "active" { return .reject(.tokenInvalid) }
        return .allow
    }
}

// MARK: - Control-plane answers and settlement

extension TokenEntry {
    /// A definitive verify answer. Failures (timeouts, 5xx, 429) never reach here: they are
    /// not knowledge about the token.
    public mutating func applyVerify(_ outcome: VerifyOutcome, at now: ContinuousClock.Instant) {
        switch outcome {
        case .valid(let info):
            self.info = info
            self.lastVerdictInvalid = false
            self.verifiedAt = now
        case .invalid:
            self.lastVerdictInvalid = true
            self.verifiedAt = now
        case .unauthorized, .failed:
            break
        }
    }

    /// Admission: one unit is reserved so concurrent requests cannot overrun `remaining`.
    public mutating func reserve(at now: ContinuousClock.Instant) {
        self.reserved += 1
        self.lastUsed = now
    }

    /// Settlement: the reservation ends; `billed` units (0 when the answer is not billable)
    /// become unreported usage.
    public mutating func settle(billed: Int) {
        self.reserved = max(0, self.reserved - 1)
        self.unreported += max(0, billed)
    }

    /// A usage report for `units` was accepted (or definitively refused): they are no longer
    /// this instance's to count. An accepted answer refreshes `remaining` and `status`.
    public mutating func applyReport(units: Int, outcome: UsageOutcome) {
        self.unreported = max(0, self.unreported - units)
        if case .accepted(let usageCount, let usageLimit, let remaining, let status) = outcome, var info = self.info {
            info.usageCount = usageCount ?? info.usageCount
            info.usageLimit = usageLimit
            info.remaining = remaining
            if let status { info.status = status }
            self.info = info
        }
    }
}
