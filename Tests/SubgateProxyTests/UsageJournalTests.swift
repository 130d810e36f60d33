import Foundation
import Logging
import NIOConcurrencyHelpers
import SubgateCore
import SubgateProxy
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §4 (durability): the usage journal on real files in a temporary directory.
@Suite struct UsageJournalTests {
    static let hashA = String(repeating: "a", count: 64)
    static let hashB = String(repeating: "b", count: 64)
    static let hashC = String(repeating: "c", count: 64)

    /// A temporary directory, removed with the value.
    final class Scratch {
        let directory: URL
        init() throws {
            self.directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("subgate-journal-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        }
        var journal: String { self.directory.appendingPathComponent("usage.journal").path }
        func contents(_ path: String) -> [UInt8] { FileManager.default.contents(atPath: path).map { Array($0) } ?? [] }
        deinit { try? FileManager.default.removeItem(at: self.directory) }
    }

    /// Keeps what was logged, to check that a failure is logged once and names the file.
    final class LogRecorder: Sendable {
        struct Entry: Sendable {
            var level: Logger.Level
            var message: String
            var metadata: Logger.Metadata
        }

        private let storage = NIOLockedValueBox<[Entry]>([])
        var entries: [Entry] { self.storage.withLockedValue { $0 } }
        func record(_ entry: Entry) { self.storage.withLockedValue { $0.append(entry) } }

        var logger: Logger {
            Logger(label: "usage-journal-test") { _ in Handler(recorder: self) }
        }

        struct Handler: LogHandler {
            let recorder: LogRecorder
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace
            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { self.metadata[key] }
                set { self.metadata[key] = newValue }
            }
            func log(event: LogEvent) {
                var merged = self.metadata
                merged.merge(event.metadata ?? [:]) { $1 }
                self.recorder.record(Entry(level: event.level, message: "\(event.message)", metadata: merged))
            }
        }
    }

    static let hour = JournalSync.interval(.seconds(3600))

    static func encoded(_ records: [JournalRecord]) -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records { JournalCodec.encode(record, into: &bytes) }
        return bytes
    }

    /// Opens `path` afresh, returns its replay and closes it again.
    static func reopen(_ path: String) async throws -> JournalReplay {
        let journal = UsageJournal(path: path, sync: Self.hour, logger: LogRecorder().logger)
        let replay = try await journal.open()
        try await journal.close()
        return replay
    }

    // MARK: - Append, commit, replay

    @Test("Appended units are committed to disk and replayed by the next open")
    func appendCommitReopen() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        let first = try await journal.open()
        #expect(first == JournalReplay(), "a new journal should replay to nothing, got \(first)")

        journal.append(.committed(hash: Self.hashA, units: 3))
        journal.append([
            .committed(hash: Self.hashB, units: 2),
            .sent(hash: Self.hashA, units: 3),
            .acknowledged(hash: Self.hashA, units: 3),
        ])
        journal.append(.committed(hash: Self.hashA, units: 1))
        #expect(scratch.contents(scratch.journal).isEmpty, "nothing should reach the file before a commit with a 1 h interval")
        try await journal.commit()
        #expect(journal.bytes == scratch.contents(scratch.journal).count, "bytes (\(journal.bytes)) must be the file's size")
        #expect(journal.failure == nil, "a successful commit left a failure: \(journal.failure ?? "")")
        try await journal.close()

        var status = stat()
        #expect(stat(scratch.journal, &status) == 0 && status.st_mode & 0o777 == 0o600, "the journal must be created with mode 0600")

