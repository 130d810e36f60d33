import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import SubgateCore

/// Enforcement for `backend = crovver` (SPEC §6), the I/O shell around `CrovverTenantEntry`
/// (the decision per tenant) and `CrovverBatchBook` (batches and their keys):
///
/// - a tenant's first request (and a probe of a pool that looked exhausted) consumes
///   `crovver_amount` synchronously; concurrent ones wait on that one call;
/// - later requests are admitted against the cached balance, with the credits reserved at
///   admission and settled when the answer ends, as in Crochet mode;
/// - billed credits are consumed in batches every `usage_flush_interval`, one call per pool,
///   each under an idempotency key journaled before its first send.
///
/// `admit` and `settle` run on event loops and take short locks only: tenants live in
/// `cache_shards` shards, each behind its own lock, like the verdict cache. Lock order: a
/// tenant shard, then `control`; nothing takes a shard while holding `control`.
final class CrovverEnforcement: Sendable {
    private struct Tenants {
        var entries: [String: CrovverTenantEntry] = [:]
        /// Requests waiting on a tenant's synchronous consume; the first one started it.
        var waiters: [String: [EventLoopPromise<VerdictCache.VerifyResult>]] = [:]
    }

    private struct Control {
        var book: CrovverBatchBook
        /// `usage_rate_limit`: Subgate's own ceiling on consume calls (seed 002 names none).
        var budget: TokenBucket
        var breaker = CircuitBreaker()
        var backoff = Backoff(base: .seconds(1), cap: .seconds(60))
        var retryAt: ContinuousClock.Instant?
        var flushing = false
        var lastFlush: Date?
    }

    let config: Config
    private let client: ControlPlaneClient
    private let journal: UsageJournal?
    private let readiness: Readiness
    private let logger: Logger
    private let shards: [NIOLockedValueBox<Tenants>]
    /// `cache_max_entries` spread over the shards.
    private let perShardLimit: Int
    private let control: NIOLockedValueBox<Control>
    private let shadowRejections = Counter(label: "subgate_shadow_rejections_total")
    private let reportedCounter = Counter(label: "subgate_usage_reported_units_total")
    private let pendingGauge = Gauge(label: "subgate_usage_pending_units")
    /// How many batches may be in flight at once.
    static let concurrency = 8
    /// How long a first request may wait for consume budget before it is answered 503.
    static let maxConsumeWait = Duration.seconds(5)

    init(config: Config, client: ControlPlaneClient, journal: UsageJournal?, readiness: Readiness, logger: Logger) {
        self.config = config
        self.client = client
        self.journal = journal
        self.readiness = readiness
        self.logger = logger
        let shardCount = max(1, config.cacheShards)
        self.shards = (0..<shardCount).map { _ in NIOLockedValueBox(Tenants()) }
        self.perShardLimit = max(1, config.cacheMaxEntries / shardCount)
        var random = SystemRandomNumberGenerator()
        // Replaced by `restore` with the journal's id; without a journal, one id per process.
        let book = CrovverBatchBook(sidecarID: CrovverBatchBook.newSidecarID(using: &random))
        self.control = NIOLockedValueBox(Control(book: book, budget: TokenBucket(limit: config.usageRateLimit, now: .now)))
    }

    private var amount: Int { self.config.crovverAmount }
    /// A tenant answered `blocked` is refused locally this long before the next probe.
    private var probeInterval: Duration { self.config.usageFlushInterval }

    private func key(_ tenant: String) -> CrovverPoolKey { CrovverPoolKey(tenant: tenant, pool: self.config.crovverPool) }

    /// The tenant's shard (FNV-1a of its bytes: stable, cheap for ids of at most 256 bytes).
    private func tenants(_ tenant: String) -> NIOLockedValueBox<Tenants> {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in tenant.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return self.shards[Int(hash % UInt64(self.shards.count))]
    }

    // MARK: - Start

