import Foundation
import Testing
@testable import SubgateSimulator

/// The simulator's admin API (`/_sim`), its Crochet routes and faults, as a value with an injected clock.
@Suite struct CrochetStoreAdminTests {
    @Test("POST /_sim/tokens with no body creates an active am_k_demo token with limit 100 and answers the raw token once")
    func createDefaults() {
        let store = StoreHarness()
        let answer = store.call(adminCall(.POST, "/_sim/tokens"), at: t0)
        #expect(answer.code == 201, "\(answer.rendered)")
        guard let raw = answer.body["token"]?.stringValue, let hash = answer.body["token_hash"]?.stringValue else {
            Issue.record("no token in \(answer.rendered)")
            return
        }
        #expect(raw.hasPrefix("cro_sub_") && hash == sha256Hex(raw))
        #expect(answer.body["seller_key"] == .string("am_k_demo") && answer.body["listing_id"] == .string("lst_demo"))
        #expect(answer.body["subscriber_id"] == .string("usr_demo") && answer.body["status"] == .string("active"))
        #expect(answer.body["usage_limit"] == .int(100) && answer.body["usage_count"] == .int(0) && answer.body["expires_at"] == .null)
        let state = store.call(adminCall(.GET, "/_sim/tokens/\(hash)"), at: t0)
        #expect(state.code == 200 && state.body["token"] == nil, "the raw token is never shown again")
        #expect(state.body["token_hash"] == .string(hash))
    }

    @Test("POST /_sim/tokens takes every field, null limits and ISO-8601 dates, and registers the seller key")
    func createEveryField() {
        let store = StoreHarness()
        let body = #"{"seller_key":"am_k_acme","listing_id":"lst_a","subscriber_id":"usr_a","usage_limit":null,"usage_count":12,"expires_at":"2026-04-17T02:00:00+02:00","status":"active"}"#
        let answer = store.call(adminCall(.POST, "/_sim/tokens", body), at: t0)
        #expect(answer.code == 201, "\(answer.rendered)")
        #expect(answer.body["usage_limit"] == .null && answer.body["remaining"] == .null && answer.body["usage_count"] == .int(12))
        #expect(answer.body["expires_at"] == .string("2026-04-17T00:00:00Z"), "dates are answered in UTC")
        let hash = answer.body["token_hash"]?.stringValue ?? ""
        #expect(store.call(verifyCall(hash, key: "am_k_acme"), at: t0).body["valid"] == .bool(true), "am_k_acme is now a known seller key")
    }

    @Test("POST /_sim/tokens refuses unknown fields and bad values with 400")
    func createRefusesBadInput() {
        let store = StoreHarness()
        for body in [
            #"{"usage_limt":5}"#, #"{"seller_key":"sk_live"}"#, #"{"usage_limit":-1}"#, #"{"usage_limit":"5"}"#,
            #"{"usage_count":-1}"#, #"{"expires_at":"tomorrow"}"#, #"{"status":"paused"}"#, #"{"listing_id":""}"#, "[]", "nope",
        ] {
            let answer = store.call(adminCall(.POST, "/_sim/tokens", body), at: t0)
            #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "\(body): \(answer.rendered)")
        }
        #expect(store.tokens.isEmpty)
    }

    @Test("revoke and rotate by hash; unknown hashes answer 404")
    func revokeAndRotate() {
        let store = StoreHarness()
        let (_, first) = store.createToken()
        #expect(store.call(adminCall(.POST, "/_sim/tokens/\(first)/revoke"), at: t0).body["status"] == .string("revoked"))
        #expect(store.call(adminCall(.POST, "/_sim/tokens/\(first)/rotate"), at: t0).code == 400, "a revoked token does not rotate")
        let (_, second) = store.createToken(usageCount: 3)
        let rotated = store.call(adminCall(.POST, "/_sim/tokens/\(second)/rotate"), at: t0)
        #expect(rotated.code == 201 && rotated.body["usage_count"] == .int(3), "\(rotated.rendered)")
        #expect(store.token(hash: second, now: t0)?.status == "revoked")
        for request in [adminCall(.GET, "/_sim/tokens/nope"), adminCall(.POST, "/_sim/tokens/nope/revoke"), adminCall(.POST, "/_sim/tokens/nope/rotate")] {
            #expect(store.call(request, at: t0).code == 404, "\(request.path)")
        }
        #expect(store.call(adminCall(.GET, "/_sim/tokens"), at: t0).body["tokens"].map { if case .array(let all) = $0 { all.count } else { -1 } } == 3)
    }

