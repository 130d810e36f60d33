import NIOHTTP1
import SubgateCore
import Testing

/// SPEC §6 (idempotency keys journaled before the first send): the journal's `backend = crovver`
/// records, their CRC and torn-tail tolerance beside the Crochet records, and their replay.
@Suite struct CrovverJournalCodecTests {
    static let key = CrovverPoolKey(tenant: "workspace_123", pool: "api_calls")
    static let odd = CrovverPoolKey(tenant: "t%20 with\tspace=é", pool: "ai tokens")
    static let hash = String(repeating: "a", count: 64)

    static func encoded(_ records: [JournalRecord]) -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records {
            #expect(JournalCodec.encode(record, into: &bytes), "encode refused \(record)")
        }
        return bytes
    }

    @Test("Every crovver record survives encode and decode, odd characters included, as one line")
    func roundTrip() {
        let records: [JournalRecord] = [
            .crovverIdentity(sidecarID: "0123456789abcdef", nextSequence: 42),
            .crovverCommitted(key: Self.key, units: 7),
            .crovverCommitted(key: Self.odd, units: 1_000_000),
            .crovverCommitted(key: Self.key, units: 1_000_000_000),
            .crovverBatchOpened(CrovverBatch(sequence: 9, key: Self.key, units: 12, endpoint: "/api/export", requestID: "req-1")),
            .crovverBatchOpened(CrovverBatch(sequence: 10, key: Self.odd, units: 1, endpoint: "", requestID: "")),
            .crovverBatchOpened(CrovverBatch(sequence: 11, key: Self.key, units: 1, endpoint: "/first", requestID: "r0", synchronous: true)),
            .crovverBatchSettled(sequence: 9),
        ]
        for record in records {
            let bytes = Self.encoded([record])
            #expect(bytes.filter { $0 == UInt8(ascii: "\n") }.count == 1, "one line: \(record)")
            #expect(JournalCodec.decode(bytes.dropLast()) == record, "round trip of \(record)")
        }
    }

    @Test("A flipped byte fails the CRC; old Crochet records still decode next to crovver ones")
    func crcAndCompatibility() {
        var bytes = Self.encoded([.crovverBatchSettled(sequence: 3)])
        bytes[2] = UInt8(ascii: "4")
        #expect(JournalCodec.decode(bytes.dropLast()) == nil)
        let mixed = Self.encoded([.committed(hash: Self.hash, units: 2), .crovverCommitted(key: Self.key, units: 5), .acknowledged(hash: Self.hash, units: 1)])
        let replay = JournalCodec.replay(mixed)
        #expect(replay.records == 3 && replay.badRecords == 0 && !replay.tornTail)
        #expect(replay.pending == [Self.hash: 1])
        #expect(replay.crovver.pending == [Self.key: 5])
    }

    @Test("Replay: U − B is pending, B without E is an open batch, the sequence mark never goes back")
    func replaySums() {
        let batch = CrovverBatch(sequence: 5, key: Self.key, units: 4, endpoint: "/a", requestID: "r")
        let bytes = Self.encoded([
            .crovverIdentity(sidecarID: "00000000000000ff", nextSequence: 3),
            .crovverCommitted(key: Self.key, units: 6),
            .crovverBatchOpened(batch),
            .crovverBatchOpened(CrovverBatch(sequence: 4, key: Self.odd, units: 1, endpoint: "/b", requestID: "s")),
            .crovverBatchSettled(sequence: 4),
        ])
        let replay = JournalCodec.replay(bytes)
        #expect(replay.crovver.sidecarID == "00000000000000ff")
        #expect(replay.crovver.pending == [Self.key: 2])
        #expect(replay.crovver.batches == [5: batch])
        #expect(replay.crovver.nextSequence == 6)
        // Compaction's records replay to the same state, even with every batch settled.
        let again = JournalCodec.replay(Self.encoded(replay.crovver.records()))
        #expect(again.crovver == replay.crovver)
        var settled = replay.crovver
        settled.apply(.crovverBatchSettled(sequence: 5))
        #expect(JournalCodec.replay(Self.encoded(settled.records())).crovver.nextSequence == 6, "the mark survives compaction")
    }

    @Test("A synchronous first consume never takes credits from pending, in replay and after compaction")
    func synchronousConsumeKeepsPending() {
        // Served and billed while Crovver was down (fail_mode = open): three first consumes
        // opened and given up, three credits pending. All three are still owed after a replay.
        var records: [JournalRecord] = [.crovverIdentity(sidecarID: "00000000000000aa", nextSequence: 1)]
        for sequence in UInt64(1)...3 {
            records.append(.crovverBatchOpened(CrovverBatch(sequence: sequence, key: Self.key, units: 1, endpoint: "/x", requestID: "r", synchronous: true)))
            records.append(.crovverBatchSettled(sequence: sequence))
            records.append(.crovverCommitted(key: Self.key, units: 1))
        }
        // After a restart: 5 pending, then a new first consume of 1.
        records.append(.crovverCommitted(key: Self.key, units: 2))
        records.append(.crovverBatchOpened(CrovverBatch(sequence: 4, key: Self.key, units: 1, endpoint: "/y", requestID: "s", synchronous: true)))
        let replay = JournalCodec.replay(Self.encoded(records))
        #expect(replay.crovver.pending == [Self.key: 5], "every served credit is still owed: \(replay.crovver.pending)")
        let compacted = JournalCodec.replay(Self.encoded(replay.crovver.records()))
        #expect(compacted.crovver == replay.crovver, "compaction keeps the flag and the pending credits")
        #expect(compacted.crovver.batches[4]?.synchronous == true)
    }

    @Test("A torn crovver tail is skipped and the file cut to the last good record")
    func tornTail() {
        let good = Self.encoded([.crovverIdentity(sidecarID: "0123456789abcdef", nextSequence: 1), .crovverCommitted(key: Self.key, units: 2)])
        let torn = Self.encoded([.crovverBatchOpened(CrovverBatch(sequence: 1, key: Self.key, units: 2, endpoint: "/x", requestID: "y"))])
        let replay = JournalCodec.replay(good + torn.prefix(torn.count - 5))
        #expect(replay.tornTail && replay.validBytes == good.count)
        #expect(replay.crovver.pending == [Self.key: 2] && replay.crovver.batches.isEmpty)
    }

    @Test("Records the journal cannot hold are refused whole")
    func refused() {
        var bytes: [UInt8] = []
        #expect(!JournalCodec.encode(.crovverIdentity(sidecarID: "not-hex", nextSequence: 1), into: &bytes))
        #expect(!JournalCodec.encode(.crovverBatchOpened(CrovverBatch(sequence: 1, key: Self.key, units: 0, endpoint: "", requestID: "")), into: &bytes))
        #expect(!JournalCodec.encode(.crovverBatchOpened(CrovverBatch(sequence: 1, key: Self.key, units: 1_000_000_001, endpoint: "", requestID: "")), into: &bytes))
        #expect(bytes.isEmpty)
        // Over a line's ceiling, served credits are split over lines, none lost.
        let split = JournalCodec.replay(Self.encoded([.crovverCommitted(key: Self.key, units: 2_500_000_000)]))
        #expect(split.records == 3 && split.crovver.pending == [Self.key: 2_500_000_000])
    }
}

