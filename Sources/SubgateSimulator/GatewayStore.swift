import SubgateCore
import Foundation

/// The simulated Crochet pay-per-call gateway (seed 001) as a plain value: listings, relay
/// requests with the mock provider's payments, and the ledger. Part of `SimulatorStore`;
/// every operation that depends on time takes `now`. Bodies are never kept, only their
/// SHA-256.
struct GatewayStore: Sendable {
    /// The marketplace fee in thousandths: 4.9 % (SubgateCore's, which Subgate's `/status` uses too).
    static let feePerMille = GatewayFee.feePerMille
    /// EVM provider routes refuse calls cheaper than this ($0.10).
    static let evmRouteMinimumMicroUSD = 100_000
    /// `retry_after_seconds` of a 202 while the payment is not settled.
    static let pendingRetryAfterSeconds = 2
    /// Solana's chain id as the Relay provider numbers it.
    static let solanaChainID = "792703809"

    /// By listing id.
    private(set) var listings: [String: SimulatedListing] = [:]
    /// By relay request id.
    private(set) var relays: [String: SimulatedRelayRequest] = [:]
    /// In the order written.
    private(set) var ledger: [SimulatedLedgerEntry] = []
    /// Relay request ids by payment id (the mock provider settles either).
    private var relayByPaymentID: [String: String] = [:]
    /// First answers to initial calls that carried an `Idempotency-Key`, by payer key and
    /// idempotency key.
    private var attempts: [AttemptKey: Attempt] = [:]

    /// An `Idempotency-Key` is scoped to the API key that sent it.
    struct AttemptKey: Hashable, Sendable {
        var payerKey: String
        var idempotencyKey: String
    }

    /// What an initial call with an `Idempotency-Key` came to.
    struct Attempt: Sendable {
        var listingID: String
        var bodySHA256: String
        var answer: SimulatorResponse
    }

    // MARK: - Listings

    enum ListingProblem: Error, Equatable {
        /// A listing with this id exists.
        case exists
        /// No seller with the listing's seller id.
        case unknownSeller
        /// Not above zero, or above `MicroDollars.maxPrice`.
        case price
        /// Not an `http(s)://host…` URL without query or fragment.
        case endpoint
    }

    /// Adds a listing for a known seller, with an `http(s)://host[:port][/path]` endpoint and a
    /// price above zero.
    mutating func createListing(_ listing: SimulatedListing, sellers: CrochetStore) throws(ListingProblem) {
        guard self.listings[listing.listingID] == nil else { throw .exists }
        guard sellers.seller(id: listing.sellerID) != nil else { throw .unknownSeller }
        guard listing.priceMicroUSD > 0, listing.priceMicroUSD <= MicroDollars.maxPrice else { throw .price }
        guard Self.isEndpoint(listing.endpoint) else { throw .endpoint }
        self.listings[listing.listingID] = listing
    }

    static func isEndpoint(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil
        else { return false }
        return true
    }

    // MARK: - The mock provider

    /// Settles the payment of a relay request, named by its relay request id or its
    /// payment id. Settling twice changes nothing. Nil when neither is known.
    mutating func settle(_ id: String, now: Date) -> SimulatedRelayRequest? {
        guard let relayID = self.relays[id] != nil ? id : self.relayByPaymentID[id], var relay = self.relays[relayID] else {
            return nil
        }
        if relay.status == .awaitingSettlement {
            relay.status = .settled
            relay.settledAt = now
            self.relays[relayID] = relay
        }
        return relay
    }

    // MARK: - Relay requests

