#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import SubgateCore

/// The durable record of unreported usage (SPEC §2 `usage_journal`, §4): every billable unit is
/// appended before the client's answer completes, group-committed (write + fsync) every
/// `journal_sync`, replayed on start.
///
/// Two locks, always taken in this order:
/// - `file` is held across blocking syscalls, which run on `NIOThreadPool.singleton` (or on the
///   caller's thread for `.always` appends, which are blocking by definition);
/// - `memory` is held only for in-memory work, so `append` on an event loop never waits on a disk.
///
/// Both are `NIOLockedValueBox` (a pthread mutex), like the proxy's other locks: ThreadSanitizer
/// sees it. It does not see `Synchronization.Mutex` hand over under contention on Linux and
/// reports races on data that mutex guards (scripts/sanitizers/mutex-tsan-repro.swift).
///
/// The journal keeps, beside the unwritten bytes, what the file and the buffer replay to
/// (`tally`); compaction rewrites exactly that, so it needs no cut agreed with the caller.
public final class UsageJournal: Sendable {
    /// What appends touch.
    private struct Memory {
        /// Encoded records not yet written (or written by a commit that failed).
        var buffer: [UInt8] = []
        /// What the file plus `buffer` replay to; `ambiguous` here means reports in flight.
        var tally = JournalReplay()
        /// Records appended while a compaction runs (`nil` otherwise): they go on top of the rewritten file.
        var sinceCut: [JournalRecord]?
        /// A commit has taken `buffer` and not finished: a concurrent `commit()` must wait for it.
        var writing = false
        /// The last write failure, until a commit succeeds.
        var failure: String?
        /// The file's length after the last successful write.
        var bytes = 0
    }

    /// The open file.
    private struct File {
        var descriptor: Int32 = -1
        /// Length of the durable prefix (everything up to the last successful fsync).
        var size = 0
        /// A failed write may have left a partial line past `size` that `ftruncate` could not
        /// remove: the next write starts with a newline so that fragment cannot swallow a record.
        var dirtyTail = false
    }

    public let path: String
    public let sync: JournalSync
    private let logger: Logger
    private let memory = NIOLockedValueBox(Memory())
    private let file = NIOLockedValueBox(File())

    public init(path: String, sync: JournalSync, logger: Logger) {
        self.path = path
        self.sync = sync
        var logger = logger
        logger[metadataKey: "journal"] = .string(path)
        self.logger = logger
    }

    deinit {
        self.file.withLockedValue { file in
            if file.descriptor >= 0 { _ = Syscall.close(file.descriptor) }
        }
    }

    // MARK: - Health

    /// Health for `/readyz` and `fail_mode`: `nil` when fine, else a one-line reason like
    /// "usage journal /path: write failed: No space left on device (errno 28)".
    public var failure: String? { self.memory.withLockedValue { $0.failure } }

    /// The file's current length.
    public var bytes: Int { self.memory.withLockedValue { $0.bytes } }

    /// What the file plus the records not yet written add up to: `pending` units and, in
    /// `ambiguous`, reports in flight since `open()` (the counters are not kept).
    public var tally: JournalReplay { self.memory.withLockedValue { $0.tally } }

    // MARK: - Opening

    /// Reads and replays the file (creating it, mode 0600, if absent), truncates a torn tail,
    /// takes an exclusive lock on it and opens it for appending.
    ///
    /// - Throws: `UsageJournalError` naming the path and the errno text.
    public func open() async throws -> JournalReplay {
        let replay = try await Self.blocking { try self.openBlocking() }
        // Records appended before the file was open wait in the buffer; `.always` promised them to disk.
        if case .always = self.sync { try await self.commit() }
        if replay.badRecords > 0 || replay.tornTail {
            self.logger.warning(
                "usage journal had damaged records; they were skipped",
                metadata: [
                    "bad_records": "\(replay.badRecords)", "torn_tail": "\(replay.tornTail)",
                    "valid_bytes": "\(replay.validBytes)",
                ]
            )
        }
        self.logger.info(
            "usage journal replayed",
            metadata: [
                "records": "\(replay.records)", "pending_units": "\(replay.pendingUnits)",
                "pending_tokens": "\(replay.pending.count)", "ambiguous_units": "\(replay.ambiguousUnits)",
            ]
        )
        return replay
    }

