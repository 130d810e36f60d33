import Foundation
import NIOHTTP1
import Testing

@testable import SubgateCore

/// SPEC §3 step 5 and the verdict cache's rules, on `TokenEntry` values with an injected clock.
@Suite struct EnforcementDecisionTests {
    let t0 = ContinuousClock.now
    let wallNow = Date(timeIntervalSince1970: 1_800_000_000)

    func info(status: String = "active", remaining: Int? = 10, limit: Int? = 100, expiresIn: TimeInterval? = 3600) -> TokenInfo {
        TokenInfo(
            listingID: "lst_1", subscriberID: "usr_1", status: status, usageCount: 0, usageLimit: limit, remaining: remaining,
            expiresAt: expiresIn.map { self.wallNow.addingTimeInterval($0) }
        )
    }

    func entry(_ outcome: VerifyOutcome, then later: VerifyOutcome? = nil) -> TokenEntry {
        var entry = TokenEntry(lastUsed: self.t0)
        entry.applyVerify(outcome, at: self.t0)
        if let later { entry.applyVerify(later, at: self.t0 + .seconds(1)) }
        return entry
    }

    @Test("an active token with units left is allowed")
    func allow() {
        #expect(self.entry(.valid(self.info())).decide(now: self.wallNow) == .allow)
    }

    @Test("{valid:false} for a token never seen valid → 403 TOKEN_INVALID")
    func neverValid() {
        #expect(self.entry(.invalid).decide(now: self.wallNow) == .reject(.tokenInvalid))
    }

    @Test("{valid:false} for a token last seen revoked → 403 TOKEN_INVALID")
    func revoked() {
        #expect(self.entry(.valid(self.info(status: "revoked")), then: .invalid).decide(now: self.wallNow) == .reject(.tokenInvalid))
    }

    @Test("expires_at ≤ now → 403 TOKEN_EXPIRED, and a later {valid:false} does not change it")
    func expiredByDate() {
        #expect(self.entry(.valid(self.info(expiresIn: -1))).decide(now: self.wallNow) == .reject(.tokenExpired))
        #expect(self.entry(.valid(self.info(expiresIn: 0))).decide(now: self.wallNow) == .reject(.tokenExpired), "expires_at == now is expired")
        #expect(self.entry(.valid(self.info(expiresIn: -1)), then: .invalid).decide(now: self.wallNow) == .reject(.tokenExpired))
        // A cached verdict is never served past expires_at: the same entry flips with the clock.
        let soon = self.entry(.valid(self.info(expiresIn: 30)))
        #expect(soon.decide(now: self.wallNow) == .allow)
        #expect(soon.decide(now: self.wallNow.addingTimeInterval(30)) == .reject(.tokenExpired))
    }

    @Test("remaining minus unconfirmed units ≤ 0 → 429 USAGE_LIMIT_REACHED, whatever status says")
    func exhausted() {
        #expect(self.entry(.valid(self.info(remaining: 0))).decide(now: self.wallNow) == .reject(.usageLimitReached))
        #expect(self.entry(.valid(self.info(status: "expired", remaining: 0))).decide(now: self.wallNow) == .reject(.usageLimitReached))
        var entry = self.entry(.valid(self.info(remaining: 3)))
        for _ in 0..<2 { entry.reserve(at: self.t0) }
        entry.settle(billed: 1)  // 1 reserved, 1 unreported: 1 left
        #expect(entry.decide(now: self.wallNow) == .allow)
        entry.reserve(at: self.t0)  // 2 reserved + 1 unreported = 3
        #expect(entry.decide(now: self.wallNow) == .reject(.usageLimitReached))
        entry.settle(billed: 0)  // a released reservation gives the unit back
        #expect(entry.decide(now: self.wallNow) == .allow)
    }

    @Test("remaining null is unlimited")
    func unlimited() {
        var entry = self.entry(.valid(self.info(remaining: nil, limit: nil)))
        for _ in 0..<10_000 { entry.reserve(at: self.t0) }
        #expect(entry.decide(now: self.wallNow) == .allow)
        #expect(entry.effectiveRemaining == nil)
    }

    @Test("a token last seen with nothing remaining that now verifies {valid:false} stays 429")
    func exhaustedThenInvalid() {
        #expect(self.entry(.valid(self.info(remaining: 0)), then: .invalid).decide(now: self.wallNow) == .reject(.usageLimitReached))
        var entry = self.entry(.valid(self.info(remaining: 1)))
        entry.reserve(at: self.t0)
        entry.settle(billed: 1)
        entry.applyVerify(.invalid, at: self.t0 + .seconds(2))
        #expect(entry.decide(now: self.wallNow) == .reject(.usageLimitReached), "the unit this instance billed used the last one")
    }

