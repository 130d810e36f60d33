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

/// Feeds one connection's answers to its `LoadDriver`.
final class LoadConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let driver: LoadDriver
    private let slot: Int

    init(driver: LoadDriver, slot: Int) {
        self.driver = driver
        self.slot = slot
    }

    func channelActive(context: ChannelHandlerContext) {
        self.driver.connected(slot: self.slot, context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.driver.answerHead(slot: self.slot, status: Int(head.status.code), keepAlive: head.isKeepAlive)
        case .body(let bytes):
            self.driver.answerBody(slot: self.slot, bytes: bytes.readableBytes)
        case .end:
            self.driver.answerEnd(slot: self.slot)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.driver.disconnected(slot: self.slot)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError || error is NIOHTTPDecoderError {
            self.driver.protocolError(slot: self.slot)
        }
        context.close(promise: nil)
    }
}
