import Foundation

/// A call the gateway makes to a seller's endpoint, decided by `GatewayStore` and made by
/// the channel handler (`GatewayForwarder`). The body lives only as long as this call.
struct GatewayForward: Sendable {
    var relayRequestID: String
    /// The listing's endpoint.
    var url: String
    /// The buyer's body, as it came.
    var body: Data
    /// `content-type`, `x-crochet-relay-request-id` and, when configured,
    /// `x-crochet-gateway-secret`.
    var headers: [(name: String, value: String)]
}

/// What the seller's endpoint did with a forwarded call.
enum SellerOutcome: Sendable, Equatable {
    /// It answered: status, `content-type` and body.
    case answered(status: Int, contentType: String?, body: Data)
    /// No answer: refused, reset, timed out, too large (the reason, for the error message).
    case failed(String)
}
