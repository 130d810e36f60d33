import SubgateCore
import Testing

/// SPEC §4 (durability): the usage journal's line format and its replay, without files.
@Suite struct JournalCodecTests {
    static let hashA = String(repeating: "a", count: 64)
    static let hashB = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    static let hashC = String(repeating: "0123456789abcdef", count: 4)

    static func encoded(_ records: [JournalRecord]) -> [UInt8] {
        var bytes: [UInt8] = []
        for record in records {
            #expect(JournalCodec.encode(record, into: &bytes), "encode refused a valid record: \(record)")
        }
        return bytes
    }

    /// A line with a correct CRC over whatever `body` is, so only the format checks can reject it.
    static func lineWithValidCRC(_ body: String) -> [UInt8] {
        let crc = String(CRC32.checksum(Array(body.utf8)), radix: 16)
        return Array("\(body) \(String(repeating: "0", count: 8 - crc.count))\(crc)\n".utf8)
    }

    // MARK: - Format

    @Test("Every record type survives encode and decode unchanged")
    func roundTrip() {
        let records: [JournalRecord] = [
            .committed(hash: Self.hashA, units: 1),
            .sent(hash: Self.hashB, units: 1000),
            .acknowledged(hash: Self.hashC, units: 999_999),
            .dropped(hash: Self.hashA, units: 1_000_000),
            .returned(hash: Self.hashB, units: 42),
        ]
        for record in records {
            let bytes = Self.encoded([record])
            #expect(bytes.last == UInt8(ascii: "\n"), "a record must end with a newline: \(record)")
            #expect(bytes.filter { $0 == UInt8(ascii: "\n") }.count == 1, "one record must be one line: \(record)")
            let decoded = JournalCodec.decode(bytes.dropLast())
            #expect(decoded == record, "decoding the encoded line of \(record) gave \(String(describing: decoded))")
        }
    }

    @Test("A record is the line '<letter> <hash> <units> <crc32 of the bytes before the last space>'")
    func lineLayout() {
        let text = String(decoding: Self.encoded([.committed(hash: Self.hashB, units: 3)]), as: UTF8.self)
        let body = "C \(Self.hashB) 3"
        let crc = String(CRC32.checksum(Array(body.utf8)), radix: 16)
        let expected = "\(body) \(String(repeating: "0", count: 8 - crc.count))\(crc)\n"
        #expect(text == expected, "the line format changed: got \(text.debugDescription), expected \(expected.debugDescription)")
        // The same line with its CRC from an independent implementation (Python's zlib.crc32).
        #expect(text == "C \(Self.hashB) 3 1cccb94c\n", "the CRC differs from zlib's: \(text.debugDescription)")
        let letters = [
            JournalRecord.sent(hash: Self.hashA, units: 1), .acknowledged(hash: Self.hashA, units: 1),
            .dropped(hash: Self.hashA, units: 1), .returned(hash: Self.hashA, units: 1),
        ].map { String(decoding: Self.encoded([$0]).prefix(1), as: UTF8.self) }
        #expect(letters == ["S", "A", "D", "R"], "type letters are wrong: \(letters)")
    }

    @Test("Units above one million are written as several records that add up")
    func largeUnitsAreSplit() {
        let bytes = Self.encoded([.committed(hash: Self.hashA, units: 2_500_001)])
        let replay = JournalCodec.replay(bytes)
        #expect(replay.records == 3, "2 500 001 units should take 3 lines, took \(replay.records)")
        #expect(replay.pending == [Self.hashA: 2_500_001], "split records must add up; pending is \(replay.pending)")
    }

    @Test("Records the journal cannot hold encode to nothing")
    func unencodableRecords() {
        var bytes: [UInt8] = []
        #expect(!JournalCodec.encode(.committed(hash: Self.hashA.uppercased(), units: 1), into: &bytes), "an uppercase hash was accepted")
        #expect(!JournalCodec.encode(.committed(hash: "abc", units: 1), into: &bytes), "a short hash was accepted")
        #expect(!JournalCodec.encode(.committed(hash: Self.hashA, units: -1), into: &bytes), "negative units were accepted")
        #expect(JournalCodec.encode(.committed(hash: Self.hashA, units: 0), into: &bytes), "zero units should be a harmless no-op")
        #expect(bytes.isEmpty, "refused or empty records wrote \(bytes.count) bytes")
    }

