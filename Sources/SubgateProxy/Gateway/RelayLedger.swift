import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SubgateCore

/// The gateway-relayed calls Subgate has answered (SPEC §6), shared by every event loop and
/// kept in `relay_store` so that a retry after a restart still gets the recorded answer
/// instead of a second call to the seller.
///
/// Decisions are `RelayBook`'s; this class adds the lock, the wall clock, the file and the
/// counters `/status` shows.
public final class RelayLedger: Sendable {
    struct Counters {
        var forwarded = 0
        var replayed = 0
        var reused = 0
        var inProgress = 0
        var notReplayable = 0
        var abandoned = 0
    }

    private let book: NIOLockedValueBox<RelayBook>
    private let counters = NIOLockedValueBox(Counters())
    private let store: RelayStoreFile?
    private let pricePerCallMicros: Int?

    init(book: RelayBook, store: RelayStoreFile?, pricePerCallMicros: Int?) {
        self.book = NIOLockedValueBox(book)
        self.store = store
        self.pricePerCallMicros = pricePerCallMicros
    }

    /// The ledger for `config` (nil without `gateway_secret`), loaded from `relay_store`.
    public static func open(config: Config, logger: Logger) throws -> RelayLedger? {
        guard config.gatewaySecret != nil else { return nil }
        var book = RelayBook(ttl: config.relayTTL, maxEntries: config.relayMaxEntries)
        var store: RelayStoreFile?
        if let path = config.relayStore {
            let now = Date().timeIntervalSince1970
            let (file, records, skipped) = try RelayStoreFile.open(path: path, logger: logger)
            for record in records { book.restore(record, now: now) }
            try file.compact(book.liveRecords(now: now))
            logger.info(
                "relay store loaded",
                metadata: ["relay_store": "\(path)", "records": "\(book.count)", "skipped_lines": "\(skipped)"]
            )
            store = file
        }
        return RelayLedger(book: book, store: store, pricePerCallMicros: config.gatewayPricePerCallMicros)
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    func admit(_ relayID: String) -> RelayBook.Admission {
        let admission = self.book.withLockedValue { $0.admit(relayID, now: Self.now) }
        if case .inProgress = admission { self.counters.withLockedValue { $0.inProgress += 1 } }
        return admission
    }

    /// The upstream answered a forwarded call: keep (and persist) its outcome, now.
    func complete(relayID: String, request: String, bodyHash: String, answer: RelayAnswer?) {
        let record = RelayRecord(relayID: relayID, request: request, bodyHash: bodyHash, recordedAt: Self.now, answer: answer)
        self.counters.withLockedValue { $0.forwarded += 1 }
        self.book.withLockedValue { book in
            book.complete(record)
            // Under the book's lock, so the file sees records in the book's order.
            self.store?.append(record, live: book.count, compactWith: { book.liveRecords(now: Self.now) })
        }
    }

    /// A forwarded call ended without the upstream's answer: a retry forwards again.
    func abandon(_ relayID: String) {
        self.counters.withLockedValue { $0.abandoned += 1 }
        self.book.withLockedValue { $0.abandon(relayID) }
    }

    /// Waits until every record is on disk (graceful shutdown).
    public func close() {
        self.store?.close()
    }

    func countReplay(_ replay: RelayBook.Replay) {
        self.counters.withLockedValue { counters in
            switch replay {
            case .answer: counters.replayed += 1
            case .bodyMismatch: counters.reused += 1
            case .notReplayable: counters.notReplayable += 1
            }
        }
    }

    /// Lines for `/status`: the relayed calls since start and, with `gateway_price_per_call`,
    /// the seller's estimated share of them after the gateway's 4.9 % fee.
    public func statusFields() -> [(String, String)] {
        let counters = self.counters.withLockedValue { $0 }
        let (remembered, inFlight) = self.book.withLockedValue { ($0.count, $0.inFlightCount) }
        var fields = [
            ("relay_calls_forwarded", String(counters.forwarded)),
            ("relay_calls_replayed", String(counters.replayed)),
            ("relay_ids_reused", String(counters.reused)),
            ("relay_calls_in_progress_refused", String(counters.inProgress)),
            ("relay_calls_not_replayable", String(counters.notReplayable)),
            ("relay_calls_abandoned", String(counters.abandoned)),
            ("relay_ids_remembered", String(remembered)),
            ("relay_calls_in_flight", String(inFlight)),
            ("relay_store_failing", self.store?.isFailing == true ? "true" : "false"),
        ]
        // Clamped: a large price times many calls must not overflow (and trap) in /status.
        if let price = self.pricePerCallMicros, case (let gross, false) = price.multipliedReportingOverflow(by: counters.forwarded),
            !gross.multipliedReportingOverflow(by: 1000).overflow
        {
            fields.append(("relay_gross_usd_estimate", "\"\(MicroDollars.format(gross))\""))
            fields.append(("relay_seller_share_usd_estimate", "\"\(MicroDollars.format(GatewayFee.sellerShare(grossMicros: gross)))\""))
        }
        return fields
    }
}

/// `relay_store`: one JSON record per line, written and fsynced on a serial queue, never on
/// an event loop (the loops only enqueue); compacted at start and whenever the file holds more
/// than twice the live records, one compaction at a time. A torn last line (a crash mid-write)
/// fails to decode and is dropped at the next start; a failed write is truncated away.
/// The file is created 0600 and locked (`flock`), so two instances cannot share it.
final class RelayStoreFile: Sendable {
    private let path: String
    private let logger: Logger
    private let queue = DispatchQueue(label: "subgate.relay-store")
    /// The open descriptor; used only on `queue` (and in `open` before anything is queued).
    private let descriptor: NIOLockedValueBox<Int32>
    /// Lines in the file and whether a compaction is queued: read and written under the
    /// ledger's lock on the event loops, so the decision to compact is never made twice.
    private let bookkeeping: NIOLockedValueBox<(lines: Int, compacting: Bool)>
    private let failing = NIOLockedValueBox(false)

