import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SubgateCore
import SubgateSimulator
import Testing

@testable import SubgateProxy

/// SPEC §6, gateway-relayed calls, end to end on loopback: a request carrying
/// `x-crochet-relay-request-id` and the right `x-crochet-gateway-secret` needs no token; a
/// repeat with the same body replays the recorded answer without calling the upstream; another
/// body gets 409 `RELAY_ID_REUSED`; the records survive a restart.
@Suite("Gateway-relayed calls")
struct GatewayRelayTests {
    static let secret = "gw_secret_for_tests"

    static func relayHeaders(_ id: String, secret: String? = Self.secret) -> [(String, String)] {
        var headers = [(GatewayRelay.relayIDHeader, id), ("content-type", "application/json")]
        if let secret { headers.append((GatewayRelay.secretHeader, secret)) }
        return headers
    }

    static func storePath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("subgate-relay-\(UUID().uuidString).store").path
    }

    static func configure(store: String?, maxAnswer: Int = 64 * 1024) -> (inout Config) -> Void {
        { config in
            config.gatewaySecret = Secret(Self.secret)
            config.relayStore = store
            config.relayMaxAnswerBytes = maxAnswer
        }
    }

    @Test("a relayed call needs no token and bills nothing; the same id and body replay without the upstream; another body gets 409")
    func replayAndReuse() async throws {
        let store = Self.storePath()
        defer { try? FileManager.default.removeItem(atPath: store) }
        try await EnforcementHarness.with(Self.configure(store: store)) { harness in
            let body = #"{"task":"run","input":"a"}"#
            let first = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-1"), body: body)
            #expect(first.status == 200 && first.body.contains("\"bytes\":\(body.utf8.count)"), "forwarded with no token: \(first.status) \(first.body)")
            #expect(harness.upstream.requests.count == 1)
            let seen = harness.upstream.requests.last?.headers ?? HTTPHeaders()
            #expect(seen[GatewayRelay.secretHeader].isEmpty, "the gateway secret never reaches the seller: \(seen)")
            #expect(seen[GatewayRelay.relayIDHeader] == ["relay-1"], "the seller sees the relay id")

            let again = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-1"), body: body)
            #expect(again.status == 200 && again.body == first.body, "the same id and body replay the recorded answer: \(again.body)")
            #expect(again.headers.first(name: "content-type") == first.headers.first(name: "content-type"), "with its headers")
            #expect(harness.upstream.requests.count == 1, "a replay never calls the upstream again")

            let other = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-1"), body: #"{"task":"run","input":"b"}"#)
            #expect(other.status == 409 && other.errorCode == "RELAY_ID_REUSED", "another body under the same id: \(other.status) \(other.body)")
            #expect(harness.upstream.requests.count == 1)

            _ = await harness.flush()
            #expect(harness.simulator.totalAcceptedUnits == 0, "relayed calls are paid through the gateway: nothing is reported as usage")
            #expect(harness.enforcer.usage.pendingUnits == 0)
        }
    }

    @Test("a wrong or repeated gateway secret answers 403 TOKEN_INVALID and the upstream is untouched; without the secret, or without a relay id, the token decides")
    func wrongSecret() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            for headers in [
                Self.relayHeaders("relay-2", secret: "gw_secret_for_testz"),
                Self.relayHeaders("relay-2", secret: "g"),
                Self.relayHeaders("relay-2") + [(GatewayRelay.secretHeader, Self.secret)],
            ] {
                let answer = try await harness.send(path: "/sha", headers: headers, body: "{}")
                #expect(answer.status == 403 && answer.errorCode == "TOKEN_INVALID", "\(headers.map(\.0)): \(answer.status) \(answer.body)")
                #expect(!answer.body.contains(Self.secret))
            }
            let noRelay = try await harness.send(path: "/sha", headers: [(GatewayRelay.secretHeader, Self.secret)], body: "{}")
            #expect(noRelay.status == 401 && noRelay.errorCode == "MISSING_TOKEN", "a secret alone does not replace the token: \(noRelay.status)")
            let noSecret = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-2", secret: nil), body: "{}")
            #expect(noSecret.status == 401 && noSecret.errorCode == "MISSING_TOKEN", "a relay id alone is not the gateway's call: \(noSecret.status)")
            let twoIDs = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-2") + [(GatewayRelay.relayIDHeader, "relay-3")], body: "{}")
            #expect(twoIDs.status == 400, "two relay ids: \(twoIDs.status) \(twoIDs.body)")
            #expect(harness.upstream.requests.isEmpty, "nothing reached the upstream")
        }
    }

    @Test("without gateway_secret a relay id means nothing: the subscription token decides")
    func disabledWithoutSecret() async throws {
        try await EnforcementHarness.with { harness in
            let answer = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-4"), body: "{}")
            #expect(answer.status == 401 && answer.errorCode == "MISSING_TOKEN", "\(answer.status) \(answer.body)")
            #expect(harness.relays == nil)
        }
    }

    @Test("an answer over relay_max_answer_bytes is relayed but not kept: the repeat gets 409 RELAY_NOT_REPLAYABLE")
    func tooLargeToReplay() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil, maxAnswer: 16)) { harness in
            let first = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-5"), body: "{}")
            #expect(first.status == 200 && first.body.utf8.count > 16, "the first call is served whole: \(first.body)")
            let again = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-5"), body: "{}")
            #expect(again.status == 409 && again.errorCode == "RELAY_NOT_REPLAYABLE", "\(again.status) \(again.body)")
            #expect(harness.upstream.requests.count == 1, "never forwarded twice")
        }
    }

    @Test("a relayed call the upstream never answered is not kept: the retry is forwarded again")
    func unansweredIsForgotten() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            let failed = try await harness.send(path: "/head-only-close", headers: Self.relayHeaders("relay-6"), body: "{}")
            #expect(failed.status == 502, "the upstream closed without answering: \(failed.status)")
            let retried = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-6"), body: "{}")
            #expect(retried.status == 200, "the retry reaches the seller: \(retried.status) \(retried.body)")
            #expect(harness.upstream.requests.count == 2)
        }
    }

    @Test("a repeat while the first call is still in flight answers 409 RELAY_IN_PROGRESS with Retry-After")
    func inProgress() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            async let slow = harness.send(path: "/slow?ms=1500", headers: Self.relayHeaders("relay-7"), body: "{}")
            var waited = 0
            while harness.upstream.requests.isEmpty && waited < 100 {
                try await Task.sleep(for: .milliseconds(20))
                waited += 1
            }
            let concurrent = try await harness.send(path: "/slow?ms=1500", headers: Self.relayHeaders("relay-7"), body: "{}")
            #expect(concurrent.status == 409 && concurrent.errorCode == "RELAY_IN_PROGRESS", "\(concurrent.status) \(concurrent.body)")
            #expect(concurrent.headers.first(name: "retry-after") == "1")
            let slowAnswer = try await slow
            #expect(slowAnswer.status == 200)
            #expect(harness.upstream.requests.count == 1, "the seller was called once")
        }
    }

    @Test("the records survive a restart: the same relay id and body replay from relay_store, without the upstream")
    func survivesRestart() async throws {
        let store = Self.storePath()
        defer { try? FileManager.default.removeItem(atPath: store) }
        let body = #"{"task":"persist"}"#
        let first = try await EnforcementHarness.with(Self.configure(store: store)) { harness in
            let answer = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-8"), body: body)
            #expect(answer.status == 200)
            // No waiting for the file: stopping (as graceful shutdown does) must put it on disk.
            return answer
        }
        try await EnforcementHarness.with(Self.configure(store: store)) { harness in
            let replay = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-8"), body: body)
            #expect(replay.status == 200 && replay.body == first.body, "replayed after the restart: \(replay.status) \(replay.body)")
            #expect(harness.upstream.requests.isEmpty, "the new process did not call the seller")
            let other = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-8"), body: "{}")
            #expect(other.status == 409 && other.errorCode == "RELAY_ID_REUSED")
            let status = Dictionary(harness.relays?.statusFields() ?? [], uniquingKeysWith: { a, _ in a })
            #expect(status["relay_calls_replayed"] == "1" && status["relay_ids_reused"] == "1" && status["relay_ids_remembered"] == "1", "\(status)")
        }
        let lines = ((try? String(contentsOfFile: store, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(lines.count == 1, "compacted at start to the live records: \(lines.count) lines")
        #expect(!lines.joined().contains("persist"), "the store keeps the body's hash, never the request body")
    }

    @Test("/status estimates the seller's share of relayed calls after the gateway's 4.9 % fee")
    func sellerShare() async throws {
        try await EnforcementHarness.with({ config in
            Self.configure(store: nil)(&config)
            config.gatewayPricePerCallMicros = 1_000_000
        }) { harness in
            for id in ["relay-9", "relay-10"] {
                let answer = try await harness.send(path: "/sha", headers: Self.relayHeaders(id), body: "{}")
                #expect(answer.status == 200)
            }
            let status = Dictionary(harness.relays?.statusFields() ?? [], uniquingKeysWith: { a, _ in a })
            #expect(status["relay_calls_forwarded"] == "2")
            #expect(status["relay_gross_usd_estimate"] == "\"2.00\"" && status["relay_seller_share_usd_estimate"] == "\"1.902\"", "$2.00 gross is $0.098 fee and $1.902 to the seller: \(status)")
        }
    }

    /// A buyer's call to the simulated gateway (seed 001), JSON body, paying in SOL.
    static func buyerCall(_ harness: EnforcementHarness, listing: String, relayID: String?, body: String) async throws -> EnforcementHarness.Answer {
        var request = HTTPClientRequest(url: harness.simulator.baseURL + "/gateway/" + listing)
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer am_k_demo")
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "x-crochet-origin-currency", value: "SOL")
        if let relayID { request.headers.add(name: "x-crochet-relay-request-id", value: relayID) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
        let answer = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return .init(status: response.status.code, headers: response.headers, body: answer)
    }

    @Test("the whole gateway path: 402 → settle → 202 while pending → the gateway forwards to Subgate → the seller's JSON; a retry is replayed; another body 409; a wrong secret 403")
    func throughTheSimulatedGateway() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            let sim = harness.simulator
            #expect(sim.createSeller(SimulatedSeller(sellerID: "gw_seller", sellerKey: "am_k_gw_seller", gatewaySecret: Self.secret)))
            #expect(sim.createListing(SimulatedListing(listingID: "listing-ok", sellerID: "gw_seller", endpoint: "http://127.0.0.1:\(harness.port)/sha", priceMicroUSD: 1_000_000)))
            #expect(sim.createListing(SimulatedListing(
                listingID: "listing-bad-secret", sellerID: "gw_seller", endpoint: "http://127.0.0.1:\(harness.port)/sha", priceMicroUSD: 1_000_000,
                gatewaySecret: "not_the_secret_subgate_has"
            )))
            let body = #"{"task":"run","input":"..."}"#

            let paymentRequired = try await Self.buyerCall(harness, listing: "listing-ok", relayID: nil, body: body)
            #expect(paymentRequired.status == 402, "\(paymentRequired.status) \(paymentRequired.body)")
            guard let relayID = paymentRequired.headers.first(name: "x-crochet-relay-request-id") else {
                Issue.record("no relay request id in the 402: \(paymentRequired.headers)")
                return
            }
            let pending = try await Self.buyerCall(harness, listing: "listing-ok", relayID: relayID, body: body)
            #expect(pending.status == 202 && pending.body.contains(#""status":"pending""#) && pending.body.contains("retry_after_seconds"), "\(pending.status) \(pending.body)")
            #expect(harness.upstream.requests.isEmpty, "nothing is forwarded before settlement")

            #expect(sim.settlePayment(relayID) != nil)
            let paid = try await Self.buyerCall(harness, listing: "listing-ok", relayID: relayID, body: body)
            #expect(paid.status == 200 && paid.body.contains(#""bytes":\#(body.utf8.count)"#), "the seller's JSON through gateway and Subgate: \(paid.status) \(paid.body)")
            #expect(harness.upstream.requests.count == 1)
            #expect(harness.upstream.requests.first?.headers[GatewayRelay.secretHeader].isEmpty == true, "the seller never sees the gateway secret")

            let retried = try await Self.buyerCall(harness, listing: "listing-ok", relayID: relayID, body: body)
            #expect(retried.status == 200 && retried.body == paid.body, "the gateway's retry gets the same answer: \(retried.body)")
            #expect(harness.upstream.requests.count == 1, "Subgate replayed it: the seller was not called again")

            // The simulated gateway refuses another body under a paid relay id itself (409); Subgate's
            // own 409 for it is `replayAndReuse`'s.
            let reused = try await Self.buyerCall(harness, listing: "listing-ok", relayID: relayID, body: #"{"task":"other"}"#)
            #expect(reused.status == 409 && reused.body.contains("RELAY_ID_REUSED"), "\(reused.status) \(reused.body)")
            #expect(harness.upstream.requests.count == 1)

            #expect(sim.ledger.count == 1 && sim.ledger.first?.feeMicroUSD == 49_000 && sim.ledger.first?.sellerMicroUSD == 951_000, "one ledger entry, $0.049 fee: \(sim.ledger)")
            _ = await harness.flush()
            #expect(sim.totalAcceptedUnits == 0, "no subscription usage for a paid gateway call")

            // A listing whose gateway secret is not the one Subgate holds: Subgate refuses it.
            let other = try await Self.buyerCall(harness, listing: "listing-bad-secret", relayID: nil, body: body)
            guard let otherID = other.headers.first(name: "x-crochet-relay-request-id") else {
                Issue.record("no relay request id: \(other.status) \(other.body)")
                return
            }
            sim.settlePayment(otherID)
            let refused = try await Self.buyerCall(harness, listing: "listing-bad-secret", relayID: otherID, body: body)
            #expect(refused.status == 502 && refused.body.contains(#""seller_status":403"#) && refused.body.contains("TOKEN_INVALID"), "Subgate answered the gateway 403 TOKEN_INVALID: \(refused.body)")
            #expect(harness.upstream.requests.count == 1, "the wrongly signed call never reached the seller")
        }
    }

    @Test("the same relay id and body on another method or target is not a replay: 409 RELAY_ID_REUSED")
    func otherTarget() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            #expect(try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-11"), body: "{}").status == 200)
            let other = try await harness.send(path: "/sha?x=1", headers: Self.relayHeaders("relay-11"), body: "{}")
            #expect(other.status == 409 && other.errorCode == "RELAY_ID_REUSED", "\(other.status) \(other.body)")
            let put = try await harness.send(.PUT, path: "/sha", headers: Self.relayHeaders("relay-11"), body: "{}")
            #expect(put.status == 409 && put.errorCode == "RELAY_ID_REUSED", "\(put.status) \(put.body)")
            #expect(harness.upstream.requests.count == 1)
        }
    }

    @Test("the seller's 5xx, 429 or 408 is relayed but not kept: the gateway's retry reaches the seller again")
    func sellerFailureNotKept() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            for (id, code) in [("relay-12", 503), ("relay-13", 429), ("relay-14", 408)] {
                let failed = try await harness.send(path: "/status?code=\(code)", headers: Self.relayHeaders(id), body: "{}")
                #expect(failed.status == UInt(code), "the seller's \(code) is relayed: \(failed.status)")
                let retried = try await harness.send(path: "/status?code=\(code)", headers: Self.relayHeaders(id), body: "{}")
                #expect(retried.status == UInt(code))
            }
            #expect(harness.upstream.requests.count == 6, "every retry reached the seller")
            let status = Dictionary(harness.relays?.statusFields() ?? [], uniquingKeysWith: { a, _ in a })
            #expect(status["relay_ids_remembered"] == "0" && status["relay_calls_in_flight"] == "0", "\(status)")
        }
    }

    @Test("no relay id stays in flight after Subgate's own answers and aborts: 413, upstream timeout, client gone mid-upload")
    func nothingLeftInFlight() async throws {
        try await EnforcementHarness.with({ config in
            Self.configure(store: nil)(&config)
            config.maxBodyBytes = 1024
            config.upstreamTimeout = .milliseconds(300)
        }) { harness in
            let tooLarge = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-15"), body: String(repeating: "x", count: 4096))
            #expect(tooLarge.status == 413, "\(tooLarge.status)")
            let timedOut = try await harness.send(path: "/slow?ms=2000", headers: Self.relayHeaders("relay-16"), body: "{}")
            #expect(timedOut.status == 504, "\(timedOut.status)")
            // A client that announces a body, sends half of it and goes away.
            let raw = try await RawConnection.open(port: harness.port, group: harness.group)
            try await raw.send("POST /sha HTTP/1.1\r\nHost: x\r\n\(GatewayRelay.relayIDHeader): relay-17\r\n\(GatewayRelay.secretHeader): \(Self.secret)\r\ncontent-length: 100\r\n\r\n0123456789")
            _ = await raw.wait(timeout: .milliseconds(300)) { _ in false }
            await raw.close()
            var inFlight = "?"
            for _ in 0..<50 {
                inFlight = Dictionary(harness.relays?.statusFields() ?? [], uniquingKeysWith: { a, _ in a })["relay_calls_in_flight"] ?? "?"
                if inFlight == "0" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(inFlight == "0", "every forwarded relay id was completed or abandoned")
            for id in ["relay-15", "relay-16", "relay-17"] {
                let retry = try await harness.send(path: "/sha", headers: Self.relayHeaders(id), body: "{}")
                #expect(retry.status == 200, "\(id) is forwarded again after Subgate's own answer: \(retry.status) \(retry.body)")
            }
        }
    }

    @Test("a repeat that expects 100-continue gets its 100, then the replayed answer")
    func replayWithExpectContinue() async throws {
        try await EnforcementHarness.with(Self.configure(store: nil)) { harness in
            let first = try await harness.send(path: "/sha", headers: Self.relayHeaders("relay-18"), body: "{\"a\":1}")
            #expect(first.status == 200)
            let raw = try await RawConnection.open(port: harness.port, group: harness.group)
            try await raw.send("POST /sha HTTP/1.1\r\nHost: x\r\n\(GatewayRelay.relayIDHeader): relay-18\r\n\(GatewayRelay.secretHeader): \(Self.secret)\r\ncontent-type: application/json\r\ncontent-length: 7\r\nexpect: 100-continue\r\n\r\n")
            #expect(await raw.waitForText("HTTP/1.1 100 Continue"), "the repeat asks for its body")
            try await raw.send("{\"a\":1}")
            #expect(await raw.waitForText(first.body), "then gets the recorded answer")
            await raw.close()
            #expect(harness.upstream.requests.count == 1)
        }
    }
}
