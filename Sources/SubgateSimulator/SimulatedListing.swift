import SubgateCore
/// A listing sold through the Crochet gateway (seed 001): whose it is, where its calls go
/// and what one call costs.
public struct SimulatedListing: Sendable, Equatable {
    /// The `:listingId` of `POST /api/v1/gateway/:listingId`.
    public var listingID: String
    /// The seller's id (`demo`, `acme`).
    public var sellerID: String
    /// The seller's endpoint, `http://host:port/path`: paid calls are POSTed here (which
    /// may be a Subgate in front of the seller's service).
    public var endpoint: String
    /// The price of one call in micro-dollars (> 0).
    public var priceMicroUSD: Int
    /// Sent as `x-crochet-gateway-secret`; nil: the seller's own.
    public var gatewaySecret: String?

    public init(listingID: String, sellerID: String, endpoint: String, priceMicroUSD: Int, gatewaySecret: String? = nil) {
        self.listingID = listingID
        self.sellerID = sellerID
        self.endpoint = endpoint
        self.priceMicroUSD = priceMicroUSD
        self.gatewaySecret = gatewaySecret
    }
}

extension SimulatedListing {
    /// The admin API's form; the gateway secret is never echoed, only whether it is set.
    var adminState: JSONValue {
        .object([
            ("listing_id", .string(self.listingID)),
            ("seller_id", .string(self.sellerID)),
            ("endpoint", .string(self.endpoint)),
            ("price_usd", .string(MicroDollars.format(self.priceMicroUSD))),
            ("price_micro_usd", .int(self.priceMicroUSD)),
            ("gateway_secret_set", .bool(self.gatewaySecret != nil)),
        ])
    }
}
