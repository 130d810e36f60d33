import NIOCore
import NIOHTTP1

/// Receives the upstream's answer for the exchange currently using an upstream connection.
/// Called on the connection's event loop, which is also the client connection's loop.
protocol UpstreamResponseReceiver: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd(_ trailers: HTTPHeaders?)
    /// The upstream reading side finished one batch of reads: a good moment to flush the client.
    func upstreamReadComplete()
    /// The connection failed or closed before the answer ended.
    func upstreamFailed(_ error: any Error)
    /// The upstream socket's writability changed (request-body back-pressure).
    func upstreamWritabilityChanged(isWritable: Bool)
}

/// Why an upstream connection ended an exchange early.
enum UpstreamError: Error {
    /// The upstream closed the connection before the answer ended.
    case closedEarly
    /// Bytes arrived on a connection no exchange was using.
    case unsolicitedResponse
}

/// The last handler of an upstream connection's pipeline, and the connection's handle.
///
/// One instance per upstream TCP connection. An exchange attaches itself as `receiver`, writes
/// its request through `write(_:)`, and detaches when the answer ended; between exchanges the
/// connection sits idle in its loop's `UpstreamConnectionPool`.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    /// The exchange using this connection, if any.
    var receiver: (any UpstreamResponseReceiver)?
    /// When the connection last went idle (for `idle_timeout`).
    var idleSince: NIODeadline = .now()
    /// Called once when the channel closes, so the pool can forget it.
    var onClose: ((UpstreamHandler) -> Void)?

    private var context: ChannelHandlerContext?
    private var readsPaused = false
    private var readPending = false
    private(set) var isActive = false

    /// Whether the socket accepts more writes without queueing.
    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    // MARK: - Used by the exchange

    func write(_ part: HTTPClientRequestPart) {
        self.context?.write(Self.wrapOutboundOut(part), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    /// Stops reading the upstream's answer (the client is not keeping up).
    func pauseReads() {
        self.readsPaused = true
    }

    /// Resumes reading the upstream's answer.
    func resumeReads() {
        guard self.readsPaused else { return }
        self.readsPaused = false
        if self.readPending, let context = self.context {
            self.readPending = false
            context.read()
        }
    }

    func close() {
        self.receiver = nil
        self.context?.close(promise: nil)
    }
}

// MARK: - Channel events

extension UpstreamHandler {
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.isActive = context.channel.isActive
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.isActive = true
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isActive = false
        if let receiver = self.receiver {
            self.receiver = nil
            receiver.upstreamFailed(UpstreamError.closedEarly)
        }
        if let onClose = self.onClose {
            self.onClose = nil
            onClose(self)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let receiver = self.receiver else {
            // An idle connection must stay silent; anything else means we no longer agree
            // with the upstream on message boundaries.
            context.close(promise: nil)
            return
        }
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            receiver.upstreamResponseHead(head)
        case .body(let buffer):
            receiver.upstreamResponseBody(buffer)
        case .end(let trailers):
            receiver.upstreamResponseEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.receiver?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.receiver?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let receiver = self.receiver {
            self.receiver = nil
            receiver.upstreamFailed(error)
        }
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if self.readsPaused {
            self.readPending = true
        } else {
            context.read()
        }
    }
}
