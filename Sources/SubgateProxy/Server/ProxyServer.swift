import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore

/// The buyer-facing listener: binds `listen`, builds each connection's pipeline, and owns
/// the per-loop upstream pools.
///
/// Pipeline of a client connection, head to tail:
/// `ConnectionTimeoutHandler` (raw bytes: header-read and idle timers) →
/// `HTTPResponseEncoder` → `HTTPRequestDecoder` (NIO's, with `max_header_bytes` limits) →
/// `HTTPServerPipelineHandler` (one request at a time, quiescing) → `ProxyHandler`.
public final class ProxyServer: Sendable {
    private let shared: ProxyContext
    private let group: any EventLoopGroup
    private let pools: [ObjectIdentifier: NIOLoopBoundBox<UpstreamConnectionPool>]
    private let tracker: ConnectionTracker
    private let sweepers = NIOLockedValueBox<[RepeatedTask]>([])

    public init(
        config: Config,
        group: any EventLoopGroup,
        metrics: ProxyMetrics,
        logger: Logger,
        enforcer: Enforcer? = nil,
        relays: RelayLedger? = nil
    ) {
        self.shared = ProxyContext(config: config, metrics: metrics, logger: logger, enforcer: enforcer, relays: relays)
        self.group = group
        var pools: [ObjectIdentifier: NIOLoopBoundBox<UpstreamConnectionPool>] = [:]
        for loop in group.makeIterator() {
            // Created here, then only ever touched on `loop` (the box checks it).
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(
                UpstreamConnectionPool(eventLoop: loop, config: config),
                eventLoop: loop
            )
        }
        self.pools = pools
        self.tracker = ConnectionTracker(maxConnections: config.maxConnections, metrics: metrics)
    }

    /// Binds the listener and returns the bound address (the real port when `listen` asked for 0).
    public func start() async throws -> SocketAddress {
        let shared = self.shared
        let pools = self.pools
        let tracker = self.tracker
        let config = shared.config
        let channel = try await ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // One accept per read: max_connections stops accepting by turning autoRead off,
            // which NIO only sees between reads (with its default of 4 a burst overshot).
            .serverChannelOption(.maxMessagesPerRead, value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(tracker.makeServerHandler())
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let pool = pools[ObjectIdentifier(channel.eventLoop)]?.value else {
                        throw ChannelError.badInterfaceAddressFamily
                    }
                    try Self.configureClientPipeline(channel.pipeline.syncOperations, shared: shared, pool: pool)
                }
            }
            .bind(host: config.listen.host, port: config.listen.port)
            .get()
        // Close idle upstream connections past `idle_timeout`, on each loop.
        let sweepers = pools.values.map { bound in
            bound.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                bound.value.closeExpired()
            }
        }
        self.sweepers.withLockedValue { $0 = sweepers }
        guard let address = channel.localAddress else { throw ChannelError.unknownLocalAddress }
        return address
    }

    /// Number of open client connections.
    /// A client connection's handlers, in order (also what the `EmbeddedChannel` tests build):
    /// timeouts → NIO's HTTP/1 server codec with pipelining (NIO's error handling and header
    /// validation off: Subgate answers those itself) → `ProxyHandler`.
    static func configureClientPipeline(
        _ sync: ChannelPipeline.SynchronousOperations,
        shared: ProxyContext,
        pool: UpstreamConnectionPool
    ) throws {
        let config = shared.config
        let timeouts = ConnectionTimeoutHandler(headerReadTimeout: config.headerReadTimeout, idleTimeout: config.idleTimeout)
        try sync.addHandler(timeouts)
        try sync.configureHTTPServerPipeline(
            position: .last,
            withPipeliningAssistance: true,
            withServerUpgrade: nil,
            withErrorHandling: false,
            withOutboundHeaderValidation: false,
            withEncoderConfiguration: HTTPResponseEncoder.Configuration(),
            withDecoderLimitConfiguration: shared.decoderLimits.value
        )
        try sync.addHandler(ProxyHandler(shared: shared, pool: pool, timeouts: timeouts))
    }

    public var openConnections: Int { self.tracker.count }

    /// Stops accepting, lets in-flight exchanges finish, and closes what is left at `deadline`.
    /// Returns how many connections had to be closed forcibly, once every connection is closed.
    public func drain(until deadline: ContinuousClock.Instant) async -> Int {
        let loop = self.group.next()
        let allClosed = self.tracker.quiesce(eventLoop: loop)
        let remaining = deadline - ContinuousClock.now
        let timedOut = loop.makePromise(of: Void.self)
        let task = loop.scheduleTask(in: TimeAmount(max(remaining, .zero))) { timedOut.succeed(()) }
        allClosed.cascade(to: timedOut)
        try? await timedOut.futureResult.get()
        task.cancel()
        var forced = 0
        if self.tracker.count > 0 {
            forced = self.tracker.closeAll()
        }
        // The forced closes run on the connections' loops. Wait until the tracker has seen the
        // last one close: returning earlier let the caller shut the group down while those
        // closes still completed `allClosed` on it, which NIO refuses ("Cannot schedule tasks
        // on an EventLoop that has already shut down") and which leaked that loop and these
        // futures (LeakSanitizer, about one run in two of HostileInputTests). A forced close
        // always completes, so this wait is short.
        try? await allClosed.get()
        for sweeper in self.sweepers.withLockedValue({ $0 }) {
            sweeper.cancel()
        }
        for (_, bound) in self.pools {
            try? await bound.eventLoop.submit { bound.value.closeAll() }.get()
        }
        return forced
    }
}