    /// The journal's state after a restart: its sidecar id, sequence mark, pending credits and
    /// open batches (sent again, same keys, by the next flush). Their credits count against
    /// the tenants' balances until Crovver answers.
    func restore(sidecarID: String, state: CrovverJournalState) {
        let book = CrovverBatchBook(sidecarID: sidecarID, replayed: state)
        self.control.withLockedValue { $0.book = book }
        var owed: [String: Int] = [:]
        for (key, units) in state.pending { owed[key.tenant, default: 0] += units }
        for batch in state.batches.values { owed[batch.key.tenant, default: 0] += batch.units }
        let now = ContinuousClock.now
        for (tenant, units) in owed {
            self.tenants(tenant).withLockedValue { tenants in
                var entry = tenants.entries[tenant] ?? CrovverTenantEntry(lastUsed: now)
                entry.unreported += units
                tenants.entries[tenant] = entry
            }
        }
        if !owed.isEmpty {
            self.logger.info(
                "usage journal replayed: crovver credits will be consumed under their journaled keys",
                metadata: ["pending_units": .stringConvertible(state.pendingUnits), "open_batches": .stringConvertible(state.batches.count)]
            )
        }
    }

    var sidecarID: String { self.control.withLockedValue { $0.book.sidecarID } }

    // MARK: - Admission (event loop)

    func admit(tenant: String, endpoint: String, requestID: String, on loop: any EventLoop) -> Enforcer.Admission {
        let now = ContinuousClock.now
        enum Step { case decided(Enforcer.Admission), start(EventLoopFuture<VerdictCache.VerifyResult>), join(EventLoopFuture<VerdictCache.VerifyResult>), failing }
        let step: Step = self.tenants(tenant).withLockedValue { tenants in
            var entry: CrovverTenantEntry
            if let known = tenants.entries[tenant] {
                entry = known
            } else {
                entry = self.newEntry(in: &tenants, now: now)
            }
            entry.lastUsed = now
            switch entry.decide(amount: self.amount, now: now) {
            case .allow(let warning):
                entry.reserve(self.amount, at: now)
                tenants.entries[tenant] = entry
                return .decided(.allow(self.ticket(entry, reserved: self.amount, prepaid: 0, warning: warning, endpoint: endpoint, requestID: requestID)))
            case .reject(let rejection):
                tenants.entries[tenant] = entry
                // A probe is in flight for this tenant (its credits are what looks short):
                // wait for its answer rather than refuse on a balance it is about to replace.
                if rejection == .usageLimitReached, entry.blockedUntil == nil, tenants.waiters[tenant] != nil {
                    let promise = loop.makePromise(of: VerdictCache.VerifyResult.self)
                    tenants.waiters[tenant]!.append(promise)
                    return .join(promise.futureResult)
                }
                return .decided(self.refuse(rejection, entry: entry))
            case .consume:
                tenants.entries[tenant] = entry
                if tenants.waiters[tenant] != nil {
                    let promise = loop.makePromise(of: VerdictCache.VerifyResult.self)
                    tenants.waiters[tenant]!.append(promise)
                    return .join(promise.futureResult)
                }
                // Checked before a promise exists: an abandoned promise is a leak NIO traps on.
                if self.control.withLockedValue({ $0.breaker.isOpen(now: now) }) { return .failing }
                let promise = loop.makePromise(of: VerdictCache.VerifyResult.self)
                tenants.waiters[tenant] = [promise]
                return .start(promise.futureResult)
            }
        }
        switch step {
        case .decided(let admission):
            return admission
        case .join(let future):
            return .wait(future)
        case .start(let future):
            Task { await self.consumeSynchronously(tenant: tenant, endpoint: endpoint, requestID: requestID) }
            return .wait(future)
        case .failing:
            return self.unavailable(tenant: tenant, retryAfterSeconds: self.breakerRetrySeconds(now: now), endpoint: endpoint, requestID: requestID)
        }
    }