    // MARK: - Replay sums

    @Test("Replay sums committed, acknowledged, dropped and returned into exact pending and ambiguous units")
    func replaySums() {
        let bytes = Self.encoded([
            .committed(hash: Self.hashA, units: 10),
            .committed(hash: Self.hashB, units: 7),
            .committed(hash: Self.hashC, units: 3),
            .sent(hash: Self.hashA, units: 6),
            .acknowledged(hash: Self.hashA, units: 6),  // A: 4 pending, nothing in flight
            .sent(hash: Self.hashB, units: 7),
            .returned(hash: Self.hashB, units: 2),  // B: 7 pending, 5 in flight with no answer
            .sent(hash: Self.hashC, units: 3),
            .dropped(hash: Self.hashC, units: 3),  // C: gone
            .committed(hash: Self.hashA, units: 1),  // A: 5 pending
        ])
        let replay = JournalCodec.replay(bytes)
        #expect(replay.pending == [Self.hashA: 5, Self.hashB: 7], "pending is \(replay.pending)")
        #expect(replay.ambiguous == [Self.hashB: 5], "ambiguous is \(replay.ambiguous)")
        #expect(replay.records == 10, "read \(replay.records) records of 10")
        #expect(replay.badRecords == 0 && !replay.tornTail, "a clean journal reported damage: \(replay)")
        #expect(replay.validBytes == bytes.count, "validBytes \(replay.validBytes) should be the whole \(bytes.count) bytes")
    }

    @Test("An answer for units the journal never saw does not cancel units committed later")
    func sumsClampAtZeroOnTheWay() {
        // What a journal looks like after a compaction dropped acknowledged units' history.
        let replay = JournalCodec.replay(Self.encoded([
            .acknowledged(hash: Self.hashA, units: 5),
            .returned(hash: Self.hashA, units: 5),
            .committed(hash: Self.hashA, units: 3),
            .sent(hash: Self.hashA, units: 2),
        ]))
        #expect(replay.pending == [Self.hashA: 3], "pending is \(replay.pending)")
        #expect(replay.ambiguous == [Self.hashA: 2], "ambiguous is \(replay.ambiguous)")
    }

    @Test("An empty journal replays to nothing")
    func emptyJournal() {
        #expect(JournalCodec.replay([UInt8]()) == JournalReplay(), "an empty file must replay to an empty result")
    }

    // MARK: - Damage

    @Test("A last line cut at any byte is a torn tail; the records before it survive")
    func tornTailAtEveryOffset() {
        let head = Self.encoded([.committed(hash: Self.hashA, units: 4), .sent(hash: Self.hashA, units: 4)])
        let last = Self.encoded([.acknowledged(hash: Self.hashA, units: 4)])
        for cut in 1..<last.count {
            let replay = JournalCodec.replay(head + last[..<cut])
            #expect(replay.tornTail, "cutting the last line after \(cut) bytes was not seen as a torn tail")
            #expect(replay.records == 2, "cut at \(cut): \(replay.records) records read, expected the 2 before it")
            #expect(replay.badRecords == 0, "cut at \(cut): a torn tail must not count as a bad record")
            #expect(replay.validBytes == head.count, "cut at \(cut): validBytes \(replay.validBytes), expected \(head.count)")
            #expect(replay.pending == [Self.hashA: 4] && replay.ambiguous == [Self.hashA: 4], "cut at \(cut): sums wrong: \(replay)")
        }
        let whole = JournalCodec.replay(head + last)
        #expect(!whole.tornTail && whole.pending.isEmpty, "the uncut journal should be clean and settled: \(whole)")
    }

    @Test("A complete last line with a bad CRC is a torn tail, not a bad record")
    func badLastLineIsTornTail() {
        let head = Self.encoded([.committed(hash: Self.hashA, units: 4)])
        var last = Self.encoded([.committed(hash: Self.hashB, units: 9)])
        last[last.count - 2] = last[last.count - 2] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        let replay = JournalCodec.replay(head + last)
        #expect(replay.tornTail, "a bad final line must be a torn tail")
        #expect(replay.badRecords == 0, "the final line must not also count as a bad record")
        #expect(replay.validBytes == head.count, "validBytes \(replay.validBytes), expected \(head.count)")
        #expect(replay.pending == [Self.hashA: 4], "pending is \(replay.pending)")
    }

