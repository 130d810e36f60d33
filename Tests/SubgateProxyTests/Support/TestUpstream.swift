import Crypto
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A real HTTP/1.1 upstream on loopback (port 0) for end-to-end tests. Routes:
/// - `GET /hello` → 200 small JSON
/// - `POST /sha` → 200 `{"sha256":…,"bytes":n}` of the streamed request body
/// - `POST /echo` → 200 chunked echo of the request body as it arrives
/// - `GET /sse?n=N&gap=MS` → `text/event-stream`, N events MS apart
/// - `GET /chunked` → a chunked answer in three parts
/// - `GET /slow?ms=MS` → 200 after MS milliseconds
/// - `GET /reset-mid` → head with content-length 1000, 100 bytes, then the connection closes
/// - `GET /rst-mid` → a chunked head and one chunk, then a TCP reset (SO_LINGER 0)
/// - `GET /large?mb=N` → N MiB of `x`, written only while the socket is writable (back-pressure);
///   `wire.largeBytesWritten` counts what reached the socket
/// - `GET /bad-framing` → a head with Content-Length *and* Transfer-Encoding (raw bytes)
/// - `GET /two-cl` → a head with two different Content-Length fields (raw bytes)
/// - `GET /te-gzip` → `Transfer-Encoding: gzip, chunked` (raw bytes)
/// - `GET /head-only-close` → closes without answering
/// - `GET /billed?units=N&status=S` → status S with `x-subgate-usage: N`; `GET /status?code=S` → status S
///
/// Besides the requests it saw, it counts request-body bytes received, connections closed,
/// and connections that closed in the middle of a request body (an aborted upload).
final class TestUpstream: Sendable {
    /// What the upstream observed below the request level.
    struct Wire: Sendable {
        /// Request-body bytes received, over all requests.
        var bodyBytes = 0
        /// Connections that have closed (either side).
        var connectionsClosed = 0
        /// Connections that closed after a request head but before the end of its body.
        var abortedMidRequest = 0
        /// `/large` body bytes written to the socket (write completed), over all requests.
        var largeBytesWritten = 0
    }

    struct Seen: Sendable {
        var method: HTTPMethod
        var uri: String
        var headers: HTTPHeaders
    }

    private let group: any EventLoopGroup
    private let channel: any Channel
    private let state: NIOLockedValueBox<(connections: Int, requests: [Seen])>
    private let eventLog: NIOLockedValueBox<[ContinuousClock.Instant]>
    private let wireBox: NIOLockedValueBox<Wire>

    var port: Int { self.channel.localAddress?.port ?? 0 }
    var connectionsAccepted: Int { self.state.withLockedValue { $0.connections } }
    var requests: [Seen] { self.state.withLockedValue { $0.requests } }
    /// When each `/sse` event was written to the socket, in order, across all `/sse` requests.
    var eventsSent: [ContinuousClock.Instant] { self.eventLog.withLockedValue { $0 } }
    /// Body bytes, closed and aborted connections so far.
    var wire: Wire { self.wireBox.withLockedValue { $0 } }

