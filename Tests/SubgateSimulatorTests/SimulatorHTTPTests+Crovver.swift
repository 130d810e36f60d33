import AsyncHTTPClient
import Foundation
import NIOCore
import SubgateSimulator
import Testing

/// Seed 002 over real loopback sockets.
extension SimulatorHTTPTests {
    static func consume(_ simulator: Simulator, key: String? = "sk_test_demo", headers: [(String, String)] = [], _ json: String, timeout: TimeAmount = .seconds(5)) async throws -> Answer {
        try await self.send(simulator.crovverURL + "/credits/consume", key: key, headers: [("content-type", "application/json")] + headers, json: json, timeout: timeout)
    }

    @Test("Crovver over sockets: a tenant made through /_sim/tenants, the seed's own request and response, credits read back")
    func crovverSeedExample() async throws {
        try await Self.withSimulator { simulator in
            #expect(simulator.crovverURL == "http://127.0.0.1:\(simulator.port)/api/public")
            let created = try await Self.send(
                simulator.rootURL + "/_sim/tenants",
                key: nil,
                json: #"{"tenant_id":"workspace_123","plan":"pro","pools":[{"pool_key":"api_calls","limit":"hard","credits":800,"addons":[{"credits":50}]}]}"#
            )
            #expect(created.status == 201, "\(created.body)")
            let answer = try await Self.consume(simulator, CrovverStoreTests.seedExample)
            #expect(answer.status == 200 && answer.headers["content-type"] == "application/json")
            #expect(answer.body == #"{"success":true,"data":{"result":"allowed","remaining":849,"alreadyProcessed":false,"poolKey":"api_calls"}}"#, "\(answer.body)")
            let state = try await Self.send(simulator.rootURL + "/_sim/tenants/workspace_123", method: .GET, key: nil)
            #expect((state.json["credits"] as? [String: Any])?["api_calls"] as? Int == 849, "\(state.body)")
            #expect(simulator.credits(tenantID: "workspace_123", poolKey: "api_calls") == 849)
            #expect(simulator.consumeEvents(tenantID: "workspace_123").first?.metadata == #"{"endpoint":"/api/export"}"#)
            let service = try await Self.consume(simulator, key: nil, headers: [("x-service-key", "sk_test_demo")], #"{"tenantId":"workspace_123","poolKey":"api_calls","amount":2,"idempotencyKey":"svc-1"}"#)
            #expect(service.status == 200 && (service.json["data"] as? [String: Any])?["remaining"] as? Int == 847, "x-service-key: \(service.body)")
            let unauthorized = try await Self.consume(simulator, key: "sk_live_nope", CrovverStoreTests.seedExample)
            #expect(unauthorized.status == 401 && unauthorized.errorCode == "UNAUTHORIZED")
        }
    }

    @Test("a Crovver answer lost in flight (drop_after_commit): deducted once; the retry with the same key answers alreadyProcessed")
    func crovverAnswerLost() async throws {
        try await Self.withSimulator { simulator in
            #expect(simulator.createTenant(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", limit: .soft, credits: 5)])))
            simulator.injectFault(SimulatedFault(endpoint: .consume, dropAfterCommit: true, times: 1))
            let batch = #"{"tenantId":"ws","poolKey":"api_calls","amount":7,"idempotencyKey":"flush-42"}"#
            await #expect(throws: (any Error).self, "the answer never arrives") {
                _ = try await Self.consume(simulator, batch)
            }
            #expect(simulator.credits(tenantID: "ws", poolKey: "api_calls") == -2, "but the soft-limit pool was deducted")
            let retry = try await Self.consume(simulator, batch)
            #expect(retry.body == #"{"success":true,"data":{"result":"warning","remaining":-2,"alreadyProcessed":true,"poolKey":"api_calls"}}"#, "\(retry.body)")
            #expect(simulator.credits(tenantID: "ws", poolKey: "api_calls") == -2, "deducted once")
            #expect(simulator.consumeEvents(tenantID: "ws").map(\.replays) == [1] && simulator.callCount(.consume) == 2)
        }
    }

    @Test("a hang fault on consume: no answer until the client gives up, nothing deducted; a 503 fault carries Retry-After")
    func crovverHangAndStatus() async throws {
        try await Self.withSimulator { simulator in
            #expect(simulator.createTenant(SimulatedTenant(tenantID: "ws", pools: [SimulatedCreditPool(poolKey: "api_calls", credits: 5)])))
            let fault = try await Self.send(simulator.rootURL + "/_sim/faults", key: nil, json: #"{"endpoint":"consume","hang":true,"times":1}"#)
            #expect(fault.status == 201 && fault.json["hang"] as? Bool == true, "\(fault.body)")
            let started = ContinuousClock.now
            await #expect(throws: (any Error).self, "no answer comes") {
                _ = try await Self.consume(simulator, #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"h"}"#, timeout: .milliseconds(400))
            }
            #expect(ContinuousClock.now - started >= .milliseconds(400), "it waited for the client's timeout")
            #expect(simulator.credits(tenantID: "ws", poolKey: "api_calls") == 5)
            simulator.injectFault(SimulatedFault(endpoint: .consume, status: 503, retryAfter: 3, times: 1))
            let unavailable = try await Self.consume(simulator, #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"h"}"#)
            #expect(unavailable.status == 503 && unavailable.headers["retry-after"] == "3")
            let served = try await Self.consume(simulator, #"{"tenantId":"ws","poolKey":"api_calls","amount":1,"idempotencyKey":"h"}"#)
            #expect((served.json["data"] as? [String: Any])?["alreadyProcessed"] as? Bool == false, "the hung and refused calls never used the key")
        }
    }
}
