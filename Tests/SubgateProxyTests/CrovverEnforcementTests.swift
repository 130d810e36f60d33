import AsyncHTTPClient
import Foundation
import NIOCore
import SubgateCore
import SubgateSimulator
import Testing

@testable import SubgateProxy

/// SPEC §6 `backend = crovver` end to end: a client → Subgate → TestUpstream, with the
/// simulator's Crovver API (`credits/consume`) on loopback. Flushes are driven by the tests.
@Suite struct CrovverEnforcementTests {
    private static func tenant(_ id: String, credits: Int, limit: SimulatedCreditLimit = .hard) -> SimulatedTenant {
        SimulatedTenant(tenantID: id, pools: [SimulatedCreditPool(poolKey: "api_calls", limit: limit, credits: credits)])
    }

    /// Credits actually deducted by a tenant's events (replays and `blocked` deduct nothing).
    private static func deducted(_ events: [SimulatedConsumeEvent]) -> Int {
        events.filter { $0.result != .blocked }.reduce(0) { $0 + $1.amount }
    }

    @Test("SPEC §6: no tenant header → 401 MISSING_TOKEN; a tenant's first request consumes crovver_amount synchronously")
    func firstRequestConsumes() async throws {
        try await EnforcementHarness.withCrovver({ $0.crovverAmount = 2 }) { h in
            h.simulator.createTenant(Self.tenant("ws_first", credits: 100))
            let missing = try await h.get(tenant: nil)
            #expect(missing.status == 401 && missing.errorCode == "MISSING_TOKEN", "\(missing.body)")
            #expect(missing.headers["content-type"] == ["application/json"])
            let twice = try await h.get(tenant: "ws_first", extraHeaders: [("x-tenant-id", "ws_other")])
            #expect(twice.status == 400 && twice.errorCode == "BAD_REQUEST", "\(twice.body)")

            let served = try await h.get(path: "/api/export?x=1", tenant: "ws_first", extraHeaders: [("x-request-id", "req-42")])
            #expect(served.status == 200, "\(served.body)")
            let events = h.simulator.consumeEvents(tenantID: "ws_first")
            #expect(events.count == 1, "one synchronous consume: \(events)")
            #expect(events.first?.amount == 2 && events.first?.result == .allowed)
            #expect(h.simulator.credits(tenantID: "ws_first", poolKey: "api_calls") == 98)
            let metadata = events.first?.metadata ?? ""
            #expect(metadata.contains("/api/export") && metadata.contains("req-42") && !metadata.contains("x=1"), "metadata: \(metadata)")
            let key = events.first?.idempotencyKey ?? ""
            #expect(key.hasPrefix("subgate-\(h.enforcer.crovver?.sidecarID ?? "?")-"), "key: \(key)")
            let seen = try #require(h.upstream.requests.last)
            #expect(seen.headers["x-tenant-id"] == ["ws_first"], "the upstream gets the tenant")
            #expect(seen.headers["x-subgate-token-hash"].isEmpty)
            let unknown = try await h.get(tenant: "ws_nobody")
            #expect(unknown.status == 403 && unknown.errorCode == "TOKEN_INVALID", "a tenant Crovver does not know: \(unknown.body)")
        }
    }

    @Test("SPEC §6: units after the first are consumed in one batch per pool per flush; N requests deduct exactly N × amount")
    func batchedConsumption() async throws {
        try await EnforcementHarness.withCrovver({ $0.crovverAmount = 3 }) { h in
            h.simulator.createTenant(Self.tenant("ws_batch", credits: 1000))
            try await Self.serve(h, tenant: "ws_batch", times: 7)
            #expect(h.simulator.consumeEvents(tenantID: "ws_batch").count == 1, "nothing but the first consume before a flush")
            let summary = await h.flush()
            #expect(summary.reportedUnits == 18 && summary.stoppedBecause == nil, "\(summary)")
            let events = h.simulator.consumeEvents(tenantID: "ws_batch")
            #expect(events.count == 2, "1 first + 1 batch: \(events.map(\.amount))")
            #expect(events.last?.amount == 18)
            #expect(h.simulator.credits(tenantID: "ws_batch", poolKey: "api_calls") == 1000 - 7 * 3)
            #expect(Set(events.map(\.idempotencyKey)).count == 2, "every batch has its own key")
            // Nothing left: another flush sends nothing.
            _ = await h.flush()
            #expect(h.simulator.consumeEvents(tenantID: "ws_batch").count == 2)
        }
    }

