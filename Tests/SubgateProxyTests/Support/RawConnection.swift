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
        /// Every byte received, including those past `keepAtMost` that were counted but not kept.
        var totalBytes = 0
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
    ///
    /// A slow reader: `autoRead: false` reads nothing until `startReading()`, and
    /// `receiveBufferSize` sets SO_RCVBUF before the handshake (which also stops the kernel
    /// from growing the window), so what the server sends piles up on its side.
    /// `keepAtMost` bounds the bytes kept for `text`; the rest is only counted (`totalBytes`).
    static func open(
        port: Int,
        group: any EventLoopGroup,
        resetOnClose: Bool = false,
        autoRead: Bool = true,
        receiveBufferSize: Int? = nil,
        keepAtMost: Int = .max
    ) async throws -> RawConnection {
        let received = NIOLockedValueBox(Received())
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.autoRead, value: autoRead)
        if let receiveBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferSize))
        }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(received: received, keepAtMost: keepAtMost))
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

    /// One read cycle (for a connection opened with `autoRead: false`): at most what the socket
    /// holds now, so calling it now and then makes a slow reader.
    func readOnce() {
        self.channel.read()
    }

    /// Turns reading on (for a connection opened with `autoRead: false`).
    func startReading() async throws {
        try await self.channel.setOption(.autoRead, value: true).get()
        self.channel.read()
    }

    /// Half-closes: sends a FIN but keeps reading (a client that has said all it will say).
    func shutdownOutput() async throws {
        try await self.channel.close(mode: .output).get()
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
    private let keepAtMost: Int

    init(received: NIOLockedValueBox<RawConnection.Received>, keepAtMost: Int) {
        self.received = received
        self.keepAtMost = keepAtMost
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = Self.unwrapInboundIn(data)
        let now = ContinuousClock.now
        let keepAtMost = self.keepAtMost
        self.received.withLockedValue {
            $0.totalBytes += buffer.readableBytes
            let room = keepAtMost - $0.bytes.readableBytes
            if room > 0, var kept = buffer.readSlice(length: min(room, buffer.readableBytes)) {
                _ = $0.bytes.writeBuffer(&kept)
            }
            $0.reads.append((now, $0.totalBytes))
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
