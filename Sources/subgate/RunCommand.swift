import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import SubgateCore
import SubgateProxy

/// `subgate run --config FILE`: the proxy (SPEC §1).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the proxy in front of the configured upstream.",
        discussion: """
            FILE defaults to $SUBGATE_CONFIG, then ./subgate.conf. Every key can be overridden by
            the environment variable SUBGATE_<KEY>. SIGTERM or SIGINT drains and exits 0 within
            shutdown_grace.
            """
    )

    @OptionGroup var configOption: ConfigOption

    func run() async throws {
        let config = try self.configOption.loadOrExit()
        let registry = PrometheusCollectorRegistry()
        Bootstrap.logging(config)
        Bootstrap.metrics(registry)
        let logger = Logger(label: "subgate")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.eventLoops ?? System.coreCount)
        let proxy: [ServiceGroupConfiguration.ServiceConfiguration]
        do {
            proxy = try await ProxyStack.services(config: config, group: group, registry: registry, logger: logger)
        } catch {
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate: could not start: \(error)")
        }
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: proxy,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await services.run()
        } catch {
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate: could not start: \(Bootstrap.describe(error)) (listen = \(config.listen), admin_listen = \(config.adminListen))")
        }
        try await group.shutdownGracefully()
    }
}

/// The proxy as services: enforcement, the admin listener and the buyer-facing listener, for
/// `subgate run` and `subgate demo` alike.
enum ProxyStack {
    struct Listening: Sendable {
        var proxy: @Sendable (SocketAddress) -> Void = { _ in }
        var admin: @Sendable (SocketAddress) -> Void = { _ in }
    }

    /// Opens the journal and builds the services, in the order a `ServiceGroup` must start
    /// them: it stops them in reverse, so the proxy drains first, then the admin listener
    /// goes, then enforcement flushes usage one last time.
    static func services(
        config: Config,
        group: any EventLoopGroup,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        listening: Listening = Listening()
    ) async throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
        let readiness = Readiness()
        let (enforcer, enforcement) = try await EnforcementSetup.make(config: config, readiness: readiness, logger: logger)
        let relays = try RelayLedger.open(config: config, logger: logger)
        let server = ProxyServer(config: config, group: group, metrics: ProxyMetrics(), logger: logger, enforcer: enforcer, relays: relays)
        let admin = AdminServer(
            config: config,
            group: group,
            readiness: readiness,
            sources: AdminServer.Sources(
                renderMetrics: { registry.emitToString() },
                statusFields: {
                    [("open_connections", String(server.openConnections))] + enforcer.statusFields() + (relays?.statusFields() ?? [])
                },
                flush: { await enforcer.flushNow() }
            )
        )
        // Started first, stopped last: the relay store waits until the drained proxy's last
        // relayed answers are on disk.
        let relayStore: [ServiceGroupConfiguration.ServiceConfiguration] = relays.map { [.init(service: RelayStoreService(relays: $0))] } ?? []
        return relayStore + [
            .init(service: enforcement),
            .init(service: AdminService(admin: admin, logger: logger, onListening: listening.admin)),
            .init(service: ProxyService(server: server, readiness: readiness, config: config, logger: logger, onListening: listening.proxy)),
        ]
    }
}

/// `--config FILE`, shared by the commands that read a configuration.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "The key=value configuration file (default: $SUBGATE_CONFIG, then ./subgate.conf).")
    var config: String?

    /// The path the commands read: the option, then `$SUBGATE_CONFIG`, then `./subgate.conf`.
    var resolvedPath: String {
        self.config ?? ProcessInfo.processInfo.environment["SUBGATE_CONFIG"] ?? "./subgate.conf"
    }

    /// Loads the configuration, or prints every problem (file:line: key: what) and exits 1.
    func loadOrExit() throws -> Config {
        switch ConfigParser.load(file: self.resolvedPath, environment: ProcessInfo.processInfo.environment) {
        case .success(let config):
            return config
        case .failure(let errors):
            for error in errors.errors {
                FileHandle.standardError.write(Data("subgate: \(error)\n".utf8))
            }
            throw ExitCode(1)
        }
    }
}

/// Process-wide set-up that only the executable may do (STYLE §6).
enum Bootstrap {
    static func logging(_ config: Config) {
        let level = config.logLevel
        switch config.logFormat {
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }

    static func metrics(_ registry: PrometheusCollectorRegistry) {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// One clear line on stderr, then exit 1 (SPEC §1).
    static func fail(_ line: String) -> Never {
        FileHandle.standardError.write(Data((line + "\n").utf8))
        Foundation.exit(1)
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return io.description }
        return String(describing: error)
    }
}
