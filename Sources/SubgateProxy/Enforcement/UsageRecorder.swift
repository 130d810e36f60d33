import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import SubgateCore

/// Billed units from the moment an answer is settled until the control plane accepts them
/// (SPEC §4): the ledger, the journal that makes it survive a crash, and the flush that
/// reports it within `usage_rate_limit`, honouring `Retry-After` and backing off on failures.
public final class UsageRecorder: Sendable {
    public struct FlushSummary: Sendable, Equatable {
        public var reportedUnits = 0
        public var reports = 0
        public var droppedUnits = 0
        /// Units still waiting (budget, back-off, errors).
        public var pendingUnits = 0
        /// Why the flush stopped early, if it did.
        public var stoppedBecause: String?
        /// Reports (or Crovver batches) were left for want of budget. The flush loop drains
        /// those each second (Crovver: credits that merely arrived meanwhile wait for the
        /// interval), and so does the final flush on shutdown, within `shutdown_grace`.
        public var budgetLimited = false
    }

    private struct State {
        var ledger = UsageLedger()
        /// Units in reports sent and not answered yet, per hash.
        var inFlight: [String: Int] = [:]
        var inFlightTotal = 0
        var budget: TokenBucket
        var backoff = Backoff(base: .seconds(1), cap: .seconds(60))
        var retryAt: ContinuousClock.Instant?
        var flushing = false
        var lastFlush: Date?
        var lastSummary: FlushSummary?
        /// Hashes whose dropped units were logged already (once per hash).
        var droppedLogged: Set<String> = []

        var pendingUnits: Int { self.ledger.totalUnits + self.inFlightTotal }

        mutating func addInFlight(_ report: UsageReport) {
            self.inFlight[report.hash, default: 0] += report.count
            self.inFlightTotal += report.count
        }

        mutating func removeInFlight(_ report: UsageReport) {
            self.inFlight[report.hash, default: 0] -= report.count
            if self.inFlight[report.hash, default: 0] <= 0 { self.inFlight[report.hash] = nil }
            self.inFlightTotal -= report.count
        }
    }

    private let state: NIOLockedValueBox<State>
    let journal: UsageJournal?
    private let client: ControlPlaneClient
    private let cache: VerdictCache
    private let readiness: Readiness
    private let logger: Logger
    private let pendingGauge = Gauge(label: "subgate_usage_pending_units")
    private let reportedCounter = Counter(label: "subgate_usage_reported_units_total")
    private let ambiguousCounter = Counter(label: "subgate_usage_ambiguous_units_total")
    /// How many reports may be in flight at once.
    static let concurrency = 8

    init(config: Config, journal: UsageJournal?, client: ControlPlaneClient, cache: VerdictCache, readiness: Readiness, logger: Logger) {
        self.state = NIOLockedValueBox(State(budget: TokenBucket(limit: config.usageRateLimit, now: .now)))
        self.journal = journal
        self.client = client
        self.cache = cache
        self.readiness = readiness
        self.logger = logger
        self.pendingGauge.record(0)
        self.ambiguousCounter.increment(by: 0)
    }

    /// Units left unreported by an earlier run (journal replay): reported like any others.
    func restore(_ replay: JournalReplay) {
        let ambiguous = replay.ambiguous.values.reduce(0, +)
        if ambiguous > 0 {
            self.ambiguousCounter.increment(by: Int64(ambiguous))
            self.logger.warning("usage reports sent before the last stop were never answered; they are reported again and may be billed twice", metadata: ["units": .stringConvertible(ambiguous)])
        }
        let total = self.state.withLockedValue { state in
            for (hash, units) in replay.pending { state.ledger.add(hash, units: units) }
            return state.pendingUnits
        }
        self.pendingGauge.record(total)
        // Replayed units count against `remaining` until the control plane confirms them.
        let now = ContinuousClock.now
        for (hash, units) in replay.pending {
            self.cache.withShard(of: hash) { shard in
                self.cache.upsert(hash, in: &shard, now: now) { $0.unreported += units }
            }
        }
    }

    /// A settled answer billed `units` (event loop). The journal record is buffered under the
    /// same lock as the ledger change, so a compaction never sees one without the other; with
    /// `journal_sync = always` it is written once the lock is released, so other event loops
    /// never wait on this one's fsync.
    func record(hash: String, units: Int) {
        let total = self.state.withLockedValue { state in
            state.ledger.add(hash, units: units)
            self.journal?.appendBuffered(.committed(hash: hash, units: units))
            return state.pendingUnits
        }
        self.journal?.writeIfAlways()
        self.pendingGauge.record(total)
    }

