// The usage journal's `backend = crovver` records (see the format note in `JournalRecord.swift`).
// Same rules as the Crochet records: one line each, a CRC-32 of the bytes before the last
// space, a torn or bad line skipped. Text fields start with `=` (so an empty one is `=`) and
// percent-encode `%` and every byte outside visible ASCII, so a field never holds a space.

/// What a journal's `crovver` records add up to.
public struct CrovverJournalState: Sendable, Equatable {
    /// The sidecar's id, from the first `I` record (`nil`: the journal has none yet).
    public var sidecarID: String?
    /// The lowest sequence number no record has used: `I`'s mark, or past the highest `B`.
    public var nextSequence: UInt64 = 1
    /// Credits served and not yet in a batch: `U` − `B` per pool (never < 0).
    public var pending: [CrovverPoolKey: Int] = [:]
    /// Batches opened (`B`) and not ended (`E`): sent again, same key, after a restart.
    public var batches: [UInt64: CrovverBatch] = [:]

    public init(sidecarID: String? = nil, nextSequence: UInt64 = 1, pending: [CrovverPoolKey: Int] = [:], batches: [UInt64: CrovverBatch] = [:]) {
        self.sidecarID = sidecarID
        self.nextSequence = nextSequence
        self.pending = pending
        self.batches = batches
    }

    public var pendingUnits: Int { self.pending.values.reduce(0, +) }
    public var batchUnits: Int { self.batches.values.reduce(0) { $0 + $1.units } }

    /// Folds one `crovver` record in (other records are ignored).
    public mutating func apply(_ record: JournalRecord) {
        switch record {
        case .crovverIdentity(let id, let next):
            if self.sidecarID == nil { self.sidecarID = id }
            self.nextSequence = max(self.nextSequence, next)
        case .crovverCommitted(let key, let units):
            guard units > 0 else { return }
            self.pending[key, default: 0] += units
        case .crovverBatchOpened(let batch):
            // Its credits leave `pending`; a synchronous consume's were never there.
            if !batch.synchronous, let current = self.pending[batch.key] {
                self.pending[batch.key] = current > batch.units ? current - batch.units : nil
            }
            self.batches[batch.sequence] = batch
            if batch.sequence >= self.nextSequence { self.nextSequence = batch.sequence + 1 }
        case .crovverBatchSettled(let sequence):
            self.batches[sequence] = nil
        case .committed, .sent, .acknowledged, .dropped, .returned:
            break
        }
    }

    /// The records that replay to this state (for compaction): the identity with the
    /// sequence high-water mark, the open batches, then the pending credits. Batches come
    /// before pending so that replaying them does not take their credits out of `pending`.
    public func records() -> [JournalRecord] {
        guard let id = self.sidecarID else { return [] }
        var records: [JournalRecord] = [.crovverIdentity(sidecarID: id, nextSequence: self.nextSequence)]
        for sequence in self.batches.keys.sorted() {
            if let batch = self.batches[sequence] { records.append(.crovverBatchOpened(batch)) }
        }
        for key in self.pending.keys.sorted() where self.pending[key, default: 0] > 0 {
            records.append(.crovverCommitted(key: key, units: self.pending[key, default: 0]))
        }
        return records
    }
}

extension JournalCodec {
    /// The first bytes of the `crovver` records.
    static let crovverLetters: Set<UInt8> = [UInt8(ascii: "I"), UInt8(ascii: "U"), UInt8(ascii: "B"), UInt8(ascii: "E")]
    /// The longest `crovver` line accepted (tenant ≤ 256, endpoint ≤ 512, request id ≤ 128
    /// bytes, each at worst tripled by percent-encoding, plus a pool name).
    static let maxCrovverLineLength = 4096
    /// The most credits one `U` or `B` line holds: Crovver's own ceiling on `amount` (the
    /// simulator's 1…1000000000), so a batch of large requests still fits one call.
    public static let maxCrovverUnitsPerRecord = 1_000_000_000

    /// Encodes a `crovver` record; `nil` for the other kinds (the caller encodes them).
    /// `false`, writing nothing, for one the journal cannot hold.
    static func encodeCrovver(_ record: JournalRecord, into buffer: inout [UInt8]) -> Bool? {
        var fields: [[UInt8]]
        switch record {
        case .crovverIdentity(let id, let next):
            guard CrovverBatchBook.isValidSidecarID(id) else { return false }
            fields = [Array(id.utf8), Self.decimal(next)]
        case .crovverCommitted(let key, let units):
            guard units >= 0 else { return false }
            var left = units
            var lines: [UInt8] = []
            while left > 0 {
                let chunk = min(left, Self.maxCrovverUnitsPerRecord)
                left -= chunk
                guard Self.appendFields(record.letter, [Self.decimal(UInt64(chunk)), Self.text(key.tenant), Self.text(key.pool)], into: &lines) else { return false }
            }
            buffer.append(contentsOf: lines)
            return true
        case .crovverBatchOpened(let batch):
            guard batch.units > 0, batch.units <= Self.maxCrovverUnitsPerRecord else { return false }
            fields = [
                Self.decimal(batch.sequence), Self.decimal(UInt64(batch.units)), Self.text(batch.key.tenant), Self.text(batch.key.pool),
                Self.text(batch.endpoint), Self.text(batch.requestID),
            ] + (batch.synchronous ? [Array("sync".utf8)] : [])
        case .crovverBatchSettled(let sequence):
            fields = [Self.decimal(sequence)]
        case .committed, .sent, .acknowledged, .dropped, .returned:
            return nil
        }
        return Self.appendFields(record.letter, fields, into: &buffer)
    }