/// SPEC §6: the tenant decision table and the batch book, without sockets.
@Suite struct CrovverDecisionTests {
    static let key = CrovverPoolKey(tenant: "ws", pool: "api_calls")
    let t0 = ContinuousClock.now

    func answered(_ entry: inout CrovverTenantEntry, _ result: CrovverResult, remaining: Int, units: Int = 1, at now: ContinuousClock.Instant) {
        entry.applyConsume(units: units, answer: .answered(result: result, remaining: remaining, alreadyProcessed: false), amount: 1, now: now, probeInterval: .seconds(10), negativeTTL: .seconds(10))
    }

    @Test("Never answered → consume; balance covers → allow; reservations count against it")
    func firstAndReservations() {
        var entry = CrovverTenantEntry(lastUsed: self.t0)
        #expect(entry.decide(amount: 1, now: self.t0) == .consume)
        entry.unreported = 1  // the synchronous consume is open
        self.answered(&entry, .allowed, remaining: 2, at: self.t0)
        #expect(entry.unreported == 0)
        #expect(entry.decide(amount: 1, now: self.t0) == .allow(warning: false))
        entry.reserve(1, at: self.t0)
        entry.reserve(1, at: self.t0)
        #expect(entry.decide(amount: 1, now: self.t0) == .reject(.usageLimitReached), "units in flight: wait for their answers")
        entry.settle(reserved: 1, billed: 1)
        entry.settle(reserved: 1, billed: 0)
        #expect(entry.reserved == 0 && entry.unreported == 1)
    }

