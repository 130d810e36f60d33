import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOPosix
import SubgateBenchCore

/// `subgate-bench settle`: after a Subgate row, flush Subgate until nothing is pending, then
/// read what the simulator counted (calls and accepted units).
struct SettleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settle",
        abstract: "Flush Subgate (POST /flush until pending_units is 0), then print the simulator's call counts and accepted units."
    )

    @Option(name: .customLong("subgate-admin"), help: "Subgate's admin listener, http://127.0.0.1:PORT.")
    var subgateAdmin: String

    @Option(help: "The simulator, http://127.0.0.1:PORT.")
    var simulator: String

    @Option(name: .customLong("admin-prefix"), help: "The simulator's admin prefix: auto (/_sim, checked), or a path.")
    var adminPrefix: String = "auto"

    @Option(help: "Give up flushing after this long (what is left is reported as pending).")
    var timeout: String = "120s"

    @Flag(help: "Print one line of JSON.")
    var json = false

    func validate() throws {
        guard BenchDuration.parse(self.timeout) != nil else { throw ValidationError("--timeout '\(self.timeout)' is not a duration such as 120s.") }
        guard case .success = BenchTarget.parse(self.subgateAdmin + "/") else {
            throw ValidationError("--subgate-admin must be http://127.0.0.1:PORT (loopback only).")
        }
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton))
        do {
            let admin = try await SimulatorAdminClient.connect(root: self.simulator, prefix: self.adminPrefix, client: client)
            let started = ContinuousClock.now
            var root = self.subgateAdmin
            while root.hasSuffix("/") { root.removeLast() }
            let (flushes, pending) = try await SubgateAdminClient(root: root, client: client)
                .flushUntilSettled(timeout: BenchDuration.parse(self.timeout) ?? .seconds(120))
            let seconds = (ContinuousClock.now - started).seconds
            let counts = try await admin.counts()
            let report = SettleReport(
                flushes: flushes,
                flushSeconds: (seconds * 1000).rounded() / 1000,
                pendingUnits: pending,
                verifyCalls: counts.verifyCalls,
                usageCalls: counts.usageCalls,
                verifyMaxPerMinute: counts.verifyMaxPerMinute,
                usageMaxPerMinute: counts.usageMaxPerMinute,
                acceptedUnits: counts.acceptedUnits
            )
            if self.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Console.out(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                Console.out(
                    "flushed in \(flushes) call(s), \(ReportFormat.fixed(seconds, digits: 1)) s, \(pending) units still pending; "
                        + "simulator: verify \(counts.verifyCalls) calls (max \(counts.verifyMaxPerMinute)/60 s), "
                        + "usage \(counts.usageCalls) calls (max \(counts.usageMaxPerMinute)/60 s), \(counts.acceptedUnits) units accepted"
                )
            }
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