    @Test("status expired with units left → 403 TOKEN_EXPIRED; seen valid with units left, now invalid (rotated) → 403 TOKEN_INVALID")
    func statusExpiredAndRotated() {
        #expect(self.entry(.valid(self.info(status: "expired", remaining: 5))).decide(now: self.wallNow) == .reject(.tokenExpired))
        #expect(self.entry(.valid(self.info(status: "expired", remaining: 5)), then: .invalid).decide(now: self.wallNow) == .reject(.tokenExpired))
        #expect(self.entry(.valid(self.info()), then: .invalid).decide(now: self.wallNow) == .reject(.tokenInvalid))
    }

    @Test("freshness: fresh within TTL, stale (served, refreshed) up to TTL + stale_max, then unusable; ttl 0 verifies every request")
    func freshness() {
        let entry = self.entry(.valid(self.info()))
        let f = { (age: Duration, ttl: Duration) in
            entry.freshness(now: self.t0 + age, ttl: ttl, negativeTTL: .seconds(10), staleMax: .seconds(900))
        }
        #expect(f(.seconds(59), .seconds(60)) == .fresh)
        #expect(f(.seconds(60), .seconds(60)) == .stale)
        #expect(f(.seconds(959), .seconds(60)) == .stale)
        #expect(f(.seconds(960), .seconds(60)) == .unusable)
        #expect(f(.seconds(1), .zero) == .unusable, "cache_ttl auto under 1 req/s verifies every request a second or more apart")
        #expect(f(.milliseconds(999), .zero) == .fresh, "a burst within a second shares the verdict")
        #expect(TokenEntry(lastUsed: self.t0).freshness(now: self.t0, ttl: .seconds(60), negativeTTL: .seconds(10), staleMax: .seconds(900)) == .unusable,
                "an entry without a definitive answer is a miss")
    }

    @Test("negative verdicts are kept for negative_ttl only; failures are never remembered as invalid")
    func negativeTTL() {
        let invalid = self.entry(.invalid)
        #expect(invalid.freshness(now: self.t0 + .seconds(9), ttl: .seconds(60), negativeTTL: .seconds(10), staleMax: .seconds(900)) == .fresh)
        #expect(invalid.freshness(now: self.t0 + .seconds(10), ttl: .seconds(60), negativeTTL: .seconds(10), staleMax: .seconds(900)) == .unusable)
        var failed = TokenEntry(lastUsed: self.t0)
        failed.applyVerify(.failed(reason: "503", retryAfter: nil), at: self.t0)
        failed.applyVerify(.failed(reason: "429", retryAfter: .seconds(5)), at: self.t0)
        failed.applyVerify(.unauthorized, at: self.t0)
        #expect(failed.verifiedAt == nil && !failed.lastVerdictInvalid, "a timeout, 5xx, 429 or 401 is not knowledge about the token")
        let valid = self.entry(.valid(self.info()), then: .failed(reason: "timeout", retryAfter: nil))
        #expect(valid.decide(now: self.wallNow) == .allow, "a failed refresh keeps the last definitive verdict")
    }

    @Test("a usage answer refreshes remaining and status, and confirms the reported units")
    func usageAnswerRefreshes() {
        var entry = self.entry(.valid(self.info(remaining: 10)))
        for _ in 0..<4 {
            entry.reserve(at: self.t0)
            entry.settle(billed: 1)
        }
        #expect(entry.effectiveRemaining == 6)
        entry.applyReport(units: 4, outcome: .accepted(usageCount: 94, usageLimit: 100, remaining: 6, status: "active"))
        #expect(entry.unreported == 0 && entry.info?.remaining == 6 && entry.effectiveRemaining == 6)
        entry.applyReport(units: 0, outcome: .accepted(usageCount: 100, usageLimit: 100, remaining: 0, status: "expired"))
        #expect(entry.decide(now: self.wallNow) == .reject(.usageLimitReached))
        #expect(!entry.holdsUsage)
    }
}

@Suite struct UsageLedgerTests {
    @Test("reports are split at 1000 and the largest totals go first when the budget is short")
    func splitAndOrder() {
        var ledger = UsageLedger()
        ledger.add("a", units: 1500)
        ledger.add("b", units: 20)
        ledger.add("c", units: 700)
        #expect(ledger.totalUnits == 2220)
        let first = ledger.takeReports(maxReports: 2)
        #expect(first == [UsageReport(hash: "a", count: 1000), UsageReport(hash: "a", count: 500)])
        #expect(ledger.totalUnits == 720)
        let rest = ledger.takeReports(maxReports: 10)
        #expect(rest == [UsageReport(hash: "c", count: 700), UsageReport(hash: "b", count: 20)])
        #expect(ledger.totalUnits == 0 && ledger.takeReports(maxReports: 10).isEmpty)
    }

