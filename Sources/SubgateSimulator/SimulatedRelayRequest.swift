import Foundation

/// How a gateway call is paid: the provider route its origin currency and chain select.
public enum SimulatedPaymentRoute: String, Sendable, Equatable {
    /// Solana: the recommended low-price route.
    case solana
    /// An EVM chain: its provider route refuses calls under $0.10
    /// (`PAYMENT_ROUTE_MINIMUM_NOT_MET`).
    case evm
}

/// One paid gateway request (seed 001): the 402's `relay_request_id`, the mock provider's
/// payment behind it, and the one request body (by SHA-256) it pays for.
public struct SimulatedRelayRequest: Sendable, Equatable {
    /// Where the payment and the request stand.
    public enum Status: String, Sendable, Equatable {
        /// The 402 was answered; the provider has not settled the payment.
        case awaitingSettlement = "awaiting_settlement"
        /// Settled; the request has not been forwarded yet.
        case settled
        /// Forwarded to the seller at least once (ledger written); replays with the same
        /// body are forwarded again.
        case forwarded
    }

    /// `relay_…`, sent back as `X-Crochet-Relay-Request-Id`.
    public var relayRequestID: String
    /// The mock provider's `pay_…`.
    public var paymentID: String
    public var listingID: String
    /// Lowercase hex SHA-256 of the request body: the only trace of the body kept.
    public var bodySHA256: String
    /// The price when the 402 was answered.
    public var amountMicroUSD: Int
    /// `USDC`, `ETH` or `SOL`.
    public var currency: String
    /// `792703809` (Solana, as the Relay provider numbers it) or an EVM chain id.
    public var chainID: String
    public var route: SimulatedPaymentRoute
    /// `X-Crochet-Origin-Wallet-Id`, when the buyer chose a wallet.
    public var walletID: String?
    public var status: Status
    /// Calls made to the seller's endpoint for it.
    public var forwards: Int
    /// The seller's last answer status; 0 when it gave none (refused, timed out); nil
    /// before the first forward.
    public var lastSellerStatus: Int?
    public var createdAt: Date
    public var settledAt: Date?
    /// A call to the seller is under way; another retry meanwhile answers 202.
    var inFlight: Bool
    /// The API key that asked for it; only that key may retry with it.
    var payerKey: String
}

/// One ledger entry: a settled gateway charge split into the 4.9 % marketplace fee and the
/// seller's 95.1 %, in micro-dollars (fee + seller = gross).
public struct SimulatedLedgerEntry: Sendable, Equatable {
    public var relayRequestID: String
    public var listingID: String
    public var sellerID: String
    public var grossMicroUSD: Int
    public var feeMicroUSD: Int
    public var sellerMicroUSD: Int
    public var currency: String
    public var route: SimulatedPaymentRoute
    /// The paid-for request body's SHA-256.
    public var bodySHA256: String
    /// The seller's answer to the first forward (0: none).
    public var sellerStatus: Int
    public var at: Date
}