    private func openBlocking() throws -> JournalReplay {
        try self.file.withLockedValue { file in
            guard file.descriptor < 0 else {
                throw UsageJournalError(path: self.path, operation: "open", errno: EBUSY, hint: "this journal is already open")
            }
            let descriptor = Syscall.open(self.path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else {
                throw self.error(
                    "open", hint: "check that the directory exists and this user can write to it, or set usage_journal = off"
                )
            }
            var keep = false
            defer { if !keep { _ = Syscall.close(descriptor) } }

            var status = stat()
            guard fstat(descriptor, &status) == 0 else { throw self.error("stat") }
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw UsageJournalError(
                    path: self.path, operation: "open", errno: EINVAL,
                    hint: "it is not a regular file; point usage_journal at a file"
                )
            }
            // Two processes appending to one journal would each replay and report the other's units.
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
                throw self.error(
                    "lock",
                    hint: "another process holds this journal; give every subgate instance its own usage_journal"
                )
            }

            let contents = try self.readAll(descriptor, size: Int(status.st_size))
            let replay = JournalCodec.replay(contents)
            if replay.validBytes < contents.count {
                guard ftruncate(descriptor, off_t(replay.validBytes)) == 0 else { throw self.error("truncate") }
                guard Syscall.fsync(descriptor) == 0 else { throw self.error("fsync") }
            }
            // A journal created just now must survive a crash as a directory entry too.
            if let problem = Syscall.syncDirectory(of: self.path) {
                self.logger.warning("usage journal directory could not be synced", metadata: ["reason": "\(problem)"])
            }

            file.descriptor = descriptor
            file.size = replay.validBytes
            file.dirtyTail = false
            keep = true
            self.memory.withLockedValue { memory in
                // The previous run's unanswered reports are the caller's to count (`replay.ambiguous`);
                // from here on `ambiguous` tracks this run's reports in flight.
                // Crovver's open batches stay open across the restart: they are sent again, same keys.
                var tally = JournalReplay(pending: replay.pending, crovver: replay.crovver)
                // Records appended before `open()` (or after a `close()`) are still buffered.
                Self.forEachRecord(in: memory.buffer) { tally.apply($0) }
                memory.tally = tally
                memory.bytes = replay.validBytes
                memory.failure = nil
            }
            return replay
        }
    }

    private func readAll(_ descriptor: Int32, size: Int) throws -> [UInt8] {
        var contents: [UInt8] = []
        contents.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(contents.count)) }
            if count < 0 {
                if errno == EINTR { continue }
                throw self.error("read")
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[..<count])
        }
    }

    // MARK: - Appending

    /// Buffers one record. Called from event loops on the request path: it takes only a short
    /// in-memory lock — except with `journal_sync = always`, where it writes and fsyncs before
    /// returning (blocking the calling thread for a disk round trip, as that setting asks).
    public func append(_ record: JournalRecord) {
        self.appendBuffered(record)
        self.writeIfAlways()
    }

    /// Buffers one record and never writes here, whatever `journal_sync` says. For callers
    /// that append under a lock of their own (their records must keep that lock's order) and
    /// must not hold it across a disk round trip: they call `writeIfAlways()` once it is released.
    public func appendBuffered(_ record: JournalRecord) {
        // One record per billed request: encoded straight into the buffer, with no arrays
        // of its own (the bench's profile saw them).
        let encoded = self.memory.withLockedValue { memory in
            guard JournalCodec.encode(record, into: &memory.buffer) else { return false }
            memory.tally.apply(record)
            memory.sinceCut?.append(record)
            return true
        }
        if !encoded { self.refused(record) }
    }

    /// With `journal_sync = always`, writes and fsyncs what is buffered (blocking the calling
    /// thread, as that setting asks); otherwise nothing: the group commit will.
    public func writeIfAlways() {
        if case .always = self.sync {
            // The failure is recorded in `failure` and logged; the records stay buffered for the next commit.
            try? self.file.withLockedValue { try self.commitLocked(&$0) }
        }
    }

    /// A caller bug (hashes come from `TokenHash.hex`); never a reason to stop serving.
    private func refused(_ record: JournalRecord) {
        self.logger.error(
            "usage journal refused a record it cannot encode",
            metadata: ["hash_prefix": "\(TokenHash.logPrefix(record.hash))", "units": "\(record.units)"]
        )
    }

    /// Buffers records, in order (see `append(_:)`).
    public func append(_ records: [JournalRecord]) {
        self.append(records[...])
    }

    private func append(_ records: some Collection<JournalRecord>) {
        guard !records.isEmpty else { return }
        var encoded: [UInt8] = []
        encoded.reserveCapacity(84 * records.count)
        var accepted: [JournalRecord] = []
        accepted.reserveCapacity(records.count)
        for record in records {
            if JournalCodec.encode(record, into: &encoded) {
                accepted.append(record)
            } else {
                self.refused(record)
            }
        }
        guard !accepted.isEmpty else { return }
        self.memory.withLockedValue { memory in
            memory.buffer.append(contentsOf: encoded)
            for record in accepted { memory.tally.apply(record) }
            memory.sinceCut?.append(contentsOf: accepted)
        }
        self.writeIfAlways()
    }

    // MARK: - Committing

    /// Group-commit loop: every `sync` interval writes the buffer and fsyncs, until the task is
    /// cancelled; then commits what is left. With `.always` records are written as they come
    /// and the loop only retries writes that failed (every second).
    public func run() async {
        let interval: Duration
        switch self.sync {
        case .always: interval = .seconds(1)
        case .interval(let duration): interval = max(duration, .milliseconds(1))
        }
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                break
            }
            // A failure is in `failure` and was logged; the records stay buffered for the next round.
            try? await self.commit()
        }
        do {
            try await self.commit()
        } catch {
            self.logger.error(
                "usage journal: the last commit before stopping failed; unwritten usage is lost if the process exits",
                metadata: ["error": "\(error)"]
            )
        }
    }

    /// Writes and fsyncs everything appended so far. Returns at once when nothing is buffered.
    ///
    /// - Throws: `UsageJournalError` when the write or the fsync failed; the records stay buffered
    ///   and the next commit retries them.
    public func commit() async throws {
        guard self.memory.withLockedValue({ !$0.buffer.isEmpty || $0.writing }) else { return }
        try await Self.blocking { try self.file.withLockedValue { try self.commitLocked(&$0) } }
    }

    /// Writes the buffer and fsyncs; on failure rolls the file back to its durable length and
    /// puts the bytes back in front of the buffer. Runs with the `file` lock held, off the event loops.
    private func commitLocked(_ file: inout File) throws {
        guard file.descriptor >= 0 else { return }  // not open yet, or closed: the records wait
        let taken = self.memory.withLockedValue { memory -> [UInt8] in
            var taken: [UInt8] = []
            swap(&taken, &memory.buffer)
            memory.writing = !taken.isEmpty
            return taken
        }
        guard !taken.isEmpty else { return }

        if file.dirtyTail {
            file.dirtyTail = ftruncate(file.descriptor, off_t(file.size)) != 0
        }
        do {
            if file.dirtyTail {
                try self.writeAll(file.descriptor, [UInt8(ascii: "\n")])
            }
            try self.writeAll(file.descriptor, taken)
            guard Syscall.fsync(file.descriptor) == 0 else { throw self.error("fsync") }
        } catch let error as UsageJournalError {
            // After a failed write or fsync nothing past `size` is known to be on disk (and after a
            // failed fsync Linux may have dropped the dirty pages): cut back and write it all again.
            file.dirtyTail = ftruncate(file.descriptor, off_t(file.size)) != 0
            let reason = error.summary
            let isNew = self.memory.withLockedValue { memory -> Bool in
                memory.buffer.insert(contentsOf: taken, at: 0)
                memory.writing = false
                defer { memory.failure = reason }
                return memory.failure != reason
            }
            if isNew {
                self.logger.error(
                    "usage journal write failed; records are kept in memory and retried at every commit",
                    metadata: ["reason": "\(reason)", "errno": "\(error.errno)"]
                )
            }
            throw error
        }

        var status = stat()
        file.size = fstat(file.descriptor, &status) == 0 ? Int(status.st_size) : file.size + taken.count
        let size = file.size
        let recovered = self.memory.withLockedValue { memory -> String? in
            defer { memory.failure = nil }
            memory.writing = false
            memory.bytes = size
            return memory.failure
        }
        if let recovered {
            self.logger.notice("usage journal writes work again", metadata: ["after": "\(recovered)"])
        }
    }

    private func writeAll(_ descriptor: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            // `errno` still holds the failure when `writeAll` returns it.
            guard Syscall.writeAll(descriptor, raw) == nil else { throw self.error("write") }
        }
    }

    // MARK: - Compaction

    /// Rewrites the file as `committed` records for what it replays to now (plus `sent` records
    /// for reports still in flight, so a crash before their answer still counts them as
    /// ambiguous, and the `crovver` state: identity, open batches, pending credits), atomically: temporary file, fsync, rename, fsync of the directory. Records
    /// appended meanwhile are kept and written to the new file.
    ///
    /// Prefer this to `compact(pending:)`: the journal's own sums cannot race with appends.
    public func compact() async throws {
        try await Self.blocking { try self.compactBlocking(pending: nil) }
    }

    /// Rewrites the file as `committed` records for `pending` (and `sent` records for reports in
    /// flight), atomically; then continues appending to the new file.
    ///
    /// `pending` must count every unit not yet acknowledged or dropped, in flight or not, as of
    /// the call: records buffered before the call are taken as included in it, records appended
    /// after it are kept. A record appended between computing `pending` and this call would be
    /// lost from the file; `compact()` has no such window.
    public func compact(pending: [String: Int]) async throws {
        try await Self.blocking { try self.compactBlocking(pending: pending) }
    }

    private func compactBlocking(pending: [String: Int]?) throws {
        let (before, after, recovered) = try self.file.withLockedValue { file -> (Int, Int, String?) in
            guard file.descriptor >= 0 else {
                throw UsageJournalError(path: self.path, operation: "compact", errno: EBADF, hint: "the journal is not open")
            }
            let before = file.size
            // The cut: everything buffered until now is in `base`; what comes later lands in `sinceCut`.
            let (cut, base, inFlight, crovver) = self.memory.withLockedValue { memory in
                memory.sinceCut = []
                return (memory.buffer.count, pending ?? memory.tally.pending, memory.tally.ambiguous, memory.tally.crovver)
            }
            var contents: [UInt8] = []
            for hash in base.keys.sorted() where base[hash, default: 0] > 0 {
                JournalCodec.encode(.committed(hash: hash, units: base[hash, default: 0]), into: &contents)
            }
            for hash in inFlight.keys.sorted() {
                JournalCodec.encode(.sent(hash: hash, units: inFlight[hash, default: 0]), into: &contents)
            }
            // `backend = crovver`: the sidecar id with the sequence mark, open batches, pending credits.
            for record in crovver.records() {
                JournalCodec.encode(record, into: &contents)
            }

            let temporary = self.path + ".compact"
            let descriptor: Int32
            do {
                descriptor = try self.writeTemporary(temporary, contents)
            } catch {
                self.memory.withLockedValue { $0.sinceCut = nil }
                throw error
            }

            let previous = file.descriptor
            file.descriptor = descriptor
            file.size = contents.count
            file.dirtyTail = false
            _ = Syscall.close(previous)
            // A successful rewrite proves the disk takes writes again.
            let recovered = self.memory.withLockedValue { memory -> String? in
                defer { memory.failure = nil }
                memory.buffer.removeFirst(cut)
                var tally = JournalReplay(pending: base.filter { $0.value > 0 }, ambiguous: inFlight, crovver: crovver)
                for record in memory.sinceCut ?? [] { tally.apply(record) }
                memory.sinceCut = nil
                memory.tally = tally
                memory.bytes = contents.count
                return memory.failure
            }
            // The rename is done either way; without this a crash could bring the old file back
            // while new records go to the new one.
            if let problem = Syscall.syncDirectory(of: self.path) {
                throw UsageJournalError(path: self.path, operation: "directory fsync", errno: problem)
            }
            return (before, contents.count, recovered)
        }
        if let recovered {
            self.logger.notice("usage journal writes work again", metadata: ["after": "\(recovered)"])
        }
        self.logger.info("usage journal compacted", metadata: ["bytes": "\(after)", "before_bytes": "\(before)"])
    }

    /// Writes `contents` to `temporary`, fsyncs it, locks it and renames it over `path`.
    /// - Returns: the open descriptor of the new journal.
    private func writeTemporary(_ temporary: String, _ contents: [UInt8]) throws -> Int32 {
        let descriptor = Syscall.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw self.error("compaction open", path: temporary) }
        do {
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { throw self.error("compaction lock", path: temporary) }
            try self.writeAll(descriptor, contents)
            guard Syscall.fsync(descriptor) == 0 else { throw self.error("compaction fsync", path: temporary) }
            guard rename(temporary, self.path) == 0 else { throw self.error("compaction rename", path: temporary) }
            return descriptor
        } catch {
            _ = Syscall.close(descriptor)
            _ = unlink(temporary)
            throw error
        }
    }

    // MARK: - Closing

    /// Commits what is buffered and closes the file (releasing its lock). Later appends stay in
    /// memory until `open()` is called again. When the commit fails the file is closed all the same.
    public func close() async throws {
        try await Self.blocking {
            try self.file.withLockedValue { file in
                defer {
                    if file.descriptor >= 0 { _ = Syscall.close(file.descriptor) }
                    file.descriptor = -1
                }
                try self.commitLocked(&file)
            }
        }
    }

    // MARK: - Helpers

    /// Runs blocking file work on NIO's blocking pool. The work is not abandoned when the calling
    /// task is cancelled: the last commit runs exactly while the service is being cancelled.
    private static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await Task { try await NIOThreadPool.singleton.runIfActive(body) }.value
    }

    /// Decodes the records of `bytes`, which this journal encoded itself.
    private static func forEachRecord(in bytes: [UInt8], _ body: (JournalRecord) -> Void) {
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            if let record = JournalCodec.decode(line) { body(record) }
        }
    }

    private func error(_ operation: String, path: String? = nil, hint: String? = nil) -> UsageJournalError {
        UsageJournalError(path: path ?? self.path, operation: operation, errno: errno, hint: hint)
    }
}

