import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SubgateCore
import Testing

@testable import SubgateProxy

/// The client pipeline of `ProxyServer` (timeouts → encoder → decoder → pipelining →
/// `ProxyHandler`) on an `EmbeddedChannel`: raw bytes in, the bytes Subgate writes back out.
/// No sockets, and time moves only when a test advances the embedded loop.
///
/// Only heads that are refused before any upstream is needed are driven here; forwarding is
/// covered end to end in `HostileInputTests` and `UpstreamFailureTests`.
struct EmbeddedProxy {
    let loop: EmbeddedEventLoop
    let channel: EmbeddedChannel

    init(_ configure: (inout Config) -> Void = { _ in }) throws {
        var config = Config()
        config.accessLog = false
        configure(&config)
        let loop = EmbeddedEventLoop()
        let shared = ProxyContext(config: config, metrics: ProxyMetrics(), logger: Logger(label: "test"))
        let pool = UpstreamConnectionPool(eventLoop: loop, config: config)
        let channel = EmbeddedChannel(loop: loop)
        // The very pipeline `ProxyServer.start` builds for each client connection.
        try ProxyServer.configureClientPipeline(channel.pipeline.syncOperations, shared: shared, pool: pool)
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.10", port: 40000)).wait()
        self.loop = loop
        self.channel = channel
    }

    /// Feeds `text` to the decoder as if it had arrived on the socket.
    func receive(_ text: String) throws {
        try self.channel.writeInbound(ByteBuffer(string: text))
    }

    /// Everything written to the socket since the last call.
    func written() throws -> String {
        var out = ""
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            out += String(buffer: buffer)
        }
        return out
    }

    var isClosed: Bool { !self.channel.isActive }

    /// Closes the channel and shuts the loop down. The embedded loop runs nothing by itself:
    /// without the shutdown, the close's queued steps and the linger timer it schedules stay
    /// in the loop's queue holding the channel, and the whole pipeline is never freed (LeakSanitizer
    /// reported one leaked pipeline per test).
    func finish() {
        _ = try? self.channel.finish()
        try? self.loop.syncShutdownGracefully()
    }
}

/// SPEC §3 step 1 on the handler tier: the exact bytes of Subgate's refusals, and when it closes.
@Suite struct ProxyHandlerEmbeddedTests {
    static let host = "Host: api.example.test\r\n"

    /// One refusal from `bytes`: its single answer, and whether the channel closed.
    static func refusal(
        _ bytes: String,
        _ configure: (inout Config) -> Void = { _ in }
    ) throws -> (answers: [RawResponse], closed: Bool, raw: String) {
        let proxy = try EmbeddedProxy(configure)
        defer { proxy.finish() }
        try proxy.receive(bytes)
        let raw = try proxy.written()
        return (RawResponse.parseAll(raw), proxy.isClosed, raw)
    }

    @Test("SPEC §3 step 1: duplicate Host is refused with 400, the JSON body, content-type and connection: close")
    func duplicateHostBytes() throws {
        let result = try Self.refusal("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        let message = "The request has more than one Host header."
        let body = "{\"success\":false,\"error\":{\"code\":\"BAD_REQUEST\",\"message\":\"\(message)\"}}"
        #expect(result.raw.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "wrong status line: \(result.raw)")
        #expect(result.raw.hasSuffix("\r\n\r\n" + body), "the body must be exactly the SPEC JSON, got: \(result.raw)")
        let answer = try #require(result.answers.first)
        #expect(answer.header("content-type") == "application/json")
        #expect(answer.header("content-length") == String(body.utf8.count), "content-length must match the JSON body")
        #expect(answer.header("connection") == "close")
        #expect(result.closed, "a framing refusal must close the connection")
    }

    /// A head and the answer Subgate must give it.
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let raw: String
        let status: Int
        let code: String
        var testDescription: String { "\(self.name) → \(self.status) \(self.code)" }
    }

