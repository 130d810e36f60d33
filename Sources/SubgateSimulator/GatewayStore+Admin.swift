import SubgateCore
import Foundation
import NIOHTTP1

/// The gateway part of the admin API: listings, relay requests, the mock provider's
/// settlement and the ledger.
extension GatewayStore {
    static let listingFields = ["listing_id", "seller_id", "seller_key", "endpoint", "price_usd", "gateway_secret"]

    /// `POST /_sim/listings`: `{"listing_id","seller_id"|"seller_key","endpoint","price_usd","gateway_secret"?}`;
    /// 201 with the listing. The seller defaults to the demo seller.
    mutating func adminCreateListing(_ body: Data, sellers: CrochetStore) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.listingFields)
        let id = try AdminBody.requiredString(fields, "listing_id")
        guard SimulatorName.isValid(id) else { throw AdminBody.badField("listing_id", SimulatorName.rule) }
        let seller: SimulatedSeller?
        switch (try AdminBody.optionalString(fields, "seller_id"), try AdminBody.optionalString(fields, "seller_key")) {
        case (let sellerID?, nil): seller = sellers.seller(id: sellerID)
        case (nil, let key?): seller = sellers.seller(key: key)
        case (nil, nil): seller = sellers.seller(key: CrochetStore.demoSellerKey)
        case (_?, _?): throw AdminBody.badField("seller_id", "and seller_key name the same thing; give one of them")
        }
        guard let seller else {
            throw .error(.notFound, "NOT_FOUND", "No such seller; create it first with POST /_sim/sellers.")
        }
        guard case .string(let priceText)? = fields["price_usd"], let price = MicroDollars.parse(priceText), price > 0 else {
            throw AdminBody.badField("price_usd", "is required: a string of dollars above 0 with at most six decimals, such as \"0.25\" (a string, so that no binary floating point touches money)")
        }
        let listing = SimulatedListing(
            listingID: id,
            sellerID: seller.sellerID,
            endpoint: try AdminBody.requiredString(fields, "endpoint"),
            priceMicroUSD: price,
            gatewaySecret: try AdminBody.optionalString(fields, "gateway_secret")
        )
        do throws(ListingProblem) {
            try self.createListing(listing, sellers: sellers)
        } catch .exists {
            throw .error(.conflict, "CONFLICT", "A listing \(id) already exists.")
        } catch .endpoint {
            throw AdminBody.badField("endpoint", "must be an http:// or https:// URL with a host and no query, such as http://127.0.0.1:8080/run")
        } catch {
            throw AdminBody.badField("price_usd", "must be above 0 and at most 1000000")
        }
        return SimulatorResponse(.created, listing.adminState)
    }

    func existingListing(_ id: String) throws(SimulatorResponse) -> SimulatedListing {
        guard let listing = self.listings[id] else { throw .error(.notFound, "NOT_FOUND", "No listing \(id).") }
        return listing
    }

    var listingsJSON: JSONValue {
        .object([("listings", .array(self.listings.values.sorted { $0.listingID < $1.listingID }.map(\.adminState)))])
    }

    func existingRelay(_ id: String) throws(SimulatorResponse) -> SimulatedRelayRequest {
        guard let relay = self.relays[id] else { throw .error(.notFound, "NOT_FOUND", "No relay request \(id).") }
        return relay
    }

    var relaysJSON: JSONValue {
        .object([("relays", .array(self.relays.values.sorted { ($0.createdAt, $0.relayRequestID) < ($1.createdAt, $1.relayRequestID) }.map(\.adminState)))])
    }

    /// `POST /_sim/payments/<relay or payment id>/settle`: the mock provider settles.
    mutating func adminSettle(_ id: String, now: Date) throws(SimulatorResponse) -> SimulatedRelayRequest {
        guard let relay = self.settle(id, now: now) else {
            throw .error(.notFound, "NOT_FOUND", "No payment or relay request \(id).")
        }
        return relay
    }

    /// `{"entries":[…],"totals":{gross, fee, seller in micro-dollars and dollars}}`.
    var ledgerJSON: JSONValue {
        let gross = self.ledger.reduce(0) { $0 + $1.grossMicroUSD }
        let fee = self.ledger.reduce(0) { $0 + $1.feeMicroUSD }
        let seller = self.ledger.reduce(0) { $0 + $1.sellerMicroUSD }
        return .object([
            ("entries", .array(self.ledger.map(\.adminState))),
            (
                "totals",
                .object([
                    ("gross_usd", .string(MicroDollars.format(gross))),
                    ("fee_usd", .string(MicroDollars.format(fee))),
                    ("seller_usd", .string(MicroDollars.format(seller))),
                    ("gross_micro_usd", .int(gross)),
                    ("fee_micro_usd", .int(fee)),
                    ("seller_micro_usd", .int(seller)),
                ])
            ),
        ])
    }
}

extension SimulatedRelayRequest {
    var adminState: JSONValue {
        .object([
            ("relay_request_id", .string(self.relayRequestID)),
            ("payment_id", .string(self.paymentID)),
            ("listing_id", .string(self.listingID)),
            ("status", .string(self.status.rawValue)),
            ("amount_usd", .string(MicroDollars.format(self.amountMicroUSD))),
            ("amount_micro_usd", .int(self.amountMicroUSD)),
            ("currency", .string(self.currency)),
            ("chain_id", .string(self.chainID)),
            ("route", .string(self.route.rawValue)),
            ("body_sha256", .string(self.bodySHA256)),
            ("forwards", .int(self.forwards)),
            ("last_seller_status", .intOrNull(self.lastSellerStatus)),
            ("created_at", .string(ISO8601.format(self.createdAt))),
            ("settled_at", .stringOrNull(self.settledAt.map(ISO8601.format))),
        ])
    }
}

extension SimulatedLedgerEntry {
    var adminState: JSONValue {
        .object([
            ("relay_request_id", .string(self.relayRequestID)),
            ("listing_id", .string(self.listingID)),
            ("seller_id", .string(self.sellerID)),
            ("gross_usd", .string(MicroDollars.format(self.grossMicroUSD))),
            ("fee_usd", .string(MicroDollars.format(self.feeMicroUSD))),
            ("seller_usd", .string(MicroDollars.format(self.sellerMicroUSD))),
            ("gross_micro_usd", .int(self.grossMicroUSD)),
            ("fee_micro_usd", .int(self.feeMicroUSD)),
            ("seller_micro_usd", .int(self.sellerMicroUSD)),
            ("fee_rate", .string("0.049")),
            ("currency", .string(self.currency)),
            ("route", .string(self.route.rawValue)),
            ("body_sha256", .string(self.bodySHA256)),
            ("seller_status", .int(self.sellerStatus)),
            ("at", .string(ISO8601.format(self.at))),
        ])
    }
}
