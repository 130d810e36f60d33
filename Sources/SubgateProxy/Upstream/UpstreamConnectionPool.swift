import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore

/// Keep-alive connections to the upstream, one pool per event loop.
///
/// Only touched on its own loop, so it needs no lock: a client connection borrows a
/// connection from the pool of the loop it runs on, and the whole exchange stays there.
/// The pool bounds what it keeps idle (`maxIdle`); the number of connections in use is
/// bounded by `max_connections`, since each client connection has at most one exchange in
/// flight (pipelined requests are served one after another).
final class UpstreamConnectionPool {
    /// What `acquire` hands out.
    enum Lease {
        /// A pooled connection, ready now.
        case ready(UpstreamHandler)
        /// A new connection is being opened.
        case connecting
    }

    let eventLoop: any EventLoop
    private let target: UpstreamTarget
    private let idleTimeout: TimeAmount
    private let maxIdle: Int
    private let makeBootstrap: () -> ClientBootstrap
    /// Made on first use, so a pool can exist on an `EmbeddedEventLoop` in handler tests.
    private lazy var bootstrap: ClientBootstrap = self.makeBootstrap()
    private var idle: [UpstreamHandler] = []
    private var closed = false

    init(eventLoop: any EventLoop, config: Config, maxIdle: Int = 256) {
        self.eventLoop = eventLoop
        self.target = config.upstream
        self.idleTimeout = TimeAmount(config.idleTimeout)
        self.maxIdle = maxIdle
        let maxHeaderBytes = max(config.maxHeaderBytes, 64 * 1024)
        let connectTimeout = TimeAmount(config.upstreamConnectTimeout)
        self.makeBootstrap = {
            ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    var limits = NIOHTTPDecoderLimitConfiguration()
                    limits.maxHeaderListSize = maxHeaderBytes
                    limits.maxHeaderFieldSize = maxHeaderBytes
                    // Framing is set by Subgate from the checked client request, never guessed.
                    var encoderConfiguration = HTTPRequestEncoder.Configuration()
                    encoderConfiguration.automaticallySetFramingHeaders = false
                    try channel.pipeline.syncOperations.addHandlers([
                        HTTPRequestEncoder(configuration: encoderConfiguration),
                        ByteToMessageHandler(
                            HTTPResponseDecoder(
                                leftOverBytesStrategy: .dropBytes,
                                informationalResponseStrategy: .forward,
                                limitConfiguration: limits
                            )
                        ),
                        UpstreamHandler(),
                    ])
                }
            }
        }
    }

    /// A pooled connection if one is alive and fresh, else `.connecting`: the caller then calls `connect`.
    func acquire() -> Lease {
        self.eventLoop.preconditionInEventLoop()
        let now = NIODeadline.now()
        while let candidate = self.idle.popLast() {
            if candidate.isActive && now - candidate.idleSince < self.idleTimeout {
                return .ready(candidate)
            }
            candidate.onClose = nil
            candidate.close()
        }
        return .connecting
    }

    /// Opens a new connection and calls `completion` on this loop.
    func connect(_ completion: @escaping (Result<UpstreamHandler, any Error>) -> Void) {
        self.bootstrap.connect(host: self.target.host, port: self.target.port)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    do {
                        let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
                        completion(.success(handler))
                    } catch {
                        channel.close(promise: nil)
                        completion(.failure(error))
                    }
                case .failure(let error):
                    completion(.failure(error))
                }
            }
    }

    /// Returns a connection after a complete exchange; it is closed instead when the pool is
    /// full or shut down.
    func release(_ connection: UpstreamHandler) {
        self.eventLoop.preconditionInEventLoop()
        connection.receiver = nil
        // The exchange may have ended with the upstream's reads paused (its client was not
        // keeping up when the last part of the answer arrived). A pooled connection must read:
        // to get the next exchange's answer, and to notice the upstream closing it while idle.
        connection.resumeReads()
        guard !self.closed, connection.isActive, self.idle.count < self.maxIdle else {
            connection.close()
            return
        }
        connection.idleSince = .now()
        connection.onClose = { [weak self] closedConnection in
            self?.forget(closedConnection)
        }
        self.idle.append(connection)
    }

    /// Closes idle connections older than `idle_timeout` (run periodically by the server).
    func closeExpired() {
        let now = NIODeadline.now()
        var kept: [UpstreamHandler] = []
        kept.reserveCapacity(self.idle.count)
        for connection in self.idle {
            if now - connection.idleSince >= self.idleTimeout {
                connection.onClose = nil
                connection.close()
            } else {
                kept.append(connection)
            }
        }
        self.idle = kept
    }

    /// Closes every idle connection and refuses to keep new ones (shutdown).
    func closeAll() {
        self.closed = true
        let all = self.idle
        self.idle.removeAll()
        for connection in all {
            connection.onClose = nil
            connection.close()
        }
    }

    var idleCount: Int { self.idle.count }

    private func forget(_ connection: UpstreamHandler) {
        self.idle.removeAll { $0 === connection }
    }
}

extension TimeAmount {
    /// A Swift `Duration` as a NIO `TimeAmount` (nanosecond precision, saturating).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if nanos.overflow {
            self = .nanoseconds(Int64.max)
        } else {
            self = .nanoseconds(nanos.partialValue + attoseconds / 1_000_000_000)
        }
    }
}
