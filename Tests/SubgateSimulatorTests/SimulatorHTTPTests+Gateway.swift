import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateSimulator
import Testing

/// Seed 001 over real loopback sockets: the gateway forwards to a real seller endpoint.
extension SimulatorHTTPTests {
    /// The seed's example payload, byte for byte.
    static let gatewayBody = GatewayStoreTests.seedBody

    /// A simulator, a seller endpoint, seller `acme` (gateway secret `gw_acme`) and
    /// `listing-uuid` at `price`.
    static func withGateway(price: Int = 1_000_000, _ body: (Simulator, TestSeller) async throws -> Void) async throws {
        let seller = try await TestSeller(group: MultiThreadedEventLoopGroup.singleton)
        do {
            try await Self.withSimulator { simulator in
                #expect(simulator.createSeller(SimulatedSeller(sellerID: "acme", sellerKey: "am_k_acme", gatewaySecret: "gw_acme")))
                #expect(simulator.createListing(SimulatedListing(listingID: "listing-uuid", sellerID: "acme", endpoint: seller.url + "/run", priceMicroUSD: price)))
                try await body(simulator, seller)
            }
        } catch {
            await seller.stop()
            throw error
        }
        await seller.stop()
    }

    static func gateway(_ simulator: Simulator, body: String = gatewayBody, headers: [(String, String)] = [], timeout: TimeAmount = .seconds(5)) async throws -> Answer {
        try await self.send(simulator.baseURL + "/gateway/listing-uuid", headers: [("content-type", "application/json")] + headers, json: body, timeout: timeout)
    }