    @Test("a report put back is reported again, with exact sums; zero budget takes nothing")
    func restore() {
        var ledger = UsageLedger()
        ledger.add("a", units: 5)
        ledger.add("a", units: 0)
        #expect(ledger.takeReports(maxReports: 0).isEmpty && ledger.totalUnits == 5)
        let taken = ledger.takeReports(maxReports: 1)
        ledger.add("a", units: 2)
        ledger.restore(taken[0])
        #expect(ledger.pending == ["a": 7])
    }

    @Test("billable statuses per usage_count_on and the x-subgate-usage header")
    func billing() {
        #expect(Billing.isBillable(status: 200, countOn: .success) && Billing.isBillable(status: 304, countOn: .success))
        #expect(!Billing.isBillable(status: 404, countOn: .success) && Billing.isBillable(status: 404, countOn: .non5xx))
        #expect(!Billing.isBillable(status: 503, countOn: .non5xx) && Billing.isBillable(status: 503, countOn: .all))
        #expect(Billing.units(header: nil) == 1)
        #expect(Billing.units(header: "0") == 0 && Billing.units(header: " 42 ") == 42 && Billing.units(header: "1000000") == 1_000_000)
        #expect(Billing.units(header: "1000001") == nil && Billing.units(header: "-1") == nil && Billing.units(header: "x") == nil)
    }

    @Test("cache_ttl auto follows the seed's table")
    func autoTTL() {
        #expect(AutoTTL.ttl(requestsPerSecond: 0.5) == .zero)
        #expect(AutoTTL.ttl(requestsPerSecond: 1) == .seconds(60))
        #expect(AutoTTL.ttl(requestsPerSecond: 50) == .seconds(60))
        #expect(AutoTTL.ttl(requestsPerSecond: 51) == .seconds(30))
    }
}

@Suite struct ControlPlaneBudgetTests {
    let t0 = ContinuousClock.now

    @Test("300/min: never more than 300 calls in any 60 s window, and misses keep a reserve refreshes cannot take")
    func bucket() {
        var bucket = TokenBucket(limit: Rate(count: 300, per: .seconds(60)), now: self.t0)
        var calls: [Duration] = []
        var t = Duration.zero
        while t < .seconds(180) {
            if bucket.take(.miss, now: self.t0 + t) { calls.append(t) }
            t += .milliseconds(10)
        }
        for (i, start) in calls.enumerated() {
            let inWindow = calls[i...].prefix { $0 < start + .seconds(60) }.count
            #expect(inWindow <= 300, "\(inWindow) calls in the 60 s after \(start)")
            if inWindow > 300 { break }
        }
        #expect(calls.count >= 800, "the budget should be usable: \(calls.count) calls in 180 s")

        var shared = TokenBucket(limit: Rate(count: 300, per: .seconds(60)), now: self.t0)
        var refreshes = 0
        while shared.take(.refresh, now: self.t0) { refreshes += 1 }
        let missAfterRefreshes = shared.take(.miss, now: self.t0)
        #expect(missAfterRefreshes, "a miss must still find budget after refreshes took theirs")
        #expect(refreshes > 0)
    }

    @Test("available(priority) counts exactly the calls take(priority) allows, for every limit (15/min and 25/min have fractional reserves), and 0 while paused", arguments: [1, 10, 15, 25, 29, 60, 300, 1000])
    func availableMatchesTake(count: Int) {
        for priority in [TokenBucket.Priority.miss, .refresh] {
            var bucket = TokenBucket(limit: Rate(count: count, per: .seconds(60)), now: self.t0)
            let announced = bucket.available(priority, now: self.t0)
            var taken = 0
            while bucket.take(priority, now: self.t0) { taken += 1 }
            #expect(announced == taken, "\(count)/min, \(priority): available said \(announced), take allowed \(taken)")
            if count >= 15 && priority == .refresh {
                #expect(taken >= 1, "\(count)/min: a full bucket must let at least one refresh-priority call (a Crovver batch) out")
            }
        }
        var paused = TokenBucket(limit: Rate(count: count, per: .seconds(60)), now: self.t0)
        paused.pause(for: .seconds(5), now: self.t0)
        #expect(paused.available(.miss, now: self.t0 + .seconds(1)) == 0 && paused.isPaused(now: self.t0 + .seconds(1)))
    }

