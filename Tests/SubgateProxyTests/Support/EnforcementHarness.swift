import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore
import SubgateSimulator
@testable import SubgateProxy

/// An in-process Subgate with enforcement on, between the control-plane simulator and a
/// `TestUpstream`, all on loopback port 0. The background service is not run: tests drive
/// the flush (`flush()`) and the poller (`poll()`) themselves, so nothing depends on timing.
struct EnforcementHarness {
    let group: MultiThreadedEventLoopGroup
    let simulator: Simulator
    let upstream: TestUpstream
    let server: ProxyServer
    let enforcer: Enforcer
    let service: EnforcementService
    let readiness: Readiness
    let port: Int
    let config: Config
    /// Gateway-relayed calls; nil unless the test configures `gateway_secret`.
    let relays: RelayLedger?

    /// `logger` receives every log line of the proxy and enforcement (to check what is logged).
    static func with<T>(
        sellerKey: String = "am_k_demo",
        logger: Logger = Logger(label: "test"),
        _ configure: (inout Config) -> Void = { _ in },
        _ body: (EnforcementHarness) async throws -> T
    ) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let simulator = try await Simulator.start(group: group)
        let upstream = try await TestUpstream(group: group)
        var config = Config()
        config.listen = HostPort(host: "127.0.0.1", port: 0)
        config.upstream = UpstreamTarget(host: "127.0.0.1", port: upstream.port)
        config.accessLog = false
        config.controlPlaneURL = simulator.baseURL
        config.sellerKey = Secret(sellerKey)
        // Used by `withCrovver` (`backend = crovver`); ignored by Crochet mode.
        config.crovverURL = simulator.crovverURL
        config.crovverKey = Secret("sk_test_demo")
        config.usageJournal = nil
        config.cacheTTL = .fixed(.seconds(60))
        configure(&config)
        let readiness = Readiness()
        let (enforcer, service) = try await EnforcementSetup.make(config: config, readiness: readiness, logger: logger)
        let relays = try RelayLedger.open(config: config, logger: logger)
        let server = ProxyServer(config: config, group: group, metrics: ProxyMetrics(), logger: logger, enforcer: enforcer, relays: relays)
        let address = try await server.start()
        let harness = EnforcementHarness(
            group: group, simulator: simulator, upstream: upstream, server: server, enforcer: enforcer, service: service,
            readiness: readiness, port: address.port ?? 0, config: config, relays: relays
        )
        do {
            let result = try await body(harness)
            await harness.stop()
            return result
        } catch {
            await harness.stop()
            throw error
        }
    }

    /// The same harness with `backend = crovver` against the simulator's Crovver API
    /// (`sk_test_demo`, tenant header `x-tenant-id`, pool `api_calls`, amount 1 unless configured).
    static func withCrovver<T>(
        _ configure: (inout Config) -> Void = { _ in },
        _ body: (EnforcementHarness) async throws -> T
    ) async throws -> T {
        try await Self.with({ config in
            config.backend = .crovver
            configure(&config)
        }, body)
    }

    /// One request through Subgate naming `tenant` in `x-tenant-id` (none when nil).
    func get(path: String = "/hello", tenant: String?, extraHeaders: [(String, String)] = []) async throws -> Answer {
        var headers = extraHeaders
        if let tenant { headers.append(("x-tenant-id", tenant)) }
        return try await self.get(path: path, token: nil, extraHeaders: headers)
    }

    func stop() async {
        _ = await self.server.drain(until: .now)
        self.relays?.close()
        await self.enforcer.client.shutdown()
        await self.simulator.stop()
        await self.upstream.stop()
        try? await self.group.shutdownGracefully()
    }

    struct Answer {
        var status: UInt
        var headers: HTTPHeaders
        var body: String
        var errorCode: String? {
            guard let data = self.body.data(using: .utf8),
                let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let error = json["error"] as? [String: Any]
            else { return nil }
            return error["code"] as? String
        }
    }

    /// One request through Subgate, with `token` in `x-subscription-token` when given.
    func get(path: String = "/hello", token: String?, extraHeaders: [(String, String)] = []) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(self.port)\(path)")
        if let token { request.headers.add(name: "x-subscription-token", value: token) }
        for (name, value) in extraHeaders { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return Answer(status: response.status.code, headers: response.headers, body: body)
    }

    /// One request through Subgate with any method, headers and body.
    func send(_ method: HTTPMethod = .POST, path: String, headers: [(String, String)], body: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(self.port)\(path)")
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
        let answer = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return Answer(status: response.status.code, headers: response.headers, body: answer)
    }

    /// Reports pending usage now (as `POST /flush` does).
    func flush() async -> UsageRecorder.FlushSummary {
        await self.enforcer.flush(force: true)
    }

    /// One poller pass (refreshes due entries within the budget).
    func poll() async {
        await self.service.pollOnce(now: .now)
    }
}
