import AsyncHTTPClient
import Foundation
import NIOPosix
import SubgateSimulator
import Testing

/// SPEC §6 against the real binary: Crovver batches and their idempotency keys survive a
/// SIGKILL — after a restart on the same journal nothing is lost and nothing is deducted twice.
@Suite(.serialized) struct CrovverCrashTests {
    @Test("SPEC §6: SIGKILL with a batch whose answer was lost and credits not yet batched; a restart deducts each exactly once")
    func sigkillThenRestart() async throws {
        try await CrashRig.with("crovver") { rig in
            let (upstream, simulator, journal) = (rig.upstream, rig.simulator, rig.journal)
            for id in ["ws_pending", "ws_lost"] {
                simulator.createTenant(SimulatedTenant(tenantID: id, pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 100)]))
            }
            func config(flush: String) -> String {
                """
                listen = 127.0.0.1:0
                admin_listen = 127.0.0.1:0
                upstream = http://127.0.0.1:\(upstream.port)
                backend = crovver
                crovver_url = \(simulator.crovverURL)
                crovver_key = sk_test_demo
                usage_journal = \(journal)
                journal_sync = 20ms
                usage_flush_interval = \(flush)
                """
            }
            func serve(_ port: Int, tenant: String, times: Int) async throws {
                for _ in 0..<times {
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/hello")
                    request.headers.add(name: "x-tenant-id", value: tenant)
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
                    #expect(response.status == .ok)
                    _ = try await response.body.collect(upTo: 4096)
                }
            }
            func credits(_ tenant: String) -> Int { simulator.credits(tenantID: tenant, poolKey: "api_calls") ?? -1 }

            // Run 1: ws_lost's batch is applied but its answer lost; ws_pending's credits wait for a flush.
            let first = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "1h"))
            let port = try await first.port(of: "proxy")
            let admin = try await first.port(of: "admin")
            try await serve(port, tenant: "ws_lost", times: 4)
            simulator.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
            var flush = HTTPClientRequest(url: "http://127.0.0.1:\(admin)/flush")
            flush.method = .POST
            _ = try await HTTPClient.shared.execute(flush, timeout: .seconds(10)).body.collect(upTo: 4096)
            #expect(credits("ws_lost") == 96, "1 synchronous + a batch of 3, applied")
            try await serve(port, tenant: "ws_pending", times: 6)
            try await Task.sleep(for: .milliseconds(300))  // well past journal_sync
            kill(first.process.processIdentifier, SIGKILL)
            _ = try? await first.waitForExit(timeout: .seconds(5))
            #expect(credits("ws_pending") == 99, "only the first request was consumed before the kill")

            // Run 2: the open batch is sent again under its key; the pending credits get a new one.
            let second = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "200ms"))
            let port2 = try await second.port(of: "proxy")
            let deadline = ContinuousClock.now + .seconds(10)
            func replays() -> Int { simulator.consumeEvents(tenantID: "ws_lost").reduce(0) { $0 + $1.replays } }
            while (credits("ws_pending") > 94 || replays() < 1) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(credits("ws_pending") == 94, "the 5 journaled credits consumed after the restart; output:\n\(second.log)")
            #expect(replays() >= 1, "the lost batch was sent again with its key")
            #expect(credits("ws_lost") == 96, "and deducted once")
            // New batches after the restart never reuse an old key (a reused key would deduct nothing).
            try await serve(port2, tenant: "ws_lost", times: 2)
            let deadline2 = ContinuousClock.now + .seconds(10)
            while credits("ws_lost") > 94 && ContinuousClock.now < deadline2 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(credits("ws_lost") == 94)
            kill(second.process.processIdentifier, SIGTERM)
            #expect(try await second.waitForExit(timeout: .seconds(10)) == 0)

            // Run 3: nothing left to send.
            let third = try LifecycleTests.Running(arguments: ["run"], config: config(flush: "200ms"))
            _ = try await third.port(of: "proxy")
            try await Task.sleep(for: .milliseconds(800))
            #expect(credits("ws_pending") == 94 && credits("ws_lost") == 94, "deducted twice after a clean stop")
            let keys = simulator.consumeEvents(tenantID: "ws_lost").map(\.idempotencyKey) + simulator.consumeEvents(tenantID: "ws_pending").map(\.idempotencyKey)
            // The two requests of run 2 may fall into one batch or two (200 ms flushes): only
            // uniqueness and the sums are fixed.
            #expect(Set(keys).count == keys.count, "a key was reused: \(keys)")
            // subgate-<sidecar id>-<sequence>: one sidecar id across the three runs (it lives in the journal).
            let ids = Set(keys.map { $0.split(separator: "-").dropLast().joined(separator: "-") })
            #expect(ids.count == 1 && ids.first?.hasPrefix("subgate-") == true, "sidecar ids: \(ids)")
            #expect(simulator.consumeEvents(tenantID: "ws_pending").count == 2, "the first consume, then one batch of the 5 replayed credits")
            #expect(simulator.consumeEvents(tenantID: "ws_lost").reduce(0) { $0 + $1.amount } == 6)
            kill(third.process.processIdentifier, SIGTERM)
            #expect(try await third.waitForExit(timeout: .seconds(10)) == 0)
        }
    }
}
