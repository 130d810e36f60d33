import NIOCore

/// Finds where each HTTP/1.1 answer on a connection ends, and its status and keep-alive:
/// all the generator needs from an answer. It reads the status line and three headers
/// (`content-length`, `transfer-encoding`, `connection`), skips bodies by length or by
/// chunks, and never copies a body or builds a header list — the cheap path that keeps the
/// generator out of the measurement. (`subgate-bench load --decoder nio` uses NIO's
/// `HTTPResponseDecoder` instead, as a cross-check.)
///
/// Requests are never HEAD and never pipelined, so an answer's framing depends on it alone
/// (RFC 9112 §6.3): 1xx (but 101) is skipped as informational; 204 and 304 have no body;
/// chunked beats content-length; neither means the body runs until the connection closes.
public struct ResponseFramer: Sendable {
    /// An answer that ended.
    public struct Answer: Sendable, Equatable {
        public var status: Int
        public var keepAlive: Bool
        public var bodyBytes: Int
    }

    /// The bytes are not an HTTP/1.x answer the framer can follow.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { "malformed answer: \(self.reason)" }
    }

    private enum State: Sendable, Equatable {
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
    }

    /// Heads larger than this are refused (the bench upstream's are under 200 bytes).
    public static let maxHeadBytes = 64 * 1024

    private var state = State.head
    private var status = 0
    private var keepAlive = true
    private var bodyBytes = 0
    /// Bytes of an unfinished head or chunk-size line, kept until the rest arrives.
    private var pending: ByteBuffer?

    public init() {}

    /// Whether an answer is partly read (a close now loses it, unless it runs until close).
    public var inAnswer: Bool { self.state != .head || (self.pending?.readableBytes ?? 0) > 0 }

    /// Feeds the bytes of one read; `answer` is called for each answer that ends in them.
    public mutating func feed(_ bytes: ByteBuffer, answer: (Answer) -> Void) throws(Malformed) {
        var buffer: ByteBuffer
        if var pending = self.pending {
            var incoming = bytes
            pending.writeBuffer(&incoming)
            buffer = pending
            self.pending = nil
        } else {
            buffer = bytes
        }
        while buffer.readableBytes > 0 {
            switch self.state {
            case .head:
                guard let end = Self.find(crlfcrlf: buffer) else {
                    guard buffer.readableBytes <= Self.maxHeadBytes else { throw Malformed(reason: "head longer than \(Self.maxHeadBytes) bytes") }
                    self.pending = buffer
                    return
                }
                let length = end - buffer.readerIndex + 4
                try self.parseHead(buffer.readableBytesView.prefix(length))
                buffer.moveReaderIndex(forwardBy: length)
                if self.status >= 100 && self.status < 200 && self.status != 101 {
                    // Informational: the real answer follows.
                    self.state = .head
                    continue
                }
                if case .body(0) = self.state { self.finish(answer) }
            case .body(let remaining):
                let take = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                self.bodyBytes += take
                if take == remaining {
                    self.finish(answer)
                } else {
                    self.state = .body(remaining: remaining - take)
                }
            case .chunkSize, .chunkDataEnd, .trailers:
                guard let lineEnd = Self.find(crlf: buffer) else {
                    guard buffer.readableBytes <= Self.maxHeadBytes else { throw Malformed(reason: "chunk line longer than \(Self.maxHeadBytes) bytes") }
                    self.pending = buffer
                    return
                }
                let line = buffer.readableBytesView.prefix(lineEnd - buffer.readerIndex)
                buffer.moveReaderIndex(forwardBy: line.count + 2)
                switch self.state {
                case .chunkSize:
                    let size = try Self.chunkSize(line)
                    self.state = size == 0 ? .trailers : .chunkData(remaining: size)
                case .chunkDataEnd:
                    guard line.isEmpty else { throw Malformed(reason: "chunk data not followed by CRLF") }
                    self.state = .chunkSize
                default:
                    if line.isEmpty { self.finish(answer) }
                }
            case .chunkData(let remaining):
                let take = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                self.bodyBytes += take
                self.state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .untilClose:
                self.bodyBytes += buffer.readableBytes
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            }
        }
    }

    /// The connection closed: an answer whose body runs until the close ends here.
    public mutating func closed(answer: (Answer) -> Void) {
        if self.state == .untilClose { self.finish(answer) }
        self.pending = nil
        self.state = .head
    }

    private mutating func finish(_ answer: (Answer) -> Void) {
        answer(Answer(status: self.status, keepAlive: self.keepAlive, bodyBytes: self.bodyBytes))
        self.state = .head
        self.bodyBytes = 0
    }

    // MARK: - Head

    private mutating func parseHead(_ head: ByteBufferView) throws(Malformed) {
        // "HTTP/1.x SSS …"
        var i = head.startIndex
        guard head.count >= 12, Self.matches(head, at: i, "http/1.") else { throw Malformed(reason: "no HTTP/1.x status line") }
        let minor = head[i + 7]
        i += 9
        var status = 0
        for j in i..<(i + 3) {
            let digit = head[j] &- UInt8(ascii: "0")
            guard digit < 10 else { throw Malformed(reason: "status is not three digits") }
            status = status * 10 + Int(digit)
        }
        self.status = status
        self.keepAlive = minor == UInt8(ascii: "1")
        var contentLength: Int?
        var chunked = false
        // Header lines.
        guard var lineStart = Self.nextLine(head, from: i) else { throw Malformed(reason: "unterminated status line") }
        while lineStart < head.endIndex - 2 {
            guard let lineEnd = Self.lineEnd(head, from: lineStart) else { break }
            if let colon = head[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: ":")) {
                let nameLength = colon - lineStart
                var valueStart = colon + 1
                while valueStart < lineEnd && (head[valueStart] == UInt8(ascii: " ") || head[valueStart] == UInt8(ascii: "\t")) { valueStart += 1 }
                let value = head[valueStart..<lineEnd]
                if nameLength == 14 && Self.matches(head, at: lineStart, "content-length") {
                    var n = 0
                    var digits = 0
                    for byte in value where byte != UInt8(ascii: " ") {
                        let digit = byte &- UInt8(ascii: "0")
                        guard digit < 10, n < Int.max / 10 - 10 else { throw Malformed(reason: "bad content-length") }
                        n = n * 10 + Int(digit)
                        digits += 1
                    }
                    guard digits > 0 else { throw Malformed(reason: "empty content-length") }
                    contentLength = n
                } else if nameLength == 17 && Self.matches(head, at: lineStart, "transfer-encoding") {
                    chunked = Self.contains(value, "chunked")
                } else if nameLength == 10 && Self.matches(head, at: lineStart, "connection") {
                    if Self.contains(value, "close") { self.keepAlive = false }
                    if Self.contains(value, "keep-alive") { self.keepAlive = true }
                }
            }
            lineStart = lineEnd + 2
        }
        self.bodyBytes = 0
        if status == 204 || status == 304 || (status >= 100 && status < 200) {
            self.state = .body(remaining: 0)
        } else if chunked {
            self.state = .chunkSize
        } else if let contentLength {
            self.state = .body(remaining: contentLength)
        } else {
            self.state = .untilClose
            self.keepAlive = false
        }
    }

    // MARK: - Bytes

    private static func chunkSize(_ line: ByteBufferView) throws(Malformed) -> Int {
        var size = 0
        var digits = 0
        for byte in line {
            let value: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                guard digits > 0 else { throw Malformed(reason: "chunk size missing") }
                return size
            default: throw Malformed(reason: "bad chunk size")
            }
            guard size < Int.max >> 5 else { throw Malformed(reason: "chunk size too large") }
            size = size << 4 | Int(value)
            digits += 1
        }
        guard digits > 0 else { throw Malformed(reason: "chunk size missing") }
        return size
    }

    /// Case-insensitive match of lowercase ASCII `word` at `index`.
    private static func matches(_ bytes: ByteBufferView, at index: Int, _ word: StaticString) -> Bool {
        guard index + word.utf8CodeUnitCount <= bytes.endIndex else { return false }
        return word.withUTF8Buffer { w in
            for k in 0..<w.count where bytes[index + k] | 0x20 != w[k] | 0x20 { return false }
            return true
        }
    }

    private static func contains(_ value: ByteBufferView, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard value.count >= n else { return false }
        for start in value.startIndex...(value.endIndex - n) where Self.matches(value, at: start, word) { return true }
        return false
    }

    private static func lineEnd(_ bytes: ByteBufferView, from index: Int) -> Int? {
        var i = index
        while i + 1 < bytes.endIndex {
            if bytes[i] == UInt8(ascii: "\r") && bytes[i + 1] == UInt8(ascii: "\n") { return i }
            i += 1
        }
        return nil
    }

    private static func nextLine(_ bytes: ByteBufferView, from index: Int) -> Int? {
        self.lineEnd(bytes, from: index).map { $0 + 2 }
    }

    /// Reader-relative index (absolute in the buffer) of the first CRLF.
    private static func find(crlf buffer: ByteBuffer) -> Int? {
        self.lineEnd(buffer.readableBytesView, from: buffer.readerIndex)
    }

    /// Absolute index of the first CRLFCRLF.
    private static func find(crlfcrlf buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { raw -> Int? in
            let count = raw.count
            guard count >= 4 else { return nil }
            var i = 0
            while i + 3 < count {
                // Jump by the last byte of the pattern: most bytes are not '\n'.
                let b = raw[i + 3]
                if b != UInt8(ascii: "\n") {
                    i += b == UInt8(ascii: "\r") ? 1 : 4
                    continue
                }
                if raw[i] == UInt8(ascii: "\r") && raw[i + 1] == UInt8(ascii: "\n") && raw[i + 2] == UInt8(ascii: "\r") {
                    return buffer.readerIndex + i
                }
                i += 1
            }
            return nil
        }
    }
}
