import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import SubgateCore

/// Subscription enforcement (SPEC §3 steps 2–5 and 7). For `backend = crovver` (SPEC §6)
/// admission, settlement and the flush go to `crovver` (`CrovverEnforcement`), keyed by the
/// tenant instead of a token hash; the rest of this type is `backend = crochet`: the verdict
/// for a token hash from the sharded cache, one coalesced verify per miss within the verify
/// budget and behind the circuit breaker, the decision table, and the unit reserved at
/// admission and settled when the answer ends.
///
/// `admit` and `settle` run on the connection's event loop and only take short locks; the
/// control plane is only ever awaited in tasks started here (misses) or by the poller.
public final class Enforcer: Sendable {
    /// What a request may do next.
    enum Admission {
        case allow(Ticket)
        case reject(ProxyRejection)
        /// Wait for a verify, then call `admitAfterVerify`.
        case wait(EventLoopFuture<VerdictCache.VerifyResult>)
    }

    /// An admitted request's reserved unit, settled exactly once.
    struct Ticket {
        let subscriberID: String?
        let listingID: String?
        /// `remaining` after this request's reservation (`nil`: unlimited or unknown).
        let remaining: Int?
        let limit: Int?
        /// Whether a unit was reserved (false for a shadow-mode request the table would refuse).
        let reserved: Bool
        /// `backend = crovver`: credits reserved at admission (0 when the request's own
        /// synchronous consume paid for it).
        var reservedCredits = 0
        /// `backend = crovver`: credits the request's synchronous consume already took.
        var prepaidCredits = 0
        /// `backend = crovver`: a soft-limit pool below zero (`x-subscription-warning: soft-limit`).
        var creditWarning = false
        /// `backend = crovver`: the request's path and id, for the batch's `metadata`.
        var endpoint: String?
        var requestID: String?
    }

    private struct ControlState {
        var verifyBudget: TokenBucket
        var breaker = CircuitBreaker()
    }

    let config: Config
    let cache: VerdictCache
    let client: ControlPlaneClient
    let usage: UsageRecorder
    /// `backend = crovver`; nil for `crochet`.
    let crovver: CrovverEnforcement?
    private let control: NIOLockedValueBox<ControlState>
    let readiness: Readiness
    private let logger: Logger
    /// The TTL in force, in nanoseconds (`cache_ttl = auto` changes it with the traffic).
    private let ttlNanoseconds: Synchronization.Atomic<Int64>
    /// Requests seen, for the measured rate behind `cache_ttl = auto`.
    let requestsSeen = Synchronization.Atomic<Int>(0)
    /// The usage journal cannot be written (set by the poller from `UsageJournal.failure`).
    let journalFailing = Synchronization.Atomic<Bool>(false)
    /// How long a miss may wait for verify budget before it is answered 503.
    static let maxMissWait = Duration.seconds(5)

    private let lookups: [String: Counter]
    /// `subgate_cache_entries`, updated by the poller's scan.
    let cacheEntries = Gauge(label: "subgate_cache_entries")
    private let shadowRejections: Counter

    public init(config: Config, client: ControlPlaneClient, journal: UsageJournal?, readiness: Readiness, logger: Logger) {
        self.config = config
        let cache = VerdictCache(shards: config.cacheShards, maxEntries: config.cacheMaxEntries)
        self.cache = cache
        self.client = client
        self.usage = UsageRecorder(config: config, journal: journal, client: client, cache: cache, readiness: readiness, logger: logger)
        self.crovver = config.backend == .crovver
            ? CrovverEnforcement(config: config, client: client, journal: journal, readiness: readiness, logger: logger) : nil
        self.readiness = readiness
        self.logger = logger
        self.control = NIOLockedValueBox(ControlState(verifyBudget: TokenBucket(limit: config.verifyRateLimit, now: .now)))
        let initialTTL: Duration
        switch config.cacheTTL {
        case .fixed(let ttl): initialTTL = ttl
        case .auto: initialTTL = .seconds(60)
        }
        self.ttlNanoseconds = Atomic(TimeAmount(initialTTL).nanoseconds)
        var lookups: [String: Counter] = [:]
        for result in ["hit", "stale", "miss", "negative"] {
            lookups[result] = Counter(label: "subgate_cache_lookups_total", dimensions: [("result", result)])
        }
        self.lookups = lookups
        self.shadowRejections = Counter(label: "subgate_shadow_rejections_total")
    }

