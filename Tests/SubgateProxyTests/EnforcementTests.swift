import AsyncHTTPClient
import Foundation
import NIOCore
import SubgateCore
import SubgateSimulator
import Testing

@testable import SubgateProxy

/// SPEC §3 steps 2–7 and §4 end to end: a client → Subgate → TestUpstream, with the
/// control-plane simulator answering verify and usage on loopback.
@Suite struct EnforcementTests {
    // MARK: Decision table

    @Test("SPEC §3: every row of the decision table, with the SPEC's JSON bodies")
    func decisionTable() async throws {
        try await EnforcementHarness.with { h in
            let sim = h.simulator
            let missing = try await h.get(token: nil)
            #expect(missing.status == 401 && missing.errorCode == "MISSING_TOKEN", "no token: \(missing.body)")
            let misprefixed = try await h.get(token: "tok_123456")
            #expect(misprefixed.status == 401 && misprefixed.errorCode == "MISSING_TOKEN", "mis-prefixed: \(misprefixed.body)")
            let twice = try await h.get(token: "cro_sub_a", extraHeaders: [("x-subscription-token", "cro_sub_b")])
            #expect(twice.status == 400 && twice.errorCode == "BAD_REQUEST", "header twice: \(twice.body)")
            let unknown = try await h.get(token: "cro_sub_never_issued")
            #expect(unknown.status == 403 && unknown.errorCode == "TOKEN_INVALID", "unknown: \(unknown.body)")
            #expect(unknown.headers["content-type"] == ["application/json"])

            let otherSeller = sim.createToken(sellerKey: "am_k_someone_else")
            let foreign = try await h.get(token: otherSeller.token)
            #expect(foreign.status == 403 && foreign.errorCode == "TOKEN_INVALID", "another seller's token: \(foreign.body)")

            let pastDate = sim.createToken(expiresAt: Date().addingTimeInterval(-60))
            let expired = try await h.get(token: pastDate.token)
            #expect(expired.status == 403, "expired by date: \(expired.body)")

            let soon = sim.createToken(expiresAt: Date().addingTimeInterval(2))
            #expect(try await h.get(token: soon.token).status == 200)
            try await Task.sleep(for: .milliseconds(2100))
            let nowExpired = try await h.get(token: soon.token)
            #expect(nowExpired.status == 403 && nowExpired.errorCode == "TOKEN_EXPIRED", "a cached verdict is never served past expires_at: \(nowExpired.body)")

            let spent = sim.createToken(usageLimit: 10, usageCount: 10)
            let limit = try await h.get(token: spent.token)
            #expect(limit.status == 429 || limit.status == 403, "a token with nothing remaining: \(limit.body)")

            let expiredWithUnits = sim.createToken(usageLimit: 10, usageCount: 2, status: "expired")
            let statusExpired = try await h.get(token: expiredWithUnits.token)
            #expect(statusExpired.status == 403, "status expired: \(statusExpired.body)")

            let good = sim.createToken(usageLimit: 100, usageCount: 40, listingID: "lst_42", subscriberID: "usr_7")
            let served = try await h.get(token: good.token)
            #expect(served.status == 200, "valid: \(served.body)")
            #expect(served.headers["x-subscription-remaining"] == ["59"], "remaining after this request's unit: \(served.headers)")
            #expect(served.headers["x-subscription-limit"] == ["100"])
            let seen = try #require(h.upstream.requests.last)
            #expect(seen.headers["x-subgate-subscriber-id"] == ["usr_7"] && seen.headers["x-subgate-listing-id"] == ["lst_42"])
            #expect(seen.headers["x-subgate-token-hash"] == [good.hash] && seen.headers["x-subgate-remaining"] == ["59"])
            #expect(seen.headers["x-subscription-token"].isEmpty, "the raw token must not reach the upstream unless forward_token = true")
        }
    }

    @Test("SPEC §3: remaining 0 → 429 USAGE_LIMIT_REACHED; status expired with units left → 403 TOKEN_EXPIRED (verify data as the control plane gives it)")
    func limitAndExpiredStatus() async throws {
        try await EnforcementHarness.with { h in
            // The simulator answers {valid:false} for expired tokens, so these verdicts are
            // put in the cache as a control plane answering valid:true with such data would.
            let now = ContinuousClock.now
            let exhaustedHash = TokenHash.hex("cro_sub_exhausted")
            let expiredHash = TokenHash.hex("cro_sub_expired_status")
            for (hash, status, remaining) in [(exhaustedHash, "active", 0), (expiredHash, "expired", 5)] {
                h.enforcer.cache.withShard(of: hash) { shard in
                    var entry = TokenEntry(lastUsed: now)
                    entry.applyVerify(.valid(TokenInfo(listingID: "l", subscriberID: "s", status: status, usageCount: 5, usageLimit: 10, remaining: remaining, expiresAt: nil)), at: now)
                    shard.entries[hash] = entry
                }
            }
            let exhausted = try await h.get(token: "cro_sub_exhausted")
            #expect(exhausted.status == 429 && exhausted.errorCode == "USAGE_LIMIT_REACHED", "\(exhausted.body)")
            let expired = try await h.get(token: "cro_sub_expired_status")
            #expect(expired.status == 403 && expired.errorCode == "TOKEN_EXPIRED", "\(expired.body)")
            #expect(h.simulator.callCount(.verify) == 0, "cached verdicts decide without the control plane")
        }
    }