    @Test("blocked → 429 until the probe interval passes, then one probe; a batch showing credit clears it")
    func blockedAndProbe() {
        var entry = CrovverTenantEntry(lastUsed: self.t0)
        entry.unreported = 1
        self.answered(&entry, .blocked, remaining: 0, at: self.t0)
        #expect(entry.decide(amount: 1, now: self.t0 + .seconds(5)) == .reject(.usageLimitReached))
        #expect(entry.decide(amount: 1, now: self.t0 + .seconds(10)) == .consume, "probe")
        entry.unreported = 3
        self.answered(&entry, .allowed, remaining: 40, units: 3, at: self.t0 + .seconds(6))
        #expect(entry.blockedUntil == nil && entry.decide(amount: 1, now: self.t0 + .seconds(6)) == .allow(warning: false))
    }

    @Test("A replayed (alreadyProcessed) answer's balance may lower the cached one, never raise it")
    func replayedAnswerIsStale() {
        var entry = CrovverTenantEntry(lastUsed: self.t0)
        entry.unreported = 5
        self.answered(&entry, .allowed, remaining: 10, units: 2, at: self.t0)
        entry.applyConsume(units: 3, answer: .answered(result: .allowed, remaining: 13, alreadyProcessed: true), amount: 1, now: self.t0, probeInterval: .seconds(10), negativeTTL: .seconds(10))
        #expect(entry.remaining == 10 && entry.unreported == 0)
        entry.applyConsume(units: 0, answer: .answered(result: .allowed, remaining: 4, alreadyProcessed: true), amount: 1, now: self.t0, probeInterval: .seconds(10), negativeTTL: .seconds(10))
        #expect(entry.remaining == 4)
    }

    @Test("Overlapping consumes answered out of order leave the lowest balance, in either order; a replay with nothing cached leaves nothing")
    func outOfOrderAnswers() {
        for order in [[(899, true), (999, false)], [(999, true), (899, false)]] {
            var entry = CrovverTenantEntry(lastUsed: self.t0)
            entry.unreported = 101
            self.answered(&entry, .allowed, remaining: 1000, units: 0, at: self.t0)
            for (remaining, others) in order {
                entry.applyConsume(
                    units: remaining == 899 ? 100 : 1, answer: .answered(result: .allowed, remaining: remaining, alreadyProcessed: false),
                    amount: 1, now: self.t0, probeInterval: .seconds(10), negativeTTL: .seconds(10), othersInFlight: others
                )
            }
            #expect(entry.remaining == 899 && entry.overlapLowest == nil, "answers \(order): the balance after both consumes is 899, got \(String(describing: entry.remaining))")
        }
        var fresh = CrovverTenantEntry(lastUsed: self.t0)
        fresh.applyConsume(units: 0, answer: .answered(result: .allowed, remaining: 50, alreadyProcessed: true), amount: 1, now: self.t0, probeInterval: .seconds(10), negativeTTL: .seconds(10))
        #expect(fresh.remaining == nil, "an alreadyProcessed balance may be old: with nothing cached, the next request asks again")
    }

    @Test("warning marks the pool soft: served below zero with the warning")
    func soft() {
        var entry = CrovverTenantEntry(lastUsed: self.t0)
        entry.unreported = 1
        self.answered(&entry, .warning, remaining: -1, at: self.t0)
        #expect(entry.soft)
        #expect(entry.decide(amount: 1, now: self.t0) == .allow(warning: true))
    }

