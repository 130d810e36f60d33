import AsyncHTTPClient
import Foundation
import NIOCore
import SubgateCore
import SubgateSimulator
import Testing

@testable import SubgateProxy

/// Issue 8, item 1 (control plane): SPEC §3 step 4 and §4 when the control plane is down,
/// hangs, rate-limits or rejects the seller key — with the real simulator and its faults.
///
/// Already proved in `EnforcementTests`: a 5xx verify (`controlPlaneDown`), a usage 429 with
/// `Retry-After` in seconds (`usageRetryAfter`), usage 5xx and dropped connections
/// (`usageFailuresLoseNothing`), a verify 401 (`sellerKeyRejected`).
@Suite(.serialized) struct ControlPlaneFaultTests {
    /// The answer's `Retry-After` in seconds, if it is a number.
    static func retryAfter(_ answer: EnforcementHarness.Answer) -> Int? {
        answer.headers.first(name: "retry-after").flatMap { Int($0) }
    }

    // MARK: - Down

    @Test("SPEC §3 step 4, §4: control plane down (connections refused) → a cached token is served, a new one gets 503 VERIFICATION_UNAVAILABLE with Retry-After at once, and served units are kept")
    func controlPlaneRefusesConnections() async throws {
        try await EnforcementHarness.with { h in
            let warm = h.simulator.createToken(usageLimit: nil)
            let cold = h.simulator.createToken(usageLimit: nil)
            do { let status = try await h.get(token: warm.token).status; #expect(status == 200) }
            await h.simulator.stop()

            do { let status = try await h.get(token: warm.token).status; #expect(status == 200, "a cached verdict must be served while the control plane is down") }
            let asked = ContinuousClock.now
            let refused = try await h.get(token: cold.token)
            let elapsed = ContinuousClock.now - asked
            #expect(refused.status == 503 && refused.errorCode == "VERIFICATION_UNAVAILABLE", "a new token with the control plane down: \(refused.status) \(refused.body)")
            #expect((Self.retryAfter(refused) ?? 0) >= 1, "the 503 must carry a Retry-After in seconds: \(refused.headers)")
            #expect(elapsed < .seconds(2), "a refused connection must be decided at once, took \(elapsed)")

            let summary = await h.flush()
            #expect(summary.reportedUnits == 0 && summary.pendingUnits == 2, "both served units must be kept for later: \(summary)")
        }
    }

    // MARK: - Hanging

    @Test("SPEC §3 step 4: a hanging control plane → warm tokens are served at once, new ones get 503 within the 5 s verify timeout, then the breaker opens and requests are decided at once")
    func controlPlaneHangs() async throws {
        try await EnforcementHarness.with({ $0.cacheTTL = .fixed(.seconds(1)) }) { h in
            let warm = h.simulator.createToken(usageLimit: nil)
            do { let status = try await h.get(token: warm.token).status; #expect(status == 200) }
            h.simulator.injectFault(SimulatedFault(endpoint: .verify, hang: true))
            // The warm verdict is now past its TTL (stale, within stale_max): usable, never waited on.
            try await Task.sleep(for: .milliseconds(1100))

            // Five new tokens at once: five verifies hang until the client's 5 s timeout, five
            // consecutive failures open the breaker (docs/enforcement.md).
            let colds = (0..<5).map { _ in h.simulator.createToken(usageLimit: nil) }
            let start = ContinuousClock.now
            let wave = Task {
                try await withThrowingTaskGroup(of: (UInt, String?, Int?, Duration).self) { group in
                    for cold in colds {
                        group.addTask {
                            let answer = try await h.get(token: cold.token)
                            return (answer.status, answer.errorCode, Self.retryAfter(answer), ContinuousClock.now - start)
                        }
                    }
                    return try await group.reduce(into: [(UInt, String?, Int?, Duration)]()) { $0.append($1) }
                }
            }
            var slowestWarm = Duration.zero
            for _ in 0..<5 {
                let asked = ContinuousClock.now
                let answer = try await h.get(token: warm.token)
                slowestWarm = max(slowestWarm, ContinuousClock.now - asked)
                #expect(answer.status == 200, "a warm token must be served while verifies hang: \(answer.status) \(answer.body)")
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(slowestWarm < .seconds(2), "a warm token waited \(slowestWarm) on a hanging control plane")

            let results = try await wave.value
            for (status, code, retry, elapsed) in results {
                #expect(status == 503 && code == "VERIFICATION_UNAVAILABLE", "a new token under a hanging control plane: \(status) \(code ?? "-")")
                #expect((retry ?? 0) >= 1, "the 503 must carry Retry-After")
                #expect(elapsed < .seconds(7), "a new token waited \(elapsed), beyond the 5 s verify timeout")
            }
            #expect(h.enforcer.snapshot().breaker == "open", "five consecutive verify failures must open the breaker, it is \(h.enforcer.snapshot().breaker)")

            // Breaker open: a new token is decided without waiting on the control plane.
            let verifies = h.simulator.callCount(.verify)
            let asked = ContinuousClock.now
            let late = try await h.get(token: h.simulator.createToken(usageLimit: nil).token)
            let elapsed = ContinuousClock.now - asked
            #expect(late.status == 503 && late.errorCode == "VERIFICATION_UNAVAILABLE" && (Self.retryAfter(late) ?? 0) >= 1, "breaker open: \(late.status) \(late.body) \(late.headers)")
            #expect(elapsed < .seconds(2), "with the breaker open a request must be decided at once, took \(elapsed)")
            #expect(h.simulator.callCount(.verify) == verifies, "with the breaker open no verify may be sent")
            do { let status = try await h.get(token: warm.token).status; #expect(status == 200, "the warm token is still served") }
            h.simulator.clearFaults()
        }
    }

    // MARK: - 429 and Retry-After

    @Test("SPEC §4: a usage 429 whose Retry-After is an HTTP-date is honoured: no usage call before it, then the units are reported")
    func usageRetryAfterAsHTTPDate() async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            for _ in 0..<3 { do { let status = try await h.get(token: token.token).status; #expect(status == 200) } }
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 429, retryAfter: 2, retryAfterAsDate: true, times: 1))
            let limited = await h.flush()
            let limitedAt = ContinuousClock.now
            #expect(limited.reportedUnits == 0 && limited.pendingUnits == 3, "\(limited)")
            let retry = h.enforcer.usage.status().retryInSeconds ?? 0
            // The date has whole seconds, so the wait is between 1 and 2 s.
            #expect(retry >= 0 && retry <= 2, "the pause must follow the date, 1–2 s away; it is \(retry) s")
            let calls = h.simulator.callCount(.usage)
            _ = await h.flush()
            #expect(h.simulator.callCount(.usage) == calls, "a usage call went out before the HTTP-date passed")
            try await Task.sleep(until: limitedAt + .milliseconds(2100))
            let after = await h.flush()
            #expect(after.reportedUnits == 3 && h.simulator.acceptedUnits(hash: token.hash) == 3, "after the date the units must be reported: \(after)")
        }
    }

    /// An absurd `Retry-After`, as seconds or as a date.
    struct AbsurdRetryAfter: Sendable, CustomTestStringConvertible {
        let name: String
        let fault: SimulatedFault
        var testDescription: String { self.name }
    }

    static let absurdRetryAfters = [
        AbsurdRetryAfter(name: "one day in seconds", fault: SimulatedFault(endpoint: .usage, status: 429, retryAfter: 86_400, times: 1)),
        AbsurdRetryAfter(name: "an HTTP-date a year away", fault: SimulatedFault(endpoint: .usage, status: 429, retryAfter: 365 * 86_400, retryAfterAsDate: true, times: 1)),
    ]

    @Test("SPEC §4 (choice, docs/enforcement.md: capped at 300 s): an absurd usage Retry-After is honoured but capped, and the units are kept", arguments: absurdRetryAfters)
    func usageRetryAfterIsCapped(_ absurd: AbsurdRetryAfter) async throws {
        try await EnforcementHarness.with { h in
            let token = h.simulator.createToken(usageLimit: nil)
            for _ in 0..<2 { do { let status = try await h.get(token: token.token).status; #expect(status == 200) } }
            h.simulator.injectFault(absurd.fault)
            let limited = await h.flush()
            #expect(limited.reportedUnits == 0 && limited.pendingUnits == 2, "\(absurd.name): \(limited)")
            let retry = h.enforcer.usage.status().retryInSeconds ?? 0
            #expect(retry > 290 && retry <= 300, "\(absurd.name): the pause must be capped at 300 s, it is \(retry) s")
            let calls = h.simulator.callCount(.usage)
            let again = await h.flush()
            #expect(h.simulator.callCount(.usage) == calls, "\(absurd.name): a usage call went out during the pause")
            #expect(again.pendingUnits == 2, "\(absurd.name): the units must be kept: \(again)")
        }
    }

    @Test("SPEC §3 step 4: a verify 429 with an absurd Retry-After pauses verifies (capped at 300 s): new tokens get 503 with a capped Retry-After and no verify call")
    func verifyRetryAfterIsCapped() async throws {
        try await EnforcementHarness.with { h in
            h.simulator.injectFault(SimulatedFault(endpoint: .verify, status: 429, retryAfter: 86_400, times: 1))
            let first = try await h.get(token: h.simulator.createToken(usageLimit: nil).token)
            #expect(first.status == 503 && first.errorCode == "VERIFICATION_UNAVAILABLE", "\(first.status) \(first.body)")
            let firstRetry = Self.retryAfter(first) ?? 0
            #expect(firstRetry >= 1 && firstRetry <= 301, "Retry-After must be the capped pause, got \(firstRetry)")
            let calls = h.simulator.callCount(.verify)
            let asked = ContinuousClock.now
            let second = try await h.get(token: h.simulator.createToken(usageLimit: nil).token)
            #expect(second.status == 503 && (Self.retryAfter(second) ?? 0) > 250 && (Self.retryAfter(second) ?? 0) <= 301, "during the pause: \(second.status) \(second.headers)")
            #expect(ContinuousClock.now - asked < .seconds(6), "a request during the pause may wait at most the 5 s miss budget")
            #expect(h.simulator.callCount(.verify) == calls, "a verify went out during the 429's pause")
        }
    }

    // MARK: - 401 on usage

    @Test("SPEC §4: a usage 401 → /readyz fails, the periodic flush stops sending (backs off), units stay in the journal; a forced flush after the fix reports them")
    func usageUnauthorizedStopsRetries() async throws {
        let scratch = try UsageJournalTests.Scratch()
        let path = scratch.journal
        try await EnforcementHarness.with({
            $0.usageJournal = path
            $0.journalSync = .interval(.seconds(3600))
        }) { h in
            let a = h.simulator.createToken(usageLimit: nil)
            let b = h.simulator.createToken(usageLimit: nil)
            for token in [a, a, b] { do { let status = try await h.get(token: token.token).status; #expect(status == 200) } }
            h.simulator.injectFault(SimulatedFault(endpoint: .usage, status: 401))

            let first = await h.enforcer.usage.flush()
            #expect(first.reportedUnits == 0 && first.pendingUnits == 3, "\(first)")
            #expect(first.stoppedBecause?.contains("401") == true, "the flush must stop on the 401: \(first)")
            let reasons = h.readiness.notReadyReasons() ?? []
            #expect(reasons.contains { $0.contains("seller key") }, "/readyz must fail naming the seller key: \(reasons)")

            // The next periodic rounds send nothing: the key is not going to fix itself.
            let calls = h.simulator.callCount(.usage)
            #expect(calls <= 2, "one round sends at most one report per hash, it sent \(calls)")
            for _ in 0..<3 {
                let round = await h.enforcer.usage.flush()
                #expect(round.reportedUnits == 0 && round.pendingUnits == 3, "\(round)")
            }
            #expect(h.simulator.callCount(.usage) == calls, "after a 401 the periodic flush kept sending: \(h.simulator.callCount(.usage) - calls) more calls")

            // The units are in the journal on disk, so a restart would still report them.
            try await h.enforcer.usage.journal?.commit()
            let onDisk = JournalCodec.replay(FileManager.default.contents(atPath: path).map { Array($0) } ?? [])
            #expect(onDisk.pending == [a.hash: 2, b.hash: 1], "the journal must keep the unreported units: \(onDisk.pending)")

            // Fixed (the control plane accepts again): POST /flush reports them and /readyz recovers.
            h.simulator.clearFaults()
            let forced = await h.flush()
            #expect(forced.reportedUnits == 3 && h.simulator.acceptedUnits(hash: a.hash) == 2 && h.simulator.acceptedUnits(hash: b.hash) == 1, "\(forced)")
            #expect(!(h.readiness.notReadyReasons() ?? []).contains { $0.contains("seller key") }, "readiness must recover once usage is accepted")
            try await h.enforcer.usage.journal?.close()
        }
    }
}