    /// The decision once a parked request's consume has ended (never waits again).
    func admitAfterConsume(tenant: String, result: VerdictCache.VerifyResult, endpoint: String, requestID: String) -> Enforcer.Admission {
        let now = ContinuousClock.now
        switch result {
        case .crovverPaid(let warning):
            // This request's credits were consumed by the call itself.
            let entry: CrovverTenantEntry = self.tenants(tenant).withLockedValue { tenants in
                var entry = tenants.entries[tenant] ?? CrovverTenantEntry(lastUsed: now)
                entry.lastUsed = now
                tenants.entries[tenant] = entry
                return entry
            }
            return .allow(self.ticket(entry, reserved: 0, prepaid: self.amount, warning: warning, endpoint: endpoint, requestID: requestID))
        case .verified:
            return self.tenants(tenant).withLockedValue { tenants in
                var entry = tenants.entries[tenant] ?? CrovverTenantEntry(lastUsed: now)
                entry.lastUsed = now
                let admission: Enforcer.Admission
                switch entry.decide(amount: self.amount, now: now) {
                case .allow(let warning):
                    entry.reserve(self.amount, at: now)
                    admission = .allow(self.ticket(entry, reserved: self.amount, prepaid: 0, warning: warning, endpoint: endpoint, requestID: requestID))
                case .reject(let rejection):
                    admission = self.refuse(rejection, entry: entry)
                case .consume:
                    // Crovver has just been asked: the balance does not cover another request.
                    admission = self.refuse(.usageLimitReached, entry: entry)
                }
                tenants.entries[tenant] = entry
                return admission
            }
        case .failed(let seconds):
            return self.unavailable(tenant: tenant, retryAfterSeconds: seconds, endpoint: endpoint, requestID: requestID)
        }
    }

    private func newEntry(in tenants: inout Tenants, now: ContinuousClock.Instant) -> CrovverTenantEntry {
        // Bounded like the verdict cache: the least recently used entry that owes nothing goes.
        if tenants.entries.count >= self.perShardLimit {
            var victim: (String, ContinuousClock.Instant)?
            for (tenant, entry) in tenants.entries where !entry.holdsUsage && tenants.waiters[tenant] == nil {
                if victim == nil || entry.lastUsed < victim!.1 { victim = (tenant, entry.lastUsed) }
            }
            if let victim { tenants.entries[victim.0] = nil }
        }
        return CrovverTenantEntry(lastUsed: now)
    }

    private func refuse(_ rejection: ProxyRejection, entry: CrovverTenantEntry) -> Enforcer.Admission {
        guard self.config.enforce == .shadow else { return .reject(rejection) }
        self.shadowRejections.increment()
        self.logger.info("shadow mode: served a request enforcement would refuse", metadata: ["code": .string(rejection.code)])
        return .allow(Enforcer.Ticket(subscriberID: nil, listingID: nil, remaining: nil, limit: nil, reserved: false))
    }

    private func ticket(_ entry: CrovverTenantEntry, reserved: Int, prepaid: Int, warning: Bool, endpoint: String, requestID: String) -> Enforcer.Ticket {
        var ticket = Enforcer.Ticket(
            subscriberID: nil, listingID: nil, remaining: entry.effectiveRemaining.map { max(0, $0) }, limit: nil, reserved: true
        )
        ticket.reservedCredits = reserved
        ticket.prepaidCredits = prepaid
        ticket.creditWarning = warning
        ticket.endpoint = endpoint
        ticket.requestID = requestID
        return ticket
    }

    /// No answer from Crovver for a request that needed one: `fail_mode` decides. Open (or
    /// shadow): served, its credits reserved and consumed by a later batch.
    private func unavailable(tenant: String, retryAfterSeconds: Int, endpoint: String, requestID: String) -> Enforcer.Admission {
        if self.config.failMode == .open || self.config.enforce == .shadow {
            let now = ContinuousClock.now
            let entry: CrovverTenantEntry = self.tenants(tenant).withLockedValue { tenants in
                var entry = tenants.entries[tenant] ?? CrovverTenantEntry(lastUsed: now)
                entry.reserve(self.amount, at: now)
                tenants.entries[tenant] = entry
                return entry
            }
            return .allow(self.ticket(entry, reserved: self.amount, prepaid: 0, warning: false, endpoint: endpoint, requestID: requestID))
        }
        return .reject(.verificationUnavailable(retryAfterSeconds: retryAfterSeconds))
    }