        let replay = try await Self.reopen(scratch.journal)
        #expect(replay.pending == [Self.hashA: 1, Self.hashB: 2], "replayed pending units are \(replay.pending)")
        #expect(replay.ambiguous.isEmpty, "an acknowledged report must not be ambiguous: \(replay.ambiguous)")
        #expect(replay.records == 5 && replay.badRecords == 0 && !replay.tornTail, "unexpected replay counters: \(replay)")
    }

    @Test("A report sent without a recorded answer replays as ambiguous")
    func sentWithoutAnswerIsAmbiguous() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        _ = try await journal.open()
        journal.append([.committed(hash: Self.hashA, units: 5), .sent(hash: Self.hashA, units: 5)])
        try await journal.close()  // the process "dies" before the answer
        let replay = try await Self.reopen(scratch.journal)
        #expect(replay.pending == [Self.hashA: 5], "the units must be reported again: \(replay.pending)")
        #expect(replay.ambiguous == [Self.hashA: 5], "the unanswered report must be counted as ambiguous: \(replay.ambiguous)")
    }

    @Test("Records appended before open() are kept, written after it, and counted in its sums")
    func appendsBeforeOpenAreKept() async throws {
        let scratch = try Scratch()
        #expect(FileManager.default.createFile(
            atPath: scratch.journal, contents: Data(Self.encoded([.committed(hash: Self.hashA, units: 2)]))
        ), "could not write the fixture")
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        journal.append(.committed(hash: Self.hashB, units: 3))
        let replay = try await journal.open()
        #expect(replay.pending == [Self.hashA: 2], "open must report only what the file held: \(replay.pending)")
        #expect(journal.tally.pending == [Self.hashA: 2, Self.hashB: 3], "the journal's sums lost the early record: \(journal.tally.pending)")
        await #expect(throws: UsageJournalError.self, "opening an open journal again must fail") { try await journal.open() }
        try await journal.close()
        #expect(try await Self.reopen(scratch.journal).pending == [Self.hashA: 2, Self.hashB: 3], "the early record never reached the file")
    }

    @Test("A torn tail on disk is truncated on open, and later records append cleanly")
    func tornTailIsTruncated() async throws {
        let scratch = try Scratch()
        let good = Self.encoded([.committed(hash: Self.hashA, units: 5)])
        let torn = Array(Self.encoded([.committed(hash: Self.hashB, units: 9)]).prefix(40))
        #expect(FileManager.default.createFile(atPath: scratch.journal, contents: Data(good + torn)), "could not write the fixture")

        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        let replay = try await journal.open()
        #expect(replay.tornTail, "the half-written last record was not seen as a torn tail")
        #expect(replay.pending == [Self.hashA: 5], "the record before the torn tail was lost: \(replay.pending)")
        #expect(scratch.contents(scratch.journal) == good, "open must cut the file back to its last good record")
        #expect(journal.bytes == good.count, "bytes is \(journal.bytes), expected \(good.count)")

        journal.append(.committed(hash: Self.hashB, units: 2))
        try await journal.close()
        let again = try await Self.reopen(scratch.journal)
        #expect(!again.tornTail && again.badRecords == 0, "records appended after the cut must be clean: \(again)")
        #expect(again.pending == [Self.hashA: 5, Self.hashB: 2], "pending after the second open is \(again.pending)")
    }

    @Test("journal_sync = always writes and fsyncs each record before append returns")
    func alwaysWritesThrough() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: .always, logger: LogRecorder().logger)
        _ = try await journal.open()
        journal.append(.committed(hash: Self.hashA, units: 1))
        let line = Self.encoded([.committed(hash: Self.hashA, units: 1)])
        #expect(scratch.contents(scratch.journal) == line, "the record was not on disk when append returned")
        journal.append([.committed(hash: Self.hashB, units: 2), .committed(hash: Self.hashC, units: 3)])
        #expect(scratch.contents(scratch.journal).count == journal.bytes, "bytes must follow every write-through")
        #expect(JournalCodec.replay(scratch.contents(scratch.journal)).records == 3, "a batch was not written through")
        try await journal.close()
    }

    // MARK: - Group commit loop

    @Test("run() commits what is left when its task is cancelled")
    func runCommitsOnCancellation() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        _ = try await journal.open()
        let loop = Task { await journal.run() }
        journal.append(.committed(hash: Self.hashA, units: 7))
        loop.cancel()
        await loop.value
        #expect(
            JournalCodec.replay(scratch.contents(scratch.journal)).pending == [Self.hashA: 7],
            "the records buffered when run() was cancelled did not reach the file"
        )
        try await journal.close()
    }

    @Test("run() group-commits every journal_sync interval without being asked")
    func runCommitsOnInterval() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: .interval(.milliseconds(10)), logger: LogRecorder().logger)
        _ = try await journal.open()
        let loop = Task { await journal.run() }
        defer { loop.cancel() }
        journal.append(.committed(hash: Self.hashA, units: 7))
        // Waiting for an effect, bounded; the assertion is on what reached the file.
        let deadline = ContinuousClock.now + .seconds(10)
        while journal.bytes == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(
            JournalCodec.replay(scratch.contents(scratch.journal)).pending == [Self.hashA: 7],
            "no group commit wrote the record within 10 s of a 10 ms interval"
        )
        loop.cancel()
        await loop.value
        try await journal.close()
    }

    // MARK: - Compaction

    @Test("Compaction rewrites exactly the pending units, keeps in-flight reports ambiguous, and appending goes on")
    func compactionKeepsPending() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        _ = try await journal.open()
        journal.append([
            .committed(hash: Self.hashA, units: 10),
            .committed(hash: Self.hashB, units: 5),
            .sent(hash: Self.hashB, units: 5),
            .acknowledged(hash: Self.hashB, units: 5),
            .committed(hash: Self.hashC, units: 4),
            .sent(hash: Self.hashC, units: 4),  // in flight while compacting
        ])
        try await journal.commit()
        let before = journal.bytes

        try await journal.compact(pending: [Self.hashA: 10, Self.hashC: 4])
        let expected = Self.encoded([
            .committed(hash: Self.hashA, units: 10), .committed(hash: Self.hashC, units: 4), .sent(hash: Self.hashC, units: 4),
        ])
        #expect(scratch.contents(scratch.journal) == expected, "the compacted file is not exactly the pending units and the report in flight")
        #expect(journal.bytes == expected.count && journal.bytes < before, "bytes \(journal.bytes) after compaction (was \(before))")
        #expect(!FileManager.default.fileExists(atPath: scratch.journal + ".compact"), "the temporary file was left behind")

        journal.append([.acknowledged(hash: Self.hashC, units: 4), .committed(hash: Self.hashA, units: 1)])
        try await journal.close()
        let replay = try await Self.reopen(scratch.journal)
        #expect(replay.pending == [Self.hashA: 11], "pending after compaction and more appends is \(replay.pending)")
        #expect(replay.ambiguous.isEmpty, "the answered report is still ambiguous: \(replay.ambiguous)")
    }

    @Test("Records appended while compactions run all survive")
    func concurrentAppendsSurviveCompaction() async throws {
        let scratch = try Scratch()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        _ = try await journal.open()
        journal.append(.committed(hash: Self.hashC, units: 100))
        try await journal.commit()

        let writers = 4
        let perWriter = 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<writers {
                group.addTask {
                    for index in 0..<perWriter {
                        journal.append(.committed(hash: Self.hashA, units: 1))
                        if index % 10 == 0 {
                            // A report round trip for B: committed, sent, acknowledged → nothing pending.
                            journal.append([.committed(hash: Self.hashB, units: 2), .sent(hash: Self.hashB, units: 2)])
                            journal.append(.acknowledged(hash: Self.hashB, units: 2))
                        }
                        if index % 50 == 0 { await Task.yield() }
                    }
                }
            }
            group.addTask {
                for round in 0..<20 {
                    if round % 2 == 0 { try await journal.commit() }
                    try await journal.compact()
                    await Task.yield()
                }
            }
            try await group.waitForAll()
        }
        let total = writers * perWriter
        #expect(journal.tally.pending == [Self.hashA: total, Self.hashC: 100], "the journal's own sums are \(journal.tally.pending)")
        try await journal.close()
        let replay = try await Self.reopen(scratch.journal)
        #expect(replay.pending == [Self.hashA: total, Self.hashC: 100], "after concurrent compactions the file replays to \(replay.pending)")
        #expect(replay.ambiguous.isEmpty, "no report was left unanswered, yet ambiguous is \(replay.ambiguous)")
        #expect(replay.badRecords == 0 && !replay.tornTail, "compaction left damage: \(replay)")
    }

    // MARK: - Failures

    @Test("Opening a journal under a missing directory fails naming the path and the errno")
    func missingDirectory() async throws {
        let scratch = try Scratch()
        let path = scratch.directory.appendingPathComponent("no/such/dir/usage.journal").path
        let journal = UsageJournal(path: path, sync: Self.hour, logger: LogRecorder().logger)
        let error = await #expect(throws: UsageJournalError.self, "opening under a missing directory must fail") {
            try await journal.open()
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains(path), "the error must name the path: \(text)")
        #expect(text.contains("No such file or directory (errno \(ENOENT))"), "the error must give the errno text: \(text)")
    }

    @Test("Opening a journal whose path is a directory fails naming the path and the errno")
    func pathIsADirectory() async throws {
        let scratch = try Scratch()
        let path = scratch.directory.path
        let journal = UsageJournal(path: path, sync: Self.hour, logger: LogRecorder().logger)
        let error = await #expect(throws: UsageJournalError.self, "opening a directory as the journal must fail") {
            try await journal.open()
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains(path), "the error must name the path: \(text)")
        #expect(text.contains("Is a directory (errno \(EISDIR))"), "the error must give the errno text: \(text)")
    }

    @Test("A second journal on the same file is refused while the first one holds it")
    func oneWriterPerFile() async throws {
        let scratch = try Scratch()
        let first = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        _ = try await first.open()
        let second = UsageJournal(path: scratch.journal, sync: Self.hour, logger: LogRecorder().logger)
        let error = await #expect(throws: UsageJournalError.self, "two journals must not append to one file") {
            try await second.open()
        }
        #expect(error.map { "\($0)" }?.contains(scratch.journal) == true, "the error must name the path: \(String(describing: error))")
        try await first.close()
        _ = try await second.open()
        try await second.close()
    }

    #if os(Linux)
    @Test("A failed write sets failure, logs once, keeps the records, and clears after a successful retry")
    func writeFailureKeepsRecords() async throws {
        let scratch = try Scratch()
        let recorder = LogRecorder()
        let journal = UsageJournal(path: scratch.journal, sync: Self.hour, logger: recorder.logger)
        _ = try await journal.open()
        journal.append(.committed(hash: Self.hashA, units: 1))
        try await journal.commit()

        // Tests may run as root, for whom permissions do not fail a write, and a full disk cannot
        // be made here; so the journal's descriptor is swapped for a read-only one: the real
        // write(2) then fails (EBADF), and swapping it back is the disk "recovering".
        let descriptor = try #require(Self.descriptor(of: scratch.journal), "could not find the journal's descriptor in /proc/self/fd")
        let saved = dup(descriptor)
        let readOnly = Glibc.open(scratch.journal, O_RDONLY)
        #expect(saved >= 0 && readOnly >= 0 && dup2(readOnly, descriptor) == descriptor, "could not swap the descriptor")
        _ = Glibc.close(readOnly)

        journal.append(.committed(hash: Self.hashA, units: 3))
        await #expect(throws: UsageJournalError.self, "a commit to a read-only descriptor must fail") { try await journal.commit() }
        let failure = journal.failure ?? ""
        #expect(failure.contains(scratch.journal) && failure.contains("errno \(EBADF)"), "failure must name the path and errno: \(failure)")
        journal.append(.committed(hash: Self.hashA, units: 4))
        await #expect(throws: UsageJournalError.self, "a retry on a read-only descriptor must fail too") { try await journal.commit() }
        let errors = recorder.entries.filter { $0.level == .error }
        #expect(errors.count == 1, "the failure must be logged once at error level, was logged \(errors.count) times")
        #expect(errors.first?.metadata.description.contains(scratch.journal) == true, "the error log must name the path")

        #expect(dup2(saved, descriptor) == descriptor, "could not restore the descriptor")
        _ = Glibc.close(saved)
        try await journal.commit()
        #expect(journal.failure == nil, "failure must clear after a successful commit: \(journal.failure ?? "")")
        try await journal.close()
        let replay = try await Self.reopen(scratch.journal)
        #expect(replay.pending == [Self.hashA: 8], "records kept through the failure must all reach the file: \(replay.pending)")
        #expect(replay.badRecords == 0 && !replay.tornTail, "the retried write left damage: \(replay)")
    }

    /// The descriptor this process has open on `path`, from `/proc/self/fd`.
    static func descriptor(of path: String) -> Int32? {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for entry in entries {
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(entry)") else { continue }
            if link == target || link == path { return Int32(entry) }
        }
        return nil
    }
    #endif
}