    /// Opens a relay request with a payment awaiting settlement.
    mutating func openRelay(
        listing: SimulatedListing,
        payerKey: String,
        bodySHA256: String,
        route: (currency: String, chainID: String, route: SimulatedPaymentRoute),
        walletID: String?,
        now: Date
    ) -> SimulatedRelayRequest {
        let relay = SimulatedRelayRequest(
            relayRequestID: "relay_" + RawToken.randomHex(bytes: 12),
            paymentID: "pay_" + RawToken.randomHex(bytes: 12),
            listingID: listing.listingID,
            bodySHA256: bodySHA256,
            amountMicroUSD: listing.priceMicroUSD,
            currency: route.currency,
            chainID: route.chainID,
            route: route.route,
            walletID: walletID,
            status: .awaitingSettlement,
            forwards: 0,
            lastSellerStatus: nil,
            createdAt: now,
            settledAt: nil,
            inFlight: false,
            payerKey: payerKey
        )
        self.relays[relay.relayRequestID] = relay
        self.relayByPaymentID[relay.paymentID] = relay.relayRequestID
        return relay
    }

    func attempt(_ key: AttemptKey) -> Attempt? {
        self.attempts[key]
    }

    mutating func record(_ attempt: Attempt, under key: AttemptKey) {
        self.attempts[key] = attempt
    }

    mutating func save(_ relay: SimulatedRelayRequest) {
        self.relays[relay.relayRequestID] = relay
    }

    /// A forward's outcome: the relay request leaves flight, and its first forward writes
    /// the ledger entry (the provider's settlement is final whatever the seller answers).
    mutating func recordForward(_ relayID: String, sellerStatus: Int, now: Date) -> SimulatedRelayRequest? {
        guard var relay = self.relays[relayID] else { return nil }
        relay.inFlight = false
        relay.forwards += 1
        relay.lastSellerStatus = sellerStatus
        if relay.status == .settled {
            relay.status = .forwarded
            let listing = self.listings[relay.listingID]
            let split = MicroDollars.split(relay.amountMicroUSD, feePerMille: Self.feePerMille)
            self.ledger.append(
                SimulatedLedgerEntry(
                    relayRequestID: relayID,
                    listingID: relay.listingID,
                    sellerID: listing?.sellerID ?? "",
                    grossMicroUSD: relay.amountMicroUSD,
                    feeMicroUSD: split.fee,
                    sellerMicroUSD: split.seller,
                    currency: relay.currency,
                    route: relay.route,
                    bodySHA256: relay.bodySHA256,
                    sellerStatus: sellerStatus,
                    at: now
                )
            )
        }
        self.relays[relayID] = relay
        return relay
    }

    /// The origin currency and chain a buyer asked for, and the route they select, or why
    /// they cannot be paid. No currency means USDC; no chain means the currency's usual one
    /// (SOL on Solana, ETH on Ethereum, USDC on Base); a chain id of `solana` or `792703809`
    /// is Solana, any other number an EVM chain.
    static func route(currency: String?, chainID: String?) -> Result<(currency: String, chainID: String, route: SimulatedPaymentRoute), RouteProblem> {
        let currency = (currency ?? "USDC").uppercased()
        guard ["USDC", "ETH", "SOL"].contains(currency) else {
            return .failure(RouteProblem(message: "X-Crochet-Origin-Currency must be USDC, ETH or SOL."))
        }
        guard let chainID else {
            switch currency {
            case "SOL": return .success((currency, Self.solanaChainID, .solana))
            case "ETH": return .success((currency, "1", .evm))
            default: return .success((currency, "8453", .evm))
            }
        }
        let isSolana = chainID.lowercased() == "solana" || chainID == Self.solanaChainID
        guard isSolana || (!chainID.isEmpty && chainID.count <= 20 && chainID.allSatisfy(\.isASCIIDigit)) else {
            return .failure(RouteProblem(message: "X-Crochet-Origin-Chain-Id must be an EVM chain id (a number such as 8453) or solana."))
        }
        if isSolana && currency == "ETH" {
            return .failure(RouteProblem(message: "ETH is not paid on Solana; choose SOL or USDC, or an EVM chain."))
        }
        if !isSolana && currency == "SOL" {
            return .failure(RouteProblem(message: "SOL is paid on Solana; leave X-Crochet-Origin-Chain-Id out or set it to solana."))
        }
        return .success((currency, isSolana ? Self.solanaChainID : chainID, isSolana ? .solana : .evm))
    }

    /// Why the origin currency and chain cannot be paid; `message` says what to send.
    struct RouteProblem: Error, Equatable {
        var message: String
    }
}
