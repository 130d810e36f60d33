/// A Crochet seller: the `am_k_…` key its control-plane calls carry, and the secret the
/// gateway sends to its endpoints (`x-crochet-gateway-secret`, Subgate's `gateway_secret`).
public struct SimulatedSeller: Sendable, Equatable {
    /// A short public name (`demo`, `acme`), used by listings and the ledger.
    public var sellerID: String
    /// `am_k_…`.
    public var sellerKey: String
    /// nil: the gateway sends no `x-crochet-gateway-secret` for this seller's listings
    /// (unless a listing sets its own).
    public var gatewaySecret: String?

    public init(sellerID: String, sellerKey: String, gatewaySecret: String? = nil) {
        self.sellerID = sellerID
        self.sellerKey = sellerKey
        self.gatewaySecret = gatewaySecret
    }
}

extension SimulatedSeller {
    /// The admin API's form; the gateway secret is never echoed, only whether it is set.
    var adminState: JSONValue {
        .object([
            ("seller_id", .string(self.sellerID)),
            ("seller_key", .string(self.sellerKey)),
            ("gateway_secret_set", .bool(self.gatewaySecret != nil)),
        ])
    }
}