    private static func appendFields(_ letter: UInt8, _ fields: [[UInt8]], into buffer: inout [UInt8]) -> Bool {
        var line: [UInt8] = [letter]
        for field in fields {
            line.append(Self.space)
            line.append(contentsOf: field)
        }
        guard line.count + 9 <= Self.maxCrovverLineLength else { return false }
        let crc = CRC32.checksum(line)
        line.append(Self.space)
        for shift in stride(from: 28, through: 0, by: -4) {
            line.append(ASCII.hexDigit(UInt8(truncatingIfNeeded: (crc >> UInt32(shift)) & 0xF)))
        }
        line.append(Self.newline)
        buffer.append(contentsOf: line)
        return true
    }

    private static func decimal(_ value: UInt64) -> [UInt8] { Array(String(value).utf8) }

    /// `=` then the text, percent-encoding `%` and every byte outside visible ASCII.
    private static func text(_ value: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "=")]
        for byte in value.utf8 {
            if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(ASCII.hexDigit(byte >> 4))
                out.append(ASCII.hexDigit(byte & 0xF))
            }
        }
        return out
    }

    /// Decodes a `crovver` line (without its `\n`); `nil` when malformed or its CRC is wrong.
    static func decodeCrovver(line: UnsafeBufferPointer<UInt8>) -> JournalRecord? {
        guard line.count >= 1 + 1 + 1 + 1 + 8, line.count <= Self.maxCrovverLineLength else { return nil }
        let crcStart = line.count - 8
        let lastSpace = crcStart - 1
        guard line[lastSpace] == Self.space, line[1] == Self.space else { return nil }
        var stored: UInt32 = 0
        for byte in line[crcStart...] {
            guard let value = Self.hexValue(byte) else { return nil }
            stored = stored << 4 | UInt32(value)
        }
        guard CRC32.checksum(UnsafeBufferPointer(rebasing: line[..<lastSpace])) == stored else { return nil }
        let fields = line[2..<lastSpace].split(separator: Self.space, omittingEmptySubsequences: false).map(Array.init)
        switch line[0] {
        case UInt8(ascii: "I"):
            guard fields.count == 2, let next = Self.number(fields[1]) else { return nil }
            let id = String(decoding: fields[0], as: UTF8.self)
            guard CrovverBatchBook.isValidSidecarID(id) else { return nil }
            return .crovverIdentity(sidecarID: id, nextSequence: next)
        case UInt8(ascii: "U"):
            guard fields.count == 3, let units = Self.number(fields[0]), units >= 1, units <= UInt64(Self.maxCrovverUnitsPerRecord),
                let tenant = Self.text(fields[1]), let pool = Self.text(fields[2])
            else { return nil }
            return .crovverCommitted(key: CrovverPoolKey(tenant: tenant, pool: pool), units: Int(units))
        case UInt8(ascii: "B"):
            // A 7th field `sync` marks a synchronous first consume.
            guard fields.count == 6 || (fields.count == 7 && fields[6] == Array("sync".utf8)),
                let sequence = Self.number(fields[0]), let units = Self.number(fields[1]),
                units >= 1, units <= UInt64(Self.maxCrovverUnitsPerRecord),
                let tenant = Self.text(fields[2]), let pool = Self.text(fields[3]),
                let endpoint = Self.text(fields[4]), let requestID = Self.text(fields[5])
            else { return nil }
            return .crovverBatchOpened(
                CrovverBatch(
                    sequence: sequence, key: CrovverPoolKey(tenant: tenant, pool: pool), units: Int(units), endpoint: endpoint, requestID: requestID,
                    synchronous: fields.count == 7
                )
            )
        case UInt8(ascii: "E"):
            guard fields.count == 1, let sequence = Self.number(fields[0]) else { return nil }
            return .crovverBatchSettled(sequence: sequence)
        default:
            return nil
        }
    }

    /// Decimal without sign or leading zero (except `0` itself), at most 19 digits.
    private static func number(_ bytes: [UInt8]) -> UInt64? {
        guard (1...19).contains(bytes.count), bytes.count == 1 || bytes[0] != UInt8(ascii: "0") else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// A text field: `=`, then percent-encoded bytes; `nil` when malformed or not UTF-8.
    private static func text(_ bytes: [UInt8]) -> String? {
        guard bytes.first == UInt8(ascii: "=") else { return nil }
        var out: [UInt8] = []
        var index = 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = Self.hexValue(bytes[index + 1] | 0x20), let low = Self.hexValue(bytes[index + 2] | 0x20) else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                guard byte > 0x20 && byte < 0x7F else { return nil }
                out.append(byte)
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