    private func breakerRetrySeconds(now: ContinuousClock.Instant) -> Int {
        self.control.withLockedValue { state in
            guard let until = state.breaker.openUntil, until > now else { return 1 }
            return Int(((until - now).components.seconds) + 1)
        }
    }

    // MARK: - Settlement (event loop)

    /// The answer ended: `billedUnits` (0 when not billable) × `crovver_amount` credits are
    /// owed, less what the request's synchronous consume already took; the reservation ends.
    func settle(tenant: String, ticket: Enforcer.Ticket, billedUnits: Int) {
        guard ticket.reserved else { return }
        let credits = billedUnits.multipliedReportingOverflow(by: self.amount)
        let owed = max(0, (credits.overflow ? Int.max : credits.partialValue) - ticket.prepaidCredits)
        let now = ContinuousClock.now
        self.tenants(tenant).withLockedValue { tenants in
            var entry = tenants.entries[tenant] ?? CrovverTenantEntry(lastUsed: now)
            entry.settle(reserved: ticket.reservedCredits, billed: owed)
            tenants.entries[tenant] = entry
        }
        guard owed > 0 else { return }
        let key = self.key(tenant)
        let total: Int = self.control.withLockedValue { control in
            control.book.add(key, units: owed, endpoint: ticket.endpoint ?? "", requestID: ticket.requestID ?? "")
            self.journal?.appendBuffered(.crovverCommitted(key: key, units: owed))
            return control.book.pendingUnits + control.book.openUnits
        }
        self.journal?.writeIfAlways()
        self.pendingGauge.record(total)
    }

    // MARK: - Synchronous consume (task)

    /// The one consume for a tenant's parked requests: the first of them is paid by it.
    private func consumeSynchronously(tenant: String, endpoint: String, requestID: String) async {
        let now = ContinuousClock.now
        var results: (first: VerdictCache.VerifyResult, others: VerdictCache.VerifyResult)
        if let wait = await self.takeBudget(maxWait: Self.maxConsumeWait) {
            let seconds = max(1, Int(wait.components.seconds) + 1)
            results = (.failed(retryAfterSeconds: seconds), .failed(retryAfterSeconds: seconds))
        } else if !self.control.withLockedValue({ $0.breaker.allowCall(now: now) }) {
            let seconds = self.breakerRetrySeconds(now: now)
            results = (.failed(retryAfterSeconds: seconds), .failed(retryAfterSeconds: seconds))
        } else {
            results = await self.consumeNow(tenant: tenant, endpoint: endpoint, requestID: requestID)
        }
        let waiters = self.tenants(tenant).withLockedValue { $0.waiters.removeValue(forKey: tenant) ?? [] }
        for (index, waiter) in waiters.enumerated() {
            waiter.succeed(index == 0 ? results.first : results.others)
        }
    }

