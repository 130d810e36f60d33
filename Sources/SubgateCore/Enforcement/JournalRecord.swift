// The usage journal's record format and its replay (SPEC §2 `usage_journal`, §4 durability).
// Pure: bytes in, values out. The file itself is `SubgateProxy.UsageJournal`.
//
// One record per line, readable with `cat` and `grep` during an incident:
//
//     <type letter> <64 lowercase hex: token hash> <units, 1…1000000> <CRC-32 of the bytes before the last space, 8 lowercase hex>\n
//     C 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 3 1cccb94c
//
// Letters: C committed, S sent, A acknowledged, D dropped, R returned.
//
// `backend = crovver` adds four kinds (`JournalRecord+Crovver.swift`), with space-separated
// fields instead of a hash and the same trailing CRC:
//
//     I <sidecar id> <next sequence> <crc>                                  identity
//     U <units> =<tenant> =<pool> <crc>                                     units served, no batch yet
//     B <sequence> <units> =<tenant> =<pool> =<endpoint> =<request id> <crc>  batch opened (before its first send)
//     E <sequence> <crc>                                                    batch ended (answered or given up)

/// One event in the life of billable units (SPEC §4), as the usage journal records it.
public enum JournalRecord: Sendable, Equatable {
    /// Units served and billable, not yet reported.
    case committed(hash: String, units: Int)
    /// A usage report for these units is about to be sent.
    case sent(hash: String, units: Int)
    /// The control plane accepted them.
    case acknowledged(hash: String, units: Int)
    /// They can never be billed (the control plane answered 404/403/400 for the hash).
    case dropped(hash: String, units: Int)
    /// The report was not accepted (429/5xx/refused/timeout); the units are pending again.
    case returned(hash: String, units: Int)
    /// `backend = crovver`: this sidecar's id, and the lowest sequence number not yet used.
    case crovverIdentity(sidecarID: String, nextSequence: UInt64)
    /// `backend = crovver`: credits served and billable, not yet in a batch.
    case crovverCommitted(key: CrovverPoolKey, units: Int)
    /// `backend = crovver`: a consume batch, journaled before it is first sent.
    case crovverBatchOpened(CrovverBatch)
    /// `backend = crovver`: the batch was answered (or given up); its key is never sent again.
    case crovverBatchSettled(sequence: UInt64)
}

extension JournalRecord {
    /// The token hash the units belong to.
    public var hash: String {
        switch self {
        case .committed(let hash, _), .sent(let hash, _), .acknowledged(let hash, _),
            .dropped(let hash, _), .returned(let hash, _):
            return hash
        case .crovverIdentity, .crovverCommitted, .crovverBatchOpened, .crovverBatchSettled:
            return ""
        }
    }

    /// How many units the record moves.
    public var units: Int {
        switch self {
        case .committed(_, let units), .sent(_, let units), .acknowledged(_, let units),
            .dropped(_, let units), .returned(_, let units), .crovverCommitted(_, let units):
            return units
        case .crovverBatchOpened(let batch):
            return batch.units
        case .crovverIdentity, .crovverBatchSettled:
            return 0
        }
    }

    /// The same kind of record for other units (used to split records over the per-line limit).
    func with(units: Int) -> JournalRecord {
        switch self {
        case .committed(let hash, _): return .committed(hash: hash, units: units)
        case .sent(let hash, _): return .sent(hash: hash, units: units)
        case .acknowledged(let hash, _): return .acknowledged(hash: hash, units: units)
        case .dropped(let hash, _): return .dropped(hash: hash, units: units)
        case .returned(let hash, _): return .returned(hash: hash, units: units)
        case .crovverCommitted(let key, _): return .crovverCommitted(key: key, units: units)
        case .crovverIdentity, .crovverBatchOpened, .crovverBatchSettled: return self
        }
    }

