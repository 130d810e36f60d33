import Foundation
import Testing
@testable import SubgateSimulator

/// SPEC §7 and seed 000: the Crochet token endpoints, as a value with an injected clock.
@Suite struct CrochetStoreTests {
    // MARK: - verify

    @Test("verify answers the seed's valid shape, every data field in the seed's order")
    func verifyShape() {
        let store = StoreHarness()
        let expiry = Date(timeIntervalSince1970: 1_776_384_000)  // 2026-04-17T00:00:00Z
        let (raw, hash) = store.createToken(listingID: "lst_1", subscriberID: "usr_1", usageLimit: 100, usageCount: 47, expiresAt: expiry)
        #expect(raw.hasPrefix("cro_sub_") && raw.count == 40, "raw tokens are cro_sub_ and 32 hex digits: \(raw)")
        #expect(hash == sha256Hex(raw), "the store is keyed by the lowercase hex SHA-256 of the raw token")
        let answer = store.call(verifyCall(hash), at: t0)
        #expect(answer.code == 200)
        #expect(
            answer.rendered
                == #"{"valid":true,"data":{"listing_id":"lst_1","status":"active","usage_count":47,"usage_limit":100,"remaining":53,"expires_at":"2026-04-17T00:00:00Z","subscriber_id":"usr_1"}}"#,
            "the seed's verify example, field for field"
        )
    }

    @Test("unlimited tokens answer null usage_limit and remaining and never expire by usage")
    func unlimited() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: nil)
        let verified = store.call(verifyCall(hash), at: t0)
        #expect(verified.data?["usage_limit"] == .null && verified.data?["remaining"] == .null, "null means unlimited: \(verified.rendered)")
        #expect(verified.data?["expires_at"] == .null, "no expiry date is null")
        for _ in 0..<3 {
            #expect(store.call(usageCall(hash, 1000), at: t0).code == 200)
        }
        let used = store.call(usageCall(hash, 1), at: t0)
        #expect(used.data?["usage_count"] == .int(3001) && used.data?["remaining"] == .null && used.data?["status"] == .string("active"), "\(used.rendered)")
    }

    @Test("verify answers a bare {valid:false} for unknown, revoked, expired and other sellers' tokens")
    func verifyNeverReveals() {
        let store = StoreHarness()
        let revoked = store.createToken(status: "revoked").hash
        let usedUp = store.createToken(usageLimit: 5, usageCount: 5, status: "expired").hash
        let pastDate = store.createToken(expiresAt: t0.addingTimeInterval(-1)).hash
        let otherSellers = store.createToken(sellerKey: "am_k_other").hash
        let unknown = String(repeating: "ab", count: 32)
        for (name, hash) in [("unknown", unknown), ("revoked", revoked), ("expired by usage", usedUp), ("expired by date", pastDate), ("another seller's", otherSellers)] {
            let answer = store.call(verifyCall(hash), at: t0)
            #expect(answer.code == 200 && answer.rendered == #"{"valid":false}"#, "\(name) token: \(answer.rendered)")
        }
        #expect(store.call(verifyCall(otherSellers, key: "am_k_other"), at: t0).body["valid"] == .bool(true), "its own seller sees it")
    }

    @Test("a token whose expires_at ≤ now turns expired before the answer")
    func dateExpiry() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(expiresAt: t0.addingTimeInterval(10))
        #expect(store.call(verifyCall(hash), at: t0.addingTimeInterval(9.9)).body["valid"] == .bool(true), "valid before expires_at")
        #expect(store.call(verifyCall(hash), at: t0.addingTimeInterval(10)).rendered == #"{"valid":false}"#, "invalid at expires_at exactly")
        #expect(store.token(hash: hash, now: t0.addingTimeInterval(10))?.status == "expired", "the stored status became expired")
        let report = store.call(usageCall(hash, 1), at: t0.addingTimeInterval(11))
        #expect(report.code == 403 && report.errorCode == "FORBIDDEN", "no usage on an expired token: \(report.rendered)")
    }

    // MARK: - usage

    @Test("usage adds the count atomically and answers the seed's usage shape")
    func usageShape() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: 100, usageCount: 47)
        let answer = store.call(usageCall(hash, 1), at: t0)
        let tokenID = store.token(hash: hash, now: t0)?.tokenID ?? "?"
        #expect(tokenID.hasPrefix("tok_"))
        #expect(
            answer.rendered == #"{"success":true,"data":{"token_id":"\#(tokenID)","usage_count":48,"usage_limit":100,"remaining":52,"status":"active"}}"#,
            "the seed's usage example: \(answer.rendered)"
        )
        #expect(store.call(usageCall(hash, 10), at: t0).data?["usage_count"] == .int(58), "a batch count adds up")
        #expect(store.acceptedUnits[hash] == 11 && store.totalAcceptedUnits == 11, "accepted units are totalled per hash")
    }

    @Test("reaching usage_limit turns the token expired automatically; later reports answer 403")
    func autoExpiry() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: 5)
        #expect(store.call(usageCall(hash, 4), at: t0).data?["status"] == .string("active"))
        let last = store.call(usageCall(hash, 1), at: t0)
        #expect(last.data?["status"] == .string("expired") && last.data?["remaining"] == .int(0), "usage_count reached usage_limit: \(last.rendered)")
        #expect(store.call(verifyCall(hash), at: t0).rendered == #"{"valid":false}"#, "an expired token no longer verifies")
        let after = store.call(usageCall(hash, 1), at: t0)
        #expect(after.code == 403 && after.errorCode == "FORBIDDEN", "reports on an expired token fail: \(after.rendered)")
        #expect(store.token(hash: hash, now: t0)?.usageCount == 5, "the refused report added nothing")
        #expect(store.acceptedUnits[hash] == 5, "only accepted reports count in the totals")
    }

    @Test("a report larger than what remains is accepted whole and remaining stays 0")
    func overshoot() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: 10, usageCount: 8)
        let answer = store.call(usageCall(hash, 5), at: t0)
        #expect(answer.code == 200 && answer.data?["usage_count"] == .int(13) && answer.data?["remaining"] == .int(0))
        #expect(answer.data?["status"] == .string("expired"))
    }

    @Test("count must be an integer between 1 and 1000, else 400 BAD_REQUEST")
    func countBounds() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: nil)
        for count in ["0", "1001", "-1", "1.5", "\"1\"", "true", "null"] {
            let answer = store.call(apiCall(.usage, #"{"token_hash":"\#(hash)","count":\#(count)}"#), at: t0)
            #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "count \(count): \(answer.rendered)")
            #expect(answer.body["success"] == .bool(false))
        }
        #expect(store.call(apiCall(.usage, #"{"token_hash":"\#(hash)"}"#), at: t0).code == 400, "a missing count")
        #expect(store.call(usageCall(hash, 1), at: t0).code == 200, "1 is the lowest count")
        #expect(store.call(usageCall(hash, 1000), at: t0).code == 200, "1000 is the highest count")
        #expect(store.token(hash: hash, now: t0)?.usageCount == 1001, "only the valid reports were added")
    }

    @Test("a body without a non-empty string token_hash answers 400 with the seed's message")
    func tokenHashRequired() {
        let store = StoreHarness()
        for endpoint in [SimulatedEndpoint.verify, .usage] {
            for body in [#"{}"#, #"{"token_hash":""}"#, #"{"token_hash":7,"count":1}"#, #"{"token_hash":null}"#] {
                let answer = store.call(apiCall(endpoint, body), at: t0)
                #expect(answer.code == 400, "\(endpoint) \(body)")
                #expect(answer.body["error"]?["message"] == .string("token_hash is required and must be a non-empty string"))
            }
            for body in ["", "not json", "[1]", #"{"token_hash":"#] {
                let answer = store.call(apiCall(endpoint, body), at: t0)
                #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "\(endpoint) body '\(body)'")
            }
        }
    }

    @Test("usage on an unknown hash answers 404 NOT_FOUND")
    func usageUnknown() {
        let store = StoreHarness()
        let answer = store.call(usageCall(String(repeating: "0", count: 64), 1), at: t0)
        #expect(answer.code == 404 && answer.errorCode == "NOT_FOUND", "\(answer.rendered)")
    }

    @Test("usage on another seller's token answers 403 FORBIDDEN and adds nothing")
    func usageOtherSeller() {
        let store = StoreHarness()
        _ = store.createToken(sellerKey: "am_k_other")
        let (_, hash) = store.createToken(sellerKey: "am_k_demo")
        let answer = store.call(usageCall(hash, 1, key: "am_k_other"), at: t0)
        #expect(answer.code == 403 && answer.errorCode == "FORBIDDEN", "\(answer.rendered)")
        #expect(store.token(hash: hash, now: t0)?.usageCount == 0)
    }

    @Test("usage on a revoked token, or an active one with nothing remaining, answers 403 FORBIDDEN")
    func usageNotBillable() {
        let store = StoreHarness()
        let revoked = store.createToken(status: "revoked").hash
        let exhausted = store.createToken(usageLimit: 3, usageCount: 3, status: "active").hash
        for hash in [revoked, exhausted] {
            let answer = store.call(usageCall(hash, 1), at: t0)
            #expect(answer.code == 403 && answer.errorCode == "FORBIDDEN", "\(answer.rendered)")
        }
        #expect(store.totalAcceptedUnits == 0)
        #expect(store.usageReports.map(\.status) == [403, 403], "refused reports are still recorded with their status")
    }

    @Test("a missing, malformed or unknown seller key answers 401 UNAUTHORIZED")
    func unauthorized() {
        let store = StoreHarness()
        let (_, hash) = store.createToken()
        for authorization in [nil, "Bearer", "Basic am_k_demo", "Bearer cro_sub_x", "Bearer am_k_unknown", "am_k_demo"] {
            for endpoint in [SimulatedEndpoint.verify, .usage] {
                let request = SimulatorRequest(post: endpoint.path, authorization: authorization, json: #"{"token_hash":"\#(hash)","count":1}"#)
                let answer = store.call(request, at: t0)
                #expect(answer.code == 401 && answer.errorCode == "UNAUTHORIZED", "\(endpoint) with \(authorization ?? "no Authorization")")
            }
        }
        let lowercase = SimulatorRequest(post: SimulatedEndpoint.verify.path, authorization: "bearer am_k_demo", json: #"{"token_hash":"\#(hash)"}"#)
        #expect(store.call(lowercase, at: t0).code == 200, "the auth scheme is case-insensitive")
    }

    // MARK: - Rate limit

    @Test("300 calls a minute per endpoint per seller key, then 429 RATE_LIMITED with Retry-After")
    func rateLimit() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: nil)
        _ = store.createToken(sellerKey: "am_k_other")
        // 300 calls spread over the first 30 s.
        for i in 0..<300 {
            let answer = store.call(verifyCall(hash), at: t0.addingTimeInterval(Double(i) * 0.1))
            if answer.code != 200 {
                Issue.record("call \(i) answered \(answer.code)")
                return
            }
        }
        let limited = store.call(verifyCall(hash), at: t0.addingTimeInterval(45))
        #expect(limited.code == 429 && limited.errorCode == "RATE_LIMITED", "the 301st call within 60 s: \(limited.rendered)")
        #expect(limited.header("Retry-After") == "15", "the first call leaves the window at t0+60, 15 s after t0+45")
        #expect(store.call(usageCall(hash, 1), at: t0.addingTimeInterval(45)).code == 200, "usage has its own budget")
        #expect(store.call(verifyCall(hash, key: "am_k_other"), at: t0.addingTimeInterval(45)).code == 200, "another seller key has its own budget")
        #expect(store.call(verifyCall(hash), at: t0.addingTimeInterval(59.95)).code == 429, "still limited just before the first call leaves")
        #expect(store.call(verifyCall(hash), at: t0.addingTimeInterval(60.05)).code == 200, "one slot frees as the first call leaves the window")
        #expect(store.call(verifyCall(hash), at: t0.addingTimeInterval(60.06)).code == 429, "and only one")
        #expect(store.callLog(.verify).total == 305, "every call is counted, limited ones too")
    }

    @Test("the per-minute budget is configurable")
    func configurableRate() {
        let store = StoreHarness(ratePerMinute: 2)
        let (_, hash) = store.createToken()
        #expect(store.call(usageCall(hash, 1), at: t0).code == 200)
        #expect(store.call(usageCall(hash, 1), at: t0).code == 200)
        let limited = store.call(usageCall(hash, 1), at: t0.addingTimeInterval(20))
        #expect(limited.code == 429 && limited.header("Retry-After") == "40")
        #expect(store.usageReports.map(\.status) == [200, 200, 429], "a limited report is recorded, not accepted")
        #expect(store.totalAcceptedUnits == 2)
    }

    // MARK: - rotate

    @Test("rotate revokes the old token and returns a new one with the same listing, limits and usage")
    func rotate() {
        let store = StoreHarness()
        let expiry = t0.addingTimeInterval(86_400)
        let (raw, hash) = store.createToken(listingID: "lst_9", subscriberID: "usr_9", usageLimit: 50, usageCount: 7, expiresAt: expiry)
        let rotate = SimulatorRequest(method: .POST, path: SimulatedEndpoint.rotate.path, authorization: "Bearer \(raw)")
        let answer = store.call(rotate, at: t0)
        #expect(answer.code == 200 && answer.body["success"] == .bool(true), "\(answer.rendered)")
        guard let newRaw = answer.data?["token"]?.stringValue, let newHash = answer.data?["token_hash"]?.stringValue else {
            Issue.record("no new token in \(answer.rendered)")
            return
        }
        #expect(newRaw.hasPrefix("cro_sub_") && newRaw != raw && newHash == sha256Hex(newRaw))
        #expect(answer.data?["revoked_token_hash"] == .string(hash))
        #expect(store.token(hash: hash, now: t0)?.status == "revoked", "the old token is revoked")
        #expect(store.call(verifyCall(hash), at: t0).rendered == #"{"valid":false}"#, "the old hash verifies false")
        let verified = store.call(verifyCall(newHash), at: t0)
        #expect(verified.body["valid"] == .bool(true))
        #expect(verified.data?["listing_id"] == .string("lst_9") && verified.data?["subscriber_id"] == .string("usr_9"))
        #expect(verified.data?["usage_count"] == .int(7) && verified.data?["usage_limit"] == .int(50))
        #expect(verified.data?["expires_at"] == .string(ISO8601.format(expiry)))
        let again = store.call(rotate, at: t0)
        #expect(again.code == 401 && again.errorCode == "UNAUTHORIZED", "a revoked token cannot rotate again")
        let unauthenticated = store.call(SimulatorRequest(method: .POST, path: SimulatedEndpoint.rotate.path, authorization: "Bearer am_k_demo"), at: t0)
        #expect(unauthenticated.code == 401, "rotation needs the buyer's cro_sub_ token")
    }

    @Test("rotate allows 10 a minute per subscriber")
    func rotateRate() {
        let store = StoreHarness()
        var raw = store.createToken(subscriberID: "usr_r").token
        for i in 0..<10 {
            let answer = store.call(SimulatorRequest(method: .POST, path: SimulatedEndpoint.rotate.path, authorization: "Bearer \(raw)"), at: t0.addingTimeInterval(Double(i)))
            guard let next = answer.data?["token"]?.stringValue else {
                Issue.record("rotation \(i) answered \(answer.rendered)")
                return
            }
            raw = next
        }
        let limited = store.call(SimulatorRequest(method: .POST, path: SimulatedEndpoint.rotate.path, authorization: "Bearer \(raw)"), at: t0.addingTimeInterval(10))
        #expect(limited.code == 429 && limited.header("Retry-After") == "50", "\(limited.rendered)")
        let otherSubscriber = store.createToken(subscriberID: "usr_s").token
        let other = store.call(SimulatorRequest(method: .POST, path: SimulatedEndpoint.rotate.path, authorization: "Bearer \(otherSubscriber)"), at: t0.addingTimeInterval(10))
        #expect(other.code == 200, "another subscriber has its own budget")
    }

    // MARK: - Statistics and faults

    @Test("calls are counted per endpoint, rejected and faulted ones included, per minute and as a sliding maximum")
    func callStatistics() {
        let store = StoreHarness()
        let (_, hash) = store.createToken()
        _ = store.call(verifyCall(hash), at: t0.addingTimeInterval(50))
        _ = store.call(verifyCall(hash, key: nil), at: t0.addingTimeInterval(55))  // 401
        store.injectFault(SimulatedFault(endpoint: .verify, status: 500, times: 1))
        _ = store.call(verifyCall(hash), at: t0.addingTimeInterval(65))  // faulted
        _ = store.call(verifyCall(hash), at: t0.addingTimeInterval(130))
        let log = store.callLog(.verify)
        #expect(log.total == 4)
        #expect(log.perMinute(upTo: t0.addingTimeInterval(200), since: t0) == [2, 1, 1, 0], "minutes since the start")
        #expect(log.maxPerMinute == 3, "t0+50…t0+65 is three calls within 60 s although they span two minutes")
        #expect(store.callLog(.usage).total == 0 && store.callLog(.rotate).total == 0)
        _ = store.call(SimulatorRequest(method: .GET, path: SimulatedEndpoint.verify.path), at: t0)
        #expect(store.callLog(.verify).total == 4, "a GET is not a call to the endpoint")
    }

    @Test("a status fault answers the seed's error body, counts the call, spends no budget and ends after `times`")
    func statusFault() {
        let store = StoreHarness(ratePerMinute: 1)
        let (_, hash) = store.createToken()
        store.injectFault(SimulatedFault(endpoint: .usage, status: 503, retryAfter: 7, times: 2))
        store.injectFault(SimulatedFault(endpoint: nil, status: 429, times: 1))
        let first = store.call(usageCall(hash, 3), at: t0)
        #expect(first.code == 503 && first.errorCode == "INTERNAL_ERROR" && first.header("Retry-After") == "7", "\(first.rendered)")
        #expect(store.call(usageCall(hash, 3), at: t0).code == 503, "twice")
        let verify = store.call(verifyCall(hash), at: t0)
        #expect(verify.code == 429 && verify.errorCode == "RATE_LIMITED" && verify.header("Retry-After") == "1", "an 'all' fault, default Retry-After 1")
        #expect(store.call(usageCall(hash, 3), at: t0).code == 200, "faults used up; the faulted calls did not spend the budget of 1")
        #expect(store.faults.isEmpty)
        #expect(store.usageReports.map(\.status) == [503, 503, 200] && store.usageReports.allSatisfy { $0.count == 3 && $0.tokenHash == hash })
        #expect(store.totalAcceptedUnits == 3 && store.callLog(.usage).total == 3)
    }

    @Test("a status fault with retry_after_date sends Retry-After as the HTTP-date of the call's time plus retry_after")
    func retryAfterAsDate() {
        let store = StoreHarness()
        let (_, hash) = store.createToken()
        store.injectFault(SimulatedFault(endpoint: .usage, status: 429, retryAfter: 90, retryAfterAsDate: true, times: 1))
        let answer = store.call(usageCall(hash, 1), at: t0)
        let expected = SimulatorStore.httpDate(t0.addingTimeInterval(90))
        #expect(answer.code == 429 && answer.header("Retry-After") == expected, "expected Retry-After: \(expected), got \(answer.rendered) \(String(describing: answer.header("Retry-After")))")
        #expect(expected.hasSuffix(" GMT") && expected.count == 29, "an IMF-fixdate is 29 characters ending in GMT: \(expected)")
    }

    @Test("a drop fault closes unanswered; a latency-only fault delays and then serves")
    func dropAndLatency() {
        let store = StoreHarness()
        let (_, hash) = store.createToken()
        store.injectFault(SimulatedFault(endpoint: .usage, latency: .milliseconds(300), drop: true, times: 1))
        let dropped = store.plan(usageCall(hash, 2), now: t0)
        #expect(dropped.latency == .milliseconds(300))
        guard case .drop = dropped.outcome else {
            Issue.record("expected a drop, got \(dropped.outcome)")
            return
        }
        #expect(store.usageReports == [SimulatedUsageReport(tokenHash: hash, count: 2, status: 0)], "a dropped report is recorded with status 0")
        #expect(store.token(hash: hash, now: t0)?.usageCount == 0, "and applied nothing")
        store.injectFault(SimulatedFault(endpoint: .verify, latency: .seconds(2)))
        let slow = store.plan(verifyCall(hash), now: t0)
        #expect(slow.latency == .seconds(2))
        guard case .serve(.verify) = slow.outcome else {
            Issue.record("expected the call to be served after the delay, got \(slow.outcome)")
            return
        }
        store.clearFaults()
        let plain = store.plan(verifyCall(hash), now: t0)
        #expect(plain.latency == nil, "cleared faults no longer delay")
        guard case .serve = plain.outcome else {
            Issue.record("cleared faults still apply: \(plain.outcome)")
            return
        }
    }
}
