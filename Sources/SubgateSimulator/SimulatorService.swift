import NIOCore
import ServiceLifecycle

/// The simulator as a `Service`: starts it, reports it started, serves until graceful
/// shutdown (SIGTERM/SIGINT in a `ServiceGroup`), then closes it.
public struct SimulatorService: Service {
    private let host: String
    private let port: Int
    private let ratePerMinute: Int
    private let group: any EventLoopGroup
    private let onStart: @Sendable (Simulator) async -> Void

    public init(
        host: String,
        port: Int,
        ratePerMinute: Int = 300,
        group: any EventLoopGroup,
        onStart: @escaping @Sendable (Simulator) async -> Void = { _ in }
    ) {
        self.host = host
        self.port = port
        self.ratePerMinute = ratePerMinute
        self.group = group
        self.onStart = onStart
    }

    public func run() async throws {
        let simulator = try await Simulator.start(host: self.host, port: self.port, ratePerMinute: self.ratePerMinute, group: self.group)
        await self.onStart(simulator)
        // Returns on graceful shutdown, or throws when the task is cancelled: close either way.
        try? await gracefulShutdown()
        await simulator.stop()
    }
}
