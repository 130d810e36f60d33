import AsyncHTTPClient
import Foundation
import NIOPosix
import SubgateSimulator
import Testing

/// SPEC §4 durability against the real binary: units whose answers completed more than
/// `journal_sync` before a SIGKILL are reported after a restart on the same journal.
@Suite(.serialized) struct JournalCrashTests {
    @Test("SPEC §4: SIGKILL, then a restart on the same journal → the units served before the kill are reported")
    func sigkillThenRestart() async throws {
        try await CrashRig.with("journal") { rig in
            let (upstream, simulator, journal) = (rig.upstream, rig.simulator, rig.journal)
            let token = simulator.createToken(usageLimit: nil)
            func config(flush: String) -> String {
                """
                listen = 127.0.0.1:0
                admin_listen = 127.0.0.1:0
                upstream = http://127.0.0.1:\(upstream.port)
                control_plane_url = \(simulator.baseURL)
                seller_key = am_k_demo
                usage_journal = \(journal)
                journal_sync = 20ms
                usage_flush_interval = \(flush)
                """
            }

            let first = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "1h"))
            let port = try await first.port(of: "proxy")
            for _ in 0..<6 {
                let response = try await HTTPClient.shared.execute(LifecycleTests.request("http://127.0.0.1:\(port)/hello", token: token.token), timeout: .seconds(5))
                #expect(response.status == .ok)
                _ = try await response.body.collect(upTo: 4096)
            }
            try await Task.sleep(for: .milliseconds(300))  // well past journal_sync
            kill(first.process.processIdentifier, SIGKILL)
            _ = try? await first.waitForExit(timeout: .seconds(5))
            #expect(simulator.acceptedUnits(hash: token.hash) == 0, "nothing should have been reported before the kill (flush interval 1h)")
            let size = (try? FileManager.default.attributesOfItem(atPath: journal)[.size] as? Int) ?? 0
            #expect(size > 0, "the journal must hold the served units")

            let second = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "200ms"))
            _ = try await second.port(of: "proxy")
            let deadline = ContinuousClock.now + .seconds(10)
            while simulator.acceptedUnits(hash: token.hash) < 6 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(simulator.acceptedUnits(hash: token.hash) == 6, "units reported after restart: \(simulator.acceptedUnits(hash: token.hash)); output:\n\(second.log)")
            kill(second.process.processIdentifier, SIGTERM)
            #expect(try await second.waitForExit(timeout: .seconds(10)) == 0)
            // Reported once, not twice: a third start has nothing left to report.
            let third = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "200ms"))
            _ = try await third.port(of: "proxy")
            try await Task.sleep(for: .milliseconds(800))
            #expect(simulator.acceptedUnits(hash: token.hash) == 6, "units were reported twice after a clean stop")
            kill(third.process.processIdentifier, SIGTERM)
            #expect(try await third.waitForExit(timeout: .seconds(10)) == 0)
        }
    }
}
