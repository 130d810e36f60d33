import NIOCore
import Testing

@testable import SubgateBenchCore

/// The generator's answer framing (RFC 9112 §6.3), which decides when an answer has ended and
/// so what is counted; it must agree with a real HTTP/1.1 parser on every framing the
/// proxies under test may produce.
@Suite("Response framer")
struct ResponseFramerTests {
    func answers(_ chunks: [String], close: Bool = false) throws -> [ResponseFramer.Answer] {
        var framer = ResponseFramer()
        var out: [ResponseFramer.Answer] = []
        for chunk in chunks {
            try framer.feed(ByteBuffer(string: chunk)) { out.append($0) }
        }
        if close { framer.closed { out.append($0) } }
        return out
    }

    /// Every way of cutting `text` into two reads, and one byte at a time, gives `expected`.
    func expectAllSplits(_ text: String, _ expected: [ResponseFramer.Answer], close: Bool = false) throws {
        let bytes = Array(text.utf8)
        for cut in 0...bytes.count {
            let parts = [String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self)]
            #expect(try self.answers(parts, close: close) == expected, "cut at \(cut)")
        }
        #expect(try self.answers(bytes.map { String(decoding: [$0], as: UTF8.self) }, close: close) == expected)
    }

    @Test("content-length bodies, back to back, in any cut")
    func contentLength() throws {
        let one = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello"
        let two = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        try self.expectAllSplits(one + two, [
            .init(status: 200, keepAlive: true, bodyBytes: 5),
            .init(status: 429, keepAlive: false, bodyBytes: 2),
        ])
    }

    @Test("chunked, with extensions and trailers; chunked wins over content-length")
    func chunked() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
            + "5;name=x\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n"
            + "HTTP/1.1 204 No Content\r\n\r\n"
        try self.expectAllSplits(text, [
            .init(status: 200, keepAlive: true, bodyBytes: 15),
            .init(status: 204, keepAlive: true, bodyBytes: 0),
        ])
    }

    @Test("1xx answers are skipped; 204 and 304 have no body")
    func bodiless() throws {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"
        try self.expectAllSplits(text, [.init(status: 304, keepAlive: true, bodyBytes: 0)])
    }

    @Test("no length: the body runs until the close; HTTP/1.0 is not kept alive")
    func untilClose() throws {
        try self.expectAllSplits("HTTP/1.1 200 OK\r\n\r\nabc", [.init(status: 200, keepAlive: false, bodyBytes: 3)], close: true)
        #expect(try self.answers(["HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"]) == [.init(status: 200, keepAlive: false, bodyBytes: 0)])
        #expect(try self.answers(["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 0\r\n\r\n"]) == [.init(status: 200, keepAlive: true, bodyBytes: 0)])
    }

    @Test("a partial answer is not counted")
    func partial() throws {
        var framer = ResponseFramer()
        var count = 0
        try framer.feed(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")) { _ in count += 1 }
        #expect(count == 0)
        #expect(framer.inAnswer)
        framer.closed { _ in count += 1 }
        #expect(count == 0)
    }

    @Test("malformed answers are refused")
    func malformed() {
        #expect(throws: ResponseFramer.Malformed.self) { try self.answers(["SSH-2.0-OpenSSH\r\n\r\n"]) }
        #expect(throws: ResponseFramer.Malformed.self) { try self.answers(["HTTP/1.1 2x0 OK\r\n\r\n"]) }
        #expect(throws: ResponseFramer.Malformed.self) { try self.answers(["HTTP/1.1 200 OK\r\ncontent-length: 1a\r\n\r\n"]) }
        #expect(throws: ResponseFramer.Malformed.self) { try self.answers(["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"]) }
        #expect(throws: ResponseFramer.Malformed.self) {
            try self.answers(["HTTP/1.1 200 OK\r\nx: " + String(repeating: "a", count: ResponseFramer.maxHeadBytes + 1)])
        }
    }
}