    private init(path: String, descriptor: Int32, lines: Int, logger: Logger) {
        self.path = path
        self.logger = logger
        self.descriptor = NIOLockedValueBox(descriptor)
        self.bookkeeping = NIOLockedValueBox((lines, false))
    }

    var isFailing: Bool { self.failing.withLockedValue { $0 } }

    /// Opens (creating, mode 0600) and locks `path`, and reads its records; lines that do not
    /// decode are counted.
    static func open(path: String, logger: Logger) throws -> (RelayStoreFile, [RelayRecord], skipped: Int) {
        let descriptor = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw RelayStoreError(description: "cannot open relay_store \(path): \(String(cString: strerror(errno))) (check the directory exists and is writable)")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            Foundation.close(descriptor)
            throw RelayStoreError(description: "relay_store \(path) is in use by another process (flock); give each instance its own")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            Foundation.close(descriptor)
            throw RelayStoreError(description: "cannot read relay_store \(path)")
        }
        var records: [RelayRecord] = []
        var skipped = 0
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            if let record = try? decoder.decode(RelayRecord.self, from: Data(line)) {
                records.append(record)
            } else {
                skipped += 1
            }
        }
        return (RelayStoreFile(path: path, descriptor: descriptor, lines: records.count + skipped, logger: logger), records, skipped)
    }

    /// Rewrites the file with `records` only: a temporary file, fsync, rename, fsync of the
    /// directory, then the new file is locked and used. Runs at start and on `queue`.
    func compact(_ records: [RelayRecord]) throws {
        let temporary = self.path + ".tmp"
        var data = Data()
        let encoder = JSONEncoder()
        for record in records {
            data.append(try encoder.encode(record))
            data.append(UInt8(ascii: "\n"))
        }
        let fresh = Foundation.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fresh >= 0 else { throw RelayStoreError(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        do {
            guard flock(fresh, LOCK_EX | LOCK_NB) == 0 else { throw RelayStoreError(description: "cannot lock \(temporary)") }
            try Self.writeAll(data, to: fresh)
            guard fsync(fresh) == 0, rename(temporary, self.path) == 0 else {
                throw RelayStoreError(description: "cannot replace \(self.path) with its compacted copy: \(String(cString: strerror(errno)))")
            }
        } catch {
            Foundation.close(fresh)
            throw error
        }
        _ = Syscall.syncDirectory(of: self.path)
        let old = self.descriptor.withLockedValue { descriptor in
            defer { descriptor = fresh }
            return descriptor
        }
        Foundation.close(old)
        self.bookkeeping.withLockedValue { $0.lines = records.count }
    }

    /// Queues `record` for the file; when the file holds more than twice the `live` records,
    /// queues a compaction with `snapshot()` instead (it holds the record already). Called
    /// under the ledger's lock, so the queue sees records in the book's order; nothing here
    /// blocks on the file.
    func append(_ record: RelayRecord, live: Int, compactWith snapshot: () -> [RelayRecord]) {
        let compaction: [RelayRecord]? = self.bookkeeping.withLockedValue { bookkeeping in
            bookkeeping.lines += 1
            guard !bookkeeping.compacting, bookkeeping.lines > max(1024, 2 * live) else { return nil }
            bookkeeping.compacting = true
            return snapshot()
        }
        self.queue.async {
            do {
                if let compaction {
                    defer { self.bookkeeping.withLockedValue { $0.compacting = false } }
                    try self.compact(compaction)
                } else {
                    var line = try JSONEncoder().encode(record)
                    line.append(UInt8(ascii: "\n"))
                    try self.appendLine(line)
                }
                self.recovered()
            } catch {
                self.failed(error)
            }
        }
    }

    /// Waits for everything queued to be on disk, then closes (and unlocks) the file: the
    /// graceful shutdown. Records completed after this are kept in memory only.
    func close() {
        self.queue.sync {
            let descriptor = self.descriptor.withLockedValue { descriptor in
                defer { descriptor = -1 }
                return descriptor
            }
            guard descriptor >= 0 else { return }
            _ = fsync(descriptor)
            Foundation.close(descriptor)
        }
    }

    // MARK: - On `queue`

    private func appendLine(_ line: Data) throws {
        let descriptor = self.descriptor.withLockedValue { $0 }
        let end = lseek(descriptor, 0, SEEK_END)
        do {
            try Self.writeAll(line, to: descriptor)
            guard fsync(descriptor) == 0 else { throw RelayStoreError(description: "fsync: \(String(cString: strerror(errno)))") }
        } catch {
            // A partial line would swallow the next record at the next start: cut it off.
            if end >= 0 { _ = ftruncate(descriptor, end) }
            throw error
        }
    }

    private static func writeAll(_ data: Data, to descriptor: Int32) throws {
        try data.withUnsafeBytes { bytes in
            if let code = Syscall.writeAll(descriptor, bytes) {
                throw RelayStoreError(description: "write: \(String(cString: strerror(code)))")
            }
        }
    }

    private func recovered() {
        let wasFailing = self.failing.withLockedValue { failing in
            defer { failing = false }
            return failing
        }
        if wasFailing { self.logger.notice("relay store writable again", metadata: ["relay_store": "\(self.path)"]) }
    }

    private func failed(_ error: any Error) {
        let first = self.failing.withLockedValue { failing in
            defer { failing = true }
            return !failing
        }
        if first {
            // The record stays in memory: replays work until a restart.
            self.logger.error(
                "relay store write failed; relayed answers are kept in memory only",
                metadata: ["relay_store": "\(self.path)", "error": "\(error)"]
            )
        }
    }
}

struct RelayStoreError: Error, CustomStringConvertible {
    var description: String
}

/// Keeps `relay_store` open while Subgate runs and, on graceful shutdown, waits until every
/// queued record is on disk. Listed before the proxy in the service group, so it stops after
/// the proxy has drained: the last relayed answers are kept too.
public struct RelayStoreService: Service {
    private let relays: RelayLedger

    public init(relays: RelayLedger) {
        self.relays = relays
    }

    public func run() async throws {
        try? await gracefulShutdown()
        self.relays.close()
    }
}
