import Foundation
import NIOCore
import NIOPosix
import Testing

/// SPEC §3 step 5 (the 502 and 504 rows) and step 6 (streaming): what the client sees when
/// the upstream fails, and what the upstream sees when the client goes away.
@Suite(.serialized) struct UpstreamFailureTests {
    static let host = "Host: api.example.test\r\n"

    /// A loopback port with nothing listening: bound by the OS, then released.
    static func unusedPort() async throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        try await group.shutdownGracefully()
        return port
    }

    /// Sends one keep-alive request and waits for one whole final answer (or `timeout`).
    static func ask(
        _ harness: ProxyHarness,
        _ request: String,
        timeout: Duration = .seconds(3)
    ) async throws -> (answer: RawResponse?, elapsed: Duration, closed: Bool) {
        let connection = try await RawConnection.open(port: harness.port, group: harness.group)
        let start = ContinuousClock.now
        try await connection.send(request)
        await connection.wait(timeout: timeout) { received in
            received.closed || RawResponse.finals(received.text).first?.complete == true
        }
        let elapsed = ContinuousClock.now - start
        let received = connection.snapshot
        await connection.close()
        return (RawResponse.finals(received.text).first, elapsed, received.closed)
    }

    static func expectRejection(
        _ answer: RawResponse?,
        status: Int,
        code: String,
        _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let answer else {
            Issue.record("\(what): no answer at all, expected \(status) \(code)", sourceLocation: sourceLocation)
            return
        }
        #expect(
            answer.isRejection(status: status, code: code) && answer.complete,
            "\(what): expected a whole \(status) with a JSON body carrying error.code \(code), got \(answer)",
            sourceLocation: sourceLocation
        )
    }

    // MARK: - 502 UPSTREAM_UNAVAILABLE

    @Test("SPEC §3 step 5: an upstream that refuses the connection answers 502 UPSTREAM_UNAVAILABLE")
    func refusedAnswers502() async throws {
        let port = try await Self.unusedPort()
        try await ProxyHarness.with(upstreamPort: port) { harness in
            let result = try await Self.ask(harness, "GET /hello HTTP/1.1\r\n\(Self.host)\r\n")
            Self.expectRejection(result.answer, status: 502, code: "UPSTREAM_UNAVAILABLE", "nothing listening on the upstream port")
            #expect(result.elapsed < .seconds(2), "a refused connection must answer at once, took \(result.elapsed)")
        }
    }

    @Test("SPEC §3 step 5: an upstream that closes before its answer head answers 502 UPSTREAM_UNAVAILABLE")
    func closedBeforeHeadAnswers502() async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.ask(harness, "GET /head-only-close HTTP/1.1\r\n\(Self.host)\r\n")
            Self.expectRejection(result.answer, status: 502, code: "UPSTREAM_UNAVAILABLE", "/head-only-close")
            // The connection to the client is still good: Subgate's own answer was whole.
            let again = try await Self.ask(harness, "GET /hello HTTP/1.1\r\n\(Self.host)\r\n")
            #expect(again.answer?.status == 200, "the proxy must keep serving after an upstream failure, got \(String(describing: again.answer))")
        }
    }

    /// Upstream answers whose body boundary Subgate cannot be sure of.
    static let ambiguousFraming = ["/bad-framing", "/te-gzip", "/two-cl"]

    @Test("SPEC §3 step 6: an upstream answer with ambiguous framing is not relayed; it answers 502", arguments: ambiguousFraming)
    func ambiguousUpstreamFramingAnswers502(_ path: String) async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.ask(harness, "GET \(path) HTTP/1.1\r\n\(Self.host)\r\n")
            Self.expectRejection(result.answer, status: 502, code: "UPSTREAM_UNAVAILABLE", path)
            #expect(result.answer?.body.contains("hello") != true, "\(path): the upstream's ambiguous body leaked to the client")
        }
    }

    // MARK: - 504 UPSTREAM_TIMEOUT

    @Test("SPEC §3 step 5: no upstream answer head within upstream_timeout answers 504 UPSTREAM_TIMEOUT")
    func slowUpstreamAnswers504() async throws {
        try await ProxyHarness.with({ $0.upstreamTimeout = .milliseconds(500) }) { harness in
            // The upstream would answer after 10 s: a 504 well before that came from the timeout,
            // with room for a loaded machine's scheduling delays.
            let result = try await Self.ask(harness, "GET /slow?ms=10000 HTTP/1.1\r\n\(Self.host)\r\n")
            Self.expectRejection(result.answer, status: 504, code: "UPSTREAM_TIMEOUT", "/slow?ms=10000 with upstream_timeout = 500ms")
            #expect(result.elapsed >= .milliseconds(450), "504 after \(result.elapsed), before upstream_timeout (500ms)")
            #expect(result.elapsed < .seconds(5), "504 only after \(result.elapsed), long after upstream_timeout (500ms)")
            // The upstream connection carrying the abandoned request is closed, never reused.
            let closed = await HostileInputTests.waitFor { harness.upstream.wire.connectionsClosed >= 1 }
            #expect(closed, "the upstream connection of a timed-out request must be closed")

            // A request within the timeout is served.
            let quick = try await Self.ask(harness, "GET /slow?ms=50 HTTP/1.1\r\n\(Self.host)\r\n")
            #expect(quick.answer?.status == 200, "an answer within upstream_timeout must be relayed, got \(String(describing: quick.answer))")
        }
    }

    // MARK: - Aborts mid-stream

    @Test("SPEC §3 step 6: an upstream reset mid-answer aborts the client connection, never a complete-looking answer")
    func upstreamResetMidAnswerAbortsClient() async throws {
        try await ProxyHarness.with { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try await connection.send("GET /reset-mid HTTP/1.1\r\n\(Self.host)\r\n")
            let closed = await connection.waitForClose()
            #expect(closed, "the client connection must be closed when the upstream's answer breaks off")
            let answers = RawResponse.parseAll(connection.text)
            #expect(answers.count == 1, "expected the one broken answer, got \(answers)")
            if let answer = answers.first {
                #expect(answer.status == 200, "the upstream's head had already gone out, got \(answer)")
                #expect(answer.header("content-length") == "1000", "the relayed head must keep the upstream's length, got \(answer)")
                #expect(!answer.complete && answer.body.utf8.count < 1000, "the client got \(answer.body.utf8.count) of 1000 bytes and a complete-looking answer")
            }
            await connection.close()
        }
    }

    @Test("SPEC §3 step 6: a client that disconnects mid-upload aborts the upstream request")
    func clientDisconnectMidUploadAbortsUpstream() async throws {
        try await ProxyHarness.with { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try await connection.send("POST /sha HTTP/1.1\r\n\(Self.host)Content-Length: 100000\r\n\r\n" + String(repeating: "u", count: 1000))
            let streamed = await HostileInputTests.waitFor { harness.upstream.wire.bodyBytes == 1000 }
            #expect(streamed, "the first 1000 bytes should have reached the upstream, it has \(harness.upstream.wire.bodyBytes)")
            await connection.close()
            let aborted = await HostileInputTests.waitFor(timeout: .seconds(2)) { harness.upstream.wire.abortedMidRequest == 1 }
            #expect(aborted, "the upstream must see its request aborted (connection closed mid-body) when the client leaves; wire: \(harness.upstream.wire)")
        }
    }

    @Test("SPEC §3 step 6: a client that resets while waiting for the answer aborts the upstream request")
    func clientResetWhileWaitingAbortsUpstream() async throws {
        try await ProxyHarness.with { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group, resetOnClose: true)
            try await connection.send("GET /slow?ms=4000 HTTP/1.1\r\n\(Self.host)\r\n")
            let arrived = await HostileInputTests.waitFor { harness.upstream.requests.count == 1 }
            #expect(arrived, "the request should have reached the upstream")
            await connection.close()
            // Long before the upstream would answer (4 s), its connection is closed by Subgate.
            let closed = await HostileInputTests.waitFor(timeout: .seconds(2)) { harness.upstream.wire.connectionsClosed == 1 }
            #expect(closed, "the upstream connection must be closed when the client resets, not left to finish; wire: \(harness.upstream.wire)")
        }
    }
}