    private func consumeNow(tenant: String, endpoint: String, requestID: String) async -> (first: VerdictCache.VerifyResult, others: VerdictCache.VerifyResult) {
        let key = self.key(tenant)
        let (batch, idempotencyKey): (CrovverBatch, String) = self.control.withLockedValue { control in
            let batch = control.book.openSynchronous(key, units: self.amount, endpoint: endpoint, requestID: requestID)
            self.journal?.appendBuffered(.crovverBatchOpened(batch))
            return (batch, control.book.idempotencyKey(batch))
        }
        self.tenants(tenant).withLockedValue { $0.entries[tenant, default: CrovverTenantEntry(lastUsed: .now)].unreported += batch.units }
        // Nothing is sent under a key that is not on disk: a crash could otherwise reuse it.
        if let journal = self.journal {
            do {
                try await journal.commit()
            } catch {
                self.endBatch(batch, outcome: nil)
                // The call this request may have claimed (the breaker's half-open probe) is
                // over too: without this the breaker would wait for it forever.
                self.recordCall(.failed(reason: "the usage journal could not be written"), now: .now)
                return (.failed(retryAfterSeconds: 5), .failed(retryAfterSeconds: 5))
            }
        }
        let outcome = await self.client.consume(batch, idempotencyKey: idempotencyKey)
        let now = ContinuousClock.now
        self.recordCall(outcome, now: now)
        switch outcome {
        case .answered(let result, _, _):
            self.endBatch(batch, outcome: outcome)
            return (result == .blocked ? .verified : .crovverPaid(warning: result == .warning), .verified)
        case .rejected(let status):
            self.endBatch(batch, outcome: outcome)
            // An unknown tenant is refused from its entry (403); any other 4xx leaves nothing
            // to decide on, and is refused like an unreachable Crovver (`fail_mode`).
            if CrovverConsumeOutcome.meansUnknownTenant(status) { return (.verified, .verified) }
            return (.failed(retryAfterSeconds: 5), .failed(retryAfterSeconds: 5))
        case .unauthorized:
            await self.giveUp(batch)
            return (.failed(retryAfterSeconds: 30), .failed(retryAfterSeconds: 30))
        case .rateLimited(let retryAfter):
            await self.giveUp(batch)
            let seconds = retryAfter.map { Int($0.components.seconds) + 1 } ?? 10
            return (.failed(retryAfterSeconds: seconds), .failed(retryAfterSeconds: seconds))
        case .failed:
            await self.giveUp(batch)
            let seconds = self.breakerRetrySeconds(now: now)
            return (.failed(retryAfterSeconds: seconds), .failed(retryAfterSeconds: seconds))
        case .unknown(let reason):
            let seconds = self.breakerRetrySeconds(now: now)
            if self.config.failMode == .open || self.config.enforce == .shadow {
                // Served: the credits may have been taken, so the same key is sent again by
                // the flush until Crovver answers (at most once deducted either way).
                self.control.withLockedValue { $0.book.release(batch.sequence) }
                self.logger.warning("crovver consume unanswered; retried with the same key", metadata: ["tenant": .string(tenant), "reason": .string(reason)])
                return (.crovverPaid(warning: false), .failed(retryAfterSeconds: seconds))
            }
            // Refused (fail_mode = closed): the key is given up rather than retried, so a
            // request that was not served is not charged by a retry.
            await self.giveUp(batch)
            self.logger.warning("crovver consume unanswered; the request is refused and the key given up", metadata: ["tenant": .string(tenant), "reason": .string(reason)])
            return (.failed(retryAfterSeconds: seconds), .failed(retryAfterSeconds: seconds))
        }
    }

    /// Gives up a synchronous consume whose request is refused: its end is on disk before the
    /// refusal, or a restart would send the key again and charge for an unserved request.
    private func giveUp(_ batch: CrovverBatch) async {
        self.endBatch(batch, outcome: nil)
        try? await self.journal?.commit()
    }

    /// Waits for consume budget; `nil` once taken, else how long it would still take.
    private func takeBudget(maxWait: Duration) async -> Duration? {
        let deadline = ContinuousClock.now + maxWait
        while true {
            let now = ContinuousClock.now
            let (taken, wait): (Bool, Duration) = self.control.withLockedValue { state in
                if state.budget.take(.miss, now: now) { return (true, .zero) }
                return (false, state.budget.wait(.miss, now: now))
            }
            if taken { return nil }
            if now + wait > deadline { return wait }
            try? await Task.sleep(for: max(wait, .milliseconds(5)))
        }
    }

