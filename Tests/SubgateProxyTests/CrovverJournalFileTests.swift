import Foundation
import Logging
import SubgateCore
import SubgateProxy
import Testing

/// SPEC §6 (keys journaled, never reused) on real files: the crovver records survive a
/// compaction and a reopen, with the sidecar id and the sequence high-water mark.
@Suite struct CrovverJournalFileTests {
    @Test("Compaction and reopen keep the sidecar id, the sequence mark, open batches and pending credits")
    func compactionKeepsCrovverState() async throws {
        let scratch = try UsageJournalTests.Scratch()
        let key = CrovverPoolKey(tenant: "ws_1", pool: "api_calls")
        let other = CrovverPoolKey(tenant: "ws_2", pool: "api_calls")
        let journal = UsageJournal(path: scratch.journal, sync: .always, logger: Logger(label: "test"))
        _ = try await journal.open()
        let open = CrovverBatch(sequence: 4, key: key, units: 3, endpoint: "/a", requestID: "r")
        journal.append([
            .crovverIdentity(sidecarID: "00000000000000ab", nextSequence: 1),
            .crovverCommitted(key: key, units: 10),
            .crovverBatchOpened(CrovverBatch(sequence: 3, key: key, units: 6, endpoint: "/a", requestID: "q")),
            .crovverBatchSettled(sequence: 3),
            .crovverBatchOpened(open),
            .crovverBatchOpened(CrovverBatch(sequence: 7, key: other, units: 1, endpoint: "/b", requestID: "s")),
            .crovverBatchSettled(sequence: 7),
        ])
        try await journal.commit()
        try await journal.compact()
        try await journal.close()

        let reopened = UsageJournal(path: scratch.journal, sync: .always, logger: Logger(label: "test"))
        let replay = try await reopened.open()
        #expect(replay.crovver.sidecarID == "00000000000000ab")
        #expect(replay.crovver.nextSequence == 8, "sequence 7 was used, even though its batch ended")
        #expect(replay.crovver.batches == [4: open])
        #expect(replay.crovver.pending == [key: 1], "10 served − 6 − 3 batched")
        let text = String(decoding: scratch.contents(scratch.journal), as: UTF8.self)
        #expect(text.split(separator: "\n").count == 3, "identity, the open batch, the pending credits:\n\(text)")
        try await reopened.close()
    }
}
