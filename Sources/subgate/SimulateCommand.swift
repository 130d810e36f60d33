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
              POST /subscriptions/tokens/verify  {"token_hash"}          Bearer am_k_...
              POST /subscriptions/tokens/usage   {"token_hash","count"}  Bearer am_k_...
              POST /subscriptions/tokens/rotate  the buyer's             Bearer cro_sub_...
              POST /gateway/:listingId           pay per call: 402, settle, then
                                                 retry with X-Crochet-Relay-Request-Id
            am_k_demo always exists. verify and usage allow --rate-limit calls a
            minute each per seller key, rotate 10 per subscriber (sliding 60 s);
            over it: 429 RATE_LIMITED with Retry-After.

            Crovver, under http://ADDR/api/public (point crovver_url there):
              POST /credits/consume  {"tenantId","poolKey","amount","idempotencyKey",
                                     "metadata"}  Bearer sk_test_demo or x-service-key

            Admin API under /_sim (JSON, no authentication: keep it on loopback):
              GET|POST /_sim/sellers             {"seller_key","seller_id",
                                                 "gateway_secret"}
              POST     /_sim/tokens              {"token","seller_key","listing_id",
                                                 "subscriber_id","usage_limit" (null:
                                                 unlimited),"usage_count","expires_at",
                                                 "status"}, all optional; answers the
                                                 raw token
              GET      /_sim/tokens[/HASH]       token state
              POST     /_sim/tokens/HASH/revoke  revoke; .../rotate rotates as the buyer
              GET      /_sim/usage               usage reports, units accepted per hash
              GET|POST /_sim/listings[/ID]       {"listing_id","seller_id","endpoint",
                                                 "price_usd":"0.25","gateway_secret"}
              GET      /_sim/relays[/ID]         gateway relay requests and payments
              POST     /_sim/payments/ID/settle  the mock provider settles a payment
                                                 (relay request id or payment id)
              GET      /_sim/ledger              gateway charges: gross, 4.9% fee, seller
              GET|POST /_sim/tenants[/ID]        {"tenant_id","plan","pools":[{"pool_key",
                                                 "limit":"hard|soft","credits",
                                                 "expires_at","addons":[{"credits",
                                                 "expires_at"}]}]}; GET: credits, events
              POST     /_sim/tenants/ID/pools    one pool, as above
              POST     /_sim/tenants/ID/addons   {"pool_key","credits","expires_at"}
              GET|POST /_sim/crovver-keys        {"key":"sk_live_..."}
              GET      /_sim/calls               calls per endpoint: total,
                                                 max_per_minute, per_minute
              GET|POST /_sim/faults, DELETE      {"endpoint":"verify|usage|rotate|
                                                 consume|gateway|all","times",
                                                 "latency_ms", and one of "status"
                                                 (+"retry_after"),"drop","hang",
                                                 "drop_after_commit"}
              POST     /_sim/reset               forget all but am_k_demo, sk_test_demo

            --seed FILE creates sellers, listings, tokens, tenants and pools from a
            key=value file (docs/simulator-seed.example.conf); a bad line exits 1
            naming the file, line and key. Prints 'simulator listening on
            http://HOST:PORT', then 'token.NAME = cro_sub_...' per seed-file token,
            then, with --seed-tokens N, N raw tokens (seller am_k_demo, usage limit
            100), one per line. docs/simulator.md has the details.
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
