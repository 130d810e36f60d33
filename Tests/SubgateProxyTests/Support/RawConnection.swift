import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A raw TCP client that stays open between writes, for conversations `RawClient.exchange`
/// cannot have: a head now and the body later (`Expect: 100-continue`, a slow upload), a
/// stalled half head (slowloris), several connections held open at once (`max_connections`).
///
/// What the server sends is collected in the background; tests wait on it with a deadline.
final class RawConnection: Sendable {
    /// Everything received so far, and whether the server closed the connection.
    struct Received: Sendable {
        var bytes = ByteBuffer()
        var closed = false
        /// When each read arrived (taken on the NIO thread, so a busy test scheduler cannot
        /// delay it) and how many bytes had arrived in total by then.
        var reads: [(at: ContinuousClock.Instant, total: Int)] = []
        var text: String { String(buffer: self.bytes) }
    }

    let channel: any Channel
    private let received: NIOLockedValueBox<Received>

    private init(channel: any Channel, received: NIOLockedValueBox<Received>) {
        self.channel = channel
        self.received = received
    }

    /// Connects to `127.0.0.1:port`. With `resetOnClose`, `close()` sends an RST instead of a
    /// FIN (SO_LINGER 0): a client that vanishes rather than one that finishes politely.
    static func open(port: Int, group: any EventLoopGroup, resetOnClose: Bool = false) async throws -> RawConnection {
        let received = NIOLockedValueBox(Received())
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(received: received))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        if resetOnClose {
            guard let socket = channel as? any SocketOptionProvider else {
                throw ChannelError.operationUnsupported
            }
            try await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        return RawConnection(channel: channel, received: received)
    }

    /// When the byte at `offset` (0-based) arrived, if it has.
    func arrival(ofByte offset: Int) -> ContinuousClock.Instant? {
        self.received.withLockedValue { received in received.reads.first { $0.total > offset }?.at }
    }

    // MARK: - Talking

    func send(_ text: String) async throws {
        try await self.send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// Closes the client side (FIN, or RST when opened with `resetOnClose`).
    func close() async {
        try? await self.channel.close().get()
    }

    // MARK: - Looking at what came back

    var snapshot: Received { self.received.withLockedValue { $0 } }
    var text: String { self.snapshot.text }
    var isClosed: Bool { self.snapshot.closed }

    /// Waits until `condition` holds for what was received, or `timeout` passes.
    /// Returns whether it held.
    @discardableResult
    func wait(timeout: Duration = .seconds(3), until condition: (Received) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if condition(self.snapshot) { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until the received text contains `needle` `count` times.
    @discardableResult
    func waitForText(_ needle: String, count: Int = 1, timeout: Duration = .seconds(3)) async -> Bool {
        await self.wait(timeout: timeout) { $0.text.occurrences(of: needle) >= count }
    }

    /// Waits until the server has closed the connection.
    @discardableResult
    func waitForClose(timeout: Duration = .seconds(3)) async -> Bool {
        await self.wait(timeout: timeout) { $0.closed }
    }
}

/// Collects the inbound bytes of a `RawConnection`.
private final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    private let received: NIOLockedValueBox<RawConnection.Received>

    init(received: NIOLockedValueBox<RawConnection.Received>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = Self.unwrapInboundIn(data)
        let now = ContinuousClock.now
        self.received.withLockedValue {
            _ = $0.bytes.writeBuffer(&buffer)
            $0.reads.append((now, $0.bytes.readableBytes))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.received.withLockedValue { $0.closed = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset from the server: the connection is over, what arrived before it stays.
        context.close(promise: nil)
    }
}

extension String {
    /// How many times `needle` occurs, not overlapping.
    func occurrences(of needle: String) -> Int {
        guard !needle.isEmpty else { return 0 }
        var count = 0
        var rest = self[...]
        while let range = rest.range(of: needle) {
            count += 1
            rest = rest[range.upperBound...]
        }
        return count
    }
}