    var ttl: Duration { .nanoseconds(self.ttlNanoseconds.load(ordering: .relaxed)) }

    func setTTL(_ ttl: Duration) {
        self.ttlNanoseconds.store(TimeAmount(ttl).nanoseconds, ordering: .relaxed)
    }

    // MARK: - Admission (event loop)

    /// `hash` is the token hash (`crochet`) or the tenant (`crovver`); `endpoint` and
    /// `requestID` are only used by `crovver` (the consume's metadata).
    func admit(hash: String, on loop: any EventLoop, endpoint: String = "", requestID: String = "") -> Admission {
        self.requestsSeen.add(1, ordering: .relaxed)
        // A billable answer that cannot be journaled is not served under fail_mode = closed;
        // under open it is served and its units are kept in memory until the disk recovers.
        if self.journalFailing.load(ordering: .relaxed) && self.config.failMode == .closed && self.config.enforce == .on {
            return .reject(.journalUnavailable)
        }
        if let crovver = self.crovver {
            return crovver.admit(tenant: hash, endpoint: endpoint, requestID: requestID, on: loop)
        }
        let now = ContinuousClock.now
        let ttl = self.ttl
        enum Step { case decided(Admission), startVerify(EventLoopFuture<VerdictCache.VerifyResult>), join(EventLoopFuture<VerdictCache.VerifyResult>), failing }
        // Asked only when the cache cannot decide: a warm request takes no lock but its shard's.
        // (Lock order: shard, then control; nothing takes a shard lock while holding control.)
        let breakerOpen = { self.control.withLockedValue { $0.breaker.isOpen(now: now) } }
        let step: Step = self.cache.withShard(of: hash) { shard in
            if var entry = shard.entries[hash] {
                entry.lastUsed = now
                let freshness = entry.freshness(now: now, ttl: ttl, negativeTTL: self.config.negativeTTL, staleMax: self.config.staleMax)
                switch freshness {
                case .fresh, .stale:
                    self.lookups[entry.lastVerdictInvalid ? "negative" : (freshness == .fresh ? "hit" : "stale")]?.increment()
                    let admission = self.decide(&entry, now: now)
                    shard.entries[hash] = entry
                    return .decided(admission)
                case .unusable:
                    if breakerOpen() && entry.usableWhileFailing(now: now, staleMax: self.config.staleMax) {
                        self.lookups["stale"]?.increment()
                        let admission = self.decide(&entry, now: now)
                        shard.entries[hash] = entry
                        return .decided(admission)
                    }
                    shard.entries[hash] = entry
                }
            }
            self.lookups["miss"]?.increment()
            if breakerOpen() { return .failing }
            let promise = loop.makePromise(of: VerdictCache.VerifyResult.self)
            if shard.waiters[hash] != nil {
                shard.waiters[hash]!.append(promise)
                return .join(promise.futureResult)
            }
            shard.waiters[hash] = [promise]
            return .startVerify(promise.futureResult)
        }
        switch step {
        case .decided(let admission):
            return admission
        case .join(let future):
            return .wait(future)
        case .startVerify(let future):
            Task { await self.verifyMiss(hash: hash) }
            return .wait(future)
        case .failing:
            return self.unavailable(hash: hash, retryAfterSeconds: self.breakerRetrySeconds(now: now), now: now)
        }
    }

    /// The decision once a parked request's verify has ended (never waits again).
    func admitAfterVerify(hash: String, result: VerdictCache.VerifyResult, endpoint: String = "", requestID: String = "") -> Admission {
        if let crovver = self.crovver {
            return crovver.admitAfterConsume(tenant: hash, result: result, endpoint: endpoint, requestID: requestID)
        }
        let now = ContinuousClock.now
        let decided: Admission? = self.cache.withShard(of: hash) { shard in
            guard var entry = shard.entries[hash] else { return nil }
            switch result {
            case .verified, .crovverPaid:
                guard entry.verifiedAt != nil else { return nil }
            case .failed:
                guard entry.usableWhileFailing(now: now, staleMax: self.config.staleMax) else { return nil }
            }
            entry.lastUsed = now
            let admission = self.decide(&entry, now: now)
            shard.entries[hash] = entry
            return admission
        }
        if let decided { return decided }
        let retry: Int
        if case .failed(let seconds) = result { retry = seconds } else { retry = 1 }
        return self.unavailable(hash: hash, retryAfterSeconds: retry, now: now)
    }

