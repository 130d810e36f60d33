import NIOCore
import NIOHTTP1

/// Sends the generator's pre-encoded requests as they are.
///
/// NIO's `HTTPResponseDecoder` must see each request's head go out (it pairs answers with
/// requests, e.g. for HEAD), so the generator writes a shared `.head` through it and the
/// request's bytes as one `.body`; this handler, nearest the socket, drops the head and `.end`
/// and writes the body's bytes unchanged. Nothing is encoded per request.
final class RawRequestWriter: ChannelOutboundHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .body(.byteBuffer(let bytes)):
            context.write(self.wrapOutboundOut(bytes), promise: promise)
        case .head, .end, .body(.fileRegion):
            promise?.succeed(())
        }
    }
}
