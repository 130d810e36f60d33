import SubgateCore
import Crypto
import Foundation
import NIOHTTP1

extension GatewayStore {
    // MARK: - POST /api/v1/gateway/:listingId

    /// The paid gateway lifecycle of seed 001, one call at a time.
    ///
    /// Without `X-Crochet-Relay-Request-Id`: 402 PAYMENT_REQUIRED with the mock provider's
    /// payment requirements and a new `relay_request_id` bound to this listing and this
    /// body's SHA-256 (or 422 PAYMENT_ROUTE_MINIMUM_NOT_MET for an EVM route under $0.10).
    /// An `Idempotency-Key` makes this first answer repeatable: the same key with the same
    /// body answers it again; with another body, 409 IDEMPOTENCY_KEY_REUSED.
    ///
    /// With it: 202 `{"status":"pending","retryable":true,"retry_after_seconds"}` until the
    /// provider settles (or while another retry's forward is under way); then the call is
    /// forwarded to the listing's endpoint and the seller's JSON relayed. A relay id is
    /// replayable only with the same body: another body or listing answers 409
    /// RELAY_ID_REUSED.
    ///
    /// Checked first: 401 UNAUTHORIZED (no known `Authorization: Bearer am_k_…`), 404
    /// NOT_FOUND (no such listing), 400 BAD_REQUEST (the body is not JSON).
    mutating func call(_ request: SimulatorRequest, accounts: CrochetStore, now: Date) -> SimulatorAction {
        do throws(SimulatorResponse) {
            let payer = try accounts.authenticate(request.authorization)
            let listingID = String(request.path.dropFirst(SimulatedEndpoint.gatewayPrefix.count))
            guard let listing = self.listings[listingID] else {
                throw .error(.notFound, "NOT_FOUND", "No listing \(listingID) is sold through the gateway.")
            }
            guard JSONValue.parse(request.body) != nil else {
                throw .error(.badRequest, "BAD_REQUEST", "The body must be the JSON payload for the seller, such as {\"task\":\"run\",\"input\":\"…\"}.")
            }
            let bodySHA256 = RawToken.hex(SHA256.hash(data: request.body))
            if let relayID = request.header("x-crochet-relay-request-id") {
                return try self.retry(relayID, listing: listing, payer: payer, bodySHA256: bodySHA256, request: request, accounts: accounts)
            }
            return .respond(try self.firstCall(listing: listing, payer: payer, bodySHA256: bodySHA256, request: request, now: now))
        } catch {
            return .respond(error)
        }
    }

    private mutating func firstCall(
        listing: SimulatedListing,
        payer: String,
        bodySHA256: String,
        request: SimulatorRequest,
        now: Date
    ) throws(SimulatorResponse) -> SimulatorResponse {
        let route: (currency: String, chainID: String, route: SimulatedPaymentRoute)
        switch Self.route(currency: request.header("x-crochet-origin-currency"), chainID: request.header("x-crochet-origin-chain-id")) {
        case .success(let chosen): route = chosen
        case .failure(let problem): throw .error(.badRequest, "BAD_REQUEST", problem.message)
        }
        let attemptKey = request.header("idempotency-key").map { AttemptKey(payerKey: payer, idempotencyKey: $0) }
        if let attemptKey, let attempt = self.attempt(attemptKey) {
            guard attempt.bodySHA256 == bodySHA256 && attempt.listingID == listing.listingID else {
                throw .error(
                    .conflict,
                    "IDEMPOTENCY_KEY_REUSED",
                    "This Idempotency-Key was used for another request (a different body or listing); use a new Idempotency-Key for a new request."
                )
            }
            return attempt.answer
        }
        let answer: SimulatorResponse
        if route.route == .evm && listing.priceMicroUSD < Self.evmRouteMinimumMicroUSD {
            answer = .error(
                .unprocessableEntity,
                "PAYMENT_ROUTE_MINIMUM_NOT_MET",
                "The \(route.currency) route on chain \(route.chainID) refuses calls under $\(MicroDollars.format(Self.evmRouteMinimumMicroUSD)); this one costs $\(MicroDollars.format(listing.priceMicroUSD)). Prefer Solana (X-Crochet-Origin-Currency: SOL) and retry with a new Idempotency-Key.",
                extra: [
                    ("listing_id", .string(listing.listingID)),
                    ("amount_usd", .string(MicroDollars.format(listing.priceMicroUSD))),
                    ("route_minimum_usd", .string(MicroDollars.format(Self.evmRouteMinimumMicroUSD))),
                ]
            )
        } else {
            let relay = self.openRelay(
                listing: listing,
                payerKey: payer,
                bodySHA256: bodySHA256,
                route: route,
                walletID: request.header("x-crochet-origin-wallet-id"),
                now: now
            )
            answer = Self.paymentRequired(relay)
        }
        if let attemptKey {
            self.record(Attempt(listingID: listing.listingID, bodySHA256: bodySHA256, answer: answer), under: attemptKey)
        }
        return answer
    }

