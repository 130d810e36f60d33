import Foundation
import NIOHTTP1
import Testing
@testable import SubgateSimulator

/// Seed 002: `POST /api/public/credits/consume` and the Crovver admin routes, as a value
/// with an injected clock.
@Suite struct CrovverStoreTests {
    /// The seed's own example request, byte for byte.
    static let seedExample = """
        {
            "tenantId": "workspace_123",
            "poolKey": "api_calls",
            "amount": 1,
            "idempotencyKey": "consume-1778423112701",
            "metadata": { "endpoint": "/api/export" }
          }
        """

    static func consumeCall(_ json: String, bearer: String? = "sk_test_demo", serviceKey: String? = nil) -> SimulatorRequest {
        var headers = HTTPHeaders()
        if let serviceKey { headers.add(name: "x-service-key", value: serviceKey) }
        return SimulatorRequest(post: SimulatedEndpoint.consume.path, authorization: bearer.map { "Bearer \($0)" }, headers: headers, json: json)
    }

    static func consume(_ tenant: String, _ pool: String = "api_calls", amount: Int, key: String) -> SimulatorRequest {
        self.consumeCall(#"{"tenantId":"\#(tenant)","poolKey":"\#(pool)","amount":\#(amount),"idempotencyKey":"\#(key)"}"#)
    }

    static func store(_ tenants: SimulatedTenant...) -> StoreHarness {
        let harness = StoreHarness()
        for tenant in tenants {
            #expect(throws: Never.self) { try harness.store.crovver.createTenant(tenant) }
        }
        return harness
    }

    @Test("the seed's example request answers the seed's example response, field for field")
    func seedExample() {
        let store = Self.store(SimulatedTenant(tenantID: "workspace_123", plan: "pro", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 850)]))
        let answer = store.call(Self.consumeCall(Self.seedExample), at: t0)
        #expect(answer.code == 200)
        #expect(
            answer.rendered == #"{"success":true,"data":{"result":"allowed","remaining":849,"alreadyProcessed":false,"poolKey":"api_calls"}}"#,
            "the seed's response: \(answer.rendered)"
        )
        let event = store.store.crovver.events(tenantID: "workspace_123").first
        #expect(event?.metadata == #"{"endpoint":"/api/export"}"#, "metadata is stored on the event")
        #expect(event?.idempotencyKey == "consume-1778423112701" && event?.amount == 1)
    }

    @Test("FIFO across the base pool and add-ons; hard limit blocks without deducting")
    func fifoHardLimit() {
        let store = Self.store(
            SimulatedTenant(
                tenantID: "ws",
                pools: [SimulatedCreditPool(poolKey: "api_calls", limit: .hard, credits: 2, addons: [(credits: 3, expiresAt: t0.addingTimeInterval(600)), (credits: 3, expiresAt: t0.addingTimeInterval(60))])]
            )
        )
        let first = store.call(Self.consume("ws", amount: 4, key: "k1"), at: t0)
        #expect(first.data?["result"] == .string("allowed") && first.data?["remaining"] == .int(4), "\(first.rendered)")
        let deductions = store.store.crovver.events(tenantID: "ws")[0].consumption.deductions.map { "\($0.grantID):\($0.credits)" }
        #expect(deductions == ["base:2", "addon_2:2"], "base first, then the add-on expiring first")
        let blocked = store.call(Self.consume("ws", amount: 5, key: "k2"), at: t0)
        #expect(blocked.code == 200 && blocked.data?["result"] == .string("blocked") && blocked.data?["remaining"] == .int(4), "\(blocked.rendered)")
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 4, "a blocked call deducts nothing")
        let rest = store.call(Self.consume("ws", amount: 4, key: "k3"), at: t0)
        #expect(rest.data?["result"] == .string("allowed") && rest.data?["remaining"] == .int(0))
    }

    @Test("a soft-limit pool answers warning with a negative remaining once below zero")
    func softLimit() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "ai_tokens", limit: .soft, credits: 10)]))
        #expect(store.call(Self.consume("ws", "ai_tokens", amount: 10, key: "a"), at: t0).data?["result"] == .string("allowed"))
        let warned = store.call(Self.consume("ws", "ai_tokens", amount: 3, key: "b"), at: t0)
        #expect(warned.rendered == #"{"success":true,"data":{"result":"warning","remaining":-3,"alreadyProcessed":false,"poolKey":"ai_tokens"}}"#)
    }

    @Test("a repeated idempotencyKey answers the original result with alreadyProcessed true and deducts nothing")
    func idempotency() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        let first = store.call(Self.consume("ws", amount: 3, key: "same"), at: t0)
        #expect(first.data?["alreadyProcessed"] == .bool(false) && first.data?["remaining"] == .int(7))
        _ = store.call(Self.consume("ws", amount: 1, key: "other"), at: t0)
        let again = store.call(Self.consume("ws", amount: 3, key: "same"), at: t0.addingTimeInterval(5))
        #expect(
            again.rendered == #"{"success":true,"data":{"result":"allowed","remaining":7,"alreadyProcessed":true,"poolKey":"api_calls"}}"#,
            "the original result, remaining as it was then: \(again.rendered)"
        )
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 6, "3 + 1 deducted, the repeat nothing")
        let changed = store.call(Self.consume("ws", amount: 5, key: "same"), at: t0)
        #expect(changed.data?["alreadyProcessed"] == .bool(true) && changed.data?["remaining"] == .int(7), "the key decides, whatever else the repeat carries")
        #expect(store.store.crovver.events(tenantID: "ws").map(\.replays) == [2, 0])
        // A blocked result is the original result too.
        let blocked = store.call(Self.consume("ws", amount: 100, key: "big"), at: t0)
        #expect(blocked.data?["result"] == .string("blocked"))
        _ = try? store.store.crovver.addAddon(tenantID: "ws", poolKey: "api_calls", credits: 500, expiresAt: nil)
        #expect(store.call(Self.consume("ws", amount: 100, key: "big"), at: t0).data?["result"] == .string("blocked"), "a new key is needed after a top-up")
    }

    @Test("Authorization: Bearer sk_… or x-service-key; anything else 401 UNAUTHORIZED")
    func authentication() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        store.store.crovver.addKey("svc_internal")
        var n = 0
        func call(_ bearer: String?, _ service: String?) -> SimulatorResponse {
            n += 1
            let body = #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"k\#(n)"}"#
            return store.call(Self.consumeCall(body, bearer: bearer, serviceKey: service), at: t0)
        }
        #expect(call("sk_test_demo", nil).code == 200)
        #expect(call(nil, "sk_test_demo").code == 200, "the secret key as x-service-key")
        #expect(call(nil, "svc_internal").code == 200, "a service key")
        #expect(call("sk_live_wrong", "svc_internal").code == 200, "either credential suffices")
        for (bearer, service) in [(nil, nil), ("sk_live_wrong", nil), ("svc_internal", nil), (nil, "wrong"), ("am_k_demo", nil)] as [(String?, String?)] {
            let answer = call(bearer, service)
            #expect(answer.code == 401 && answer.errorCode == "UNAUTHORIZED" && answer.body["success"] == .bool(false), "\(bearer ?? "-") / \(service ?? "-"): \(answer.rendered)")
        }
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 6)
    }

    @Test("bad bodies answer 400 BAD_REQUEST naming the field and are not remembered under the key")
    func validation() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        let bad = [
            "", "[]", "nope",
            #"{"poolKey":"api_calls","amount":1,"idempotencyKey":"k"}"#,
            #"{"tenantId":"","poolKey":"api_calls","amount":1,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","amount":1,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":0,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":-1,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1.5,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":"1","idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1000000001,"idempotencyKey":"k"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":7}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"k","metadata":"x"}"#,
            #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"\#(String(repeating: "k", count: 256))"}"#,
        ]
        for body in bad {
            let answer = store.call(Self.consumeCall(body), at: t0)
            #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "\(body): \(answer.rendered)")
        }
        let message = store.call(Self.consumeCall(#"{"tenantId":"ws","poolKey":"api_calls","amount":0,"idempotencyKey":"k"}"#), at: t0).body["error"]?["message"]
        #expect(message?.stringValue?.contains("amount") == true)
        #expect(store.call(Self.consume("ws", amount: 1, key: "k"), at: t0).data?["alreadyProcessed"] == .bool(false), "no refused call used the key")
        #expect(store.call(Self.consumeCall(#"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"m","metadata":null}"#), at: t0).code == 200)
    }

    @Test("an unknown tenant or a pool not on the plan answers 404, and the key stays unused")
    func notFound() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        let tenant = store.call(Self.consume("nobody", amount: 1, key: "k"), at: t0)
        #expect(tenant.code == 404 && tenant.errorCode == "TENANT_NOT_FOUND", "\(tenant.rendered)")
        let pool = store.call(Self.consume("ws", "ai_tokens", amount: 1, key: "k"), at: t0)
        #expect(pool.code == 404 && pool.errorCode == "POOL_NOT_FOUND", "\(pool.rendered)")
        #expect(store.call(Self.consume("ws", amount: 1, key: "k"), at: t0).data?["alreadyProcessed"] == .bool(false))
        #expect(store.callLog(.consume).total == 3)
    }

    // MARK: - Faults

    @Test("drop_after_commit deducts, then the answer is lost; the retry with the same key deducts nothing")
    func answerLostInFlight() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        store.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
        let lost = store.call(Self.consume("ws", amount: 4, key: "batch-1"), at: t0)
        #expect(lost.code == 0, "no answer reaches the client")
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 6, "but the deduction was committed")
        let retry = store.call(Self.consume("ws", amount: 4, key: "batch-1"), at: t0)
        #expect(retry.data?["alreadyProcessed"] == .bool(true) && retry.data?["remaining"] == .int(6), "\(retry.rendered)")
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 6, "no double deduction")
    }

    @Test("drop, hang and status faults on consume deduct nothing")
    func faultsBeforeCommit() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        store.injectFault(SimulatedFault(endpoint: .consume, drop: true, times: 1))
        store.injectFault(SimulatedFault(endpoint: .consume, hang: true, times: 1))
        store.injectFault(SimulatedFault(endpoint: .consume, status: 503, retryAfter: 4, times: 1))
        #expect(store.call(Self.consume("ws", amount: 1, key: "a"), at: t0).code == 0)
        #expect(store.call(Self.consume("ws", amount: 1, key: "a"), at: t0).code == 0)
        let unavailable = store.call(Self.consume("ws", amount: 1, key: "a"), at: t0)
        #expect(unavailable.code == 503 && unavailable.header("Retry-After") == "4" && unavailable.errorCode == "INTERNAL_ERROR")
        #expect(store.store.crovver.balance(tenantID: "ws", poolKey: "api_calls", now: t0) == 10)
        #expect(store.call(Self.consume("ws", amount: 1, key: "a"), at: t0).data?["alreadyProcessed"] == .bool(false), "the key was never processed")
    }

    // MARK: - Admin

    @Test("POST /_sim/tenants creates a plan's pools with add-ons; GET reads credits, pools and events")
    func adminTenants() {
        let store = StoreHarness()
        let body = #"{"tenant_id":"workspace_123","plan":"pro","pools":[{"pool_key":"api_calls","limit":"hard","credits":100,"addons":[{"credits":50,"expires_at":"2026-06-01T00:00:00Z"}]},{"pool_key":"ai_tokens","limit":"soft","credits":0}]}"#
        let created = store.call(adminCall(.POST, "/_sim/tenants", body), at: t0)
        #expect(created.code == 201, "\(created.rendered)")
        #expect(created.body["credits"]?.rendered == #"{"api_calls":150,"ai_tokens":0}"#)
        _ = store.call(Self.consumeCall(#"{"tenantId":"workspace_123","poolKey":"api_calls","amount":120,"idempotencyKey":"x","metadata":{"endpoint":"/export"}}"#), at: t0)
        let state = store.call(adminCall(.GET, "/_sim/tenants/workspace_123"), at: t0)
        #expect(state.body["credits"]?["api_calls"] == .int(30))
        #expect(
            state.body["pools"].flatMap { if case .array(let pools) = $0 { pools.first?["grants"]?.rendered } else { nil } } ==
                #"[{"grant_id":"base","kind":"base","credits":100,"remaining":0,"expires_at":null,"expired":false},{"grant_id":"addon_1","kind":"addon","credits":50,"remaining":30,"expires_at":"2026-06-01T00:00:00Z","expired":false}]"#
        )
        guard case .array(let events)? = state.body["events"], let event = events.first else {
            Issue.record("no events in \(state.rendered)")
            return
        }
        #expect(event["deductions"]?.rendered == #"[{"grant_id":"base","credits":100},{"grant_id":"addon_1","credits":20}]"#)
        #expect(event["metadata"]?.rendered == #"{"endpoint":"/export"}"#)
        let addon = store.call(adminCall(.POST, "/_sim/tenants/workspace_123/addons", #"{"pool_key":"ai_tokens","credits":7}"#), at: t0)
        #expect(addon.code == 201 && addon.body["credits"]?["ai_tokens"] == .int(7))
        let pool = store.call(adminCall(.POST, "/_sim/tenants/workspace_123/pools", #"{"pool_key":"exports","credits":3}"#), at: t0)
        #expect(pool.code == 201 && pool.body["credits"]?["exports"] == .int(3))
        #expect(store.call(adminCall(.GET, "/_sim/tenants"), at: t0).body["tenants"] != nil)
    }

    @Test("tenant admin routes refuse bad input with 400, duplicates with 409, unknown ids with 404")
    func adminRefusals() {
        let store = StoreHarness()
        #expect(store.call(adminCall(.POST, "/_sim/tenants", #"{"tenant_id":"t","pools":[{"pool_key":"p","credits":1}]}"#), at: t0).code == 201)
        for body in [
            #"{"pools":[]}"#, #"{"tenant_id":"x"}"#, #"{"tenant_id":"x","pools":[{"credits":1}]}"#,
            #"{"tenant_id":"x","pools":[{"pool_key":"p","credits":-1}]}"#, #"{"tenant_id":"x","pools":[{"pool_key":"p","credits":1,"limit":"medium"}]}"#,
            #"{"tenant_id":"x","pools":[{"pool_key":"p","credits":1,"addons":[{"credits":"5"}]}]}"#, #"{"tenant_id":"x","pools":[],"tier":1}"#,
            #"{"tenant_id":"x y","pools":[]}"#,
        ] {
            let answer = store.call(adminCall(.POST, "/_sim/tenants", body), at: t0)
            #expect(answer.code == 400 && answer.errorCode == "BAD_REQUEST", "\(body): \(answer.rendered)")
        }
        #expect(store.call(adminCall(.POST, "/_sim/tenants", #"{"tenant_id":"t","pools":[]}"#), at: t0).code == 409)
        #expect(store.call(adminCall(.POST, "/_sim/tenants", #"{"tenant_id":"d","pools":[{"pool_key":"p","credits":1},{"pool_key":"p","credits":2}]}"#), at: t0).code == 409)
        #expect(store.call(adminCall(.GET, "/_sim/tenants/nobody"), at: t0).code == 404)
        #expect(store.call(adminCall(.POST, "/_sim/tenants/t/addons", #"{"pool_key":"nope","credits":1}"#), at: t0).code == 404)
        #expect(store.call(adminCall(.POST, "/_sim/tenants/nobody/addons", #"{"pool_key":"p","credits":1}"#), at: t0).code == 404)
        #expect(store.call(adminCall(.POST, "/_sim/tenants/t/pools", #"{"pool_key":"p","credits":1}"#), at: t0).code == 409)
    }

    @Test("POST /_sim/crovver-keys adds a key the consume endpoint then accepts")
    func adminKeys() {
        let store = Self.store(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 10)]))
        let request = Self.consumeCall(#"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"k"}"#, bearer: "sk_live_acme")
        #expect(store.call(request, at: t0).code == 401)
        #expect(store.call(adminCall(.POST, "/_sim/crovver-keys", #"{"key":"sk_live_acme"}"#), at: t0).code == 201)
        #expect(store.call(request, at: t0).code == 200)
        #expect(store.call(adminCall(.POST, "/_sim/crovver-keys", #"{"key":"has space"}"#), at: t0).code == 400)
        #expect(store.call(adminCall(.GET, "/_sim/crovver-keys"), at: t0).rendered == #"{"keys":["sk_live_acme","sk_test_demo"]}"#)
    }
}
