import NIOCore
import SubgateBenchCore

/// Feeds one connection's raw answers through `ResponseFramer` (`--decoder fast`): no HTTP
/// decoder in the pipeline, requests written as they are.
final class FramedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let driver: LoadDriver
    private let slot: Int
    private var framer = ResponseFramer()

    init(driver: LoadDriver, slot: Int) {
        self.driver = driver
        self.slot = slot
    }

    func channelActive(context: ChannelHandlerContext) {
        self.driver.connected(slot: self.slot, context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try self.framer.feed(self.unwrapInboundIn(data)) { answer in
                self.driver.answerHead(slot: self.slot, status: answer.status, keepAlive: answer.keepAlive)
                self.driver.answerBody(slot: self.slot, bytes: answer.bodyBytes)
                self.driver.answerEnd(slot: self.slot)
            }
        } catch {
            self.driver.protocolError(slot: self.slot)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.framer.closed { answer in
            self.driver.answerHead(slot: self.slot, status: answer.status, keepAlive: false)
            self.driver.answerBody(slot: self.slot, bytes: answer.bodyBytes)
            self.driver.answerEnd(slot: self.slot)
        }
        self.driver.disconnected(slot: self.slot)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
