import Foundation
import Logging
import SubgateCore

/// Builds enforcement for `run` (and the demo): the control-plane client, the journal
/// (opened and replayed), the enforcer, and the background service.
public enum EnforcementSetup {
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func make(config: Config, readiness: Readiness, logger: Logger) async throws -> (Enforcer, EnforcementService) {
        guard config.backend == .crochet else {
            throw StartError(description: "backend = \(config.backend.rawValue) is not available in this build; use backend = crochet")
        }
        guard let sellerKey = config.sellerKey?.value else {
            throw StartError(description: "seller_key or seller_key_file is required for backend = crochet")
        }
        let client = ControlPlaneClient(baseURL: config.controlPlaneURL, sellerKey: sellerKey, logger: logger)
        var journal: UsageJournal?
        var replay: JournalReplay?
        if let path = config.usageJournal {
            let opened = UsageJournal(path: path, sync: config.journalSync, logger: logger)
            do {
                replay = try await opened.open()
            } catch {
                await client.shutdown()
                throw StartError(description: "usage_journal: \(error)")
            }
            journal = opened
        }
        let enforcer = Enforcer(config: config, client: client, journal: journal, readiness: readiness, logger: logger)
        if let replay {
            enforcer.usage.restore(replay)
            if replay.tornTail || replay.badRecords > 0 {
                logger.warning(
                    "usage journal had damaged records; the intact ones were replayed",
                    metadata: ["torn_tail": .stringConvertible(replay.tornTail), "bad_records": .stringConvertible(replay.badRecords)]
                )
            }
            // Fold what was replayed into a fresh file at once, so the ambiguous reports of a
            // crashed run are counted once even if this run crashes too.
            if let journal {
                do { try await journal.compact() } catch {
                    logger.error("usage journal: compaction after replay failed", metadata: ["error": .string("\(error)")])
                }
            }
            let units = replay.pending.values.reduce(0, +)
            if units > 0 {
                logger.info("usage journal replayed: unreported units will be reported", metadata: ["units": .stringConvertible(units)])
            }
        }
        return (enforcer, EnforcementService(enforcer: enforcer, config: config, logger: logger))
    }
}

extension Enforcer {
    /// `/status` fields (already-encoded JSON values).
    public func statusFields() -> [(String, String)] {
        let snapshot = self.snapshot()
        let usage = self.usage.status()
        var fields: [(String, String)] = [
            ("cache_entries", String(self.cache.count)),
            ("cache_ttl_seconds", String(snapshot.ttlSeconds)),
            ("pending_units", String(usage.pendingUnits)),
            ("journal_bytes", String(self.usage.journal?.bytes ?? 0)),
            ("journal_failure", self.usage.journal?.failure.map(JSONString.quote) ?? "null"),
            ("control_plane", JSONString.quote(snapshot.breaker)),
            ("verify_budget_left", String(snapshot.verifyBudgetLeft)),
            ("usage_budget_left", String(usage.budgetLeft)),
        ]
        let formatter = ISO8601DateFormatter()
        fields.append(("last_flush", usage.lastFlush.map { JSONString.quote(formatter.string(from: $0)) } ?? "null"))
        let next = (usage.lastFlush ?? Date()).addingTimeInterval(Double(self.config.usageFlushInterval.components.seconds))
        fields.append(("next_flush", JSONString.quote(formatter.string(from: next))))
        fields.append(("usage_retry_in_seconds", usage.retryInSeconds.map { String($0) } ?? "null"))
        return fields
    }

    /// `POST /flush`: reports now and answers with what happened.
    public func flushNow() async -> String {
        let summary = await self.usage.flush(force: true)
        return "{\"reported_units\":\(summary.reportedUnits),\"reports\":\(summary.reports),\"dropped_units\":\(summary.droppedUnits),"
            + "\"pending_units\":\(summary.pendingUnits),\"stopped_because\":\(summary.stoppedBecause.map(JSONString.quote) ?? "null")}"
    }
}