    @Test("A bad CRC in the middle is skipped and counted, and replay goes on")
    func badCRCInTheMiddle() {
        let first = Self.encoded([.committed(hash: Self.hashA, units: 2)])
        var middle = Self.encoded([.committed(hash: Self.hashB, units: 50)])
        middle[68] = UInt8(ascii: "7")  // "50" → "57": the CRC no longer matches
        let last = Self.encoded([.committed(hash: Self.hashC, units: 3)])
        let replay = JournalCodec.replay(first + middle + last)
        #expect(replay.badRecords == 1, "the corrupted middle record should be counted once, counted \(replay.badRecords)")
        #expect(replay.records == 2, "the records around it must be read, read \(replay.records)")
        #expect(!replay.tornTail, "damage in the middle is not a torn tail")
        #expect(replay.pending == [Self.hashA: 2, Self.hashC: 3], "the bad record must not count: \(replay.pending)")
        #expect(replay.validBytes == first.count + middle.count + last.count, "the file must not be cut before its last good record")
    }

    @Test("Bad lines between the last good record and a torn tail are counted and cut")
    func badLinesBeforeTornTail() {
        let good = Self.encoded([.committed(hash: Self.hashA, units: 2)])
        let garbage = Array("garbage\n".utf8)
        let torn = Array("C aaaa".utf8)
        let replay = JournalCodec.replay(good + garbage + garbage + torn)
        #expect(replay.badRecords == 2 && replay.tornTail, "expected 2 bad records and a torn tail: \(replay)")
        #expect(replay.validBytes == good.count, "validBytes \(replay.validBytes), expected \(good.count)")
    }

    @Test("Garbage, invalid hashes and units out of range are rejected even with a matching CRC")
    func malformedLinesAreRejected() {
        let a = Self.hashA
        let bodies = [
            "",
            "C",
            "X \(a) 1",  // unknown type letter
            "c \(a) 1",  // lowercase letter
            "C \(a.uppercased()) 1",  // uppercase hash
            "C \(a.dropLast()) 1",  // 63 hex digits
            "C \(a)a 1",  // 65 hex digits
            "C \(a.dropLast())g 1",  // not hex
            "C \(a) 0",  // zero units
            "C \(a) 1000001",  // over the limit
            "C \(a) 01",  // leading zero
            "C \(a) -1",  // sign
            "C \(a) 12345678",  // too many digits
            "C \(a)  1",  // double space
            "C\t\(a) 1",  // tab
            "C \(a) 1 ",  // trailing space before the CRC
        ]
        let good = Self.encoded([.committed(hash: Self.hashB, units: 1)])
        for body in bodies {
            let replay = JournalCodec.replay(Self.lineWithValidCRC(body) + good)
            #expect(replay.badRecords == 1, "\(body.debugDescription) was not rejected")
            #expect(replay.pending == [Self.hashB: 1], "\(body.debugDescription) changed the sums: \(replay.pending)")
        }
        // The reference line itself passes, so the rejections above are the format checks' doing.
        #expect(JournalCodec.replay(Self.lineWithValidCRC("C \(a) 1000000")).pending == [a: 1_000_000], "a valid line was rejected")
        for units in 1...20 {
            let line = Self.lineWithValidCRC("C \(a) \(units)").dropLast()
            let crc = String(decoding: line.suffix(8), as: UTF8.self)
            guard crc.uppercased() != crc else { continue }
            #expect(JournalCodec.decode(Array(line.dropLast(8)) + Array(crc.uppercased().utf8)) == nil, "an uppercase CRC was accepted")
            break
        }
        #expect(JournalCodec.decode([UInt8](repeating: 0, count: 80)) == nil, "a line of NUL bytes was accepted")
    }

    // MARK: - CRC-32

    @Test("CRC32 gives the IEEE 802.3 check value for \"123456789\"")
    func crcKnownVector() {
        let crc = CRC32.checksum(Array("123456789".utf8))
        #expect(crc == 0xCBF4_3926, "CRC32(\"123456789\") is 0x\(String(crc, radix: 16)), expected 0xcbf43926")
        #expect(CRC32.checksum([UInt8]()) == 0, "CRC32 of nothing must be 0")
        let fox = CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8))
        #expect(fox == 0x414F_A339, "CRC32 of the fox sentence is 0x\(String(fox, radix: 16)), expected 0x414fa339")
    }
}
