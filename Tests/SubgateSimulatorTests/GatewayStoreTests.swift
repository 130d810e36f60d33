import Foundation
import NIOHTTP1
import SubgateCore
import Testing
@testable import SubgateSimulator

/// Seed 001: the pay-per-call gateway as a value: 402, the mock provider's settlement,
/// 202 while pending, the forward (answered here by a closure), relay-id binding, route
/// minimums and the ledger. The loopback version is in `SimulatorGatewayHTTPTests`.
@Suite struct GatewayStoreTests {
    /// The seed's own example payload, byte for byte.
    static let seedBody = """
        {
        "task": "run",
        "input": "..."
        }
        """

    static func gatewayCall(
        _ listing: String = "listing-uuid",
        body: String = GatewayStoreTests.seedBody,
        key: String = "am_k_demo",
        headers: [(String, String)] = []
    ) -> SimulatorRequest {
        var fields = HTTPHeaders([("content-type", "application/json")])
        for (name, value) in headers { fields.add(name: name, value: value) }
        return SimulatorRequest(post: SimulatedEndpoint.gatewayPrefix + listing, authorization: "Bearer \(key)", headers: fields, json: body)
    }

    /// A store with seller `acme` (gateway secret `gw_secret`) and `listing-uuid` at `price`.
    static func store(price: String = "1.00") -> StoreHarness {
        let store = StoreHarness()
        #expect(store.call(adminCall(.POST, "/_sim/sellers", #"{"seller_key":"am_k_acme","gateway_secret":"gw_secret"}"#), at: t0).code == 201)
        let listing = store.call(
            adminCall(.POST, "/_sim/listings", #"{"listing_id":"listing-uuid","seller_id":"acme","endpoint":"http://127.0.0.1:9/run","price_usd":"\#(price)"}"#),
            at: t0
        )
        #expect(listing.code == 201, "\(listing.rendered)")
        return store
    }

    /// A seller that answers `{"ok":true}` and records what it was sent.
    final class RecordingSeller {
        var forwards: [GatewayForward] = []
        var status = 200
        var body = #"{"ok":true,"result":"ran"}"#

        func answer(_ forward: GatewayForward) -> SellerOutcome {
            self.forwards.append(forward)
            return .answered(status: self.status, contentType: "application/json", body: Data(self.body.utf8))
        }
    }

    @Test("the whole paid lifecycle: 402, 202 while pending, settle, forward with the gateway's headers, relayed JSON, ledger 4.9 %")
    func lifecycle() {
        let store = Self.store()
        let seller = RecordingSeller()
        // 1-2. The initial call answers 402 with the provider's payment requirements.
        let initial = store.call(Self.gatewayCall(headers: [("X-Crochet-Origin-Currency", "SOL")]), at: t0, seller: seller.answer)
        #expect(initial.code == 402 && initial.errorCode == "PAYMENT_REQUIRED", "\(initial.rendered)")
        guard let relayID = initial.body["relay_request_id"]?.stringValue, let requirements = initial.body["payment_requirements"] else {
            Issue.record("no relay_request_id or payment_requirements in \(initial.rendered)")
            return
        }
        #expect(relayID.hasPrefix("relay_") && initial.header("X-Crochet-Relay-Request-Id") == relayID)
        #expect(requirements["provider"] == .string("mock") && requirements["amount_usd"] == .string("1.00") && requirements["amount_micro_usd"] == .int(1_000_000))
        #expect(requirements["currency"] == .string("SOL") && requirements["route"] == .string("solana") && requirements["chain_id"] == .string("792703809"))
        #expect(requirements["payment_id"]?.stringValue?.hasPrefix("pay_") == true && requirements["fee_rate"] == .string("0.049"))
        #expect(seller.forwards.isEmpty, "nothing is forwarded before payment")
        // 4. The retry before settlement answers 202 pending.
        let retry = Self.gatewayCall(headers: [("X-Crochet-Relay-Request-Id", relayID)])
        let pending = store.call(retry, at: t0.addingTimeInterval(1), seller: seller.answer)
        #expect(pending.code == 202, "\(pending.rendered)")
        #expect(pending.body["status"] == .string("pending") && pending.body["retryable"] == .bool(true) && pending.body["retry_after_seconds"] == .int(2))
        #expect(pending.header("Retry-After") == "2" && seller.forwards.isEmpty)
        // The mock provider settles.
        let settled = store.call(adminCall(.POST, "/_sim/payments/\(relayID)/settle"), at: t0.addingTimeInterval(2))
        #expect(settled.code == 200 && settled.body["status"] == .string("settled"), "\(settled.rendered)")
        // 5. Forwarded with the gateway's headers; the seller's JSON relayed as it came.
        let served = store.call(retry, at: t0.addingTimeInterval(3), seller: seller.answer)
        #expect(served.code == 200 && served.relayedBytes == Data(seller.body.utf8), "the seller's bytes, as they came: \(served.rendered)")
        #expect(served.header("X-Crochet-Relay-Request-Id") == relayID)
        guard let forward = seller.forwards.first else {
            Issue.record("nothing was forwarded")
            return
        }
        #expect(forward.url == "http://127.0.0.1:9/run" && forward.body == Data(Self.seedBody.utf8))
        let headers = Dictionary(forward.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(headers["x-crochet-relay-request-id"] == relayID && headers["x-crochet-gateway-secret"] == "gw_secret")
        #expect(headers["content-type"] == "application/json" && headers["authorization"] == nil, "the buyer's API key is not forwarded")
        // The ledger: $1.00 gross is $0.049 fee and $0.951 to the seller.
        let ledger = store.store.gateway.ledger
        #expect(ledger.count == 1)
        #expect(ledger.first?.grossMicroUSD == 1_000_000 && ledger.first?.feeMicroUSD == 49_000 && ledger.first?.sellerMicroUSD == 951_000)
        #expect(ledger.first?.sellerID == "acme" && ledger.first?.sellerStatus == 200 && ledger.first?.relayRequestID == relayID)
        let admin = store.call(adminCall(.GET, "/_sim/ledger"), at: t0)
        #expect(admin.body["totals"]?.rendered == #"{"gross_usd":"1.00","fee_usd":"0.049","seller_usd":"0.951","gross_micro_usd":1000000,"fee_micro_usd":49000,"seller_micro_usd":951000}"#)
        // 6. Replaying the verified relay id with the same body forwards again, charges nothing more.
        let replay = store.call(retry, at: t0.addingTimeInterval(4), seller: seller.answer)
        #expect(replay.code == 200 && seller.forwards.count == 2 && store.store.gateway.ledger.count == 1)
        #expect(store.store.gateway.relays[relayID]?.forwards == 2 && store.store.gateway.relays[relayID]?.status == .forwarded)
    }

    @Test("a relay id used with another body or listing answers 409 RELAY_ID_REUSED and is not forwarded")
    func relayIDReuse() {
        let store = Self.store()
        _ = store.call(adminCall(.POST, "/_sim/listings", #"{"listing_id":"other","seller_id":"acme","endpoint":"http://127.0.0.1:9/x","price_usd":"1"}"#), at: t0)
        let seller = RecordingSeller()
        let relayID = store.call(Self.gatewayCall(), at: t0).body["relay_request_id"]?.stringValue ?? ""
        _ = store.store.gateway.settle(relayID, now: t0)
        let header = [("X-Crochet-Relay-Request-Id", relayID)]
        #expect(store.call(Self.gatewayCall(headers: header), at: t0, seller: seller.answer).code == 200)
        for (what, request) in [
            ("another body", Self.gatewayCall(body: #"{"task":"run","input":"something else"}"#, headers: header)),
            ("the same JSON spaced differently", Self.gatewayCall(body: #"{"task":"run","input":"..."}"#, headers: header)),
            ("another listing", Self.gatewayCall("other", headers: header)),
        ] {
            let answer = store.call(request, at: t0, seller: seller.answer)
            #expect(answer.code == 409 && answer.errorCode == "RELAY_ID_REUSED" && answer.body["relay_request_id"] == .string(relayID), "\(what): \(answer.rendered)")
        }
        #expect(seller.forwards.count == 1 && store.store.gateway.ledger.count == 1)
        let pendingOther = store.call(Self.gatewayCall(), at: t0).body["relay_request_id"]?.stringValue ?? ""
        let unsettledReuse = store.call(Self.gatewayCall(body: "{}", headers: [("X-Crochet-Relay-Request-Id", pendingOther)]), at: t0)
        #expect(unsettledReuse.code == 409, "a relay id is bound to its body before settlement too")
    }

    @Test("an unknown relay id, or another API key's, answers 404")
    func unknownRelay() {
        let store = Self.store()
        let relayID = store.call(Self.gatewayCall(), at: t0).body["relay_request_id"]?.stringValue ?? ""
        let unknown = store.call(Self.gatewayCall(headers: [("X-Crochet-Relay-Request-Id", "relay_nope")]), at: t0)
        #expect(unknown.code == 404 && unknown.errorCode == "NOT_FOUND")
        let otherPayer = store.call(Self.gatewayCall(key: "am_k_acme", headers: [("X-Crochet-Relay-Request-Id", relayID)]), at: t0)
        #expect(otherPayer.code == 404, "a relay id pays only for its own payer's request")
    }

    @Test("PAYMENT_ROUTE_MINIMUM_NOT_MET for an EVM route under $0.10; Solana takes it")
    func routeMinimum() {
        let store = Self.store(price: "0.05")
        for headers in [[], [("X-Crochet-Origin-Currency", "ETH")], [("X-Crochet-Origin-Currency", "USDC"), ("X-Crochet-Origin-Chain-Id", "8453")]] {
            let answer = store.call(Self.gatewayCall(headers: headers), at: t0)
            #expect(answer.code == 422 && answer.errorCode == "PAYMENT_ROUTE_MINIMUM_NOT_MET", "\(headers): \(answer.rendered)")
            #expect(answer.body["amount_usd"] == .string("0.05") && answer.body["route_minimum_usd"] == .string("0.10"))
        }
        #expect(store.store.gateway.relays.isEmpty, "no payment was opened")
        for headers in [[("X-Crochet-Origin-Currency", "SOL")], [("X-Crochet-Origin-Currency", "USDC"), ("X-Crochet-Origin-Chain-Id", "solana")]] {
            let answer = store.call(Self.gatewayCall(headers: headers), at: t0)
            #expect(answer.code == 402 && answer.body["payment_requirements"]?["route"] == .string("solana"), "\(headers): \(answer.rendered)")
        }
        let atMinimum = Self.store(price: "0.10")
        #expect(atMinimum.call(Self.gatewayCall(headers: [("X-Crochet-Origin-Currency", "ETH")]), at: t0).code == 402, "$0.10 itself meets the minimum")
    }

    @Test("an Idempotency-Key repeats the first answer; a new key is a new attempt; another body is 409")
    func idempotencyKey() {
        let store = Self.store(price: "0.05")
        let key = [("Idempotency-Key", "attempt-1")]
        #expect(store.call(Self.gatewayCall(headers: key), at: t0).code == 422)
        #expect(store.call(Self.gatewayCall(headers: key + [("X-Crochet-Origin-Currency", "SOL")]), at: t0).code == 422, "the same key answers the first outcome")
        let fresh = store.call(Self.gatewayCall(headers: [("Idempotency-Key", "attempt-2"), ("X-Crochet-Origin-Currency", "SOL")]), at: t0)
        #expect(fresh.code == 402, "the seed: prefer Solana and retry with a new Idempotency-Key")
        let again = store.call(Self.gatewayCall(headers: [("Idempotency-Key", "attempt-2"), ("X-Crochet-Origin-Currency", "SOL")]), at: t0)
        #expect(again.body["relay_request_id"] == fresh.body["relay_request_id"] && store.store.gateway.relays.count == 1, "no second payment")
        let reused = store.call(Self.gatewayCall(body: "{}", headers: [("Idempotency-Key", "attempt-2")]), at: t0)
        #expect(reused.code == 409 && reused.errorCode == "IDEMPOTENCY_KEY_REUSED")
    }

    @Test("a seller failure after settlement answers 502 with the payment's context; the ledger stands; a retry forwards again")
    func sellerFailure() {
        let store = Self.store()
        let relayID = store.call(Self.gatewayCall(), at: t0).body["relay_request_id"]?.stringValue ?? ""
        _ = store.store.gateway.settle(relayID, now: t0)
        let retry = Self.gatewayCall(headers: [("X-Crochet-Relay-Request-Id", relayID)])
        let down = store.call(retry, at: t0) { _ in .failed("connection refused") }
        #expect(down.code == 502 && down.errorCode == "SELLER_ENDPOINT_FAILED", "\(down.rendered)")
        #expect(down.body["payment"]?["status"] == .string("settled") && down.body["payment"]?["refundable"] == .bool(false))
        #expect(down.body["relay_request_id"] == .string(relayID) && down.body["seller_status"] == .null)
        #expect(store.store.gateway.ledger.map(\.sellerStatus) == [0], "the settled charge is in the ledger")
        let refused = store.call(retry, at: t0) { _ in .answered(status: 403, contentType: "application/json", body: Data(#"{"success":false}"#.utf8)) }
        #expect(refused.code == 502 && refused.body["seller_status"] == .int(403) && refused.body["seller_body"]?.rendered == #"{"success":false}"#)
        let notJSON = store.call(retry, at: t0) { _ in .answered(status: 200, contentType: "text/plain", body: Data("hello".utf8)) }
        #expect(notJSON.code == 502, "the gateway relays seller JSON only")
        let up = store.call(retry, at: t0) { _ in .answered(status: 201, contentType: "application/json", body: Data(#"{"done":1}"#.utf8)) }
        #expect(up.code == 201 && store.store.gateway.ledger.count == 1 && store.store.gateway.relays[relayID]?.forwards == 4)
    }

    @Test("a retry while the first forward is under way answers 202 instead of a second forward")
    func inFlight() {
        let store = Self.store()
        let relayID = store.call(Self.gatewayCall(), at: t0).body["relay_request_id"]?.stringValue ?? ""
        _ = store.store.gateway.settle(relayID, now: t0)
        let retry = Self.gatewayCall(headers: [("X-Crochet-Relay-Request-Id", relayID)])
        guard case .serve(.gateway) = store.plan(retry, now: t0).outcome, case .forward(let forward) = store.store.serve(.gateway, retry, now: t0) else {
            Issue.record("the first retry was not forwarded")
            return
        }
        let meanwhile = store.call(retry, at: t0)
        #expect(meanwhile.code == 202 && meanwhile.body["retry_after_seconds"] == .int(1), "\(meanwhile.rendered)")
        let done = store.store.finishForward(forward, .answered(status: 200, contentType: nil, body: Data("{}".utf8)), now: t0)
        #expect(done.status == .ok && store.store.gateway.ledger.count == 1)
    }

    @Test("401 without a known API key, 404 for an unknown listing, 400 for a body that is not JSON or a bad route")
    func refusals() {
        let store = Self.store()
        #expect(store.call(Self.gatewayCall(key: "am_k_nobody"), at: t0).code == 401)
        let noKey = SimulatorRequest(post: SimulatedEndpoint.gatewayPrefix + "listing-uuid", json: "{}")
        #expect(store.call(noKey, at: t0).errorCode == "UNAUTHORIZED")
        #expect(store.call(Self.gatewayCall("nope"), at: t0).code == 404)
        #expect(store.call(Self.gatewayCall(body: "not json"), at: t0).code == 400)
        for headers in [[("X-Crochet-Origin-Currency", "DOGE")], [("X-Crochet-Origin-Currency", "SOL"), ("X-Crochet-Origin-Chain-Id", "1")], [("X-Crochet-Origin-Chain-Id", "mainnet")], [("X-Crochet-Origin-Currency", "ETH"), ("X-Crochet-Origin-Chain-Id", "solana")]] {
            #expect(store.call(Self.gatewayCall(headers: headers), at: t0).code == 400, "\(headers)")
        }
        #expect(store.call(SimulatorRequest(post: "/api/v1/gateway/", json: "{}"), at: t0).code == 404)
        #expect(store.call(SimulatorRequest(post: "/api/v1/gateway/a/b", json: "{}"), at: t0).code == 404)
        #expect(store.callLog(.gateway).total == 8, "paths without exactly one listing id are not gateway calls")
    }

    @Test("settling by payment id works too; settling twice changes nothing; unknown ids answer 404")
    func settle() {
        let store = Self.store()
        let initial = store.call(Self.gatewayCall(), at: t0)
        let paymentID = initial.body["payment_requirements"]?["payment_id"]?.stringValue ?? ""
        let first = store.call(adminCall(.POST, "/_sim/payments/\(paymentID)/settle"), at: t0.addingTimeInterval(5))
        #expect(first.code == 200 && first.body["settled_at"] == .string(ISO8601.format(t0.addingTimeInterval(5))))
        let second = store.call(adminCall(.POST, "/_sim/payments/\(paymentID)/settle"), at: t0.addingTimeInterval(9))
        #expect(second.body["settled_at"] == first.body["settled_at"])
        #expect(store.call(adminCall(.POST, "/_sim/payments/pay_nope/settle"), at: t0).code == 404)
        let relays = store.call(adminCall(.GET, "/_sim/relays"), at: t0)
        #expect(relays.rendered.contains(#""status":"settled""#) && !relays.rendered.contains("task"), "bodies are never kept: \(relays.rendered)")
        #expect(relays.rendered.contains(sha256Hex(Self.seedBody)), "only the body's SHA-256")
    }

    @Test("listings need a known seller, an http(s) endpoint and a decimal-string price above zero")
    func listingValidation() {
        let store = Self.store()
        for body in [
            #"{"listing_id":"a","seller_id":"nobody","endpoint":"http://x/","price_usd":"1"}"#,
            #"{"listing_id":"a","endpoint":"ftp://x/","price_usd":"1"}"#,
            #"{"listing_id":"a","endpoint":"http://x/?q=1","price_usd":"1"}"#,
            #"{"listing_id":"a","endpoint":"http://x/","price_usd":0.25}"#,
            #"{"listing_id":"a","endpoint":"http://x/","price_usd":"0"}"#,
            #"{"listing_id":"a","endpoint":"http://x/","price_usd":"1.0000001"}"#,
            #"{"listing_id":"a","endpoint":"http://x/","price_usd":"-1"}"#,
            #"{"listing_id":"a","endpoint":"http://x/"}"#,
            #"{"endpoint":"http://x/","price_usd":"1"}"#,
            #"{"listing_id":"a","seller_id":"acme","seller_key":"am_k_acme","endpoint":"http://x/","price_usd":"1"}"#,
        ] {
            let answer = store.call(adminCall(.POST, "/_sim/listings", body), at: t0)
            #expect(answer.code == 400 || answer.code == 404, "\(body): \(answer.rendered)")
        }
        #expect(store.call(adminCall(.POST, "/_sim/listings", #"{"listing_id":"listing-uuid","endpoint":"http://x/","price_usd":"1"}"#), at: t0).code == 409)
        let demo = store.call(adminCall(.POST, "/_sim/listings", #"{"listing_id":"d","endpoint":"https://example.com/run","price_usd":"0.000001"}"#), at: t0)
        #expect(demo.code == 201 && demo.body["seller_id"] == .string("demo") && demo.body["price_usd"] == .string("0.000001"))
        #expect(store.call(adminCall(.GET, "/_sim/listings/d"), at: t0).body["gateway_secret_set"] == .bool(false))
        #expect(store.call(adminCall(.GET, "/_sim/sellers"), at: t0).rendered.contains("gw_secret") == false, "secrets are never echoed")
    }

    @Test("MicroDollars: exact parsing, formatting and the 4.9 % split that always sums to the gross")
    func money() {
        #expect(MicroDollars.parse("1.00") == 1_000_000 && MicroDollars.parse("0.25") == 250_000 && MicroDollars.parse("7") == 7_000_000)
        for bad in ["", ".5", "1.", "1e3", "-1", "+1", "1.0000001", "0x10", "1,5", "99999999"] {
            #expect(MicroDollars.parse(bad) == nil, "\(bad)")
        }
        #expect(MicroDollars.format(1_000_000) == "1.00" && MicroDollars.format(49_000) == "0.049" && MicroDollars.format(951_000) == "0.951")
        #expect(MicroDollars.format(50_000) == "0.05" && MicroDollars.format(1) == "0.000001" && MicroDollars.format(123_456_789) == "123.456789")
        #expect(MicroDollars.split(1_000_000, feePerMille: 49) == (49_000, 951_000), "the seed's table is wrong: $1.00 is $0.049 fee, $0.951 to the seller")
        #expect(MicroDollars.split(10, feePerMille: 49) == (0, 10) && MicroDollars.split(11, feePerMille: 49) == (1, 10), "half up to the micro-dollar")
        for gross in [1, 7, 99_999, 100_000, 123_457, 250_000] {
            let split = MicroDollars.split(gross, feePerMille: 49)
            #expect(split.fee + split.seller == gross)
        }
    }
}
