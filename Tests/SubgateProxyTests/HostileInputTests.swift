import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// SPEC §2 (limits and timeouts), §3 steps 1 and 6 (head rules, header rewriting): what the
/// proxy does with hostile or unusual clients, end to end on real sockets.
///
/// Every request here is written byte for byte with `RawConnection`/`RawClient`, because no
/// HTTP library sends these heads; the answers are cut out of the raw bytes with `RawResponse`.
@Suite(.serialized) struct HostileInputTests {
    // MARK: - Helpers

    /// Sends `request` on a fresh connection and waits until the server closes it or `timeout`
    /// passes. Returns the answers and whether the connection was closed.
    static func send(
        _ harness: ProxyHarness,
        _ request: String,
        timeout: Duration = .seconds(3)
    ) async throws -> (answers: [RawResponse], closed: Bool) {
        let connection = try await RawConnection.open(port: harness.port, group: harness.group)
        try await connection.send(request)
        await connection.waitForClose(timeout: timeout)
        let received = connection.snapshot
        await connection.close()
        return (RawResponse.parseAll(received.text), received.closed)
    }

    /// Asserts one SPEC §3 JSON rejection with `status` and `code`, then a closed connection.
    static func expectRejectedAndClosed(
        _ result: (answers: [RawResponse], closed: Bool),
        status: Int,
        code: String,
        _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(result.answers.count == 1, "\(what): expected exactly one answer, got \(result.answers)", sourceLocation: sourceLocation)
        if let answer = result.answers.first {
            #expect(
                answer.isRejection(status: status, code: code),
                "\(what): expected \(status) with a JSON body carrying error.code \(code), got \(answer)",
                sourceLocation: sourceLocation
            )
            #expect(answer.complete, "\(what): the rejection body is cut short: \(answer)", sourceLocation: sourceLocation)
            #expect(
                answer.header("connection")?.lowercased() == "close",
                "\(what): a rejection that closes the connection must say `connection: close`, got \(answer)",
                sourceLocation: sourceLocation
            )
        }
        #expect(result.closed, "\(what): the connection must be closed after the rejection, it stayed open", sourceLocation: sourceLocation)
    }

    static let host = "Host: api.example.test\r\n"

    // MARK: - SPEC §2 max_header_bytes

    @Test("SPEC §2 max_header_bytes: a head over the limit answers 431 HEADERS_TOO_LARGE (not NIO's 400) and closes")
    func oversizedHeadAnswers431() async throws {
        try await ProxyHarness.with({ $0.maxHeaderBytes = 1024 }) { harness in
            let big = String(repeating: "a", count: 2000)
            let result = try await Self.send(harness, "GET /hello HTTP/1.1\r\n\(Self.host)X-Big: \(big)\r\n\r\n")
            Self.expectRejectedAndClosed(result, status: 431, code: "HEADERS_TOO_LARGE", "a 2 kB header with max_header_bytes = 1k")

            // Many small fields that add up past the limit are the same case.
            let many = (0..<60).map { "X-Field-\($0): 0123456789\r\n" }.joined()
            let spread = try await Self.send(harness, "GET /hello HTTP/1.1\r\n\(Self.host)\(many)\r\n")
            Self.expectRejectedAndClosed(spread, status: 431, code: "HEADERS_TOO_LARGE", "60 fields totalling ~1.5 kB")
            #expect(harness.upstream.requests.isEmpty, "an oversized head must never reach the upstream")

            // A head under the limit still passes.
            let ok = try await Self.send(harness, "GET /hello HTTP/1.1\r\n\(Self.host)X-Medium: \(String(repeating: "b", count: 500))\r\nConnection: close\r\n\r\n")
            #expect(ok.answers.first?.status == 200, "a 500-byte header under a 1k limit must be served, got \(ok.answers)")
        }
    }

    // MARK: - SPEC §2 max_body_bytes

    @Test("SPEC §2 max_body_bytes: a Content-Length over the limit answers 413 PAYLOAD_TOO_LARGE before the body is sent")
    func contentLengthOverLimitAnswers413() async throws {
        try await ProxyHarness.with({ $0.maxBodyBytes = 1000 }) { harness in
            // Only the head is sent: the answer must not wait for a body it will refuse.
            let result = try await Self.send(harness, "POST /sha HTTP/1.1\r\n\(Self.host)Content-Length: 5000\r\n\r\n")
            Self.expectRejectedAndClosed(result, status: 413, code: "PAYLOAD_TOO_LARGE", "Content-Length 5000 with max_body_bytes = 1000")
            #expect(harness.upstream.requests.isEmpty, "a request refused for its declared length must not reach the upstream")
        }
    }

    @Test("SPEC §2 max_body_bytes: a chunked body growing past the limit answers 413 and the upstream never gets more than the limit")
    func chunkedBodyOverLimitAnswers413() async throws {
        try await ProxyHarness.with({ $0.maxBodyBytes = 1000 }) { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            let chunk = "258\r\n" + String(repeating: "z", count: 600) + "\r\n"  // 0x258 = 600 bytes
            try await connection.send("POST /sha HTTP/1.1\r\n\(Self.host)Transfer-Encoding: chunked\r\n\r\n" + chunk)
            // The first 600 bytes are under the limit and stream through at once.
            let streamed = await Self.waitFor { harness.upstream.wire.bodyBytes == 600 }
            #expect(streamed, "the first 600 bytes should have streamed to the upstream, it has \(harness.upstream.wire.bodyBytes)")

            try? await connection.send(chunk + chunk)
            await connection.waitForClose()
            let answers = RawResponse.parseAll(connection.text)
            Self.expectRejectedAndClosed((answers, connection.isClosed), status: 413, code: "PAYLOAD_TOO_LARGE", "a chunked body of 1800 bytes with max_body_bytes = 1000")
            #expect(harness.upstream.wire.bodyBytes <= 1000, "the upstream received \(harness.upstream.wire.bodyBytes) body bytes, more than max_body_bytes")
            let aborted = await Self.waitFor { harness.upstream.wire.abortedMidRequest == 1 }
            #expect(aborted, "the upstream request must be aborted (its connection closed mid-body), not left waiting for the rest")
            await connection.close()
        }
    }

    @Test("SPEC §2 max_body_bytes: a body passing the limit after the upstream's answer began aborts the connection, never a complete-looking answer")
    func bodyOverLimitAfterAnswerHeadAborts() async throws {
        try await ProxyHarness.with({ $0.maxBodyBytes = 1000 }) { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            let chunk = "258\r\n" + String(repeating: "z", count: 600) + "\r\n"
            // `/echo` answers its head at once and echoes the body as it arrives.
            try await connection.send("POST /echo HTTP/1.1\r\n\(Self.host)Transfer-Encoding: chunked\r\n\r\n" + chunk)
            let headSeen = await connection.waitForText("HTTP/1.1 200")
            #expect(headSeen, "the upstream's answer head should have reached the client, got \(connection.text)")
            try? await connection.send(chunk)
            let closed = await connection.waitForClose()
            #expect(closed, "the connection must be closed once the body passes max_body_bytes")
            let answers = RawResponse.parseAll(connection.text)
            #expect(answers.count == 1, "a 413 cannot follow an answer head already sent; got \(answers)")
            #expect(answers.first?.complete == false, "the echo must end without its last chunk, so the client sees an aborted answer: \(answers)")
            #expect(harness.upstream.wire.bodyBytes <= 1000, "the upstream received \(harness.upstream.wire.bodyBytes) body bytes, more than max_body_bytes")
            await connection.close()
        }
    }

    // MARK: - SPEC §3 step 1: heads the proxy and its upstream could read differently

    /// A request the proxy must refuse with 400 BAD_REQUEST and a closed connection.
    struct HostileRequest: Sendable, CustomTestStringConvertible {
        let name: String
        let raw: String
        var testDescription: String { self.name }
    }

    static let badRequests: [HostileRequest] = [
        // Subgate's own rules (NIO's decoder lets these through, shared/KNOWN.md).
        HostileRequest(name: "duplicate Host", raw: "GET /hello HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
        HostileRequest(name: "HTTP/1.1 without Host", raw: "GET /hello HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        HostileRequest(
            name: "HTTP/1.0 with Transfer-Encoding",
            raw: "POST /sha HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        HostileRequest(
            name: "Transfer-Encoding: ,chunked",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        HostileRequest(
            name: "Transfer-Encoding: chunked, chunked",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        HostileRequest(
            name: "Transfer-Encoding twice",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        HostileRequest(name: "Transfer-Encoding: gzip", raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
        HostileRequest(
            name: "absolute-form target naming another host",
            raw: "GET http://internal.admin.example/hello HTTP/1.1\r\nHost: a.example\r\n\r\n"
        ),
        // NIO's decoder rejects these itself; Subgate must still answer 400, not hang or reset.
        HostileRequest(
            name: "Content-Length with Transfer-Encoding (CL.TE smuggling)",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n"
        ),
        HostileRequest(
            name: "duplicate Content-Length",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
        ),
        HostileRequest(
            name: "obs-fold",
            raw: "GET /hello HTTP/1.1\r\nHost: a.example\r\nX-Folded: first\r\n  second\r\n\r\n"
        ),
        // Issue 8's fault suite: the rest of the framing list.
        HostileRequest(
            name: "Transfer-Encoding: identity",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"
        ),
        HostileRequest(
            name: "Transfer-Encoding: identity alone",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: identity\r\n\r\nhello"
        ),
        HostileRequest(
            name: "duplicate Content-Length with the same value",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
        ),
        HostileRequest(name: "bare LF line endings", raw: "GET /hello HTTP/1.1\nHost: a.example\n\n"),
        HostileRequest(name: "bare LF inside the head", raw: "GET /hello HTTP/1.1\r\nHost: a.example\r\nX-A: b\nX-B: c\r\n\r\n"),
        HostileRequest(name: "CR inside a value", raw: "GET /hello HTTP/1.1\r\nHost: a.example\r\nX-A: b\rX-B: c\r\n\r\n"),
        HostileRequest(name: "NUL inside a value", raw: "GET /hello HTTP/1.1\r\nHost: a.example\r\nX-A: b\u{0}c\r\n\r\n"),
        HostileRequest(
            name: "space before the colon (Content-Length :)",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nContent-Length : 5\r\n\r\nhello"
        ),
        HostileRequest(
            name: "space before the colon (Transfer-Encoding :)",
            raw: "POST /sha HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ),
        HostileRequest(name: "space before the colon (Host :)", raw: "GET /hello HTTP/1.1\r\nHost : a.example\r\n\r\n"),
    ]

    /// What a smuggling attempt hides after the first request: it must never be read as a
    /// request of its own (the connection closes after the 400), so the upstream never sees it.
    static let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n"

    @Test("SPEC §3 step 1: an ambiguous or malformed head answers 400 BAD_REQUEST, closes, and neither it nor a request smuggled after it reaches the upstream", arguments: badRequests)
    func ambiguousHeadAnswers400(_ request: HostileRequest) async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.send(harness, request.raw + Self.smuggled)
            Self.expectRejectedAndClosed(result, status: 400, code: "BAD_REQUEST", request.name)
            #expect(harness.upstream.requests.isEmpty, "\(request.name): the upstream saw \(harness.upstream.requests.map(\.uri))")
        }
    }

    @Test("SPEC §3 step 1: an absolute-form target naming the Host is accepted and sent upstream in origin-form")
    func absoluteFormSameHostIsAccepted() async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.send(
                harness,
                "GET http://API.example.test/hello?x=1 HTTP/1.1\r\n\(Self.host)Connection: close\r\n\r\n"
            )
            #expect(result.answers.first?.status == 200, "an absolute-form target naming the Host must be served, got \(result.answers)")
            #expect(harness.upstream.requests.map(\.uri) == ["/hello?x=1"], "the upstream must get the origin-form target, got \(harness.upstream.requests.map(\.uri))")
        }
    }

    // MARK: - Upgrades and CONNECT

    @Test("SPEC §3: an Upgrade request answers 501 and closes; bytes after its head never reach the upstream")
    func upgradeAnswers501() async throws {
        try await ProxyHarness.with { harness in
            let websocket =
                "GET /chat HTTP/1.1\r\n\(Self.host)Connection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                // What a client would send once it believed the upgrade went through: a frame,
                // then something that parses as a second request.
                + "\u{81}\u{05}hello"
                + "GET /smuggled HTTP/1.1\r\n\(Self.host)\r\n\r\n"
            let result = try await Self.send(harness, websocket)
            Self.expectRejectedAndClosed(result, status: 501, code: "UPGRADE_NOT_SUPPORTED", "Upgrade: websocket")

            let h2c = "GET /hello HTTP/1.1\r\n\(Self.host)Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
                + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            let h2cResult = try await Self.send(harness, h2c)
            Self.expectRejectedAndClosed(h2cResult, status: 501, code: "UPGRADE_NOT_SUPPORTED", "Upgrade: h2c")

            #expect(harness.upstream.requests.isEmpty, "nothing of an upgrade attempt may reach the upstream; it saw \(harness.upstream.requests.map(\.uri))")
            #expect(harness.upstream.connectionsAccepted == 0, "the upstream should not even have been connected to")
        }
    }

    @Test("SPEC §3: CONNECT answers 501 and closes")
    func connectAnswers501() async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.send(harness, "CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n")
            Self.expectRejectedAndClosed(result, status: 501, code: "UPGRADE_NOT_SUPPORTED", "CONNECT")
            #expect(harness.upstream.requests.isEmpty, "a CONNECT must not reach the upstream")
        }
    }

    // MARK: - SPEC §2 timeouts

    @Test("SPEC §2 header_read_timeout: a client trickling its head (slowloris) gets 408 and is closed once the timeout passes")
    func slowlorisIsClosed() async throws {
        try await ProxyHarness.with({ $0.headerReadTimeout = .seconds(1) }) { harness in
            // The deadline runs from the accept, which happens while `open` is under way.
            let start = ContinuousClock.now
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try? await connection.send("GET /hello HTTP/1.1\r\n\(Self.host)")
            // A new header line every 200 ms: activity must not extend the head's deadline.
            var line = 0
            while !connection.isClosed && ContinuousClock.now - start < .seconds(4) {
                try? await Task.sleep(for: .milliseconds(200))
                try? await connection.send("X-Slow-\(line): x\r\n")
                line += 1
            }
            let elapsed = ContinuousClock.now - start
            #expect(connection.isClosed, "a client that never finishes its head must be closed")
            #expect(elapsed >= .milliseconds(900), "closed after \(elapsed), before header_read_timeout (1s)")
            #expect(elapsed < .milliseconds(2500), "closed only after \(elapsed): trickled bytes extended header_read_timeout (1s)")
            let answers = RawResponse.parseAll(connection.text)
            #expect(answers.count == 1 && answers[0].isRejection(status: 408, code: "REQUEST_TIMEOUT"), "expected one 408 REQUEST_TIMEOUT, got \(answers)")
            #expect(harness.upstream.requests.isEmpty, "an unfinished head must not reach the upstream")
            await connection.close()
        }
    }

    @Test("SPEC §2 idle_timeout: an idle keep-alive client connection is closed after idle_timeout, and kept before it")
    func idleKeepAliveIsClosed() async throws {
        try await ProxyHarness.with({ $0.idleTimeout = .seconds(1) }) { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try await connection.send("GET /hello HTTP/1.1\r\n\(Self.host)\r\n")
            #expect(await connection.waitForText("{\"hello\":\"world\"}"), "the first request was not answered: \(connection.text)")
            // Well within idle_timeout, the connection is still good for another request.
            try await Task.sleep(for: .milliseconds(300))
            // Idle time runs from the second answer, which the proxy writes after this instant.
            let idleSince = ContinuousClock.now
            try await connection.send("GET /hello HTTP/1.1\r\n\(Self.host)\r\n")
            #expect(await connection.waitForText("{\"hello\":\"world\"}", count: 2), "a connection idle for less than idle_timeout must still serve: \(connection.text)")
            let closed = await connection.waitForClose(timeout: .seconds(4))
            let idle = ContinuousClock.now - idleSince
            #expect(closed, "an idle keep-alive connection must be closed after idle_timeout (1s)")
            #expect(idle >= .milliseconds(950), "closed after only \(idle) idle, before idle_timeout (1s)")
            let answers = RawResponse.parseAll(connection.text)
            #expect(answers.map(\.status) == [200, 200], "an idle close sends nothing (no 408), got \(answers)")
            await connection.close()
        }
    }

    // MARK: - SPEC §2 max_connections

    @Test("SPEC §2 max_connections: with a limit of 2, a third connection is not served until one of the two closes")
    func maxConnectionsHoldsTheThird() async throws {
        try await ProxyHarness.with({ $0.maxConnections = 2 }) { harness in
            let request = "GET /hello HTTP/1.1\r\n\(Self.host)\r\n"
            let first = try await RawConnection.open(port: harness.port, group: harness.group)
            try await first.send(request)
            #expect(await first.waitForText("HTTP/1.1 200"), "the first connection was not served")
            let second = try await RawConnection.open(port: harness.port, group: harness.group)
            try await second.send(request)
            #expect(await second.waitForText("HTTP/1.1 200"), "the second connection was not served")

            // The kernel completes the handshake (backlog), but the proxy does not accept it.
            let third = try await RawConnection.open(port: harness.port, group: harness.group)
            try await third.send(request)
            let servedEarly = await third.waitForText("HTTP/1.1", timeout: .milliseconds(700))
            #expect(!servedEarly, "a third connection was served while two were open: \(third.text)")
            #expect(!third.isClosed, "the third connection should wait in the backlog, not be refused")

            await first.close()
            let served = await third.waitForText("HTTP/1.1 200", timeout: .seconds(3))
            #expect(served, "the third connection must be served once the first closed, got \(third.text)")
            #expect(harness.server.openConnections <= 2, "\(harness.server.openConnections) connections are open, above max_connections = 2")
            await second.close()
            await third.close()
        }
    }

    @Test("SPEC §2 max_connections: a burst of simultaneous connections does not overshoot the limit")
    func maxConnectionsHoldsUnderABurst() async throws {
        try await ProxyHarness.with({ $0.maxConnections = 1 }) { harness in
            let request = "GET /hello HTTP/1.1\r\n\(Self.host)\r\n"
            var connections: [RawConnection] = []
            for _ in 0..<6 {
                connections.append(try await RawConnection.open(port: harness.port, group: harness.group))
            }
            for connection in connections { try await connection.send(request) }
            try await Task.sleep(for: .milliseconds(700))
            let served = connections.filter { $0.text.contains("HTTP/1.1 200") }.count
            #expect(served == 1, "\(served) of 6 simultaneous connections were served with max_connections = 1")
            for connection in connections { await connection.close() }
        }
    }

    // MARK: - Expect and pipelining

    @Test("RFC 9110 §10.1.1: Expect: 100-continue gets 100 Continue before the body is sent, then the answer")
    func expectContinueGets100() async throws {
        try await ProxyHarness.with { harness in
            let connection = try await RawConnection.open(port: harness.port, group: harness.group)
            try await connection.send("POST /sha HTTP/1.1\r\n\(Self.host)Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            let gotContinue = await connection.waitForText("HTTP/1.1 100", timeout: .seconds(2))
            #expect(gotContinue, "no 100 Continue within 2 s: a client waiting for it before sending its body would stall; got \(connection.text)")
            try await connection.send("hello")
            #expect(await connection.waitForText("\"bytes\":5"), "the answer to the body never came: \(connection.text)")
            let answers = RawResponse.parseAll(connection.text)
            #expect(answers.map(\.status) == [100, 200], "expected 100 then 200 and nothing else, got \(answers)")
            #expect(
                harness.upstream.requests.first?.headers["expect"] == [],
                "Subgate answers the expectation itself, so the upstream must not be asked to answer it too"
            )
            await connection.close()
        }
    }

    @Test("RFC 9112 §9.3.2: pipelined requests are answered in order, the last one's Connection: close honoured")
    func pipelinedRequestsAnsweredInOrder() async throws {
        try await ProxyHarness.with { harness in
            let pipelined =
                "GET /slow?ms=300 HTTP/1.1\r\n\(Self.host)\r\n"
                + "GET /hello HTTP/1.1\r\n\(Self.host)\r\n"
                + "POST /sha HTTP/1.1\r\n\(Self.host)Content-Length: 3\r\n\r\nabc"
                + "GET /chunked HTTP/1.1\r\n\(Self.host)Connection: close\r\n\r\n"
            let result = try await Self.send(harness, pipelined, timeout: .seconds(4))
            let bodies = result.answers.map(\.body)
            #expect(result.answers.map(\.status) == [200, 200, 200, 200], "expected four 200s, got \(result.answers)")
            #expect(bodies.count == 4 && bodies[0] == "{\"slow\":300}", "the slow first answer must come first, got \(bodies)")
            #expect(bodies.count == 4 && bodies[1] == "{\"hello\":\"world\"}", "second answer out of order: \(bodies)")
            #expect(bodies.count == 4 && bodies[2].contains("\"bytes\":3"), "third answer out of order: \(bodies)")
            #expect(bodies.count == 4 && bodies[3] == "alpha,beta,gamma", "fourth answer out of order: \(bodies)")
            #expect(result.closed, "the connection must close after the request that asked for it")
        }
    }

    // MARK: - SPEC §3 steps 1 and 6: what crosses to the upstream

    @Test("SPEC §3 step 6: hop-by-hop fields, names listed in Connection, x-subgate-* and the token never reach the upstream")
    func hopByHopAndSpoofedHeadersAreRemoved() async throws {
        try await ProxyHarness.with { harness in
            let request =
                "GET /hello HTTP/1.1\r\n\(Self.host)"
                + "Connection: keep-alive, X-Hop-Private\r\n"
                + "X-Hop-Private: secret\r\n"
                + "Keep-Alive: timeout=5\r\n"
                + "TE: trailers\r\n"
                + "Trailer: X-Checksum\r\n"
                + "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
                + "Proxy-Connection: keep-alive\r\n"
                + "X-Subgate-Subscriber-Id: spoofed\r\n"
                + "x-subgate-token-hash: spoofed\r\n"
                + "X-Subscription-Token: cro_sub_secret\r\n"
                + "X-Forwarded-Proto: https\r\n"
                + "X-Request-Id: client-chosen-id-42\r\n"
                + "X-Kept: yes\r\n"
                + "Connection: close\r\n\r\n"
            let result = try await Self.send(harness, request)
            #expect(result.answers.first?.status == 200, "the request should have been served, got \(result.answers)")
            let seen = try #require(harness.upstream.requests.first, "the upstream saw no request")
            for name in [
                "connection", "x-hop-private", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection",
                "x-subgate-subscriber-id", "x-subgate-token-hash", "x-subscription-token",
            ] {
                #expect(seen.headers[name] == [], "`\(name)` reached the upstream: \(seen.headers[name])")
            }
            #expect(seen.headers["x-kept"] == ["yes"], "an end-to-end header was lost")
            #expect(seen.headers["x-forwarded-for"] == ["127.0.0.1"], "x-forwarded-for must name the client, got \(seen.headers["x-forwarded-for"])")
            #expect(seen.headers["x-forwarded-proto"] == ["http"], "x-forwarded-proto must be Subgate's, not the client's claim; got \(seen.headers["x-forwarded-proto"])")
            #expect(seen.headers["x-request-id"] == ["client-chosen-id-42"], "the client's x-request-id must be kept, got \(seen.headers["x-request-id"])")
        }
    }

    @Test("SPEC §3 step 6: without a client x-request-id one is generated; x-forwarded-for appends the client to the chain")
    func requestIDGeneratedAndForwardedForAppended() async throws {
        try await ProxyHarness.with { harness in
            let result = try await Self.send(harness, "GET /hello HTTP/1.1\r\n\(Self.host)X-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n")
            #expect(result.answers.first?.status == 200, "the request should have been served, got \(result.answers)")
            let seen = try #require(harness.upstream.requests.first, "the upstream saw no request")
            let id = seen.headers["x-request-id"]
            #expect(id.count == 1 && id[0].count == 32 && id[0].allSatisfy(\.isHexDigit), "expected one generated 32-hex-digit x-request-id, got \(id)")
            #expect(seen.headers["x-forwarded-for"] == ["198.51.100.7, 127.0.0.1"], "the client must be appended to x-forwarded-for, got \(seen.headers["x-forwarded-for"])")
        }
    }

    @Test("SPEC §2 forward_token = true: the token header reaches the upstream unchanged")
    func tokenForwardedWhenConfigured() async throws {
        try await ProxyHarness.with({ $0.forwardToken = true }) { harness in
            let result = try await Self.send(harness, "GET /hello HTTP/1.1\r\n\(Self.host)X-Subscription-Token: cro_sub_secret\r\nConnection: close\r\n\r\n")
            #expect(result.answers.first?.status == 200, "the request should have been served, got \(result.answers)")
            #expect(harness.upstream.requests.first?.headers["x-subscription-token"] == ["cro_sub_secret"], "forward_token = true must pass the token through")
        }
    }

    // MARK: -

    /// Polls `condition` every 10 ms for up to `timeout`.
    static func waitFor(timeout: Duration = .seconds(3), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}