    @Test("GET /_sim/usage lists every report with its status; totals count accepted units only")
    func usageReport() {
        let store = StoreHarness()
        let (_, hash) = store.createToken(usageLimit: 10)
        _ = store.call(usageCall(hash, 4), at: t0)
        _ = store.call(usageCall(hash, 0), at: t0)
        _ = store.call(usageCall(hash, 6), at: t0)
        _ = store.call(usageCall(hash, 1), at: t0)
        let answer = store.call(adminCall(.GET, "/_sim/usage"), at: t0)
        #expect(
            answer.rendered
                == #"{"reports":[{"token_hash":"\#(hash)","count":4,"status":200},{"token_hash":"\#(hash)","count":0,"status":400},{"token_hash":"\#(hash)","count":6,"status":200},{"token_hash":"\#(hash)","count":1,"status":403}],"totals":{"\#(hash)":10}}"#,
            "\(answer.rendered)"
        )
    }

    @Test("GET /_sim/calls answers total, max_per_minute and per_minute for each of the five endpoints")
    func callsReport() {
        let store = StoreHarness()
        _ = store.call(verifyCall("x", key: nil), at: t0.addingTimeInterval(1))
        _ = store.call(usageCall("x", 1), at: t0.addingTimeInterval(61))
        let answer = store.call(adminCall(.GET, "/_sim/calls"), at: t0.addingTimeInterval(62))
        #expect(
            answer.rendered
                == #"{"verify":{"total":1,"max_per_minute":1,"per_minute":[1,0]},"usage":{"total":1,"max_per_minute":1,"per_minute":[0,1]},"rotate":{"total":0,"max_per_minute":0,"per_minute":[0,0]},"consume":{"total":0,"max_per_minute":0,"per_minute":[0,0]},"gateway":{"total":0,"max_per_minute":0,"per_minute":[0,0]}}"#,
            "\(answer.rendered)"
        )
    }

    @Test("POST /_sim/faults validates, GET lists, DELETE clears")
    func faults() {
        let store = StoreHarness()
        let created = store.call(adminCall(.POST, "/_sim/faults", #"{"endpoint":"all","status":429,"retry_after":12,"latency_ms":250,"times":2}"#), at: t0)
        #expect(created.code == 201)
        #expect(store.faults == [SimulatedFault(endpoint: nil, status: 429, retryAfter: 12, latency: .milliseconds(250), times: 2)])
        #expect(created.rendered == #"{"endpoint":"all","status":429,"retry_after":12,"retry_after_date":false,"latency_ms":250,"drop":false,"hang":false,"drop_after_commit":false,"times":2}"#)
        #expect(store.call(adminCall(.POST, "/_sim/faults", #"{"endpoint":"usage","drop":true}"#), at: t0).code == 201)
        for body in [
            #"{"status":500}"#, #"{"endpoint":"crovver","status":500}"#, #"{"endpoint":"verify"}"#, #"{"endpoint":"verify","status":200}"#,
            #"{"endpoint":"verify","retry_after":3}"#, #"{"endpoint":"verify","drop":"yes"}"#, #"{"endpoint":"verify","status":500,"times":0}"#,
            #"{"endpoint":"verify","latency_ms":-5}"#, #"{"endpoint":"verify","status":500,"stauts":1}"#,
            #"{"endpoint":"verify","status":500,"drop":true}"#, #"{"endpoint":"usage","hang":true,"drop_after_commit":true}"#,
            #"{"endpoint":"usage","hang":1}"#, #"{"endpoint":"usage","retry_after_date":true}"#,
        ] {
            let answer = store.call(adminCall(.POST, "/_sim/faults", body), at: t0)
            #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "\(body): \(answer.rendered)")
        }
        let listed = store.call(adminCall(.GET, "/_sim/faults"), at: t0)
        #expect(listed.rendered.hasPrefix(#"{"faults":[{"endpoint":"all""#) == true)
        #expect(store.call(adminCall(.DELETE, "/_sim/faults"), at: t0).rendered == #"{"cleared":2}"#)
        #expect(store.faults.isEmpty)
    }

    @Test("POST /_sim/reset forgets tokens, reports, statistics, faults and seller keys but am_k_demo")
    func reset() {
        let store = StoreHarness(ratePerMinute: 7)
        let (_, hash) = store.createToken(sellerKey: "am_k_other")
        _ = store.call(usageCall(hash, 1, key: "am_k_other"), at: t0)
        store.injectFault(SimulatedFault(status: 500))
        #expect(store.call(adminCall(.POST, "/_sim/reset"), at: t0.addingTimeInterval(30)).code == 200)
        #expect(store.tokens.isEmpty && store.usageReports.isEmpty && store.faults.isEmpty && store.totalAcceptedUnits == 0)
        #expect(store.sellerKeys == ["am_k_demo"] && store.callLog(.usage).total == 0)
        #expect(store.ratePerMinute == 7 && store.startedAt == t0.addingTimeInterval(30), "the configuration stays; the minutes restart")
    }

    @Test("unknown admin and API paths answer 404 in the seed's error shape")
    func unknownPaths() {
        let store = StoreHarness()
        for request in [adminCall(.GET, "/_sim/nothing"), adminCall(.DELETE, "/_sim/tokens"), adminCall(.GET, "/api/v1/other"), adminCall(.GET, "/")] {
            let answer = store.call(request, at: t0)
            #expect(answer.code == 404 && answer.errorCode == "NOT_FOUND" && answer.body["success"] == .bool(false), "\(request.method) \(request.path)")
        }
    }
}