    @Test("forward_token = true passes the raw token to the upstream")
    func forwardToken() async throws {
        try await EnforcementHarness.with({ $0.forwardToken = true }) { h in
            let token = h.simulator.createToken()
            let status90 = try await h.get(token: token.token).status
            #expect(status90 == 200)
            #expect(h.upstream.requests.last?.headers["x-subscription-token"] == [token.token])
        }
    }

    // MARK: Coalescing and reservation

    @Test("50 concurrent first requests for one token → exactly 1 verify")
    func coalescedVerify() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for _ in 0..<50 { group.addTask { try await h.get(token: token.token).status } }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 200 }, "statuses: \(statuses)")
            #expect(h.simulator.callCount(.verify) == 1, "verify calls: \(h.simulator.callCount(.verify))")
        }
    }

    @Test("remaining = 3 with 10 concurrent requests → exactly 3 served; units reported = billable answers served")
    func reservationsCannotOverrun() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: 3)
            let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
                for _ in 0..<10 { group.addTask { try await h.get(path: "/slow?ms=200", token: token.token).status } }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 3, "statuses: \(statuses.sorted())")
            #expect(statuses.filter { $0 == 429 }.count == 7, "the rest must be USAGE_LIMIT_REACHED: \(statuses.sorted())")
            let summary = await h.flush()
            #expect(summary.reportedUnits == 3 && h.simulator.acceptedUnits(hash: token.hash) == 3, "\(summary)")
            #expect(h.simulator.tokenState(hash: token.hash)?.status == "expired", "the simulator auto-expires at the limit")
        }
    }

    @Test("billing: x-subgate-usage sets the units and never reaches the client; non-billable answers release the unit")
    func billing() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            let billed = try await h.get(path: "/billed?units=7", token: token.token)
            #expect(billed.status == 200 && billed.headers["x-subgate-usage"].isEmpty, "x-subgate-usage must be removed: \(billed.headers)")
            let free = try await h.get(path: "/billed?units=0", token: token.token)
            #expect(free.status == 200)
            let notFound = try await h.get(path: "/status?code=404", token: token.token)
            #expect(notFound.status == 404)
            let failed = try await h.get(path: "/status?code=500", token: token.token)
            #expect(failed.status == 500)
            let redirect = try await h.get(path: "/status?code=302", token: token.token)
            #expect(redirect.status == 302)
            #expect(try await h.get(token: token.token).status == 200)
            let summary = await h.flush()
            // 7 + 0 + (404: no) + (500: no) + 302: 1 + 1 = 9 under usage_count_on = 2xx.
            #expect(h.simulator.acceptedUnits(hash: token.hash) == 9, "\(summary)")
        }
    }

    // MARK: Usage reporting

    @Test("1500 units in one window → reports of at most 1000")
    func reportsAreSplit() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            let status153 = try await h.get(path: "/billed?units=1500", token: token.token).status
            #expect(status153 == 200)
            _ = await h.flush()
            let counts = h.simulator.usageReports.filter { $0.tokenHash == token.hash }.map(\.count)
            #expect(counts.sorted() == [500, 1000], "reports: \(counts)")
            #expect(h.simulator.acceptedUnits(hash: token.hash) == 1500)
        }
    }

    @Test("a usage 429 with Retry-After → no usage call before it passes, then the units are reported")
    func usageRetryAfter() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            for _ in 0..<3 { #expect(try await h.get(token: token.token).status == 200) }
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 429, retryAfter: 2, times: 1))
            let limited = await h.flush()
            #expect(limited.reportedUnits == 0 && limited.pendingUnits == 3, "\(limited)")
            let callsAfter429 = h.simulator.callCount(.usage)
            _ = await h.flush()
            _ = await h.flush()
            #expect(h.simulator.callCount(.usage) == callsAfter429, "a usage call went out before Retry-After passed")
            try await Task.sleep(for: .milliseconds(2100))
            let after = await h.flush()
            #expect(after.reportedUnits == 3 && h.simulator.acceptedUnits(hash: token.hash) == 3, "\(after)")
        }
    }

    @Test("usage 5xx and dropped connections → retried, nothing lost")
    func usageFailuresLoseNothing() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            for _ in 0..<5 { let status = try await h.get(token: token.token).status; #expect(status == 200) }
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 500, times: 2))
            #expect(await h.flush().reportedUnits == 0)
            #expect(await h.flush().reportedUnits == 0)
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, drop: true, times: 1))
            #expect(await h.flush().reportedUnits == 0)
            let done = await h.flush()
            #expect(done.reportedUnits == 5 && done.pendingUnits == 0, "\(done)")
            #expect(h.simulator.acceptedUnits(hash: token.hash) == 5, "units lost or doubled: \(h.simulator.acceptedUnits(hash: token.hash))")
        }
    }

    @Test("after failed reports the periodic flush backs off: the next round sends nothing and keeps the back-off; a forced flush still reports")
    func flushBacksOff() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            let status = try await h.get(token: token.token).status
            #expect(status == 200)
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 500, times: 1))
            let failed = await h.enforcer.usage.flush()
            #expect(failed.reportedUnits == 0 && failed.stoppedBecause != nil, "\(failed)")
            let calls = h.simulator.callCount(.usage)
            let skipped = await h.enforcer.usage.flush()
            #expect(skipped.stoppedBecause?.contains("backing off") == true, "the next round waits out the back-off: \(skipped)")
            #expect(h.simulator.callCount(.usage) == calls, "nothing was sent while backing off")
            let again = await h.enforcer.usage.flush()
            #expect(again.stoppedBecause?.contains("backing off") == true, "an empty round did not reset the back-off: \(again)")
            let forced = await h.flush()
            #expect(forced.reportedUnits == 1 && h.simulator.acceptedUnits(hash: token.hash) == 1, "\(forced)")
        }
    }

    @Test("usage 404 for a hash → those units are dropped and counted, the rest still reported")
    func unbillableUnitsDropped() async throws {
        try await EnforcementHarness.with({ $0.failMode = .open }) { h in
            let token = h.simulator.createToken(usageLimit: nil)
            let status199 = try await h.get(token: token.token).status
            #expect(status199 == 200)
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 404, times: 1))
            let summary = await h.flush()
            #expect(summary.droppedUnits == 1 && summary.pendingUnits == 0, "\(summary)")
        }
    }

    // MARK: Control-plane failures

    @Test("control plane down → a cached token is still served; a new token gets 503 VERIFICATION_UNAVAILABLE with Retry-After")
    func controlPlaneDown() async throws {
        try await EnforcementHarness.with { h in
            let warm = h.simulator.createToken(usageLimit: nil)
            let cold = h.simulator.createToken(usageLimit: nil)
            #expect(try await h.get(token: warm.token).status == 200)
            h.simulator.injectFault(SimulatedFault(endpoint: .verify, status: 503))
            #expect(try await h.get(token: warm.token).status == 200, "a cached verdict must not wait on the control plane")
            let unavailable = try await h.get(token: cold.token)
            #expect(unavailable.status == 503 && unavailable.errorCode == "VERIFICATION_UNAVAILABLE", "\(unavailable.body)")
            #expect(!unavailable.headers["retry-after"].isEmpty, "503 must carry Retry-After")
            #expect(try await h.get(token: cold.token).status == 503, "a 5xx is never remembered as invalid, nor as valid")
            h.simulator.clearFaults()
            #expect(try await h.get(token: cold.token).status == 200, "once the control plane answers, the new token is verified")
        }
    }

    @Test("fail_mode = open: no usable verdict while the control plane fails → served, and billed later")
    func failOpen() async throws {
        try await EnforcementHarness.with({ $0.failMode = .open }) { h in
            let cold = h.simulator.createToken(usageLimit: nil)
            h.simulator.injectFault(SimulatedFault(endpoint: .verify, drop: true))
            let status230 = try await h.get(token: cold.token).status
            #expect(status230 == 200)
            h.simulator.clearFaults()
            _ = await h.flush()
            #expect(h.simulator.acceptedUnits(hash: cold.hash) == 1)
        }
    }

    @Test("control plane 401 → /readyz reports the seller key, requests get 503, usage is kept")
    func sellerKeyRejected() async throws {
        try await EnforcementHarness.with(sellerKey: "am_k_wrong") { h in
            let token = h.simulator.createToken()
            let answer = try await h.get(token: token.token)
            #expect(answer.status == 503, "\(answer.body)")
            let reasons = h.readiness.notReadyReasons() ?? []
            #expect(reasons.contains { $0.contains("seller key") }, "readiness: \(reasons)")
        }
    }

    @Test("rotation → the old token is refused after its refresh, and the new one is served")
    func rotation() async throws {
        try await EnforcementHarness.with({ $0.cacheTTL = .fixed(.seconds(1)) }) { h in
            let old = h.simulator.createToken(usageLimit: nil)
            #expect(try await h.get(token: old.token).status == 200)
            let new = try #require(h.simulator.rotate(hash: old.hash))
            try await Task.sleep(for: .milliseconds(1100))
            await h.poll()
            let refused = try await h.get(token: old.token)
            #expect(refused.status == 403 && refused.errorCode == "TOKEN_INVALID", "\(refused.body)")
            #expect(try await h.get(token: new).status == 200)
        }
    }

    @Test("enforce = shadow: a request the table refuses is still served (and counted)")
    func shadow() async throws {
        try await EnforcementHarness.with({ $0.enforce = .shadow }) { h in
            let status265 = try await h.get(token: nil).status
            #expect(status265 == 200)
            let status266 = try await h.get(token: "cro_sub_unknown").status
            #expect(status266 == 200)
        }
    }
}