    /// The breaker, the budget's pause and readiness learn from every consume answer.
    private func recordCall(_ outcome: CrovverConsumeOutcome, now: ContinuousClock.Instant) {
        self.control.withLockedValue { state in
            switch outcome {
            case .answered, .rejected, .unauthorized:
                state.breaker.recordSuccess()
            case .rateLimited(let retryAfter):
                state.budget.pause(for: retryAfter ?? .seconds(10), now: now)
                state.breaker.recordFailure(now: now)
            case .failed, .unknown:
                state.breaker.recordFailure(now: now)
            }
        }
        switch outcome {
        case .unauthorized:
            if self.readiness.setProblem("crovver_key", "Crovver rejects crovver_key (401)") == nil {
                self.logger.critical("Crovver rejected crovver_key (401): check crovver_key; credits are kept until it is accepted")
            }
        case .answered, .rejected:
            self.readiness.setProblem("crovver_key", nil)
        case .rateLimited, .failed, .unknown:
            break
        }
    }

    /// The batch is done: journaled as ended, and its credits leave the tenant's `unreported`
    /// (with the answer applied to the entry when there is one). `requeue` credits of it go
    /// back to the pool's pending credits, for a new batch under a new key; their `U` line
    /// follows the `E` in the journal, so a crash between the two can lose them but never
    /// send them twice.
    private func endBatch(_ batch: CrovverBatch, outcome: CrovverConsumeOutcome?, requeue: Int = 0) {
        let othersInFlight = self.control.withLockedValue { control in
            control.book.settle(batch.sequence)
            self.journal?.appendBuffered(.crovverBatchSettled(sequence: batch.sequence))
            if requeue > 0 {
                control.book.add(batch.key, units: requeue, endpoint: batch.endpoint, requestID: batch.requestID)
                self.journal?.appendBuffered(.crovverCommitted(key: batch.key, units: requeue))
            }
            return control.book.isInFlight(pool: batch.key)
        }
        self.journal?.writeIfAlways()
        let now = ContinuousClock.now
        self.tenants(batch.key.tenant).withLockedValue { tenants in
            var entry = tenants.entries[batch.key.tenant] ?? CrovverTenantEntry(lastUsed: now)
            if let outcome {
                entry.applyConsume(
                    units: batch.units, answer: outcome, amount: self.amount, now: now,
                    probeInterval: self.probeInterval, negativeTTL: self.config.negativeTTL, othersInFlight: othersInFlight
                )
            } else {
                entry.abandon(units: batch.units)
            }
            entry.unreported += requeue
            tenants.entries[batch.key.tenant] = entry
        }
    }

    // MARK: - Flush (task)

