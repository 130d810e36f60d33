import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The seller API that `subgate demo` puts behind the proxy: a small JSON API with one
/// server-sent-events endpoint, so a newcomer sees Subgate relay both (SPEC §1).
///
/// - `GET /v1/quote`: a JSON quote that echoes what Subgate told the seller about the buyer
///   (`x-subgate-subscriber-id`, `x-subgate-remaining`).
/// - `GET /v1/events`: five SSE events, one a second, streamed through as they are written.
/// - `POST /v1/echo`: answers the request body back, streamed.
/// - anything else: 404 JSON (not billed: only 2xx and 3xx answers are, by default).
final class DemoUpstream: Sendable {
    private let channel: any Channel

    /// The bound port (the OS's choice when started with port 0).
    let port: Int

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    static func start(host: String, port: Int, group: any EventLoopGroup) async throws -> DemoUpstream {
        let served = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(DemoUpstreamHandler(served: served))
                }
            }
            .bind(host: host, port: port)
            .get()
        guard let bound = channel.localAddress?.port else {
            try? await channel.close()
            throw ChannelError.unknownLocalAddress
        }
        return DemoUpstream(channel: channel, port: bound)
    }

    func stop() async {
        try? await self.channel.close()
    }
}

private final class DemoUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private static let quotes = [
        "Premature optimization is the root of all evil.",
        "Make it work, make it right, make it fast.",
        "Simplicity is prerequisite for reliability.",
        "The network is reliable. (It is not.)",
        "Measure. Don't tune for speed until you've measured.",
    ]

    /// The request being echoed by `POST /v1/echo`, whose head has been answered.
    private var echoing = false
    /// Quotes served over all connections, to rotate through them.
    private let served: NIOLockedValueBox<Int>

    init(served: NIOLockedValueBox<Int>) {
        self.served = served
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.respond(to: head, context: context)
        case .body(let body):
            if self.echoing {
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            }
        case .end:
            if self.echoing {
                self.echoing = false
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.GET, "/v1/quote"):
            let index = self.served.withLockedValue { count in
                defer { count += 1 }
                return count
            }
            let quote = Self.quotes[index % Self.quotes.count]
            var fields: [String: String] = ["quote": quote, "served_at": Self.now()]
            fields["subscriber_id"] = head.headers.first(name: "x-subgate-subscriber-id")
            fields["subscription_remaining"] = head.headers.first(name: "x-subgate-remaining")
            self.sendJSON(.ok, fields, context: context)
        case (.GET, "/v1/events"):
            var headers = HTTPHeaders([("content-type", "text/event-stream"), ("cache-control", "no-cache")])
            headers.add(name: "transfer-encoding", value: "chunked")
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            self.sendEvent(1, of: 5, context: context)
        case (.POST, "/v1/echo"), (.PUT, "/v1/echo"):
            var headers = HTTPHeaders([("transfer-encoding", "chunked")])
            headers.add(name: "content-type", value: head.headers.first(name: "content-type") ?? "application/octet-stream")
            self.echoing = true
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
        default:
            self.sendJSON(.notFound, ["error": "no such route", "routes": "GET /v1/quote, GET /v1/events, POST /v1/echo"], context: context)
        }
    }

    private func sendEvent(_ index: Int, of count: Int, context: ChannelHandlerContext) {
        let event = "id: \(index)\nevent: tick\ndata: {\"tick\":\(index),\"of\":\(count),\"at\":\"\(Self.now())\"}\n\n"
        context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: event)))), promise: nil)
        guard index < count else {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(1)) {
            let (handler, context) = loopBound.value
            guard context.channel.isActive else { return }
            handler.sendEvent(index + 1, of: count, context: context)
        }
    }

    private func sendJSON(_ status: HTTPResponseStatus, _ fields: [String: String], context: ChannelHandlerContext) {
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        let body = ByteBuffer(bytes: data)
        let headers = HTTPHeaders([("content-type", "application/json"), ("content-length", String(body.readableBytes))])
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }

    private static func now() -> String {
        Date().formatted(.iso8601)
    }
}