    var pendingUnits: Int { self.state.withLockedValue { $0.pendingUnits } }

    struct Status {
        var pendingUnits: Int
        var lastFlush: Date?
        var lastSummary: FlushSummary?
        var budgetLeft: Int
        var retryInSeconds: Double?
    }

    func status() -> Status {
        let now = ContinuousClock.now
        return self.state.withLockedValue { state in
            Status(
                pendingUnits: state.pendingUnits,
                lastFlush: state.lastFlush,
                lastSummary: state.lastSummary,
                budgetLeft: state.budget.available(now: now),
                retryInSeconds: state.retryAt.flatMap { $0 > now ? Double(($0 - now).components.seconds) : nil }
            )
        }
    }

    // MARK: - Flush

    /// Reports what the budget allows now. `force` ignores the back-off (not `Retry-After`):
    /// used by `POST /flush` and the final flush on shutdown.
    func flush(force: Bool = false) async -> FlushSummary {
        let now = ContinuousClock.now
        var backingOff = false
        var budgetLimited = false
        let taken: [UsageReport]? = self.state.withLockedValue { state in
            guard !state.flushing else { return nil }
            // Backing off: nothing is sent and nothing about the back-off changes (an empty
            // round must not count as a success that resets it).
            if !force, let retryAt = state.retryAt, now < retryAt {
                backingOff = true
                return nil
            }
            state.flushing = true
            var reports = state.ledger.takeReports(maxReports: state.budget.available(.miss, now: now))
            // Each report spends one call of the budget; what the bucket refuses goes back.
            var allowed: [UsageReport] = []
            for report in reports where state.budget.take(.miss, now: now) {
                allowed.append(report)
            }
            reports.removeFirst(allowed.count)
            for report in reports { state.ledger.restore(report) }
            budgetLimited = state.ledger.totalUnits > 0 && !state.budget.isPaused(now: now)
            for report in allowed {
                state.addInFlight(report)
                self.journal?.appendBuffered(.sent(hash: report.hash, units: report.count))
            }
            return allowed
        }
        self.journal?.writeIfAlways()
        guard let reports = taken else {
            var summary = FlushSummary()
            summary.pendingUnits = self.pendingUnits
            summary.stoppedBecause = backingOff ? "backing off after failed reports" : "a flush is already running"
            return summary
        }
        var summary = FlushSummary()
        let stop = NIOLockedValueBox<String?>(nil)
        // Nothing is sent before its `S` record is on disk. Otherwise a crash after the control
        // plane counted a report, but before the next group commit, leaves a journal whose
        // units look never reported: the restart reports them again and nothing counts them
        // as ambiguous (SPEC §4). As for Crovver batches, a journal that cannot be written
        // sends nothing.
        if !reports.isEmpty, let journal = self.journal {
            do {
                try await journal.commit()
            } catch {
                for report in reports { self.putBack(report) }
                // Backs off like a failing control plane: each round put back buffers two
                // records per report, which must not grow every interval while the disk is full.
                self.state.withLockedValue { state in
                    let now = ContinuousClock.now
                    state.retryAt = max(state.retryAt ?? now, now + state.backoff.next())
                }
                stop.withLockedValue { $0 = "the usage journal cannot be written: \(error)" }
            }
        }
        if stop.withLockedValue({ $0 }) == nil {
            await withTaskGroup(of: (UsageReport, UsageOutcome?).self) { group in
                var iterator = reports.makeIterator()
                func startNext() -> Bool {
                    guard let report = iterator.next() else { return false }
                    group.addTask {
                        if stop.withLockedValue({ $0 }) != nil { return (report, nil) }
                        return (report, await self.client.reportUsage(hash: report.hash, count: report.count))
                    }
                    return true
                }
                for _ in 0..<Self.concurrency where startNext() {}
                for await (report, outcome) in group {
                    self.settleReport(report, outcome: outcome, summary: &summary, stop: stop)
                    _ = startNext()
                }
            }
        }
        let total = self.state.withLockedValue { state in
            state.flushing = false
            state.lastFlush = Date()
            if stop.withLockedValue({ $0 }) == nil {
                state.backoff.reset()
                state.retryAt = nil
            }
            return state.pendingUnits
        }
        summary.pendingUnits = total
        summary.stoppedBecause = stop.withLockedValue { $0 }
        summary.budgetLimited = budgetLimited
        self.state.withLockedValue { $0.lastSummary = summary }
        self.pendingGauge.record(total)
        await self.compactIfIdle()
        return summary
    }

