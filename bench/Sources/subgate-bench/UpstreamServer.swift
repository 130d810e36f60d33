import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateBenchCore
import Synchronization

/// `subgate-bench upstream`: the origin behind the proxy under test, built to cost as little
/// per request as possible so it is never the bottleneck. Every answer is 200 with a fixed
/// JSON-ish body of `--body-bytes` (or the request's `x-bench-answer-bytes`), encoded once per
/// size and reused; `x-bench-usage: N` on the request puts `x-subgate-usage: N` on the answer
/// (SPEC §3 step 7), so the bench can set what Subgate bills. `--delay-ms` holds each answer.
enum UpstreamServer {
    struct Settings: Sendable {
        var host: String
        var port: Int
        var delay: TimeAmount
        var bodyBytes: Int
        var threads: Int
    }

    /// Binds, prints `upstream listening on http://HOST:PORT`, and serves until the task is cancelled.
    static func run(_ settings: Settings) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: settings.threads)
        let answers = AnswerCatalog(defaultBytes: settings.bodyBytes)
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                            UpstreamHandler(answers: answers, delay: settings.delay),
                        ])
                    }
                }
                .bind(host: settings.host, port: settings.port)
                .get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        let port = channel.localAddress?.port ?? settings.port
        Console.out("upstream listening on http://\(settings.host):\(port)")
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
        try? await group.shutdownGracefully()
    }
}

/// Encoded answers by (body size, usage header), built on first use and shared by every
/// connection of every thread.
final class AnswerCatalog: Sendable {
    private struct Key: Hashable { var bytes: Int; var usage: Int? }
    private let defaultBytes: Int
    private let cache = Mutex<[Key: ByteBuffer]>([:])
    /// The common answer, built at start so the usual path takes no lock.
    let standard: ByteBuffer

    init(defaultBytes: Int) {
        self.defaultBytes = defaultBytes
        self.standard = Self.encode(bytes: defaultBytes, usage: nil)
    }

    func answer(bytes: Int?, usage: Int?) -> ByteBuffer {
        if bytes == nil && usage == nil { return self.standard }
        let key = Key(bytes: bytes ?? self.defaultBytes, usage: usage)
        return self.cache.withLock { cache in
            if let hit = cache[key] { return hit }
            let encoded = Self.encode(bytes: key.bytes, usage: key.usage)
            if cache.count < 1024 { cache[key] = encoded }
            return encoded
        }
    }

    /// `HTTP/1.1 200 OK` with a body of exactly `bytes`: a small JSON object padded with `x`.
    static func encode(bytes: Int, usage: Int?) -> ByteBuffer {
        var head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \(bytes)\r\n"
        if let usage { head += "x-subgate-usage: \(usage)\r\n" }
        head += "\r\n"
        var buffer = ByteBufferAllocator().buffer(capacity: head.utf8.count + bytes)
        buffer.writeString(head)
        let opening = Array("{\"ok\":true,\"pad\":\"".utf8)
        let closing = Array("\"}".utf8)
        if bytes >= opening.count + closing.count {
            buffer.writeBytes(opening)
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: bytes - opening.count - closing.count)
            buffer.writeBytes(closing)
        } else {
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: bytes)
        }
        return buffer
    }
}

/// One upstream connection: answers each request when its body has been read, in order.
final class UpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    private let answers: AnswerCatalog
    private let delay: TimeAmount
    private var bytes: Int?
    private var usage: Int?
    private var keepAlive = true
    private var needsFlush = false

    init(answers: AnswerCatalog, delay: TimeAmount) {
        self.answers = answers
        self.delay = delay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.keepAlive = head.isKeepAlive
            self.bytes = nil
            self.usage = nil
            if let value = head.headers.first(name: RequestCatalog.answerBytesHeader), let n = Int(value), n >= 0, n <= 1 << 30 {
                self.bytes = n
            }
            if let value = head.headers.first(name: RequestCatalog.usageHeader), let n = Int(value), n >= 0, n <= 1_000_000 {
                self.usage = n
            }
        case .body:
            break
        case .end:
            let answer = self.answers.answer(bytes: self.bytes, usage: self.usage)
            let keepAlive = self.keepAlive
            if self.delay > .zero {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: self.delay) {
                    let context = loopBound.value
                    context.writeAndFlush(NIOAny(answer), promise: nil)
                    if !keepAlive { context.close(promise: nil) }
                }
            } else {
                context.write(self.wrapOutboundOut(answer), promise: nil)
                self.needsFlush = true
                if !keepAlive {
                    context.flush()
                    self.needsFlush = false
                    context.close(promise: nil)
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // One flush per socket read: pipelined requests share a write.
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