    @Test("the gateway over sockets: 402 → 202 while pending → settle → forward to a real seller → its JSON relayed → ledger fee")
    func gatewayLifecycle() async throws {
        try await Self.withGateway { simulator, seller in
            let initial = try await Self.gateway(simulator, headers: [("X-Crochet-Origin-Currency", "SOL")])
            #expect(initial.status == 402 && initial.errorCode == "PAYMENT_REQUIRED", "\(initial.body)")
            let relayID = initial.json["relay_request_id"] as? String ?? ""
            let requirements = initial.json["payment_requirements"] as? [String: Any] ?? [:]
            #expect(relayID.hasPrefix("relay_") && initial.headers["x-crochet-relay-request-id"] == relayID)
            #expect(requirements["amount_usd"] as? String == "1.00" && requirements["provider"] as? String == "mock" && requirements["route"] as? String == "solana")

            let retry = [("X-Crochet-Relay-Request-Id", relayID)]
            let pending = try await Self.gateway(simulator, headers: retry)
            #expect(pending.status == 202 && pending.headers["retry-after"] == "2", "\(pending.body)")
            #expect(pending.json["status"] as? String == "pending" && pending.json["retryable"] as? Bool == true && pending.json["retry_after_seconds"] as? Int == 2)
            #expect(seller.requests.isEmpty, "nothing reaches the seller before settlement")

            let settled = try await Self.send(simulator.rootURL + "/_sim/payments/\(relayID)/settle", key: nil)
            #expect(settled.status == 200 && settled.json["status"] as? String == "settled", "\(settled.body)")

            let served = try await Self.gateway(simulator, headers: retry)
            #expect(served.status == 200 && served.body == seller.currentAnswer.body, "the seller's JSON, byte for byte: \(served.body)")
            #expect(served.headers["x-crochet-relay-request-id"] == relayID)
            guard let seen = seller.requests.first else {
                Issue.record("the seller saw no request")
                return
            }
            #expect(seen.method == .POST && seen.uri == "/run" && seen.body == Self.gatewayBody)
            #expect(seen.headers["x-crochet-relay-request-id"] == [relayID] && seen.headers["x-crochet-gateway-secret"] == ["gw_acme"])
            #expect(seen.headers["authorization"].isEmpty, "the buyer's API key stays with the gateway")

            let ledger = try await Self.send(simulator.rootURL + "/_sim/ledger", method: .GET, key: nil)
            let entries = ledger.json["entries"] as? [[String: Any]] ?? []
            #expect(entries.count == 1, "\(ledger.body)")
            #expect(entries.first?["gross_usd"] as? String == "1.00" && entries.first?["fee_usd"] as? String == "0.049" && entries.first?["seller_usd"] as? String == "0.951")
            #expect(entries.first?["seller_id"] as? String == "acme" && entries.first?["seller_status"] as? Int == 200)
            #expect(simulator.ledger.map(\.feeMicroUSD) == [49_000] && simulator.ledger.map(\.sellerMicroUSD) == [951_000])
            #expect(!ledger.body.contains("task"), "no body is kept, only its hash")

            // The same relay id with another body: 409, and the seller sees nothing new.
            let reused = try await Self.gateway(simulator, body: #"{"task":"run","input":"a different request"}"#, headers: retry)
            #expect(reused.status == 409 && reused.errorCode == "RELAY_ID_REUSED", "\(reused.body)")
            #expect(seller.requests.count == 1 && simulator.ledger.count == 1)

            // The same relay id with the same body is replayed to the seller, not charged again.
            seller.answer(.ok, #"{"ok":true,"replayed":true}"#)
            let replay = try await Self.gateway(simulator, headers: retry)
            #expect(replay.status == 200 && replay.body == #"{"ok":true,"replayed":true}"#)
            #expect(seller.requests.count == 2 && simulator.ledger.count == 1 && simulator.relayRequest(relayID)?.forwards == 2)
            #expect(simulator.callCount(.gateway) == 5)
        }
    }

    @Test("a gateway answer lost after the forward (drop_after_commit): the charge stands, the retry is relayed, the ledger has one entry")
    func gatewayAnswerLost() async throws {
        try await Self.withGateway { simulator, seller in
            let relayID = try await Self.gateway(simulator, headers: [("X-Crochet-Origin-Currency", "SOL")]).json["relay_request_id"] as? String ?? ""
            #expect(simulator.settlePayment(relayID)?.status == .settled)
            let fault = try await Self.send(simulator.rootURL + "/_sim/faults", key: nil, json: #"{"endpoint":"gateway","drop_after_commit":true,"times":1}"#)
            #expect(fault.status == 201, "\(fault.body)")
            await #expect(throws: (any Error).self, "the buyer gets no answer") {
                _ = try await Self.gateway(simulator, headers: [("X-Crochet-Relay-Request-Id", relayID)])
            }
            #expect(seller.requests.count == 1, "but the call reached the seller")
            #expect(simulator.ledger.count == 1 && simulator.relayRequest(relayID)?.status == .forwarded, "and was charged")
            let retry = try await Self.gateway(simulator, headers: [("X-Crochet-Relay-Request-Id", relayID)])
            #expect(retry.status == 200 && seller.requests.count == 2 && simulator.ledger.count == 1)
            #expect(seller.requests.map { $0.headers["x-crochet-relay-request-id"] } == [[relayID], [relayID]], "both carry the same relay id, for the seller to deduplicate")
        }
    }

    @Test("a seller that is down after settlement: 502 SELLER_ENDPOINT_FAILED with payment context")
    func gatewaySellerDown() async throws {
        try await Self.withSimulator { simulator in
            // A port nothing listens on: bind one, note it, close it.
            let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
            let port = probe.localAddress?.port ?? 1
            try await probe.close()
            #expect(simulator.createListing(SimulatedListing(listingID: "gone", sellerID: "demo", endpoint: "http://127.0.0.1:\(port)/x", priceMicroUSD: 500_000)))
            let initial = try await Self.send(simulator.baseURL + "/gateway/gone", json: "{}")
            let relayID = initial.json["relay_request_id"] as? String ?? ""
            #expect(simulator.settlePayment(initial.json["payment_requirements"].flatMap { ($0 as? [String: Any])?["payment_id"] as? String } ?? "") != nil, "settle by payment id")
            let failed = try await Self.send(simulator.baseURL + "/gateway/gone", headers: [("X-Crochet-Relay-Request-Id", relayID)], json: "{}")
            #expect(failed.status == 502 && failed.errorCode == "SELLER_ENDPOINT_FAILED", "\(failed.body)")
            #expect((failed.json["payment"] as? [String: Any])?["status"] as? String == "settled")
            #expect(simulator.ledger.first?.sellerStatus == 0 && simulator.ledger.first?.grossMicroUSD == 500_000)
        }
    }

    @Test("PAYMENT_ROUTE_MINIMUM_NOT_MET over sockets for a $0.05 call on the default (EVM) route")
    func gatewayRouteMinimum() async throws {
        try await Self.withGateway(price: 50_000) { simulator, _ in
            let evm = try await Self.gateway(simulator)
            #expect(evm.status == 422 && evm.errorCode == "PAYMENT_ROUTE_MINIMUM_NOT_MET", "\(evm.body)")
            let solana = try await Self.gateway(simulator, headers: [("X-Crochet-Origin-Currency", "SOL")])
            #expect(solana.status == 402)
        }
    }
}