    @Test("SPEC §6: concurrent first requests for one tenant coalesce into one synchronous consume")
    func concurrentFirstRequestsCoalesce() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_burst", credits: 500))
            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for _ in 0..<20 { group.addTask { try await h.get(tenant: "ws_burst").status } }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 200 }, "\(statuses)")
            #expect(h.simulator.consumeEvents(tenantID: "ws_burst").count == 1, "one synchronous consume for the burst")
            _ = await h.flush()
            #expect(h.simulator.consumeEvents(tenantID: "ws_burst").count == 2)
            #expect(h.simulator.credits(tenantID: "ws_burst", poolKey: "api_calls") == 480)
        }
    }

    @Test("SPEC §6: a hard-limit pool answers 429 USAGE_LIMIT_REACHED once exhausted, and nothing more is deducted")
    func hardLimit() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_hard", credits: 3))
            var statuses: [UInt] = []
            for _ in 0..<5 { statuses.append(try await h.get(tenant: "ws_hard").status) }
            #expect(statuses == [200, 200, 200, 429, 429], "\(statuses)")
            _ = await h.flush()
            #expect(h.simulator.credits(tenantID: "ws_hard", poolKey: "api_calls") == 0)
            let after = try await h.get(tenant: "ws_hard")
            #expect(after.status == 429 && after.errorCode == "USAGE_LIMIT_REACHED", "\(after.body)")
            let again = try await h.get(tenant: "ws_hard")
            #expect(again.status == 429)
            _ = await h.flush()
            let events = h.simulator.consumeEvents(tenantID: "ws_hard")
            #expect(Self.deducted(events) == 3, "deducted: \(events.map { ($0.amount, $0.result) })")
            #expect(events.filter { $0.result == .blocked }.count <= 1, "one probe at most while blocked: \(events.map(\.result))")
            #expect(h.simulator.credits(tenantID: "ws_hard", poolKey: "api_calls") == 0)
            #expect(h.upstream.requests.count == 3, "refused requests never reach the upstream")
        }
    }

    @Test("SPEC §6: a soft-limit pool below zero is served with x-subscription-warning; the upstream sees x-subgate-credit-warning")
    func softLimit() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_soft", credits: 1, limit: .soft))
            let first = try await h.get(tenant: "ws_soft")
            #expect(first.status == 200 && first.headers["x-subscription-warning"].isEmpty)
            #expect(h.upstream.requests.last?.headers["x-subgate-credit-warning"].isEmpty == true)
            for _ in 0..<2 {
                let below = try await h.get(tenant: "ws_soft", extraHeaders: [("x-subgate-credit-warning", "spoofed")])
                #expect(below.status == 200, "\(below.body)")
                #expect(below.headers["x-subscription-warning"] == ["soft-limit"], "\(below.headers)")
                #expect(h.upstream.requests.last?.headers["x-subgate-credit-warning"] == ["soft-limit"])
            }
            _ = await h.flush()
            #expect(h.simulator.credits(tenantID: "ws_soft", poolKey: "api_calls") == -2)
        }
    }

    @Test("SPEC §6: an answer lost in flight (drop_after_commit) is retried with the same key and deducted once")
    func lostAnswerRetriedWithSameKey() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_lost", credits: 100))
            try await Self.serve(h, tenant: "ws_lost", times: 5)
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
            let lost = await h.flush()
            #expect(lost.stoppedBecause != nil && lost.reportedUnits == 0, "\(lost)")
            #expect(h.simulator.credits(tenantID: "ws_lost", poolKey: "api_calls") == 95, "applied, answer lost")
            #expect(h.enforcer.crovver?.status().openBatches == 1)
            let retried = await h.flush()
            #expect(retried.reportedUnits == 4 && retried.stoppedBecause == nil, "\(retried)")
            let events = h.simulator.consumeEvents(tenantID: "ws_lost")
            #expect(events.count == 2, "one event per key: \(events.map(\.idempotencyKey))")
            #expect(events.last?.amount == 4 && events.last?.replays == 1, "the retry was answered alreadyProcessed")
            #expect(h.simulator.credits(tenantID: "ws_lost", poolKey: "api_calls") == 95, "deducted once")
            #expect(h.enforcer.crovver?.status().openBatches == 0)
            // The cached balance still admits: the tenant is not mistaken for blocked.
            #expect(try await h.get(tenant: "ws_lost").status == 200)
        }
    }

    @Test("SPEC §6: Crovver unreachable on a first request → 503 VERIFICATION_UNAVAILABLE (closed) or served and billed later (open)")
    func failModes() async throws {
        try await EnforcementHarness.withCrovver({ $0.crovverURL = "http://127.0.0.1:1/api/public" }) { h in
            let refused = try await h.get(tenant: "ws_any")
            #expect(refused.status == 503 && refused.errorCode == "VERIFICATION_UNAVAILABLE", "\(refused.body)")
            #expect(refused.headers["retry-after"].first != nil)
            // Past the breaker's threshold (5 failures) requests are refused at once, without
            // a consume (each failed one waits out AsyncHTTPClient's 2 s connect retries).
            let failing = try await withThrowingTaskGroup(of: UInt.self) { group in
                for index in 0..<5 { group.addTask { try await h.get(tenant: "ws_any_\(index)").status } }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
            #expect(failing == [503, 503, 503, 503, 503])
            #expect(h.enforcer.crovver?.status().breaker == "open")
            let started = ContinuousClock.now
            let fast = try await h.get(tenant: "ws_any_9")
            #expect(fast.status == 503 && fast.errorCode == "VERIFICATION_UNAVAILABLE")
            #expect(ContinuousClock.now - started < .seconds(1), "the open breaker answers at once")
        }
        try await EnforcementHarness.withCrovver({ $0.failMode = .open }) { h in
            h.simulator.createTenant(Self.tenant("ws_open", credits: 50))
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, status: 503, times: 1))
            let served = try await h.get(tenant: "ws_open")
            #expect(served.status == 200, "fail_mode = open serves: \(served.body)")
            #expect(try await h.get(tenant: "ws_open").status == 200)
            _ = await h.flush()
            #expect(h.simulator.credits(tenantID: "ws_open", poolKey: "api_calls") == 48, "both requests billed once")
            // The 503'd first consume is re-sent by the flush under its own key, opened before
            // the second request's consume: a new key would carry a higher sequence.
            let events = h.simulator.consumeEvents(tenantID: "ws_open")
            #expect(events.count == 2, "\(events.map(\.idempotencyKey))")
            if events.count == 2 {
                let sequences = events.map { UInt64($0.idempotencyKey.split(separator: "-").last ?? "") ?? .max }
                #expect(sequences[1] < sequences[0], "the flush re-sent the first consume's key, not a new one: \(events.map(\.idempotencyKey))")
            }
        }
    }

    @Test("SPEC §6: fail_mode = open, a first consume applied but unanswered: served, retried by the flush with the same key, deducted once")
    func firstConsumeLostUnderFailOpen() async throws {
        try await EnforcementHarness.withCrovver({ $0.failMode = .open }) { h in
            h.simulator.createTenant(Self.tenant("ws_open_lost", credits: 10))
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
            let served = try await h.get(tenant: "ws_open_lost")
            #expect(served.status == 200, "\(served.body)")
            #expect(h.simulator.credits(tenantID: "ws_open_lost", poolKey: "api_calls") == 9)
            let summary = await h.flush()
            #expect(summary.reportedUnits == 1 && summary.stoppedBecause == nil, "\(summary)")
            let events = h.simulator.consumeEvents(tenantID: "ws_open_lost")
            #expect(events.count == 1 && events.first?.replays == 1, "the same key, answered alreadyProcessed")
            #expect(h.simulator.credits(tenantID: "ws_open_lost", poolKey: "api_calls") == 9)
            // An alreadyProcessed balance may be older than the pool's (other consumes since), so
            // it is not cached when nothing was: the next request pays its own first consume.
            let next = try await h.get(tenant: "ws_open_lost")
            #expect(next.status == 200)
            #expect(h.simulator.consumeEvents(tenantID: "ws_open_lost").count == 2, "the next request's own consume")
            #expect(h.simulator.credits(tenantID: "ws_open_lost", poolKey: "api_calls") == 8, "two requests served, two credits deducted")
        }
    }

    @Test("SPEC §2 enforce = shadow: a tenant header missing or a pool exhausted is served (and counted), not refused; only what the pool covered is billed")
    func shadowMode() async throws {
        try await EnforcementHarness.withCrovver({ $0.enforce = .shadow }) { h in
            h.simulator.createTenant(Self.tenant("ws_shadow", credits: 2))
            let noTenant = try await h.get(tenant: nil)
            // The first pays its own consume, the second fits the cached balance, the third
            // would be refused (429) and is served under shadow without a reservation.
            let first = try await h.get(tenant: "ws_shadow")
            let second = try await h.get(tenant: "ws_shadow")
            let third = try await h.get(tenant: "ws_shadow")
            #expect([noTenant.status, first.status, second.status, third.status] == [200, 200, 200, 200])
            #expect(h.upstream.requests.count == 4, "shadow mode refuses nothing")
            let summary = await h.flush()
            #expect(summary.reportedUnits == 1 && summary.droppedUnits == 0, "one batch for the second request only: \(summary)")
            let events = h.simulator.consumeEvents(tenantID: "ws_shadow")
            #expect(events.map(\.amount) == [1, 1], "the first consume and a batch of 1, never one for the refused request: \(events.map { ($0.amount, $0.result) })")
            #expect(events.allSatisfy { $0.result == .allowed }, "\(events.map(\.result))")
            #expect(h.simulator.credits(tenantID: "ws_shadow", poolKey: "api_calls") == 0)
        }
    }

    @Test("SPEC §6: requests arriving while a probe is in flight wait for it instead of being refused")
    func concurrentProbe() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_probe", credits: 1, limit: .soft))
            let first = try await h.get(tenant: "ws_probe")
            #expect(first.status == 200)  // balance now 0
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, latency: .milliseconds(300), times: 1))
            let answers = try await withThrowingTaskGroup(of: EnforcementHarness.Answer.self) { group in
                for _ in 0..<5 { group.addTask { try await h.get(tenant: "ws_probe") } }
                return try await group.reduce(into: [EnforcementHarness.Answer]()) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0.status == 200 && $0.headers["x-subscription-warning"] == ["soft-limit"] }, "\(answers.map(\.status))")
            _ = await h.flush()
            #expect(h.simulator.credits(tenantID: "ws_probe", poolKey: "api_calls") == -5)
        }
    }

    @Test("SPEC §2 shutdown_grace: the final flush also sends the credits billed behind a batch whose answer was lost")
    func finalFlushSendsCreditsBehindAnOpenBatch() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_final", credits: 100))
            try await Self.serve(h, tenant: "ws_final", times: 5)
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
            let lost = await h.flush()
            #expect(lost.stoppedBecause != nil && h.enforcer.crovver?.status().openBatches == 1, "\(lost)")
            // Billed while that batch is open: they wait behind it (one batch per pool).
            try await Self.serve(h, tenant: "ws_final", times: 3)
            h.readiness.startDraining()
            let (summary, rounds) = await h.service.finalFlush()
            #expect(summary.pendingUnits == 0 && summary.stoppedBecause == nil, "nothing left in the journal only: \(summary)")
            #expect(rounds >= 2, "the open batch, then the credits behind it: \(rounds) round(s)")
            let events = h.simulator.consumeEvents(tenantID: "ws_final")
            #expect(events.map(\.amount) == [1, 4, 3], "\(events.map { ($0.amount, $0.replays) })")
            #expect(events.count == 3 && events[1].replays == 1, "the lost batch re-sent under its key")
            #expect(h.simulator.credits(tenantID: "ws_final", poolKey: "api_calls") == 92, "8 requests, 8 credits")
        }
    }

    @Test("SPEC §6: a batch answered blocked (another consumer drew the hard pool down) consumes what the pool still holds in a new batch; only the rest is dropped")
    func blockedBatchConsumesWhatThePoolHolds() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_shared", credits: 10))
            try await Self.serve(h, tenant: "ws_shared", times: 6)
            // Another sidecar of the same seller spends 7 of the 9 left.
            let other = try await Self.consumeDirectly(h, tenant: "ws_shared", amount: 7, key: "other-sidecar-1")
            #expect(other == 200)
            let blocked = await h.flush()
            #expect(blocked.droppedUnits == 3 && blocked.reportedUnits == 0, "5 owed, 2 left in the pool: \(blocked)")
            let salvage = await h.flush()
            #expect(salvage.reportedUnits == 2 && salvage.pendingUnits == 0, "\(salvage)")
            let events = h.simulator.consumeEvents(tenantID: "ws_shared")
            #expect(events.map(\.amount) == [1, 7, 5, 2], "\(events.map { ($0.amount, $0.result) })")
            #expect(events.map(\.result) == [.allowed, .allowed, .blocked, .allowed])
            #expect(Set(events.map(\.idempotencyKey)).count == 4, "the salvaged credits go under a new key")
            #expect(h.simulator.credits(tenantID: "ws_shared", poolKey: "api_calls") == 0)
            let refused = try await h.get(tenant: "ws_shared")
            #expect(refused.status == 429 && refused.errorCode == "USAGE_LIMIT_REACHED", "\(refused.body)")
        }
    }

    @Test("SPEC §6: a batch answered with a 4xx Crovver will always give it (409, 422) is dropped and counted, not retried forever", arguments: [409, 422])
    func unretryableClientErrorDropsTheBatch(status: Int) async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_4xx", credits: 100))
            try await Self.serve(h, tenant: "ws_4xx", times: 4)
            h.simulator.injectFault(SimulatedFault(endpoint: .consume, status: status, times: 1))
            let refused = await h.flush()
            #expect(refused.droppedUnits == 3 && refused.pendingUnits == 0, "\(refused)")
            #expect(h.enforcer.crovver?.status().openBatches == 0, "the key is not kept for a retry")
            // Later credits are not wedged behind it.
            let later = try await h.get(tenant: "ws_4xx")
            #expect(later.status == 200, "\(later.body)")
            let next = await h.flush()
            #expect(next.reportedUnits == 1 && next.pendingUnits == 0, "\(next)")
            #expect(h.simulator.credits(tenantID: "ws_4xx", poolKey: "api_calls") == 98)
        }
    }

    /// `times` requests for `tenant`, each expected to be served.
    private static func serve(_ h: EnforcementHarness, tenant: String, times: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        for index in 0..<times {
            let answer = try await h.get(tenant: tenant)
            #expect(answer.status == 200, "request \(index + 1) of \(times) for \(tenant): \(answer.status) \(answer.body)", sourceLocation: sourceLocation)
        }
    }

    /// A consume sent straight to the simulated Crovver, as another sidecar would.
    private static func consumeDirectly(_ h: EnforcementHarness, tenant: String, amount: Int, key: String) async throws -> UInt {
        var request = HTTPClientRequest(url: h.config.crovverURL + "/credits/consume")
        request.method = .POST
        request.headers.add(name: "x-service-key", value: "sk_test_demo")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: "{\"tenantId\":\"\(tenant)\",\"poolKey\":\"api_calls\",\"amount\":\(amount),\"idempotencyKey\":\"\(key)\"}"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 16)
        return response.status.code
    }

    @Test("SPEC §5: /status shows the crovver fields")
    func statusFields() async throws {
        try await EnforcementHarness.withCrovver { h in
            h.simulator.createTenant(Self.tenant("ws_status", credits: 10))
            _ = try await h.get(tenant: "ws_status")
            _ = try await h.get(tenant: "ws_status")
            let fields = Dictionary(h.enforcer.statusFields(), uniquingKeysWith: { a, _ in a })
            let crovver = try #require(fields["crovver"])
            #expect(crovver.contains("\"tenants_cached\":1") && crovver.contains("\"pending_units\":1") && crovver.contains("\"batches_in_flight\":0"), "\(crovver)")
            #expect(fields["backend"] == "\"crovver\"")
        }
    }
}