    /// The table's verdict for an entry with a definitive answer; reserves on allow.
    private func decide(_ entry: inout TokenEntry, now: ContinuousClock.Instant) -> Admission {
        switch entry.decide(now: Date()) {
        case .allow:
            entry.reserve(at: now)
            return .allow(self.ticket(entry, reserved: true))
        case .reject(let rejection):
            guard self.config.enforce == .shadow else { return .reject(rejection) }
            self.countShadowRejection(rejection)
            return .allow(self.ticket(entry, reserved: false))
        }
    }

    private func ticket(_ entry: TokenEntry, reserved: Bool) -> Ticket {
        Ticket(
            subscriberID: entry.info?.subscriberID,
            listingID: entry.info?.listingID,
            remaining: entry.effectiveRemaining.map { max(0, $0) },
            limit: entry.info?.usageLimit,
            reserved: reserved
        )
    }

    /// No usable verdict and the control plane is failing: `fail_mode` decides.
    private func unavailable(hash: String, retryAfterSeconds: Int, now: ContinuousClock.Instant) -> Admission {
        if self.config.failMode == .open || self.config.enforce == .shadow {
            // Serve and bill later: the unit is reserved on an entry without a verdict, so it
            // is reported (and dropped by the control plane if the token was not valid).
            self.cache.withShard(of: hash) { shard in
                self.cache.upsert(hash, in: &shard, now: now) { $0.reserve(at: now) }
            }
            return .allow(Ticket(subscriberID: nil, listingID: nil, remaining: nil, limit: nil, reserved: true))
        }
        return .reject(.verificationUnavailable(retryAfterSeconds: retryAfterSeconds))
    }

    private func breakerRetrySeconds(now: ContinuousClock.Instant) -> Int {
        self.control.withLockedValue { state in
            guard let until = state.breaker.openUntil, until > now else { return 1 }
            return Int(((until - now).components.seconds) + 1)
        }
    }

    /// `enforce = shadow`: a request the table (or the token check) would refuse is served;
    /// it is counted here and logged.
    func countShadowRejection(_ rejection: ProxyRejection) {
        self.shadowRejections.increment()
        self.logger.info("shadow mode: served a request enforcement would refuse", metadata: ["code": .string(rejection.code)])
    }

    // MARK: - Settlement (event loop)

    /// The answer ended (or failed): the reservation becomes `billed` units, or is released.
    func settle(hash: String, ticket: Ticket, billed: Int) {
        if let crovver = self.crovver {
            crovver.settle(tenant: hash, ticket: ticket, billedUnits: billed)
            return
        }
        guard ticket.reserved else { return }
        self.cache.withShard(of: hash) { shard in
            shard.entries[hash]?.settle(billed: billed)
        }
        if billed > 0 {
            self.usage.record(hash: hash, units: billed)
        }
    }

    /// Reports (`crochet`) or consumes (`crovver`) what is owed, within the budget.
    /// `final`: the last flush on shutdown, after the proxy drained.
    func flush(force: Bool = false, final: Bool = false) async -> UsageRecorder.FlushSummary {
        if let crovver = self.crovver { return await crovver.flush(force: force, final: final) }
        return await self.usage.flush(force: force)
    }

    // MARK: - Verify (tasks)

    /// The one verify for a miss; completes every parked request.
    private func verifyMiss(hash: String) async {
        let outcome = await self.verifyWithinBudget(hash: hash, priority: .miss, maxWait: Self.maxMissWait)
        let now = ContinuousClock.now
        let result: VerdictCache.VerifyResult
        switch outcome {
        case .valid, .invalid:
            result = .verified
        case .unauthorized:
            result = .failed(retryAfterSeconds: 30)
        case .failed(_, let retryAfter):
            let seconds = retryAfter.map { Int($0.components.seconds) + 1 } ?? self.breakerRetrySeconds(now: now)
            result = .failed(retryAfterSeconds: max(1, seconds))
        }
        let waiters: [EventLoopPromise<VerdictCache.VerifyResult>] = self.cache.withShard(of: hash) { shard in
            if case .verified = result {
                self.cache.upsert(hash, in: &shard, now: now) { $0.applyVerify(outcome, at: now) }
            }
            return shard.waiters.removeValue(forKey: hash) ?? []
        }
        for waiter in waiters { waiter.succeed(result) }
    }

