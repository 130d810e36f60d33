import ArgumentParser
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import SubgateCore
import SubgateSimulator

/// `subgate simulate --listen ADDR [--seed FILE]`: the control-plane simulator (SPEC §7):
/// Crochet subscription tokens, the Crochet gateway and Crovver credits; runs until SIGINT
/// or SIGTERM. docs/simulator.md has the details.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the control-plane simulator (Crochet tokens and gateway, Crovver credits) for tests, the bench and local development.",
        discussion: """
            Crochet, under http://ADDR/api/v1 (point control_plane_url there):
              POST /subscriptions/tokens/verify  {"token_hash"}          Authorization: Bearer am_k_...
              POST /subscriptions/tokens/usage   {"token_hash","count"}  Authorization: Bearer am_k_...
              POST /subscriptions/tokens/rotate  (the buyer)             Authorization: Bearer cro_sub_...
              POST /gateway/:listingId           pay-per-call: 402, settle, retry with X-Crochet-Relay-Request-Id
            The seller key am_k_demo always exists; creating a token registers its seller_key.
            verify and usage allow --rate-limit calls per minute each per seller key, rotate 10 per
            subscriber (sliding 60 s window); over it they answer 429 RATE_LIMITED with Retry-After.

            Crovver, under http://ADDR/api/public (point crovver_url there):
              POST /credits/consume  {"tenantId","poolKey","amount","idempotencyKey","metadata"}
                                     Authorization: Bearer sk_test_demo (or x-service-key)

            Admin API (no authentication: keep it on loopback), JSON, under /_sim:
              GET|POST /_sim/sellers                 {"seller_key","seller_id","gateway_secret"}
              POST     /_sim/tokens                  create: {"token","seller_key","listing_id","subscriber_id",
                                                     "usage_limit" (null: unlimited),"usage_count",
                                                     "expires_at","status"}, all optional; answers the raw token
              GET      /_sim/tokens[/HASH]           token state
              POST     /_sim/tokens/HASH/revoke      revoke; .../rotate rotates as the buyer would
              GET      /_sim/usage                   usage reports and units accepted per hash
              GET|POST /_sim/listings[/ID]           {"listing_id","seller_id","endpoint","price_usd":"0.25"}
              GET      /_sim/relays[/ID]             gateway relay requests and their payments
              POST     /_sim/payments/ID/settle      the mock provider settles (relay or payment id)
              GET      /_sim/ledger                  gateway charges: gross, 4.9% fee, seller share
              GET|POST /_sim/tenants[/ID]            {"tenant_id","plan","pools":[{"pool_key","limit":"hard|soft",
                                                     "credits","expires_at","addons":[{"credits","expires_at"}]}]}
              POST     /_sim/tenants/ID/pools|addons add a pool; add add-on credits {"pool_key","credits"}
              GET|POST /_sim/crovver-keys            {"key":"sk_live_..."}
              GET      /_sim/calls                   calls per endpoint: total, max_per_minute, per_minute
              POST     /_sim/faults                  {"endpoint":"verify|usage|rotate|consume|gateway|all",
                                                     "status","retry_after","latency_ms","drop","hang",
                                                     "drop_after_commit","times"}
              GET      /_sim/faults, DELETE /_sim/faults
              POST     /_sim/reset                   forget everything but am_k_demo and sk_test_demo

            --seed FILE creates sellers, listings, tokens, tenants and pools from a key=value file
            (docs/simulator-seed.example.conf); a bad line exits 1 naming the file, line and key.
            Prints 'simulator listening on http://HOST:PORT', then one 'token.NAME = cro_sub_...' line
            per seed-file token, then, with --seed-tokens N, N raw tokens (seller am_k_demo, usage
            limit 100), one per line.
            """
    )

    @Option(name: .long, help: "Address to listen on, host:port or [ipv6]:port; port 0 picks a free port.")
    var listen: String = "127.0.0.1:9900"

    @Option(name: .customLong("rate-limit"), help: "Calls per minute per seller key allowed on verify and on usage, each.")
    var rateLimit: Int = 300

    @Option(name: .long, help: "A seed file (key=value) of sellers, listings, tokens, tenants and pools to create at start.")
    var seed: String?

    @Option(name: .customLong("seed-tokens"), help: "Create this many demo tokens at start and print them.")
    var seedTokens: Int = 0

    func validate() throws {
        _ = try Self.hostPort(self.listen)
        guard self.rateLimit >= 1 else {
            throw ValidationError("--rate-limit must be at least 1 (calls per minute).")
        }
        guard (0...10_000).contains(self.seedTokens) else {
            throw ValidationError("--seed-tokens must be between 0 and 10000.")
        }
    }

    func run() async throws {
        let (host, port) = try Self.hostPort(self.listen)
        var fixture = SimulatorSeed()
        if let path = self.seed {
            switch SimulatorSeedParser.load(file: path) {
            case .success(let parsed):
                fixture = parsed
            case .failure(let errors):
                Bootstrap.fail(errors.description)
            }
        }
        let seedTokens = self.seedTokens
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var logger = Logger(label: "subgate.simulate")
        logger.logLevel = .notice
        let service = SimulatorService(host: host, port: port, ratePerMinute: self.rateLimit, group: group) { [fixture] simulator in
            var lines = ["simulator listening on \(simulator.rootURL)"]
            do {
                for (name, token) in try simulator.apply(fixture) {
                    lines.append("token.\(name) = \(token)")
                }
            } catch {
                // A fresh simulator has nothing a parsed seed could collide with.
                lines.append("seed not applied: \(error)")
            }
            for _ in 0..<seedTokens {
                lines.append(simulator.createToken().token)
            }
            // Unbuffered: scripts and tests read these lines while the process runs.
            FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        }
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: service)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await services.run()
        } catch {
            try? await group.shutdownGracefully()
            Bootstrap.fail("subgate: could not start the simulator on \(self.listen): \(Bootstrap.describe(error))")
        }
        try await group.shutdownGracefully()
    }

    /// `host:port` or `[ipv6]:port`.
    static func hostPort(_ text: String) throws -> (host: String, port: Int) {
        switch HostPort.parse(text) {
        case .success(let address):
            return (address.host, address.port)
        case .failure(let error):
            throw ValidationError("--listen '\(text)': \(error.message)")
        }
    }
}
