import NIOCore
import SubgateCore

/// Enforces `header_read_timeout` and `idle_timeout` on a client connection.
///
/// It sits in front of the HTTP decoder and sees raw bytes, which is the only place that
/// knows when the first byte of a head arrives: a slow-header (slowloris) client is closed
/// `header_read_timeout` after its head began — or after the connection was accepted — while
/// an idle keep-alive connection may wait `idle_timeout` for its next request.
/// The proxy handler tells it when a head is complete and when an exchange has finished.
final class ConnectionTimeoutHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Where the connection is in its request cycle.
    enum Phase {
        /// Between requests: `idle_timeout` runs until the first byte of the next head.
        case idle
        /// A head is arriving: `header_read_timeout` runs until it is complete.
        case readingHead
        /// An exchange is in progress: no timer here (the proxy handler owns upstream timers).
        case exchange
    }

    private let headerReadTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var phase: Phase = .readingHead
    private var timer = MovingDeadline()
    private var context: ChannelHandlerContext?

    init(headerReadTimeout: Duration, idleTimeout: Duration) {
        self.headerReadTimeout = TimeAmount(headerReadTimeout)
        self.idleTimeout = TimeAmount(idleTimeout)
    }

    // MARK: - Called by the proxy handler

    /// A whole request head was decoded: stop the head timer.
    func requestHeadReceived() {
        self.phase = .exchange
        self.disarm()
    }

    /// The answer was written and the connection stays open: wait for the next request.
    func exchangeFinished() {
        guard let context = self.context else { return }
        self.phase = .idle
        self.arm(context: context, after: self.idleTimeout)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive {
            self.arm(context: context, after: self.headerReadTimeout)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimer()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.phase = .readingHead
        self.arm(context: context, after: self.headerReadTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimer()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = self.phase {
            self.phase = .readingHead
            self.arm(context: context, after: self.headerReadTimeout)
        }
        context.fireChannelRead(data)
    }

    // MARK: - Timers

    private func arm(context: ChannelHandlerContext, after delay: TimeAmount) {
        self.timer.set(context.eventLoop.now + delay, on: context.eventLoop) { [weak self] in
            self?.timerFired()
        }
    }

    /// Between a complete head and the end of its exchange nothing is timed here.
    private func disarm() {
        self.timer.clear()
    }

    private func cancelTimer() {
        self.timer.cancel()
    }

    private func timerFired() {
        guard let context = self.context else { return }
        let due = self.timer.fired(now: context.eventLoop.now, on: context.eventLoop) { [weak self] in
            self?.timerFired()
        }
        guard due else { return }
        switch self.phase {
        case .idle:
            context.close(promise: nil)
        case .readingHead:
            // No response is in progress in this phase, so a raw 408 cannot interleave with one.
            let rejection = ProxyRejection.requestTimeout
            var buffer = context.channel.allocator.buffer(capacity: 256)
            ErrorResponseWriter.writeRaw(rejection, into: &buffer)
            context.writeAndFlush(Self.wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .exchange:
            break
        }
    }
}