    /// One report's answer: acknowledge, drop, or put back (and pause / back off).
    private func settleReport(_ report: UsageReport, outcome: UsageOutcome?, summary: inout FlushSummary, stop: NIOLockedValueBox<String?>) {
        let now = ContinuousClock.now
        guard let outcome else {
            // Not sent: an earlier report in this round stopped it.
            self.putBack(report)
            return
        }
        switch outcome {
        case .accepted:
            self.finish(report, record: .acknowledged(hash: report.hash, units: report.count), outcome: outcome)
            self.reportedCounter.increment(by: Int64(report.count))
            self.readiness.sellerKeyAccepted()
            summary.reportedUnits += report.count
            summary.reports += 1
        case .rejected(let status):
            self.finish(report, record: .dropped(hash: report.hash, units: report.count), outcome: outcome)
            Counter(label: "subgate_usage_dropped_units_total", dimensions: [("reason", String(status))]).increment(by: Int64(report.count))
            summary.droppedUnits += report.count
            let first = self.state.withLockedValue { $0.droppedLogged.insert(report.hash).inserted }
            if first {
                self.logger.error(
                    "usage units can never be billed: the control plane refused them; dropped",
                    metadata: ["token_hash": .string(TokenHash.logPrefix(report.hash)), "status": .stringConvertible(status), "units": .stringConvertible(report.count)]
                )
            }
        case .unauthorized:
            self.putBack(report)
            // The key is read once at start, so it will not fix itself: back off as for a
            // failing control plane instead of sending every pending report again each interval
            // (a forced flush, `POST /flush`, still tries at once).
            self.state.withLockedValue { state in
                let delay = state.backoff.next()
                state.retryAt = max(state.retryAt ?? now, now + delay)
            }
            stop.withLockedValue { $0 = $0 ?? "the control plane rejects the seller key (401)" }
            self.readiness.sellerKeyRejected(on: "usage", logger: self.logger)
        case .rateLimited(let retryAfter):
            self.putBack(report)
            let pause = retryAfter ?? .seconds(10)
            self.state.withLockedValue { state in
                state.budget.pause(for: pause, now: now)
                state.retryAt = max(state.retryAt ?? now, now + pause)
            }
            stop.withLockedValue { $0 = $0 ?? "rate-limited by the control plane (429)" }
        case .failed(let reason), .unknown(let reason):
            if case .unknown = outcome {
                // It may have been counted: it will be reported again and may bill twice.
                self.ambiguousCounter.increment(by: Int64(report.count))
            }
            self.putBack(report)
            self.state.withLockedValue { state in
                let delay = state.backoff.next()
                state.retryAt = max(state.retryAt ?? now, now + delay)
            }
            stop.withLockedValue { $0 = $0 ?? "control plane failing: \(reason)" }
            self.logger.warning("usage report failed; units kept for a retry", metadata: ["reason": .string(reason), "units": .stringConvertible(report.count)])
        }
    }

    private func finish(_ report: UsageReport, record: JournalRecord, outcome: UsageOutcome) {
        self.state.withLockedValue { state in
            state.removeInFlight(report)
            self.journal?.appendBuffered(record)
        }
        self.journal?.writeIfAlways()
        self.cache.withShard(of: report.hash) { shard in
            shard.entries[report.hash]?.applyReport(units: report.count, outcome: outcome)
        }
    }

    private func putBack(_ report: UsageReport) {
        self.state.withLockedValue { state in
            state.removeInFlight(report)
            state.ledger.restore(report)
            self.journal?.appendBuffered(.returned(hash: report.hash, units: report.count))
        }
        self.journal?.writeIfAlways()
    }

    /// The journal is rewritten to what is still unreported once it has grown (it would
    /// otherwise grow forever). The journal computes that from its own records, so units
    /// committed while the rewrite runs are kept.
    private func compactIfIdle() async {
        guard let journal = self.journal, journal.bytes > 256 * 1024 else { return }
        do {
            try await journal.compact()
        } catch {
            self.logger.error("usage journal compaction failed", metadata: ["error": .string("\(error)")])
        }
    }
}