    /// A background refresh of an in-use entry (the poller's).
    func refresh(hash: String) async {
        let outcome = await self.verifyWithinBudget(hash: hash, priority: .refresh, maxWait: .zero)
        let now = ContinuousClock.now
        self.cache.withShard(of: hash) { shard in
            shard.refreshing.remove(hash)
            shard.entries[hash]?.applyVerify(outcome, at: now)
        }
    }

    /// Takes verify budget (waiting up to `maxWait`), asks the breaker, calls, and records
    /// the outcome in the breaker, the budget (`Retry-After`) and readiness (401).
    func verifyWithinBudget(hash: String, priority: TokenBucket.Priority, maxWait: Duration) async -> VerifyOutcome {
        let deadline = ContinuousClock.now + maxWait
        while true {
            let now = ContinuousClock.now
            let (allowed, wait): (Bool, Duration) = self.control.withLockedValue { state in
                if state.verifyBudget.take(priority, now: now) { return (true, .zero) }
                return (false, state.verifyBudget.wait(priority, now: now))
            }
            if allowed { break }
            if now + wait > deadline {
                return .failed(reason: "verify budget exhausted", retryAfter: wait)
            }
            try? await Task.sleep(for: max(wait, .milliseconds(5)))
        }
        let mayCall = self.control.withLockedValue { $0.breaker.allowCall(now: .now) }
        guard mayCall else { return .failed(reason: "circuit breaker open", retryAfter: nil) }
        let outcome = await self.client.verify(hash: hash)
        let now = ContinuousClock.now
        self.control.withLockedValue { state in
            switch outcome {
            case .valid, .invalid:
                state.breaker.recordSuccess()
            case .unauthorized:
                state.breaker.recordSuccess()
            case .failed(_, let retryAfter):
                if let retryAfter { state.verifyBudget.pause(for: retryAfter, now: now) }
                state.breaker.recordFailure(now: now)
            }
        }
        switch outcome {
        case .unauthorized:
            self.readiness.sellerKeyRejected(on: "verify", logger: self.logger)
        case .valid, .invalid:
            self.readiness.sellerKeyAccepted()
        case .failed(let reason, _):
            self.logger.warning("verify failed", metadata: ["token_hash": .string(TokenHash.logPrefix(hash)), "reason": .string(reason)])
        }
        return outcome
    }

    /// Whether a refresh could take verify budget now (misses keep their reserve).
    func hasRefreshBudget() -> Bool {
        let now = ContinuousClock.now
        return self.control.withLockedValue { $0.verifyBudget.wait(.refresh, now: now) == .zero }
    }


    // MARK: - Status

    struct Snapshot {
        var breaker: String
        var verifyBudgetLeft: Int
        var ttlSeconds: Double
    }

    func snapshot() -> Snapshot {
        let now = ContinuousClock.now
        let ttl = self.ttl
        return self.control.withLockedValue { state in
            Snapshot(
                breaker: state.breaker.state.rawValue,
                verifyBudgetLeft: state.verifyBudget.available(now: now),
                ttlSeconds: ttl.inSeconds
            )
        }
    }
}

extension Readiness {
    /// A 401 from the control plane: `/readyz` fails, logged loudly once when it appears (SPEC §4).
    func sellerKeyRejected(on endpoint: String, logger: Logger) {
        if self.setProblem("seller_key", "the control plane rejects the seller key (401)") == nil {
            logger.critical(
                "the control plane rejected the seller key (401): check seller_key / seller_key_file; usage is kept until it is accepted",
                metadata: ["endpoint": .string(endpoint)]
            )
        }
    }

    /// The control plane accepted the seller key again.
    func sellerKeyAccepted() {
        self.setProblem("seller_key", nil)
    }
}
