import Foundation
import SubgateCore
import SubgateSimulator
import Testing

@testable import SubgateProxy

/// SPEC §4: "A report that was sent but whose answer never came is the one case that can be
/// billed twice; it is counted in subgate_usage_ambiguous_units_total." The journal can only
/// count it after a crash if the report's `S` record is on disk before the report leaves.
@Suite(.serialized) struct UsageReportJournalTests {
    @Test("A usage report's S record is on disk before the report leaves: a SIGKILL after the control plane accepted it replays it as ambiguous, not as units never reported")
    func sentRecordIsDurableBeforeTheReportLeaves() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-report-journal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("usage.journal").path
        try await EnforcementHarness.with({ config in
            config.usageJournal = path
            // No group commit during the test (the harness does not run the service either):
            // only what the code commits on purpose reaches the disk.
            config.journalSync = .interval(.seconds(3600))
        }) { h in
            let token = h.simulator.createToken(usageLimit: nil)
            for _ in 0..<3 {
                let answer = try await h.get(token: token.token)
                #expect(answer.status == 200, "request through Subgate: \(answer.status) \(answer.body)")
            }
            // The group commit ran (as it does every journal_sync): the 3 units are on disk.
            try await h.enforcer.usage.journal?.commit()
            let before = JournalCodec.replay(Array(FileManager.default.contents(atPath: path) ?? Data()))
            #expect(before.pending[token.hash] == 3, "the served units should be on disk after a commit: \(before)")

            let summary = await h.flush()
            #expect(summary.reportedUnits == 3 && h.simulator.acceptedUnits(hash: token.hash) == 3, "the report should be accepted: \(summary)")

            // A SIGKILL now (before the next group commit) restarts from exactly these bytes.
            let onDisk = JournalCodec.replay(Array(FileManager.default.contents(atPath: path) ?? Data()))
            let replayed = onDisk.pending[token.hash] ?? 0
            let ambiguous = onDisk.ambiguous[token.hash] ?? 0
            #expect(
                replayed <= ambiguous,
                """
                the control plane accepted 3 units, but a restart from the journal on disk would report \(replayed) of them again \
                and count only \(ambiguous) as ambiguous: the report left before its S record was written (disk: \(onDisk))
                """
            )
        }
    }
}
