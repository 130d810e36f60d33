import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOPosix
import SubgateBenchCore

/// `subgate-bench tokens`: create tokens on the simulator through its admin API and write them
/// one per line, for `load --tokens-file`.
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens",
        abstract: "Create tokens on the control-plane simulator (admin API) and write the raw tokens, one per line."
    )

    @Option(help: "The simulator, http://127.0.0.1:PORT.")
    var simulator: String

    @Option(help: "How many tokens.")
    var count: Int

    @Option(name: .customLong("usage-limit"), help: "Each token's usage limit, or 'unlimited'.")
    var usageLimit: String = "unlimited"

    @Option(help: "File to write (default: standard output).")
    var out: String?

    @Option(name: .customLong("admin-prefix"), help: "The simulator's admin prefix: auto (/_sim, checked), or a path.")
    var adminPrefix: String = "auto"

    @Option(help: "Admin calls in flight.")
    var concurrency: Int = 32

    @Flag(help: "Reset the simulator first (forgets its tokens, reports and call counts).")
    var reset = false

    var limit: Int? {
        get throws {
            if self.usageLimit == "unlimited" || self.usageLimit == "null" { return nil }
            guard let n = Int(self.usageLimit), n >= 0 else {
                throw ValidationError("--usage-limit must be a number ≥ 0 or 'unlimited'.")
            }
            return n
        }
    }

    func validate() throws {
        guard (1...10_000_000).contains(self.count) else { throw ValidationError("--count must be between 1 and 10000000.") }
        guard (1...1024).contains(self.concurrency) else { throw ValidationError("--concurrency must be between 1 and 1024.") }
        _ = try self.limit
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton))
        do {
            let admin = try await SimulatorAdminClient.connect(root: self.simulator, prefix: self.adminPrefix, client: client)
            if self.reset { try await admin.reset() }
            let started = ContinuousClock.now
            let tokens = try await admin.createTokens(count: self.count, usageLimit: try self.limit, concurrency: self.concurrency) { done in
                Console.err("subgate-bench tokens: \(done) created")
            }
            let text = tokens.joined(separator: "\n") + "\n"
            if let out = self.out {
                guard FileManager.default.createFile(atPath: out, contents: Data(text.utf8)) else {
                    throw ValidationError("cannot write \(out).")
                }
                let seconds = (ContinuousClock.now - started).seconds
                Console.err("subgate-bench tokens: \(tokens.count) tokens in \(ReportFormat.fixed(seconds, digits: 1)) s (\(admin.prefix)/tokens) → \(out)")
            } else {
                FileHandle.standardOutput.write(Data(text.utf8))
            }
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
