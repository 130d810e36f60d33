import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import SubgateBenchCore

/// `subgate-bench load URL`: drive a target with a closed or open loop and report throughput,
/// latency percentiles, statuses and billable answers.
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Drive a target with HTTP/1.1 keep-alive load and report req/s, latency percentiles, statuses and billable answers.",
        discussion: """
            Closed loop (default): --connections keep-alive connections, each sending its next
            request as soon as the last answer ends. Open loop (--rate R): requests are due at a
            fixed total rate whatever the target does; latency is measured from each request's
            due time, so a stall is not hidden (coordinated omission corrected).

            Tokens (header --token-header): --mix hot (one token), zipf (K tokens, Zipf ranks),
            uniform, or cold (every request a token never sent before; the run ends when they
            run out). --invalid-share and --no-token-share mix in made-up tokens and requests
            without one. Valid tokens come from --tokens-file (one per line) or are created on
            the simulator with --tokens-from http://127.0.0.1:PORT.

            Billable answers: 2xx or 3xx answers to a request that carried a valid token, over
            the whole run (warm-up and drain included) — what Subgate bills under its default
            usage_count_on = 2xx (SPEC §3 step 7).
            """
    )

    @Argument(help: "Target URL, http://127.0.0.1:PORT/PATH (loopback only).")
    var url: String

    @Option(name: [.short, .long], help: "Keep-alive connections.")
    var connections: Int = 64

    @Option(help: "Open loop: total requests per second (omit for a closed loop).")
    var rate: Double?

    @Option(name: [.short, .long], help: "Measured time, after the warm-up (10s, 500ms, 2m).")
    var duration: String = "10s"

    @Option(help: "Time sent but not measured before the window.")
    var warmup: String = "2s"

    @Option(help: "A request unanswered this long counts as a timeout and its connection is replaced.")
    var timeout: String = "10s"

    @Option(help: "After the window, how long answers still in flight are awaited (they count as billable, not as measured).")
    var drain: String = "10s"

    @Option(help: "Event-loop threads of the generator (1 keeps it on one core).")
    var threads: Int = 1

    @Option(help: "Token selection: hot, zipf, uniform or cold.")
    var mix: String = "hot"

    @Option(name: .customLong("zipf-exponent"), help: "Zipf exponent s: P(rank k) ∝ 1/k^s.")
    var zipfExponent: Double = 1.0

    @Option(name: .customLong("tokens-file"), help: "Valid tokens, one per line ('#' lines ignored).")
    var tokensFile: String?

    @Option(name: .customLong("tokens-from"), help: "Create the valid tokens (unlimited) on this simulator first: http://127.0.0.1:PORT.")
    var tokensFrom: String?

    @Option(name: .customLong("admin-prefix"), help: "The simulator's admin prefix: auto (/_sim, checked), or a path.")
    var adminPrefix: String = "auto"

    @Option(name: .customLong("token-count"), help: "Valid tokens to use: the first K of the file, or K to create (default: all of the file; 1 for hot, 10000 otherwise with --tokens-from).")
    var tokenCount: Int?

    @Option(name: .customLong("invalid-share"), help: "Fraction of requests with a made-up token (0…1).")
    var invalidShare: Double = 0

    @Option(name: .customLong("no-token-share"), help: "Fraction of requests without a token (0…1).")
    var noTokenShare: Double = 0

    @Option(name: .customLong("invalid-tokens"), help: "How many distinct made-up tokens the invalid share uses.")
    var invalidTokens: Int = 1000

    @Option(name: .customLong("request-bytes"), help: "Request body size; > 0 sends POSTs with a body.")
    var requestBytes: Int = 0

    @Option(name: .customLong("answer-bytes"), help: "Ask the bench upstream for answers of this size (header x-bench-answer-bytes).")
    var answerBytes: Int?

    @Option(help: "Ask the bench upstream to bill N units per answer (x-bench-usage → x-subgate-usage).")
    var usage: Int?

    @Option(name: .customLong("token-header"), help: "Header carrying the token.")
    var tokenHeader: String = "x-subscription-token"

    @Option(help: "Seed of the token draws (same seed, same sequence).")
    var seed: UInt64 = 1

    @Option(help: "Answer parser: fast (the bench's framer) or nio (NIO's HTTPResponseDecoder, slower; a cross-check).")
    var decoder: String = "fast"

    @Option(help: "A name for the run in reports.")
    var label: String = ""

    @Flag(help: "Print one line of JSON instead of the table.")
    var json = false

    @Option(
        name: .customLong("billable-out"),
        help: "Write the billable answers per valid token to this file: one count per line, in the order of the valid tokens (--tokens-file lines, '#' and empty ones skipped). No token is written."
    )
    var billableOut: String?

    func options(tokensAvailable: Int) -> LoadOptions {
        var options = LoadOptions()
        options.url = self.url
        options.connections = self.connections
        options.rate = self.rate
        options.duration = self.duration
        options.warmup = self.warmup
        options.timeout = self.timeout
        options.drain = self.drain
        options.threads = self.threads
        options.mix = self.mix
        options.zipfExponent = self.zipfExponent
        options.tokenCount = self.tokenCount
        options.tokensAvailable = tokensAvailable
        options.invalidShare = self.invalidShare
        options.noTokenShare = self.noTokenShare
        options.invalidTokens = self.invalidTokens
        options.requestBytes = self.requestBytes
        options.answerBytes = self.answerBytes
        options.usagePerAnswer = self.usage
        options.tokenHeader = self.tokenHeader
        options.seed = self.seed
        options.decoder = self.decoder
        return options
    }

    /// How many tokens `--tokens-from` creates.
    var tokensToCreate: Int {
        self.tokenCount ?? (self.mix == "hot" ? 1 : 10_000)
    }

    func validate() throws {
        if self.tokensFile != nil && self.tokensFrom != nil {
            throw ValidationError("give --tokens-file or --tokens-from, not both.")
        }
        if self.tokensFrom != nil && self.tokenCount == nil && (self.mix == "cold" || self.mix == "sequential") {
            throw ValidationError("--mix cold with --tokens-from needs --token-count: every request uses a new token.")
        }
        // Checked again once the tokens are loaded; here with the count the options promise.
        let promised = self.tokensFile != nil ? max(self.tokenCount ?? 1, 1) : (self.tokensFrom != nil ? self.tokensToCreate : 0)
        do {
            _ = try LoadPlan(self.options(tokensAvailable: promised))
        } catch {
            throw ValidationError(error.message)
        }
    }

    func run() async throws {
        let tokens: [String]
        if let file = self.tokensFile {
            tokens = try Self.readTokens(file)
        } else if let simulator = self.tokensFrom {
            let client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton))
            do {
                let admin = try await SimulatorAdminClient.connect(root: simulator, prefix: self.adminPrefix, client: client)
                tokens = try await admin.createTokens(count: self.tokensToCreate, usageLimit: nil, concurrency: 32)
                try await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
        } else {
            tokens = []
        }
        let plan: LoadPlan
        do {
            plan = try LoadPlan(self.options(tokensAvailable: tokens.count))
        } catch {
            throw ValidationError(error.message)
        }
        let valid = Array(tokens.prefix(plan.mix.validTokens))
        let invalid = plan.mix.invalidShare > 0 ? InvalidTokens.make(count: plan.mix.invalidTokens, seed: plan.seed) : []
        let catalog = RequestCatalog(plan: plan, validTokens: valid, invalidTokens: invalid)
        let outcome: LoadGenerator.Outcome
        do {
            outcome = try await LoadGenerator.run(plan: plan, catalog: catalog, billablePerToken: self.billableOut != nil)
        } catch let problem as LoadPlanProblem {
            Console.err("subgate-bench: \(problem.message)")
            throw ExitCode(1)
        }
        if let path = self.billableOut {
            var text = ""
            for index in valid.indices {
                text += "\(index < outcome.tally.billablePerToken.count ? outcome.tally.billablePerToken[index] : 0)\n"
            }
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
                Console.err("subgate-bench: cannot write --billable-out \(path)")
                throw ExitCode(1)
            }
        }
        let report = LoadReport(label: self.label, plan: plan, tally: outcome.tally, measuredSeconds: outcome.measuredSeconds)
        if self.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            Console.out(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            Console.out(report.rendered())
        }
    }

    static func readTokens(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read --tokens-file \(path); create it with 'subgate-bench tokens --simulator URL --count N --out \(path)'.")
        }
        return String(decoding: data, as: UTF8.self)
            .split(whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }
}