    private mutating func retry(
        _ relayID: String,
        listing: SimulatedListing,
        payer: String,
        bodySHA256: String,
        request: SimulatorRequest,
        accounts: CrochetStore
    ) throws(SimulatorResponse) -> SimulatorAction {
        guard var relay = self.relays[relayID], relay.payerKey == payer else {
            throw .error(
                .notFound,
                "NOT_FOUND",
                "No relay request \(relayID) for this API key; call without X-Crochet-Relay-Request-Id to get a payment requirement."
            )
        }
        guard relay.listingID == listing.listingID && relay.bodySHA256 == bodySHA256 else {
            throw .error(
                .conflict,
                "RELAY_ID_REUSED",
                "This relay_request_id pays for another request (a different body or listing); a verified relay id can be replayed only with the same body. Send the original body, or call without X-Crochet-Relay-Request-Id to pay for this one.",
                extra: [("relay_request_id", .string(relayID))]
            )
        }
        if relay.status == .awaitingSettlement || relay.inFlight {
            return .respond(Self.pending(relay))
        }
        relay.inFlight = true
        self.save(relay)
        var headers: [(name: String, value: String)] = [
            ("content-type", "application/json"),
            ("x-crochet-relay-request-id", relay.relayRequestID),
        ]
        if let secret = listing.gatewaySecret ?? accounts.seller(id: listing.sellerID)?.gatewaySecret {
            headers.append(("x-crochet-gateway-secret", secret))
        }
        return .forward(GatewayForward(relayRequestID: relay.relayRequestID, url: listing.endpoint, body: request.body, headers: headers))
    }

    // MARK: - The seller's answer

    /// The seller's JSON (2xx) relayed as it came, with `X-Crochet-Relay-Request-Id`; any
    /// other outcome answers 502 SELLER_ENDPOINT_FAILED with the payment's context (the
    /// settlement stands: seed 001, "Crochet cannot claw back provider-settled funds").
    mutating func finishForward(_ forward: GatewayForward, _ outcome: SellerOutcome, now: Date) -> SimulatorResponse {
        let sellerStatus: Int
        switch outcome {
        case .answered(let status, _, _): sellerStatus = status
        case .failed: sellerStatus = 0
        }
        guard let relay = self.recordForward(forward.relayRequestID, sellerStatus: sellerStatus, now: now) else {
            return .error(.internalServerError, "INTERNAL_ERROR", "The relay request was forgotten while its call was under way (a reset?).")
        }
        let relayHeader = [(name: "X-Crochet-Relay-Request-Id", value: relay.relayRequestID)]
        let reason: String
        var sellerBody: JSONValue = .null
        switch outcome {
        case .answered(let status, _, let body) where (200...299).contains(status):
            if JSONValue.parse(body) != nil {
                return .relayed(HTTPResponseStatus(statusCode: status), bytes: body, headers: relayHeader)
            }
            reason = "answered \(status) with a body that is not JSON"
        case .answered(let status, _, let body):
            sellerBody = JSONValue.parse(body) ?? .null
            reason = "answered \(status)"
        case .failed(let why):
            reason = "gave no answer (\(why))"
        }
        return .error(
            .badGateway,
            "SELLER_ENDPOINT_FAILED",
            "The seller's endpoint \(reason) after the payment settled; the settled payment cannot be clawed back. Retry with the same X-Crochet-Relay-Request-Id and the same body.",
            headers: relayHeader,
            extra: [
                ("relay_request_id", .string(relay.relayRequestID)),
                ("seller_status", sellerStatus == 0 ? .null : .int(sellerStatus)),
                ("seller_body", sellerBody),
                ("payment", Self.paymentContext(relay)),
            ]
        )
    }

    // MARK: - Answers

    /// 402 with the provider's payment requirements and the relay request id (also as the
    /// `X-Crochet-Relay-Request-Id` header).
    static func paymentRequired(_ relay: SimulatedRelayRequest) -> SimulatorResponse {
        var requirements: [(key: String, value: JSONValue)] = [
            ("provider", .string("mock")),
            ("payment_id", .string(relay.paymentID)),
            ("amount_usd", .string(MicroDollars.format(relay.amountMicroUSD))),
            ("amount_micro_usd", .int(relay.amountMicroUSD)),
            ("currency", .string(relay.currency)),
            ("chain_id", .string(relay.chainID)),
            ("route", .string(relay.route.rawValue)),
            ("pay_to", .string("mock_provider_escrow")),
            ("fee_rate", .string("0.049")),
        ]
        if let wallet = relay.walletID {
            requirements.append(("payer_wallet_id", .string(wallet)))
        }
        return .error(
            .paymentRequired,
            "PAYMENT_REQUIRED",
            "This call costs $\(MicroDollars.format(relay.amountMicroUSD)). Complete the provider payment, then retry the same request body with X-Crochet-Relay-Request-Id: \(relay.relayRequestID).",
            headers: [("X-Crochet-Relay-Request-Id", relay.relayRequestID)],
            extra: [
                ("relay_request_id", .string(relay.relayRequestID)),
                ("listing_id", .string(relay.listingID)),
                ("payment_requirements", .object(requirements)),
            ]
        )
    }

    /// 202 while the payment is not settled (or a forward for it is under way), with
    /// `Retry-After`.
    static func pending(_ relay: SimulatedRelayRequest) -> SimulatorResponse {
        let seconds = relay.inFlight ? 1 : Self.pendingRetryAfterSeconds
        return SimulatorResponse(
            .accepted,
            .object([
                ("status", .string("pending")),
                ("retryable", .bool(true)),
                ("retry_after_seconds", .int(seconds)),
                ("relay_request_id", .string(relay.relayRequestID)),
            ]),
            headers: [("Retry-After", String(seconds)), ("X-Crochet-Relay-Request-Id", relay.relayRequestID)]
        )
    }

    static func paymentContext(_ relay: SimulatedRelayRequest) -> JSONValue {
        .object([
            ("payment_id", .string(relay.paymentID)),
            ("status", .string("settled")),
            ("amount_usd", .string(MicroDollars.format(relay.amountMicroUSD))),
            ("currency", .string(relay.currency)),
            ("refundable", .bool(false)),
        ])
    }
}
