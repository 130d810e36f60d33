import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
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
    func complete(relayID: String, bodyHash: String, answer: RelayAnswer?) {
        let record = RelayRecord(relayID: relayID, bodyHash: bodyHash, recordedAt: Self.now, answer: answer)
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
        if let price = self.pricePerCallMicros {
            let gross = price * counters.forwarded
            fields.append(("relay_gross_usd_estimate", "\"\(MicroDollars.format(gross))\""))
            fields.append(("relay_seller_share_usd_estimate", "\"\(MicroDollars.format(GatewayFee.sellerShare(grossMicros: gross)))\""))
        }
        return fields
    }
}

/// `relay_store`: one JSON record per line, appended and fsynced off the event loops on a
/// serial queue, compacted at start and whenever it holds more than twice the live records.
/// A torn last line (a crash mid-write) fails to decode and is dropped at the next start.
final class RelayStoreFile: Sendable {
    private let path: String
    private let logger: Logger
    private let queue = DispatchQueue(label: "subgate.relay-store")
    /// The open file and how many lines it holds; touched only on `queue` (and in `open`).
    private let file: NIOLockedValueBox<(handle: FileHandle, lines: Int)>
    private let failing = NIOLockedValueBox(false)

    private init(path: String, handle: FileHandle, lines: Int, logger: Logger) {
        self.path = path
        self.logger = logger
        self.file = NIOLockedValueBox((handle, lines))
    }

    var isFailing: Bool { self.failing.withLockedValue { $0 } }

    /// Opens (creating) `path` and reads its records; lines that do not decode are counted.
    static func open(path: String, logger: Logger) throws -> (RelayStoreFile, [RelayRecord], skipped: Int) {
        let manager = FileManager.default
        if !manager.fileExists(atPath: path) {
            guard manager.createFile(atPath: path, contents: nil) else {
                throw RelayStoreError(description: "cannot create relay_store \(path) (check the directory exists and is writable)")
            }
        }
        guard let data = manager.contents(atPath: path) else {
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
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw RelayStoreError(description: "cannot open relay_store \(path) for writing")
        }
        _ = try handle.seekToEnd()
        return (RelayStoreFile(path: path, handle: handle, lines: records.count + skipped, logger: logger), records, skipped)
    }

    /// Rewrites the file with `records` only (temporary file, fsync, rename).
    func compact(_ records: [RelayRecord]) throws {
        try self.file.withLockedValue { file in
            let temporary = self.path + ".tmp"
            var data = Data()
            let encoder = JSONEncoder()
            for record in records {
                data.append(try encoder.encode(record))
                data.append(UInt8(ascii: "\n"))
            }
            guard FileManager.default.createFile(atPath: temporary, contents: data),
                let written = FileHandle(forWritingAtPath: temporary)
            else { throw RelayStoreError(description: "cannot write \(temporary)") }
            try written.synchronize()
            try written.close()
            guard rename(temporary, self.path) == 0 else {
                throw RelayStoreError(description: "cannot replace \(self.path) with its compacted copy (errno \(errno))")
            }
            try? file.handle.close()
            guard let handle = FileHandle(forWritingAtPath: self.path) else {
                throw RelayStoreError(description: "cannot reopen relay_store \(self.path)")
            }
            _ = try handle.seekToEnd()
            file = (handle, records.count)
        }
    }

    /// Appends `record` and fsyncs, off the caller's thread; compacts when the file holds more
    /// than twice the `live` records. Called under the ledger's lock, so writes keep its order.
    func append(_ record: RelayRecord, live: Int, compactWith snapshot: () -> [RelayRecord]) {
        guard var encoded = try? JSONEncoder().encode(record) else { return }
        encoded.append(UInt8(ascii: "\n"))
        let line = encoded
        let lines = self.file.withLockedValue { $0.lines }
        let compaction = lines + 1 > max(1024, 2 * live) ? snapshot() : nil
        self.queue.async {
            do {
                if let compaction {
                    try self.compact(compaction)
                } else {
                    try self.file.withLockedValue { file in
                        try file.handle.write(contentsOf: line)
                        try file.handle.synchronize()
                        file.lines += 1
                    }
                }
                if self.failing.withLockedValue({ $0 }) {
                    self.failing.withLockedValue { $0 = false }
                    self.logger.notice("relay store writable again", metadata: ["relay_store": "\(self.path)"])
                }
            } catch {
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
    }
}

struct RelayStoreError: Error, CustomStringConvertible {
    var description: String
}
