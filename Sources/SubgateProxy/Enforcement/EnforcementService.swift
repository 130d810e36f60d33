import Foundation
import Logging
import ServiceLifecycle
import SubgateCore

/// The background half of enforcement, as one lifecycle `Service`: the journal's group
/// commit, the poller that re-verifies in-use tokens as they reach their TTL (and evicts idle
/// ones, and follows `cache_ttl = auto`), and the usage flusher. On graceful shutdown, which
/// the service group delivers after the proxy has drained, it flushes usage one last time and
/// commits the journal.
public final class EnforcementService: Service, Sendable {
    let enforcer: Enforcer
    private let config: Config
    private let logger: Logger
    /// How often the poller looks for entries to refresh or evict.
    static let pollTick = Duration.seconds(1)

    public init(enforcer: Enforcer, config: Config, logger: Logger) {
        self.enforcer = enforcer
        self.config = config
        self.logger = logger
    }

    public func run() async throws {
        let usage = self.enforcer.usage
        await withTaskGroup(of: Void.self) { outer in
            if let journal = usage.journal {
                outer.addTask { await journal.run() }
            }
            // The poller and the periodic flush run until graceful shutdown begins, which the
            // service group delivers after the proxy has drained (services stop in reverse order).
            await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Void.self) { loops in
                    loops.addTask { await self.pollLoop() }
                    loops.addTask { await self.flushLoop() }
                    await loops.waitForAll()
                }
            }
            let (summary, rounds) = await self.finalFlush()
            self.logger.info(
                "final usage flush",
                metadata: [
                    "reported_units": .stringConvertible(summary.reportedUnits),
                    "pending_units": .stringConvertible(summary.pendingUnits),
                    "rounds": .stringConvertible(rounds),
                ]
            )
            if let journal = usage.journal {
                do { try await journal.commit() } catch {
                    self.logger.error("usage journal: final commit failed", metadata: ["error": .string("\(error)")])
                }
            }
            outer.cancelAll()
        }
        // AsyncHTTPClient must be shut down before it is released.
        await self.enforcer.client.shutdown()
    }

    /// The final flush, within what is left of `shutdown_grace` (counted from the signal):
    /// rounds follow one another while each one makes progress, because one round cannot send
    /// everything — a Crovver pool's credits billed behind a batch still in flight go in the
    /// next round, and a backlog over the budget's burst drains as the budget refills. It
    /// stops when nothing is pending, when a round is refused (journal, 401, 429, failures:
    /// what is left stays in the journal for the next start) or when too little of the grace
    /// is left for another round's call to end within it.
    func finalFlush() async -> (UsageRecorder.FlushSummary, rounds: Int) {
        let deadline = (self.enforcer.readiness.drainingSince ?? .now) + self.config.shutdownGrace
        var total = UsageRecorder.FlushSummary()
        var rounds = 0
        while true {
            let summary = await self.enforcer.flush(force: true, final: true)
            rounds += 1
            total.reportedUnits += summary.reportedUnits
            total.reports += summary.reports
            total.droppedUnits += summary.droppedUnits
            total.pendingUnits = summary.pendingUnits
            total.stoppedBecause = summary.stoppedBecause
            let progressed = summary.reportedUnits > 0 || summary.droppedUnits > 0
            guard summary.pendingUnits > 0, summary.stoppedBecause == nil, !Task.isCancelled else { break }
            // Nothing moved and the budget is not what held it: another round would do the same.
            if !progressed && !summary.budgetLimited { break }
            let pause = progressed && !summary.budgetLimited ? Duration.zero : Self.drainStep
            // Another round only when a call of it could still end within the grace.
            guard ContinuousClock.now + pause + self.enforcer.client.callTimeout < deadline else { break }
            if pause > .zero { try? await Task.sleep(for: pause) }
        }
        return (total, rounds)
    }

    /// Every `usage_flush_interval`, a flush; while a backlog larger than one flush's budget
    /// remains (and the control plane is accepting), more flushes follow each second as the
    /// budget refills, so the backlog drains at the full `usage_rate_limit` rather than at the
    /// bucket's burst per interval.
    private func flushLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: self.config.usageFlushInterval)
            if Task.isCancelled { break }
            let next = ContinuousClock.now + self.config.usageFlushInterval
            var summary = await self.enforcer.flush()
            // Crovver: one batch per pool per interval (SPEC §6), so only a budget backlog drains early.
            while summary.stoppedBecause == nil && summary.pendingUnits > 0 && !Task.isCancelled
                && (self.enforcer.crovver == nil || summary.budgetLimited)
                && ContinuousClock.now + Self.drainStep < next
            {
                try? await Task.sleep(for: Self.drainStep)
                summary = await self.enforcer.flush()
            }
        }
    }

    static let drainStep = Duration.seconds(1)

    private func pollLoop() async {
        var lastTick = ContinuousClock.now
        var lastSeen = self.enforcer.requestsSeen.load(ordering: .relaxed)
        var perSecond: [Double] = []
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.pollTick)
            let now = ContinuousClock.now
            if case .auto = self.config.cacheTTL {
                let seen = self.enforcer.requestsSeen.load(ordering: .relaxed)
                let elapsed = now - lastTick
                let seconds = elapsed.inSeconds
                perSecond.append(Double(seen - lastSeen) / max(seconds, 0.001))
                if perSecond.count > Self.rateWindowTicks { perSecond.removeFirst() }
                self.enforcer.setTTL(AutoTTL.ttl(requestsPerSecond: Self.measuredRate(perSecond)))
                lastTick = now
                lastSeen = seen
            }
            self.checkJournal()
            await self.pollOnce(now: now)
        }
    }

    /// Seconds of history behind `cache_ttl = auto`.
    static let rateWindowTicks = 10

    /// The rate `cache_ttl = auto` follows: the last second's when traffic rises (a burst gets
    /// a cache at once), the window's average when it falls (a lull does not drop to "verify
    /// every request" until it has lasted).
    static func measuredRate(_ perSecond: [Double]) -> Double {
        guard let last = perSecond.last else { return 0 }
        let average = perSecond.reduce(0, +) / Double(perSecond.count)
        return max(last, average)
    }

    /// A journal that cannot be written fails `/readyz` and, under `fail_mode = closed`,
    /// refuses billable requests; both clear when a commit succeeds again.
    func checkJournal() {
        let failure = self.enforcer.usage.journal?.failure
        let wasFailing = self.enforcer.journalFailing.exchange(failure != nil, ordering: .relaxed)
        self.enforcer.readiness.setProblem("journal", failure)
        if let failure, !wasFailing {
            self.logger.error(
                "usage journal unwritable",
                metadata: ["reason": .string(failure), "fail_mode": .string(self.config.failMode.rawValue),
                           "effect": .string(self.config.failMode == .closed ? "requests are refused with 503 until it recovers" : "requests are served; units are kept in memory until it recovers")]
            )
        } else if failure == nil && wasFailing {
            self.logger.notice("usage journal writable again")
        }
    }

    /// Refreshes entries in use whose TTL has passed (oldest first, within the refresh
    /// budget) and evicts entries idle for `idle_evict` that hold no usage.
    func pollOnce(now: ContinuousClock.Instant) async {
        let ttl = self.enforcer.ttl
        var due: [(String, ContinuousClock.Instant)] = []
        var entries = 0
        self.enforcer.cache.forEachShard { shard in
            var evict: [String] = []
            for (hash, entry) in shard.entries {
                if now - entry.lastUsed >= self.config.idleEvict {
                    if !entry.holdsUsage && shard.waiters[hash] == nil { evict.append(hash) }
                    continue
                }
                guard ttl > .zero, let verifiedAt = entry.verifiedAt, !entry.lastVerdictInvalid,
                    now - verifiedAt >= ttl, !shard.refreshing.contains(hash), shard.waiters[hash] == nil
                else { continue }
                due.append((hash, verifiedAt))
            }
            for hash in evict { shard.entries[hash] = nil }
            entries += shard.entries.count
        }
        if let crovver = self.enforcer.crovver { entries += crovver.evictIdle(now: now) }
        self.enforcer.cacheEntries.record(entries)
        guard !due.isEmpty else { return }
        due.sort { $0.1 < $1.1 }
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for (hash, _) in due {
                let claimed = self.enforcer.cache.withShard(of: hash) { $0.refreshing.insert(hash).inserted }
                guard claimed else { continue }
                if running >= 8 {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.enforcer.refresh(hash: hash) }
                if !self.enforcer.hasRefreshBudget() {
                    break
                }
            }
        }
    }
}
