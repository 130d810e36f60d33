import Logging
import NIOCore
import ServiceLifecycle
import SubgateCore

/// Runs the buyer-facing listener until graceful shutdown, then drains it (SPEC §4):
/// `/readyz` turns 503 at once, new connections are still accepted for `drain_delay`, then
/// accepting stops, in-flight exchanges finish, and what is left at `shutdown_grace` is closed.
public struct ProxyService: Service {
    private let server: ProxyServer
    private let readiness: Readiness
    private let config: Config
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress) -> Void

    public init(
        server: ProxyServer,
        readiness: Readiness,
        config: Config,
        logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }
    ) {
        self.server = server
        self.readiness = readiness
        self.config = config
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let address = try await self.server.start()
        self.readiness.setListening(true)
        self.logger.notice("proxy listening", metadata: ["address": "\(address.hostPort)", "upstream": "\(self.config.upstream)"])
        self.onListening(address)

        try? await gracefulShutdown()

        let deadline = ContinuousClock.now + self.config.shutdownGrace
        self.readiness.startDraining()
        self.logger.notice(
            "shutting down: readiness is now 503",
            metadata: ["drain_delay": "\(self.config.drainDelay)", "shutdown_grace": "\(self.config.shutdownGrace)"]
        )
        let drainDelay = min(self.config.drainDelay, self.config.shutdownGrace)
        if drainDelay > .zero {
            // Keep accepting while load balancers notice the failing readiness probe.
            try? await ContinuousClock().sleep(until: ContinuousClock.now + drainDelay)
        }
        let inFlight = self.server.openConnections
        let forced = await self.server.drain(until: deadline)
        self.readiness.setListening(false)
        if forced > 0 {
            self.logger.warning(
                "shutdown grace ran out; closed connections still in use",
                metadata: ["closed": "\(forced)"]
            )
        } else {
            self.logger.notice("proxy drained", metadata: ["connections_at_drain": "\(inFlight)"])
        }
    }
}

/// Runs the admin listener until graceful shutdown; it is the last to stop so that `/readyz`
/// answers 503 throughout the drain.
public struct AdminService: Service {
    private let admin: AdminServer
    private let logger: Logger
    private let onListening: @Sendable (SocketAddress) -> Void

    public init(admin: AdminServer, logger: Logger, onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in }) {
        self.admin = admin
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let (address, channel) = try await self.admin.start()
        self.logger.notice("admin listening", metadata: ["address": "\(address.hostPort)"])
        self.onListening(address)
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

extension SocketAddress {
    /// `127.0.0.1:8080` / `[::1]:8080`, as operators write it.
    public var hostPort: String {
        let ip = self.ipAddress ?? "?"
        let port = self.port.map(String.init) ?? "?"
        if case .v6 = self { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }
}