    /// The letter that starts the record's line.
    var letter: UInt8 {
        switch self {
        case .committed: return UInt8(ascii: "C")
        case .sent: return UInt8(ascii: "S")
        case .acknowledged: return UInt8(ascii: "A")
        case .dropped: return UInt8(ascii: "D")
        case .returned: return UInt8(ascii: "R")
        case .crovverIdentity: return UInt8(ascii: "I")
        case .crovverCommitted: return UInt8(ascii: "U")
        case .crovverBatchOpened: return UInt8(ascii: "B")
        case .crovverBatchSettled: return UInt8(ascii: "E")
        }
    }

    init?(letter: UInt8, hash: String, units: Int) {
        switch letter {
        case UInt8(ascii: "C"): self = .committed(hash: hash, units: units)
        case UInt8(ascii: "S"): self = .sent(hash: hash, units: units)
        case UInt8(ascii: "A"): self = .acknowledged(hash: hash, units: units)
        case UInt8(ascii: "D"): self = .dropped(hash: hash, units: units)
        case UInt8(ascii: "R"): self = .returned(hash: hash, units: units)
        default: return nil
        }
    }
}

// MARK: - Replay

/// What a journal's records add up to: the units to report again after a restart.
public struct JournalReplay: Sendable, Equatable {
    /// Per hash: committed − acknowledged − dropped (never < 0; zero entries removed).
    public var pending: [String: Int]
    /// Per hash: sent − acknowledged − dropped − returned, never < 0: reports that were sent but
    /// whose answer was never recorded. They may be billed twice (SPEC §4).
    public var ambiguous: [String: Int]
    /// Valid records read.
    public var records: Int
    /// Lines skipped for a bad CRC or a malformed line that was not the last line.
    public var badRecords: Int
    /// The last line was incomplete (no terminator) or bad: a write torn by a crash.
    public var tornTail: Bool
    /// Length of the prefix that ends with the last good record; the file is truncated to this.
    public var validBytes: Int
    /// `backend = crovver`: the sidecar id, the sequence high-water mark, credits not yet in a
    /// batch and batches opened but not answered.
    public var crovver: CrovverJournalState

    public init(
        pending: [String: Int] = [:],
        ambiguous: [String: Int] = [:],
        records: Int = 0,
        badRecords: Int = 0,
        tornTail: Bool = false,
        validBytes: Int = 0,
        crovver: CrovverJournalState = CrovverJournalState()
    ) {
        self.crovver = crovver
        self.pending = pending
        self.ambiguous = ambiguous
        self.records = records
        self.badRecords = badRecords
        self.tornTail = tornTail
        self.validBytes = validBytes
    }

    /// Total units in `pending`.
    public var pendingUnits: Int { self.pending.values.reduce(0, +) }

    /// Total units in `ambiguous`.
    public var ambiguousUnits: Int { self.ambiguous.values.reduce(0, +) }

    /// Folds one record into `pending` and `ambiguous` (the counters are the reader's business).
    ///
    /// Both sums are clamped at zero after every record, not only at the end: an answer for
    /// units the journal never saw (their records were compacted away) must not cancel units
    /// committed later, or those would be lost after a crash.
    public mutating func apply(_ record: JournalRecord) {
        switch record {
        case .crovverIdentity, .crovverCommitted, .crovverBatchOpened, .crovverBatchSettled:
            self.crovver.apply(record)
            return
        case .committed, .sent, .acknowledged, .dropped, .returned:
            break
        }
        let hash = record.hash
        let units = record.units
        guard units > 0 else { return }
        switch record {
        case .committed:
            self.pending[hash, default: 0] += units
        case .sent:
            self.ambiguous[hash, default: 0] += units
        case .acknowledged, .dropped:
            Self.subtract(units, for: hash, from: &self.pending)
            Self.subtract(units, for: hash, from: &self.ambiguous)
        case .returned:
            Self.subtract(units, for: hash, from: &self.ambiguous)
        case .crovverIdentity, .crovverCommitted, .crovverBatchOpened, .crovverBatchSettled:
            break
        }
    }

