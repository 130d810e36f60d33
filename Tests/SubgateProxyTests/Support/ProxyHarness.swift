import Logging
import NIOCore
import NIOPosix
import SubgateCore
@testable import SubgateProxy

/// An in-process Subgate on port 0 in front of a `TestUpstream`, for end-to-end tests.
struct ProxyHarness {
    let group: MultiThreadedEventLoopGroup
    let upstream: TestUpstream
    let server: ProxyServer
    let port: Int
    let config: Config

    /// Starts the upstream and the proxy; `configure` adjusts the config first.
    static func start(
        eventLoops: Int = 2,
        upstreamPort: Int? = nil,
        _ configure: (inout Config) -> Void = { _ in }
    ) async throws -> ProxyHarness {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoops)
        let upstream = try await TestUpstream(group: group)
        var config = Config()
        config.listen = HostPort(host: "127.0.0.1", port: 0)
        config.upstream = UpstreamTarget(host: "127.0.0.1", port: upstreamPort ?? upstream.port)
        config.accessLog = false
        config.sellerKey = Secret("am_k_test")
        configure(&config)
        let server = ProxyServer(config: config, group: group, metrics: ProxyMetrics(), logger: Logger(label: "test"))
        let address = try await server.start()
        return ProxyHarness(group: group, upstream: upstream, server: server, port: address.port ?? 0, config: config)
    }

    /// Runs `body` against a fresh harness and always stops it.
    static func with<T>(
        eventLoops: Int = 2,
        upstreamPort: Int? = nil,
        _ configure: (inout Config) -> Void = { _ in },
        _ body: (ProxyHarness) async throws -> T
    ) async throws -> T {
        let harness = try await Self.start(eventLoops: eventLoops, upstreamPort: upstreamPort, configure)
        do {
            let result = try await body(harness)
            await harness.stop()
            return result
        } catch {
            await harness.stop()
            throw error
        }
    }

    func stop() async {
        _ = await self.server.drain(until: .now)
        await self.upstream.stop()
        try? await self.group.shutdownGracefully()
    }

    var baseURL: String { "http://127.0.0.1:\(self.port)" }
}
