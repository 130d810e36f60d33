import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import SubgateCore
import SubgateProxy
import SubgateSimulator

/// `subgate demo`: the simulator, a demo seller API and the proxy in one process on
/// loopback, with demo tokens and ready-to-paste `curl` lines (SPEC §1). Nothing to set up:
/// the configuration is built here, the journal lives in a temporary directory.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Try Subgate with no set-up: simulator, demo seller API and proxy on loopback, with demo tokens.",
        discussion: """
            Starts, in this one process:
              the control-plane simulator   (--simulator-listen, default 127.0.0.1:9900)
              a demo seller API             (--upstream-listen, default 127.0.0.1:9902):
                                            GET /v1/quote, GET /v1/events (SSE), POST /v1/echo
              Subgate in front of it        (--listen, default 127.0.0.1:8080; admin on --admin-listen)
            then prints four demo tokens (healthy; 3 uses left; expiring a minute after start;
            revoked) with a curl line for each case. Ctrl-C (or SIGTERM) drains, reports the
            buffered usage to the simulator, prints what it accepted, and exits 0.
            Port 0 picks a free port for any of the four listeners.
            """
    )

    @Option(name: .long, help: "Where buyers connect to the demo's Subgate.")
    var listen: String = "127.0.0.1:8080"

    @Option(name: .customLong("admin-listen"), help: "The demo Subgate's admin listener (/healthz, /readyz, /status, /metrics, POST /flush).")
    var adminListen: String = "127.0.0.1:9901"

    @Option(name: .customLong("simulator-listen"), help: "The control-plane simulator.")
    var simulatorListen: String = "127.0.0.1:9900"

    @Option(name: .customLong("upstream-listen"), help: "The demo seller API behind Subgate.")
    var upstreamListen: String = "127.0.0.1:9902"

    @Option(name: .customLong("expiring-after"), help: "Seconds until the expiring demo token expires.")
    var expiringAfter: Int = 60

    @Option(name: .customLong("flush-interval"), help: "Seconds between usage reports to the simulator (usage_flush_interval).")
    var flushInterval: Int = 5

    func validate() throws {
        for (option, value) in [("--listen", self.listen), ("--admin-listen", self.adminListen), ("--simulator-listen", self.simulatorListen), ("--upstream-listen", self.upstreamListen)] {
            if case .failure(let error) = HostPort.parse(value) {
                throw ValidationError("\(option) '\(value)': \(error.message)")
            }
        }
        guard (1...86_400).contains(self.expiringAfter) else {
            throw ValidationError("--expiring-after must be between 1 and 86400 seconds.")
        }
        guard (1...3_600).contains(self.flushInterval) else {
            throw ValidationError("--flush-interval must be between 1 and 3600 seconds.")
        }
    }

    func run() async throws {
        let simulatorAddress = try HostPort.parse(self.simulatorListen).get()
        let upstreamAddress = try HostPort.parse(self.upstreamListen).get()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let simulator: Simulator
        let upstream: DemoUpstream
        do {
            simulator = try await Simulator.start(host: simulatorAddress.host, port: simulatorAddress.port, group: group)
        } catch {
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate demo: could not start the simulator on \(self.simulatorListen): \(Bootstrap.describe(error)); pick another with --simulator-listen")
        }
        do {
            upstream = try await DemoUpstream.start(host: upstreamAddress.host, port: upstreamAddress.port, group: group)
        } catch {
            await simulator.stop()
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate demo: could not start the demo upstream on \(self.upstreamListen): \(Bootstrap.describe(error)); pick another with --upstream-listen")
        }

        let started = Date()
        let tokens = DemoTokens.create(in: simulator, expiresAt: started.addingTimeInterval(TimeInterval(self.expiringAfter)))
        let journalDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-demo-\(getpid())")
        try? FileManager.default.createDirectory(at: journalDirectory, withIntermediateDirectories: true)
        let config = self.config(simulator: simulator, upstreamPort: upstream.port, journal: journalDirectory.appendingPathComponent("usage.journal").path)

        let registry = PrometheusCollectorRegistry()
        Bootstrap.logging(config)
        Bootstrap.metrics(registry)
        let logger = Logger(label: "subgate")
        let banner = Banner { proxy, admin in
            DemoTokens.banner(tokens, proxy: proxy, admin: admin, simulator: simulator.rootURL, upstreamPort: upstream.port, expiringAfter: self.expiringAfter)
        }
        let services: [ServiceGroupConfiguration.ServiceConfiguration]
        do {
            services = try await ProxyStack.services(
                config: config,
                group: group,
                registry: registry,
                logger: logger,
                listening: .init(proxy: { banner.set(proxy: $0) }, admin: { banner.set(admin: $0) })
            )
        } catch {
            await upstream.stop()
            await simulator.stop()
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate demo: could not start: \(error)")
        }
        let serviceGroup = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        var failure: (any Error)?
        do {
            try await serviceGroup.run()
        } catch {
            failure = error
        }
        // The proxy has drained and enforcement has flushed: the simulator saw every unit.
        let accepted = simulator.totalAcceptedUnits
        await upstream.stop()
        await simulator.stop()
        try? await group.shutdownGracefully()
        if let failure {
            Bootstrap.fail("subgate demo: could not start: \(Bootstrap.describe(failure)) (listen = \(self.listen), admin_listen = \(self.adminListen))")
        }
        try? FileManager.default.removeItem(at: journalDirectory)
        Self.write("subgate demo: stopped; the simulator accepted \(accepted) units of usage in total.\n")
    }

    /// The demo's configuration, as a file would say it, through the real parser.
    private func config(simulator: Simulator, upstreamPort: Int, journal: String) -> Config {
        let text = """
            listen = \(self.listen)
            admin_listen = \(self.adminListen)
            upstream = http://127.0.0.1:\(upstreamPort)
            control_plane_url = \(simulator.baseURL)
            seller_key = \(DemoTokens.sellerKey)
            usage_journal = \(journal)
            usage_flush_interval = \(self.flushInterval)s
            log_format = text
            """
        switch ConfigParser.parse(text, file: "(subgate demo)", environment: [:], readFile: { _ in "" }) {
        case .success(let config):
            return config
        case .failure(let errors):
            // Only the options above reach this text, and validate() has checked them.
            fatalError("subgate demo built an invalid configuration: \(errors)")
        }
    }

    static func write(_ text: String) {
        // Unbuffered: scripts and tests read the banner while the process runs.
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// Prints the banner once both listeners have their addresses.
private final class Banner: Sendable {
    private let state = NIOLockedValueBox<(proxy: SocketAddress?, admin: SocketAddress?, printed: Bool)>((nil, nil, false))
    private let render: @Sendable (SocketAddress, SocketAddress) -> String

    init(render: @escaping @Sendable (SocketAddress, SocketAddress) -> String) {
        self.render = render
    }

    func set(proxy: SocketAddress) { self.update { $0.proxy = proxy } }
    func set(admin: SocketAddress) { self.update { $0.admin = admin } }

    private func update(_ change: (inout (proxy: SocketAddress?, admin: SocketAddress?, printed: Bool)) -> Void) {
        let ready: (SocketAddress, SocketAddress)? = self.state.withLockedValue { state in
            change(&state)
            guard !state.printed, let proxy = state.proxy, let admin = state.admin else { return nil }
            state.printed = true
            return (proxy, admin)
        }
        if let (proxy, admin) = ready {
            DemoCommand.write(self.render(proxy, admin))
        }
    }
}