    /// Sends the batches the budget allows now: open ones not answered yet (same keys), then
    /// one new batch per pool with pending credits. `force` ignores the back-off (not a 429's
    /// pause): `POST /flush` and the final flush on shutdown. `final`: the proxy has drained,
    /// no request waits for a first consume, so batches may use the whole budget.
    func flush(force: Bool = false, final: Bool = false) async -> UsageRecorder.FlushSummary {
        let now = ContinuousClock.now
        var budgetLimited = false
        var backingOff = false
        let taken: [(CrovverBatch, String)]? = self.control.withLockedValue { control in
            guard !control.flushing else { return nil }
            // Backing off: nothing is sent and nothing about the back-off changes (an empty
            // round must not count as a success that resets it).
            if !force, let retryAt = control.retryAt, now < retryAt {
                backingOff = true
                return nil
            }
            control.flushing = true
            // Batches and first consumes share the consume budget. A first consume holds a
            // request (and a new tenant) waiting, so batches leave it the miss reserve — except
            // on the final flush, when the proxy has drained and no request waits.
            let priority: TokenBucket.Priority = final ? .miss : .refresh
            let available = control.budget.available(priority, now: now)
            let (batches, opened) = control.book.takeBatches(maxBatches: available)
            // A Retry-After pause is not a budget a later round can wait out within a flush.
            budgetLimited = batches.count >= available && control.book.hasSendableBatches && !control.budget.isPaused(now: now)
            for batch in opened { self.journal?.appendBuffered(.crovverBatchOpened(batch)) }
            var allowed: [(CrovverBatch, String)] = []
            for batch in batches {
                if control.budget.take(priority, now: now) {
                    allowed.append((batch, control.book.idempotencyKey(batch)))
                } else {
                    control.book.release(batch.sequence)
                }
            }
            return allowed
        }
        var summary = UsageRecorder.FlushSummary()
        guard let batches = taken else {
            summary.pendingUnits = self.pendingUnits
            summary.stoppedBecause = backingOff ? "backing off after failed consumes" : "a flush is already running"
            return summary
        }
        var stop: String?
        if !batches.isEmpty, let journal = self.journal {
            do {
                try await journal.commit()
            } catch {
                self.control.withLockedValue { control in
                    for (batch, _) in batches { control.book.release(batch.sequence) }
                }
                stop = "the usage journal cannot be written: \(error)"
            }
        }
        if stop == nil {
            await withTaskGroup(of: (CrovverBatch, CrovverConsumeOutcome?).self) { group in
                var iterator = batches.makeIterator()
                let stopped = NIOLockedValueBox(false)
                func startNext() -> Bool {
                    guard let (batch, key) = iterator.next() else { return false }
                    group.addTask {
                        if stopped.withLockedValue({ $0 }) { return (batch, nil) }
                        return (batch, await self.client.consume(batch, idempotencyKey: key))
                    }
                    return true
                }
                for _ in 0..<Self.concurrency where startNext() {}
                for await (batch, outcome) in group {
                    if let reason = self.settleBatch(batch, outcome: outcome, summary: &summary) {
                        stop = stop ?? reason
                        stopped.withLockedValue { $0 = true }
                    }
                    _ = startNext()
                }
            }
        }
        let total: Int = self.control.withLockedValue { control in
            control.flushing = false
            control.lastFlush = Date()
            if stop == nil {
                control.backoff.reset()
                control.retryAt = nil
            } else if (control.retryAt ?? now) <= ContinuousClock.now {
                control.retryAt = ContinuousClock.now + control.backoff.next()
            }
            return control.book.pendingUnits + control.book.openUnits
        }
        summary.pendingUnits = total
        summary.stoppedBecause = stop
        summary.budgetLimited = budgetLimited
        self.pendingGauge.record(total)
        if let journal = self.journal, journal.bytes > 256 * 1024 {
            do { try await journal.compact() } catch {
                self.logger.error("usage journal compaction failed", metadata: ["error": .string("\(error)")])
            }
        }
        return summary
    }

