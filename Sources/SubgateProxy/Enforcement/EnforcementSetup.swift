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
        let client: ControlPlaneClient
        switch config.backend {
        case .crochet:
            guard let sellerKey = config.sellerKey?.value else {
                throw StartError(description: "seller_key or seller_key_file is required for backend = crochet")
            }
            client = ControlPlaneClient(baseURL: config.controlPlaneURL, sellerKey: sellerKey, logger: logger)
        case .crovver:
            guard let crovverKey = config.crovverKey?.value else {
                throw StartError(description: "crovver_key is required for backend = crovver")
            }
            // The same client type: `Authorization: Bearer <crovver_key>` against `crovver_url`.
            client = ControlPlaneClient(baseURL: config.crovverURL, sellerKey: crovverKey, logger: logger)
        }
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
        if let crovver = enforcer.crovver {
            // The sidecar id lives in the journal (record `I`), so it survives restarts and
            // goes with the sequence numbers it scopes; a new journal gets a new random id.
            // Without a journal the id is random per process: nothing survives a crash anyway.
            let state = replay?.crovver ?? CrovverJournalState()
            // Open batches must be sent again under their own keys, which need the old id: a
            // journal that lost its `I` record cannot say them, and new keys could deduct twice.
            if state.sidecarID == nil, !state.batches.isEmpty {
                await client.shutdown()
                throw StartError(
                    description: "usage_journal holds \(state.batches.count) unanswered Crovver batches but lost the sidecar id they were sent under; "
                        + "restore the journal's first line (I <id> <sequence>) from a backup, or reconcile those batches with Crovver and remove the journal"
                )
            }
            let sidecarID = state.sidecarID ?? crovver.sidecarID
            if state.sidecarID == nil, let journal {
                journal.append(.crovverIdentity(sidecarID: sidecarID, nextSequence: state.nextSequence))
                do { try await journal.commit() } catch {
                    await client.shutdown()
                    throw StartError(description: "usage_journal: \(error)")
                }
            }
            crovver.restore(sidecarID: sidecarID, state: state)
        }
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
        let crovver = self.crovver?.status()
        var fields: [(String, String)] = [
            ("backend", JSONString.quote(self.config.backend.rawValue)),
            ("cache_entries", String(self.cache.count)),
            ("cache_ttl_seconds", String(snapshot.ttlSeconds)),
            ("pending_units", String(usage.pendingUnits + (crovver.map { $0.pendingUnits + $0.openBatchUnits } ?? 0))),
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
        if let crovver {
            fields.append(("crovver", "{\"tenants_cached\":\(crovver.tenants),\"pending_units\":\(crovver.pendingUnits),"
                + "\"open_batches\":\(crovver.openBatches),\"open_batch_units\":\(crovver.openBatchUnits),\"batches_in_flight\":\(crovver.batchesInFlight),"
                + "\"sidecar_id\":\(JSONString.quote(crovver.sidecarID)),\"next_sequence\":\(crovver.nextSequence),"
                + "\"consume_budget_left\":\(crovver.budgetLeft),\"control_plane\":\(JSONString.quote(crovver.breaker)),"
                + "\"last_flush\":\(crovver.lastFlush.map { JSONString.quote(formatter.string(from: $0)) } ?? "null"),"
                + "\"retry_in_seconds\":\(crovver.retryInSeconds.map { String($0) } ?? "null")}"))
        }
        return fields
    }

    /// `POST /flush`: reports now and answers with what happened.
    public func flushNow() async -> String {
        let summary = await self.flush(force: true)
        return "{\"reported_units\":\(summary.reportedUnits),\"reports\":\(summary.reports),\"dropped_units\":\(summary.droppedUnits),"
            + "\"pending_units\":\(summary.pendingUnits),\"stopped_because\":\(summary.stoppedBecause.map(JSONString.quote) ?? "null")}"
    }
}