    private static func subtract(_ units: Int, for hash: String, from sums: inout [String: Int]) {
        guard let current = sums[hash] else { return }
        sums[hash] = current > units ? current - units : nil
    }
}

// MARK: - Codec

/// Encodes journal records as lines and replays a journal's bytes.
public enum JournalCodec {
    /// The most units one line holds; larger records are written as several lines.
    public static let maxUnitsPerRecord = 1_000_000

    /// The longest valid line without its terminator: letter, hash, 7 digits, CRC and 3 spaces.
    static let maxLineLength = 1 + 1 + 64 + 1 + 7 + 1 + 8

    static let space = UInt8(ascii: " ")
    static let newline = UInt8(ascii: "\n")

    /// Whether `hash` is what the journal accepts: exactly 64 lowercase hex digits (a SHA-256).
    public static func isValidHash(_ hash: String) -> Bool {
        guard hash.utf8.count == 64 else { return false }
        // Contiguous bytes for native strings: once per billed request, so not the generic walk.
        return hash.utf8.withContiguousStorageIfAvailable { $0.allSatisfy(Self.isLowerHex) }
            ?? hash.utf8.allSatisfy(Self.isLowerHex)
    }

    /// Appends `record` as one line (or several when `units` exceeds `maxUnitsPerRecord`).
    ///
    /// - Returns: `false`, writing nothing, for a record the journal cannot hold (a hash that is
    ///   not 64 lowercase hex digits, or negative units). Zero units write nothing and return `true`:
    ///   there is nothing to bill.
    @discardableResult
    public static func encode(_ record: JournalRecord, into buffer: inout [UInt8]) -> Bool {
        if let encoded = Self.encodeCrovver(record, into: &buffer) { return encoded }
        let hash = record.hash
        var units = record.units
        guard units >= 0, Self.isValidHash(hash) else { return false }
        while units > 0 {
            let chunk = min(units, Self.maxUnitsPerRecord)
            units -= chunk
            let start = buffer.count
            buffer.append(record.letter)
            buffer.append(Self.space)
            // Contiguous bytes where the string has them: this runs once per billed request.
            if hash.utf8.withContiguousStorageIfAvailable({ buffer.append(contentsOf: $0) }) == nil {
                buffer.append(contentsOf: hash.utf8)
            }
            buffer.append(Self.space)
            Self.appendDecimal(chunk, to: &buffer)
            let crc = buffer.withUnsafeBufferPointer { CRC32.checksum(UnsafeBufferPointer(rebasing: $0[start...])) }
            buffer.append(Self.space)
            for shift in stride(from: 28, through: 0, by: -4) {
                buffer.append(ASCII.hexDigit(UInt8(truncatingIfNeeded: (crc >> UInt32(shift)) & 0xF)))
            }
            buffer.append(Self.newline)
        }
        return true
    }

