import NIOCore
import NIOConcurrencyHelpers

/// Tracks the accepted client connections of one listener: enforces `max_connections`,
/// asks every connection to quiesce on shutdown, and force-closes what is left when
/// `shutdown_grace` runs out.
///
/// Written by hand because NIOExtras' `ServerQuiescingHelper` quiesces but neither bounds
/// accepted connections nor force-closes stragglers; both are needed here, on the same set.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var serverChannel: (any Channel)?
        var acceptPaused = false
        var quiescing = false
        var allClosed: EventLoopPromise<Void>?
    }

    private let maxConnections: Int
    private let metrics: ProxyMetrics
    private let state = NIOLockedValueBox(State())

    init(maxConnections: Int, metrics: ProxyMetrics) {
        self.maxConnections = maxConnections
        self.metrics = metrics
    }

    var count: Int { self.state.withLockedValue { $0.channels.count } }

    /// The server channel's handler that sees every accepted child.
    func makeServerHandler() -> AcceptHandler { AcceptHandler(tracker: self) }

    func serverChannelActive(_ channel: any Channel) {
        self.state.withLockedValue { $0.serverChannel = channel }
    }

    /// A child was accepted. Returns whether it may stay (false while quiescing).
    fileprivate func accepted(_ child: any Channel) -> Bool {
        let (keep, pause, server): (Bool, Bool, (any Channel)?) = self.state.withLockedValue { state in
            if state.quiescing { return (false, false, nil) }
            state.channels[ObjectIdentifier(child)] = child
            if state.channels.count >= self.maxConnections && !state.acceptPaused {
                state.acceptPaused = true
                return (true, true, state.serverChannel)
            }
            return (true, false, nil)
        }
        guard keep else { return false }
        self.metrics.openConnections.increment()
        if pause, let server {
            // Stop accepting: further connections wait in the kernel's backlog.
            server.setOption(.autoRead, value: false).whenComplete { _ in }
        }
        child.closeFuture.whenComplete { [self] _ in self.closed(child) }
        return true
    }

    private func closed(_ child: any Channel) {
        self.metrics.openConnections.decrement()
        let (resume, server, done): (Bool, (any Channel)?, EventLoopPromise<Void>?) = self.state.withLockedValue { state in
            state.channels.removeValue(forKey: ObjectIdentifier(child))
            var done: EventLoopPromise<Void>? = nil
            if state.quiescing && state.channels.isEmpty {
                done = state.allClosed
                state.allClosed = nil
            }
            if state.acceptPaused && state.channels.count < self.maxConnections && !state.quiescing {
                state.acceptPaused = false
                return (true, state.serverChannel, done)
            }
            return (false, nil, done)
        }
        if resume, let server {
            server.setOption(.autoRead, value: true).whenComplete { _ in server.read() }
        }
        done?.succeed(())
    }

    /// Stops accepting and asks every connection to finish its current exchange and close.
    /// The future completes when all connections are closed.
    func quiesce(eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let (children, server): ([any Channel], (any Channel)?) = self.state.withLockedValue { state in
            state.quiescing = true
            if state.channels.isEmpty {
                promise.succeed(())
            } else {
                state.allClosed = promise
            }
            return (Array(state.channels.values), state.serverChannel)
        }
        server?.close(promise: nil)
        for child in children {
            child.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        return promise.futureResult
    }

    /// Closes every remaining connection (the grace period ran out).
    func closeAll() -> Int {
        let children = self.state.withLockedValue { Array($0.channels.values) }
        for child in children { child.close(promise: nil) }
        return children.count
    }
}

/// Server-channel handler: registers each accepted child with the tracker.
final class AcceptHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let tracker: ConnectionTracker

    fileprivate init(tracker: ConnectionTracker) { self.tracker = tracker }

    func channelActive(context: ChannelHandlerContext) {
        self.tracker.serverChannelActive(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = Self.unwrapInboundIn(data)
        if self.tracker.accepted(child) {
            context.fireChannelRead(data)
        } else {
            child.close(promise: nil)
        }
    }
}
