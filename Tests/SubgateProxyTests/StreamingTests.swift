import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import Testing

/// SPEC §3 step 6: bodies stream both ways with back-pressure; keep-alive pooled upstream connections.
@Suite struct StreamingTests {
    static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

    @Test("a 5 MB upload arrives at the upstream byte-identical (SHA-256)")
    func largeUploadIsByteIdentical() async throws {
        try await ProxyHarness.with { harness in
            var rng = SystemRandomNumberGenerator()
            let payload = (0..<(5 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var request = HTTPClientRequest(url: harness.baseURL + "/sha")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: payload))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.status == .ok)
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            let expected = Self.hex(SHA256.hash(data: payload))
            #expect(body.contains(expected), "the upstream hashed something else than what was sent: \(body)")
            #expect(body.contains("\"bytes\":\(payload.count)"), "the upstream received the wrong length: \(body)")
        }
    }

    @Test("a chunked upload is echoed back chunked, both directions streaming, byte-identical")
    func chunkedBothWays() async throws {
        try await ProxyHarness.with { harness in
            let parts = (0..<64).map { i in ByteBuffer(bytes: (0..<16_384).map { UInt8(truncatingIfNeeded: $0 &+ i) }) }
            var sent = SHA256()
            for part in parts { part.withUnsafeReadableBytes { sent.update(bufferPointer: $0) } }
            var request = HTTPClientRequest(url: harness.baseURL + "/echo")
            request.method = .POST
            // An async sequence of unknown length makes AsyncHTTPClient send `transfer-encoding: chunked`.
            request.body = .stream(parts.async, length: .unknown)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.status == .ok)
            #expect(response.headers["transfer-encoding"] == ["chunked"], "the echo has no length, so the client must get chunked framing")
            var received = SHA256()
            var count = 0
            for try await chunk in response.body {
                count += chunk.readableBytes
                chunk.withUnsafeReadableBytes { received.update(bufferPointer: $0) }
            }
            #expect(count == 64 * 16_384)
            #expect(Self.hex(received.finalize()) == Self.hex(sent.finalize()), "the echoed body differs from the upload")
            let seen = harness.upstream.requests.last { $0.uri == "/echo" }
            #expect(seen?.headers["transfer-encoding"] == ["chunked"], "the upstream must see the upload as chunked")
            #expect(seen?.headers["content-length"] == [], "a chunked upload must not gain a Content-Length")
        }
    }

    @Test("a chunked answer from the upstream is relayed whole")
    func chunkedAnswer() async throws {
        try await ProxyHarness.with { harness in
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: harness.baseURL + "/chunked"), timeout: .seconds(5))
            #expect(response.status == .ok)
            #expect(String(buffer: try await response.body.collect(upTo: 1 << 20)) == "alpha,beta,gamma")
        }
    }

    @Test("server-sent events are relayed one by one, each before the upstream writes the next")
    func serverSentEventsStream() async throws {
        try await ProxyHarness.with { harness in
            let client = try await RawConnection.open(port: harness.port, group: harness.group)
            try await client.send("GET /sse?n=4&gap=400 HTTP/1.1\r\nHost: a\r\n\r\n")
            let complete = await client.waitForText("data: event 3\n\n", timeout: .seconds(10))
            try #require(complete, "the stream did not arrive: \(client.text)")
            #expect(client.text.lowercased().contains("content-type: text/event-stream"))
            // Causal, not a stopwatch: event i must reach the client before the upstream has even
            // written event i+1 (400 ms later). Arrival times are taken on the client's NIO thread,
            // so a busy test scheduler cannot blame the proxy. A proxy that buffers fails this
            // however fast the machine is.
            let sent = harness.upstream.eventsSent
            try #require(sent.count == 4, "the upstream wrote \(sent.count) events, expected 4")
            let text = client.text
            for i in 0..<3 {
                let range = try #require(text.range(of: "data: event \(i)\n\n"), "event \(i) missing: \(text)")
                let lastByte = text.utf8.distance(from: text.startIndex, to: range.upperBound) - 1
                let arrived = try #require(client.arrival(ofByte: lastByte))
                #expect(arrived < sent[i + 1], "event \(i) reached the client only after the upstream wrote event \(i + 1): the proxy buffered it")
            }
            await client.close()
        }
    }

    @Test("keep-alive: the upstream sees far fewer connections than requests")
    func upstreamConnectionsAreReused() async throws {
        try await ProxyHarness.with(eventLoops: 1) { harness in
            for _ in 0..<30 {
                let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: harness.baseURL + "/hello"), timeout: .seconds(5))
                #expect(response.status == .ok)
                _ = try await response.body.collect(upTo: 1 << 16)
            }
            #expect(harness.upstream.requests.count == 30)
            #expect(harness.upstream.connectionsAccepted <= 2, "30 requests opened \(harness.upstream.connectionsAccepted) upstream connections")
        }
    }

    @Test("a POST body and a HEAD answer keep their framing")
    func headAndEmptyPost() async throws {
        try await ProxyHarness.with { harness in
            var head = HTTPClientRequest(url: harness.baseURL + "/hello")
            head.method = .HEAD
            let headResponse = try await HTTPClient.shared.execute(head, timeout: .seconds(5))
            #expect(headResponse.status == .ok)
            #expect(headResponse.headers["content-length"] == ["17"], "HEAD must keep the length of the GET answer")
            var post = HTTPClientRequest(url: harness.baseURL + "/sha")
            post.method = .POST
            post.body = .bytes(ByteBuffer())
            let postResponse = try await HTTPClient.shared.execute(post, timeout: .seconds(5))
            #expect(String(buffer: try await postResponse.body.collect(upTo: 1 << 16)).contains("\"bytes\":0"))
        }
    }
}