    @Test("Retry-After pauses the endpoint until it has passed")
    func pause() {
        var bucket = TokenBucket(limit: Rate(count: 300, per: .seconds(60)), now: self.t0)
        bucket.pause(for: .seconds(12), now: self.t0)
        let during = bucket.take(.miss, now: self.t0 + .seconds(11))
        #expect(!during, "a call went out before Retry-After passed")
        let wait = bucket.wait(.miss, now: self.t0 + .seconds(2))
        #expect(wait >= .seconds(10))
        let after = bucket.take(.miss, now: self.t0 + .seconds(12))
        #expect(after)
    }

    @Test("Retry-After: seconds or an HTTP-date, capped, garbage ignored")
    func retryAfter() {
        let now = Date(timeIntervalSince1970: 1_784_000_000)
        #expect(RetryAfter.parse("12", now: now) == .seconds(12))
        #expect(RetryAfter.parse("86400", now: now) == RetryAfter.cap)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        #expect(RetryAfter.parse(formatter.string(from: now.addingTimeInterval(30)), now: now) == .seconds(30))
        #expect(RetryAfter.parse("soon", now: now) == nil && RetryAfter.parse(nil, now: now) == nil)
    }

    @Test("back-off doubles up to its cap, with jitter within [d/2, d]")
    func backoff() {
        var backoff = Backoff(base: .seconds(1), cap: .seconds(8))
        var delays: [Duration] = []
        delays.append(backoff.next(random: { 0 }))
        delays.append(backoff.next(random: { 0.999_999 }))
        delays.append(backoff.next(random: { 0 }))
        delays.append(backoff.next(random: { 0 }))
        delays.append(backoff.next(random: { 0 }))
        #expect(delays[0] == .milliseconds(500))
        #expect(delays[1] > .seconds(1) && delays[1] <= .seconds(2))
        #expect(delays[2] == .seconds(2) && delays[3] == .seconds(4))
        #expect(delays[4] == .seconds(4), "capped at 8 s: half of it fixed")
        backoff.reset()
        let again = backoff.next(random: { 0 })
        #expect(again == .milliseconds(500))
    }

    @Test("circuit breaker: opens after 5 failures, lets one probe through after its back-off, closes on success")
    func breaker() {
        var breaker = CircuitBreaker(threshold: 5, backoff: Backoff(base: .seconds(2), cap: .seconds(30)))
        for _ in 0..<4 { breaker.recordFailure(now: self.t0, random: { 0 }) }
        let closedAllows = breaker.allowCall(now: self.t0)
        #expect(!breaker.isOpen(now: self.t0) && closedAllows)
        breaker.recordFailure(now: self.t0, random: { 0 })
        let earlyProbe = breaker.allowCall(now: self.t0 + .milliseconds(999))
        #expect(breaker.isOpen(now: self.t0) && !earlyProbe)
        let probe = breaker.allowCall(now: self.t0 + .seconds(1))
        #expect(probe, "the probe goes out after the back-off")
        let secondProbe = breaker.allowCall(now: self.t0 + .seconds(1))
        #expect(!secondProbe, "only one probe at a time")
        breaker.recordFailure(now: self.t0 + .seconds(1), random: { 0 })
        #expect(breaker.state == .open)
        let later = breaker.allowCall(now: self.t0 + .seconds(10))
        #expect(later)
        breaker.recordSuccess()
        #expect(breaker.state == .closed && !breaker.isOpen(now: self.t0 + .seconds(10)))
    }
}

@Suite struct TokenTests {
    @Test("token: absent, empty or mis-prefixed is missing; twice is a duplicate; the hash is lowercase hex SHA-256")
    func token() {
        var headers = HTTPHeadersForTest.make([("X-Subscription-Token", "cro_sub_abc")])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .present("cro_sub_abc"))
        headers = HTTPHeadersForTest.make([])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .missing)
        headers = HTTPHeadersForTest.make([("x-subscription-token", "")])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .missing)
        headers = HTTPHeadersForTest.make([("x-subscription-token", "cro_sub_")])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .missing)
        headers = HTTPHeadersForTest.make([("x-subscription-token", "abc_cro_sub_x")])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .missing)
        headers = HTTPHeadersForTest.make([("x-subscription-token", "cro_sub_a"), ("X-SUBSCRIPTION-TOKEN", "cro_sub_b")])
        #expect(TokenLookup.find(in: headers, name: "x-subscription-token", prefix: "cro_sub_") == .duplicate)
        #expect(TokenHash.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(TokenHash.logPrefix(TokenHash.hex("abc")) == "ba7816bf")
    }
}

enum HTTPHeadersForTest {
    static func make(_ fields: [(String, String)]) -> HTTPHeaders { HTTPHeaders(fields) }
}