    init(group: any EventLoopGroup) async throws {
        self.group = group
        let state = NIOLockedValueBox<(connections: Int, requests: [Seen])>((0, []))
        self.state = state
        let eventLog = NIOLockedValueBox<[ContinuousClock.Instant]>([])
        self.eventLog = eventLog
        let wire = NIOLockedValueBox(Wire())
        self.wireBox = wire
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                state.withLockedValue { $0.connections += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    let handler = TestUpstreamHandler(state: state, eventLog: eventLog)
                    handler.wire = wire
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    func stop() async {
        try? await self.channel.close()
    }
}

private final class TestUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: NIOLockedValueBox<(connections: Int, requests: [TestUpstream.Seen])>
    private var head: HTTPRequestHead?
    private var hasher = SHA256()
    private var bytes = 0

    private let eventLog: NIOLockedValueBox<[ContinuousClock.Instant]>
    var wire: NIOLockedValueBox<TestUpstream.Wire>?
    /// `/large` bytes still to write; written only while the channel is writable.
    private var largeRemaining = 0

    init(state: NIOLockedValueBox<(connections: Int, requests: [TestUpstream.Seen])>, eventLog: NIOLockedValueBox<[ContinuousClock.Instant]>) {
        self.state = state
        self.eventLog = eventLog
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.hasher = SHA256()
            self.bytes = 0
            self.state.withLockedValue { $0.requests.append(.init(method: head.method, uri: head.uri, headers: head.headers)) }
            if head.uri == "/echo" {
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "application/octet-stream")
                context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            }
        case .body(let buffer):
            self.bytes += buffer.readableBytes
            self.wire?.withLockedValue { $0.bodyBytes += buffer.readableBytes }
            buffer.withUnsafeReadableBytes { self.hasher.update(bufferPointer: $0) }
            if self.head?.uri == "/echo" {
                context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(head, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && self.largeRemaining > 0 {
            self.writeLarge(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Writes `/large` chunks until the body is done or the channel stops being writable.
    private func writeLarge(context: ChannelHandlerContext) {
        let chunkSize = 64 * 1024
        while self.largeRemaining > 0 && context.channel.isWritable {
            let size = min(chunkSize, self.largeRemaining)
            self.largeRemaining -= size
            let chunk = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: size)
            let wire = self.wire
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(chunk)))).assumeIsolated().whenSuccess {
                wire?.withLockedValue { $0.largeBytesWritten += size }
            }
        }
        if self.largeRemaining == 0 {
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.flush()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.largeRemaining = 0
        let midRequest = self.head != nil
        self.wire?.withLockedValue {
            $0.connectionsClosed += 1
            if midRequest { $0.abortedMidRequest += 1 }
        }
        context.fireChannelInactive()
    }

    private func respond(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        let query = Self.query(head.uri)
        switch path {
        case "/echo":
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        case "/sha":
            let digest = self.hasher.finalize().map { String(format: "%02x", $0) }.joined()
            self.sendJSON("{\"sha256\":\"\(digest)\",\"bytes\":\(self.bytes)}", context: context)
        case "/sse":
            let n = Int(query["n"] ?? "3") ?? 3
            let gap = Int64(query["gap"] ?? "200") ?? 200
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "text/event-stream")
            headers.add(name: "cache-control", value: "no-cache")
            context.writeAndFlush(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            self.sendEvents(remaining: n, index: 0, gap: gap, context: context)
        case "/chunked":
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok))), promise: nil)
            for part in ["alpha,", "beta,", "gamma"] {
                context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: part)))), promise: nil)
            }
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        case "/slow":
            let ms = Int64(query["ms"] ?? "500") ?? 500
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) {
                self.sendJSON("{\"slow\":\(ms)}", context: context)
            }
        case "/reset-mid":
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "1000")
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            let part = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 100)
            context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(part)))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case "/rst-mid":
            var headers = HTTPHeaders()
            headers.add(name: "transfer-encoding", value: "chunked")
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            let part = context.channel.allocator.buffer(repeating: UInt8(ascii: "r"), count: 100)
            context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(part)))).assumeIsolated().whenComplete { _ in
                // SO_LINGER 0: close sends an RST, not a FIN.
                guard let socket = context.channel as? any SocketOptionProvider else {
                    context.close(promise: nil)
                    return
                }
                socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            }
        case "/large":
            let megabytes = Int(query["mb"] ?? "1") ?? 1
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/octet-stream")
            headers.add(name: "content-length", value: String(megabytes * 1024 * 1024))
            context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            self.largeRemaining = megabytes * 1024 * 1024
            self.writeLarge(context: context)
        case "/two-cl":
            self.sendRaw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", context: context)
        case "/bad-framing":
            self.sendRaw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", context: context)
        case "/te-gzip":
            self.sendRaw("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", context: context)
        case "/head-only-close":
            context.close(promise: nil)
        case "/billed":
            // `GET /billed?units=N&status=S` → status S (200) with `x-subgate-usage: N`.
            let units = query["units"] ?? "1"
            let status = HTTPResponseStatus(statusCode: Int(query["status"] ?? "200") ?? 200)
            self.sendRaw("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nx-subgate-usage: \(units)\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", context: context)
        case "/status":
            // `GET /status?code=S` → that status, empty body.
            let status = Int(query["code"] ?? "200") ?? 200
            self.sendRaw("HTTP/1.1 \(status) X\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", context: context)
        default:
            self.sendJSON("{\"hello\":\"world\"}", context: context)
        }
    }

    private func sendEvents(remaining: Int, index: Int, gap: Int64, context: ChannelHandlerContext) {
        guard remaining > 0 else {
            context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let event = context.channel.allocator.buffer(string: "data: event \(index)\n\n")
        self.eventLog.withLockedValue { $0.append(.now) }
        context.writeAndFlush(Self.wrapOutboundOut(.body(.byteBuffer(event))), promise: nil)
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(gap)) {
            self.sendEvents(remaining: remaining - 1, index: index + 1, gap: gap, context: context)
        }
    }

    private func sendJSON(_ json: String, context: ChannelHandlerContext) {
        let body = context.channel.allocator.buffer(string: json)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "x-upstream", value: "test")
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Writes bytes under the response encoder (for answers NIO's encoder would never produce).
    private func sendRaw(_ text: String, context: ChannelHandlerContext) {
        guard let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else { return }
        encoder.writeAndFlush(NIOAny(IOData.byteBuffer(context.channel.allocator.buffer(string: text)))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    static func query(_ uri: String) -> [String: String] {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }
}