    @Test("404/400 → refused for negative_ttl; credits of a given-up consume stop counting")
    func unknownAndAbandon() {
        var entry = CrovverTenantEntry(lastUsed: self.t0)
        entry.unreported = 1
        entry.applyConsume(units: 1, answer: .rejected(status: 404), amount: 1, now: self.t0, probeInterval: .seconds(10), negativeTTL: .seconds(10))
        #expect(entry.decide(amount: 1, now: self.t0 + .seconds(1)) == .reject(.tenantUnknown))
        #expect(entry.decide(amount: 1, now: self.t0 + .seconds(11)) == .consume)
        entry.unreported = 2
        entry.abandon(units: 2)
        #expect(entry.unreported == 0)
    }

    @Test("Batch book: one batch per pool, keys from the sidecar id and a sequence, retries keep key and units")
    func batchBook() {
        var book = CrovverBatchBook(sidecarID: "00000000000000aa", nextSequence: 7)
        book.add(Self.key, units: 2, endpoint: "/a", requestID: "r1")
        book.add(Self.key, units: 3, endpoint: "/b", requestID: "r2")
        book.add(CrovverPoolKey(tenant: "other", pool: "api_calls"), units: 1, endpoint: "/c", requestID: "r3")
        let (first, opened) = book.takeBatches(maxBatches: 10)
        #expect(first.count == 2 && opened == first)
        #expect(first[0].key == Self.key && first[0].units == 5 && first[0].endpoint == "/b" && first[0].requestID == "r2", "largest first, last request's metadata")
        #expect(book.idempotencyKey(first[0]) == "subgate-00000000000000aa-7")
        book.add(Self.key, units: 4, endpoint: "/d", requestID: "r4")
        book.release(first[0].sequence)
        book.settle(first[1].sequence)
        let (retry, new) = book.takeBatches(maxBatches: 10)
        #expect(retry == [first[0]] && new.isEmpty, "the open batch is sent again as it was; new units wait for it")
        book.settle(first[0].sequence)
        let (next, _) = book.takeBatches(maxBatches: 10)
        #expect(next.count == 1 && next[0].units == 4 && next[0].sequence == 9)
        var random = SystemRandomNumberGenerator()
        #expect(CrovverBatchBook.isValidSidecarID(CrovverBatchBook.newSidecarID(using: &random)))
    }

    @Test("Tenant header: absent or empty → missing; twice, too long or not visible ASCII → invalid")
    func tenantLookup() {
        #expect(TenantLookup.find(in: ["x-tenant-id": "ws_1"], name: "x-tenant-id") == .present("ws_1"))
        #expect(TenantLookup.find(in: ["X-Tenant-Id": "ws_1"], name: "x-tenant-id") == .present("ws_1"))
        #expect(TenantLookup.find(in: [:], name: "x-tenant-id") == .missing)
        #expect(TenantLookup.find(in: ["x-tenant-id": ""], name: "x-tenant-id") == .missing)
        #expect(TenantLookup.find(in: ["x-tenant-id": "a b"], name: "x-tenant-id") == .invalid)
        #expect(TenantLookup.find(in: ["x-tenant-id": String(repeating: "a", count: 257)], name: "x-tenant-id") == .invalid)
        #expect(TenantLookup.find(in: HTTPHeaders([("x-tenant-id", "a"), ("x-tenant-id", "b")]), name: "x-tenant-id") == .invalid)
    }
}

/// The flush loop drains early only what the budget held back (`hasSendableBatches`).
@Suite struct CrovverBatchBookBacklogTests {
    @Test("hasSendableBatches: pending credits of a pool with no open batch, or an open batch not in flight")
    func sendable() {
        let key = CrovverPoolKey(tenant: "ws", pool: "api_calls")
        var book = CrovverBatchBook(sidecarID: "00000000000000aa")
        #expect(!book.hasSendableBatches)
        book.add(key, units: 2, endpoint: "/", requestID: "r")
        #expect(book.hasSendableBatches)
        let (batches, _) = book.takeBatches(maxBatches: 1)
        book.add(key, units: 1, endpoint: "/", requestID: "r")
        #expect(!book.hasSendableBatches, "new credits wait for the pool's batch in flight")
        book.release(batches[0].sequence)
        #expect(book.hasSendableBatches, "the released batch is sent again")
    }
}