/// A usage journal file operation failed.
public struct UsageJournalError: Error, CustomStringConvertible, Sendable {
    /// The file the operation was on.
    public var path: String
    /// What was being done: `open`, `write`, `fsync`, …
    public var operation: String
    public var errno: Int32
    /// What the operator can do about it.
    public var hint: String?

    public init(path: String, operation: String, errno: Int32, hint: String? = nil) {
        self.path = path
        self.operation = operation
        self.errno = errno
        self.hint = hint
    }

    /// "usage journal /path: write failed: No space left on device (errno 28)".
    public var summary: String {
        "usage journal \(self.path): \(self.operation) failed: \(String(cString: strerror(self.errno))) (errno \(self.errno))"
    }

    public var description: String {
        guard let hint = self.hint else { return self.summary }
        return "\(self.summary); \(hint)"
    }
}

/// The C calls whose names the journal's own methods (`open`, `close`) shadow, and the two
/// durable-file steps the usage journal and the relay store share.
enum Syscall {
    /// Writes all of `bytes`, through short writes and EINTR; the errno on failure.
    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
        guard let base = bytes.baseAddress else { return nil }
        var offset = 0
        while offset < bytes.count {
            let written = Self.write(descriptor, base + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += written
        }
        return nil
    }

    /// fsyncs the directory holding `path` (so a rename in it is durable); the errno on failure.
    static func syncDirectory(of path: String) -> Int32? {
        let directory: String
        if let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) {
            directory = slash == path.utf8.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let descriptor = Self.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        guard descriptor >= 0 else { return errno }
        defer { _ = Self.close(descriptor) }
        return Self.fsync(descriptor) == 0 ? nil : errno
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        #if canImport(Glibc)
        Glibc.open(path, flags, mode)
        #elseif canImport(Musl)
        Musl.open(path, flags, mode)
        #else
        Darwin.open(path, flags, mode)
        #endif
    }

    static func close(_ descriptor: Int32) -> Int32 {
        #if canImport(Glibc)
        Glibc.close(descriptor)
        #elseif canImport(Musl)
        Musl.close(descriptor)
        #else
        Darwin.close(descriptor)
        #endif
    }

    static func write(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(descriptor, bytes, count)
        #elseif canImport(Musl)
        Musl.write(descriptor, bytes, count)
        #else
        Darwin.write(descriptor, bytes, count)
        #endif
    }

    static func fsync(_ descriptor: Int32) -> Int32 {
        #if canImport(Glibc)
        Glibc.fsync(descriptor)
        #elseif canImport(Musl)
        Musl.fsync(descriptor)
        #else
        Darwin.fsync(descriptor)
        #endif
    }
}