    /// One batch's answer; a reason when the flush should stop sending.
    private func settleBatch(_ batch: CrovverBatch, outcome: CrovverConsumeOutcome?, summary: inout UsageRecorder.FlushSummary) -> String? {
        guard let outcome else {
            self.control.withLockedValue { $0.book.release(batch.sequence) }
            return nil
        }
        let now = ContinuousClock.now
        self.recordCall(outcome, now: now)
        switch outcome {
        case .answered(let result, let remaining, let replayed):
            if result == .blocked {
                // Served, but the hard-limit pool had less than the batch when it arrived
                // (several sidecars drawing on one pool, or a balance that fell meanwhile):
                // what the pool still holds goes into a new batch under a new key, and only
                // the rest is dropped.
                // (A `blocked` balance that would cover the batch is not one to trust: nothing
                // is re-batched on it, or the same credits could go round forever.)
                let salvaged = remaining < batch.units ? max(0, remaining) : 0
                let dropped = batch.units - salvaged
                self.endBatch(batch, outcome: outcome, requeue: salvaged)
                if dropped > 0 {
                    Counter(label: "subgate_usage_dropped_units_total", dimensions: [("reason", "blocked")]).increment(by: Int64(dropped))
                    summary.droppedUnits += dropped
                }
                self.logger.warning(
                    "crovver refused a batch (blocked): the credits the pool still holds are consumed in a new batch, the rest dropped",
                    metadata: [
                        "tenant": .string(batch.key.tenant), "units": .stringConvertible(batch.units), "remaining": .stringConvertible(remaining),
                        "rebatched_units": .stringConvertible(salvaged), "dropped_units": .stringConvertible(dropped),
                    ]
                )
            } else {
                self.endBatch(batch, outcome: outcome)
                self.reportedCounter.increment(by: Int64(batch.units))
                summary.reportedUnits += batch.units
                summary.reports += 1
                if replayed {
                    self.logger.info("crovver batch answered alreadyProcessed: deducted once, by an earlier send", metadata: ["sequence": .stringConvertible(batch.sequence)])
                }
            }
            return nil
        case .rejected(let status):
            self.endBatch(batch, outcome: outcome)
            Counter(label: "subgate_usage_dropped_units_total", dimensions: [("reason", String(status))]).increment(by: Int64(batch.units))
            summary.droppedUnits += batch.units
            self.logger.error(
                "crovver refused a batch (the tenant or pool is unknown, or the request was refused as it stands); dropped",
                metadata: ["tenant": .string(batch.key.tenant), "status": .stringConvertible(status), "units": .stringConvertible(batch.units)]
            )
            return nil
        case .unauthorized:
            self.control.withLockedValue { $0.book.release(batch.sequence) }
            return "Crovver rejects crovver_key (401)"
        case .rateLimited(let retryAfter):
            self.control.withLockedValue { control in
                control.book.release(batch.sequence)
                let pause = retryAfter ?? .seconds(10)
                control.retryAt = max(control.retryAt ?? now, now + pause)
            }
            return "rate-limited by Crovver (429)"
        case .failed(let reason), .unknown(let reason):
            self.control.withLockedValue { $0.book.release(batch.sequence) }
            self.logger.warning("crovver batch unanswered; it is sent again with the same key", metadata: ["reason": .string(reason), "units": .stringConvertible(batch.units)])
            return "Crovver failing: \(reason)"
        }
    }

    // MARK: - Housekeeping and status

    /// Tenants unseen for `idle_evict` that owe nothing leave the cache (the poller's).
    func evictIdle(now: ContinuousClock.Instant) -> Int {
        self.shards.reduce(0) { count, shard in
            count + shard.withLockedValue { tenants in
                let idle = tenants.entries.filter { now - $0.value.lastUsed >= self.config.idleEvict && !$0.value.holdsUsage && tenants.waiters[$0.key] == nil }
                for tenant in idle.keys { tenants.entries[tenant] = nil }
                return tenants.entries.count
            }
        }
    }

    var pendingUnits: Int { self.control.withLockedValue { $0.book.pendingUnits + $0.book.openUnits } }

    struct Status {
        var tenants: Int
        var pendingUnits: Int
        var openBatches: Int
        var batchesInFlight: Int
        var openBatchUnits: Int
        var sidecarID: String
        var nextSequence: UInt64
        var budgetLeft: Int
        var lastFlush: Date?
        var retryInSeconds: Double?
        var breaker: String
    }

    func status() -> Status {
        let now = ContinuousClock.now
        let tenants = self.shards.reduce(0) { $0 + $1.withLockedValue { $0.entries.count } }
        return self.control.withLockedValue { control in
            Status(
                tenants: tenants,
                pendingUnits: control.book.pendingUnits,
                openBatches: control.book.open.count,
                batchesInFlight: control.book.inFlight.count,
                openBatchUnits: control.book.openUnits,
                sidecarID: control.book.sidecarID,
                nextSequence: control.book.nextSequence,
                budgetLeft: control.budget.available(now: now),
                lastFlush: control.lastFlush,
                retryInSeconds: control.retryAt.flatMap { $0 > now ? Double(($0 - now).components.seconds) : nil },
                breaker: control.breaker.state.rawValue
            )
        }
    }

    /// The tenant's entry as it stands (tests and `/status`).
    func entry(_ tenant: String) -> CrovverTenantEntry? {
        self.tenants(tenant).withLockedValue { $0.entries[tenant] }
    }
}
