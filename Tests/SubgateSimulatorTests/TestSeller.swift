import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A seller's endpoint on loopback (port 0) for the gateway tests: it records every request
/// (method, path, headers, body) and answers each with `status` and `body`.
final class TestSeller: Sendable {
    struct Seen: Sendable {
        var method: HTTPMethod
        var uri: String
        var headers: HTTPHeaders
        var body: String
    }

    struct Answer: Sendable {
        var status: HTTPResponseStatus = .ok
        var body = #"{"ok":true,"forecast":"sunny","n":1}"#
    }

    /// The state shared with the channel handlers.
    private final class State: Sendable {
        let mutex = NIOLockedValueBox<(requests: [Seen], answer: Answer)>(([], Answer()))
    }

    private let channel: any Channel
    private let shared = State()

    var port: Int { self.channel.localAddress?.port ?? 0 }
    var url: String { "http://127.0.0.1:\(self.port)" }
    var requests: [Seen] { self.shared.mutex.withLockedValue { $0.requests } }

    /// What the following requests are answered.
    func answer(_ status: HTTPResponseStatus, _ body: String) {
        self.shared.mutex.withLockedValue { $0.answer = Answer(status: status, body: body) }
    }

    var currentAnswer: Answer { self.shared.mutex.withLockedValue { $0.answer } }

    init(group: any EventLoopGroup) async throws {
        let state = self.shared
        self.channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(record: { seen in
                        state.mutex.withLockedValue { state in
                            state.requests.append(seen)
                            return state.answer
                        }
                    }))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    func stop() async {
        try? await self.channel.close()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let record: @Sendable (Seen) -> Answer
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(record: @escaping @Sendable (Seen) -> Answer) {
            self.record = record
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch Self.unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                self.body = []
            case .body(let chunk):
                self.body.append(contentsOf: chunk.readableBytesView)
            case .end:
                guard let head = self.head else { return }
                let answer = self.record(Seen(method: head.method, uri: head.uri, headers: head.headers, body: String(decoding: self.body, as: UTF8.self)))
                let body = context.channel.allocator.buffer(string: answer.body)
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "application/json")
                headers.add(name: "content-length", value: String(body.readableBytes))
                context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))), promise: nil)
                context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
                context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
