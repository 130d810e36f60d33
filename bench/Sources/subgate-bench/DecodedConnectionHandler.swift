import NIOCore
import NIOHTTP1
import SubgateBenchCore

/// Feeds one connection's answers, parsed by NIO's `HTTPResponseDecoder` (`--decoder nio`),
/// to its `LoadDriver`.
final class DecodedConnectionHandler: ChannelInboundHandler {
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