    /// `value` (≥ 0) in decimal ASCII, without a `String` in between.
    static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var v = value
        withUnsafeMutableBytes(of: &digits) { out in
            repeat {
                out[19 - count] = 0x30 + UInt8(v % 10)
                v /= 10
                count += 1
            } while v > 0
            buffer.append(contentsOf: out[(20 - count)...])
        }
    }

    /// Decodes one line (without its `\n`); `nil` when it is malformed or its CRC does not match.
    public static func decode(_ line: some Collection<UInt8>) -> JournalRecord? {
        if let record = line.withContiguousStorageIfAvailable({ Self.decode(line: $0) }) {
            return record
        }
        return Array(line).withUnsafeBufferPointer { Self.decode(line: $0) }
    }

    /// Reads a whole journal: sums the valid records, skips and counts bad lines, and finds
    /// where a torn last line starts.
    public static func replay(_ bytes: some Collection<UInt8>) -> JournalReplay {
        if let replay = bytes.withContiguousStorageIfAvailable({ Self.replay(buffer: $0) }) {
            return replay
        }
        return Array(bytes).withUnsafeBufferPointer { Self.replay(buffer: $0) }
    }

    private static func replay(buffer: UnsafeBufferPointer<UInt8>) -> JournalReplay {
        var replay = JournalReplay()
        // Complete bad lines since the last good record: "in the middle" only once a good one follows.
        var badSinceGood = 0
        var lineStart = 0
        var unterminated = false
        while lineStart < buffer.count {
            guard let end = buffer[lineStart...].firstIndex(of: Self.newline) else {
                unterminated = true
                break
            }
            let line = UnsafeBufferPointer(rebasing: buffer[lineStart..<end])
            if let record = Self.decode(line: line) {
                replay.apply(record)
                replay.records += 1
                replay.badRecords += badSinceGood
                badSinceGood = 0
                replay.validBytes = end + 1
            } else {
                badSinceGood += 1
            }
            lineStart = end + 1
        }
        if unterminated {
            // Every complete bad line before the unterminated one was a record of its own.
            replay.tornTail = true
            replay.badRecords += badSinceGood
        } else if badSinceGood > 0 {
            // The last line is complete but bad: a torn write; the bad ones before it are skipped records.
            replay.tornTail = true
            replay.badRecords += badSinceGood - 1
        }
        return replay
    }

    private static func decode(line: UnsafeBufferPointer<UInt8>) -> JournalRecord? {
        if let first = line.first, Self.crovverLetters.contains(first) { return Self.decodeCrovver(line: line) }
        // <letter> <64 hex> <1…7 digits> <8 hex>
        guard line.count >= 1 + 1 + 64 + 1 + 1 + 1 + 8, line.count <= Self.maxLineLength else { return nil }
        guard line[1] == Self.space, line[66] == Self.space else { return nil }
        let crcStart = line.count - 8
        let lastSpace = crcStart - 1
        guard line[lastSpace] == Self.space else { return nil }

        // Units: decimal, no sign, no leading zero, 1…1000000.
        let digits = UnsafeBufferPointer(rebasing: line[67..<lastSpace])
        guard (1...7).contains(digits.count), digits[0] != UInt8(ascii: "0") else { return nil }
        var units = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            units = units * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard units <= Self.maxUnitsPerRecord else { return nil }

        var stored: UInt32 = 0
        for byte in line[crcStart...] {
            guard let value = Self.hexValue(byte) else { return nil }
            stored = stored << 4 | UInt32(value)
        }
        guard CRC32.checksum(UnsafeBufferPointer(rebasing: line[..<lastSpace])) == stored else { return nil }

        let hashBytes = UnsafeBufferPointer(rebasing: line[2..<66])
        guard hashBytes.allSatisfy(Self.isLowerHex) else { return nil }
        return JournalRecord(letter: line[0], hash: String(decoding: hashBytes, as: UTF8.self), units: units)
    }

    static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}

// MARK: - CRC-32

/// CRC-32 (IEEE 802.3: polynomial 0x04C11DB7, reflected as 0xEDB88320, initial and final
/// value 0xFFFFFFFF), the checksum of zlib, gzip and PNG.
///
/// Hand-written because no maintained Swift package in our dependency set exposes one:
/// swift-crypto has none, and NIO's lives inside its compression code, internal to it.
/// Linking zlib for one function would add a system library to a pure target. Byte-at-a-time
/// with a 256-entry table is ample for ~80-byte journal lines.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1
        }
        return crc
    }

    /// The CRC-32 of `bytes` (`"123456789"` → `0xCBF43926`).
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        if let crc = bytes.withContiguousStorageIfAvailable({ Self.checksum(buffer: $0) }) { return crc }
        return Array(bytes).withUnsafeBufferPointer { Self.checksum(buffer: $0) }
    }

    private static func checksum(buffer: UnsafeBufferPointer<UInt8>) -> UInt32 {
        Self.table.withUnsafeBufferPointer { table in
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in buffer {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            return ~crc
        }
    }
}