    static let cases: [Case] = [
        Case(name: "missing Host", raw: "GET / HTTP/1.1\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "invalid Host", raw: "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "HTTP/1.0 with Transfer-Encoding", raw: "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "Transfer-Encoding: ,chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "Transfer-Encoding: gzip", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "absolute-form naming another host", raw: "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "'*' target without OPTIONS", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "CL+TE (NIO's decoder)", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "duplicate Content-Length (NIO's decoder)", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", status: 400, code: "BAD_REQUEST"),
        Case(name: "obs-fold (NIO's decoder)", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "bare LF (NIO's decoder)", raw: "GET / HTTP/1.1\nHost: a\n\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "HTTP/2.0 version", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 400, code: "BAD_REQUEST"),
        Case(name: "Upgrade: websocket", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", status: 501, code: "UPGRADE_NOT_SUPPORTED"),
        Case(name: "CONNECT", raw: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", status: 501, code: "UPGRADE_NOT_SUPPORTED"),
        Case(name: "Expect other than 100-continue", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\nx", status: 417, code: "EXPECTATION_FAILED"),
        Case(name: "Content-Length over max_body_bytes (10m)", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10485761\r\n\r\n", status: 413, code: "PAYLOAD_TOO_LARGE"),
    ]

    @Test("SPEC §3 step 1: each refused head gets its status, the SPEC JSON error and a closed connection", arguments: cases)
    func refusedHeads(_ c: Case) throws {
        let result = try Self.refusal(c.raw)
        #expect(result.answers.count == 1, "\(c.name): expected one answer, got \(result.raw)")
        #expect(result.answers.first?.isRejection(status: c.status, code: c.code) == true, "\(c.name): got \(result.raw)")
        #expect(result.answers.first?.header("connection") == "close", "\(c.name): the answer must announce the close, got \(result.raw)")
        #expect(result.closed, "\(c.name): the connection must be closed")
    }

    @Test("SPEC §2 max_header_bytes: a head over the limit is answered 431 HEADERS_TOO_LARGE, not NIO's 400")
    func oversizedHeadIs431() throws {
        let result = try Self.refusal("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "x", count: 600))\r\n\r\n") {
            $0.maxHeaderBytes = 512
        }
        #expect(result.answers.count == 1 && result.answers[0].isRejection(status: 431, code: "HEADERS_TOO_LARGE"), "got \(result.raw)")
        #expect(result.closed, "the connection must be closed after a 431")

        // The decoder's field-count limit gives the same answer.
        let fields = (0..<120).map { "X-\($0): y\r\n" }.joined()
        let many = try Self.refusal("GET / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n")
        #expect(many.answers.first?.isRejection(status: 431, code: "HEADERS_TOO_LARGE") == true, "120 fields: got \(many.raw)")
    }

    @Test("SPEC §3 step 1: an HTTP/1.0 client is refused in HTTP/1.0")
    func refusalSpeaksTheClientsVersion() throws {
        let result = try Self.refusal("GET * HTTP/1.0\r\n\r\n")
        #expect(result.raw.hasPrefix("HTTP/1.0 400"), "an HTTP/1.0 client must get an HTTP/1.0 status line, got \(result.raw)")
    }

    @Test("SPEC §3 step 1: a refused head's pipelined follower is never read as a request")
    func nothingAfterARefusalIsServed() throws {
        let result = try Self.refusal(
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        #expect(result.answers.count == 1, "only the refusal may be written, got \(result.raw)")
        #expect(result.closed)
    }

    // MARK: - Timers on the embedded loop

    @Test("SPEC §2 header_read_timeout: half a head gets 408 REQUEST_TIMEOUT and a close when the timeout passes, not before")
    func headerReadTimeoutOnTheEmbeddedClock() throws {
        let proxy = try EmbeddedProxy { $0.headerReadTimeout = .seconds(10) }
        defer { proxy.finish() }
        try proxy.receive("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        proxy.loop.advanceTime(by: .seconds(9))
        try proxy.receive("still coming\r\nX-More: ")
        #expect(try proxy.written().isEmpty, "nothing may be written before header_read_timeout")
        #expect(!proxy.isClosed, "closed before header_read_timeout")
        proxy.loop.advanceTime(by: .seconds(1))
        let raw = try proxy.written()
        let answers = RawResponse.parseAll(raw)
        #expect(answers.count == 1 && answers[0].isRejection(status: 408, code: "REQUEST_TIMEOUT"), "expected a 408 REQUEST_TIMEOUT, got \(raw)")
        proxy.loop.run()
        #expect(proxy.isClosed, "the connection must close after the 408")
    }

    @Test("SPEC §2 header_read_timeout: a connection that never sends a byte is closed too")
    func silentConnectionIsClosed() throws {
        let proxy = try EmbeddedProxy { $0.headerReadTimeout = .seconds(2) }
        defer { proxy.finish() }
        proxy.loop.advanceTime(by: .seconds(2))
        proxy.loop.run()
        #expect(proxy.isClosed, "a silent connection must not be held past header_read_timeout")
    }
}
