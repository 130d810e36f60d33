/// The control-plane endpoints the simulator serves, by the name the admin API uses for
/// them (faults, call statistics).
public enum SimulatedEndpoint: String, Sendable, Hashable, CaseIterable {
    /// `POST /api/v1/subscriptions/tokens/verify` (seed 000).
    case verify
    /// `POST /api/v1/subscriptions/tokens/usage` (seed 000).
    case usage
    /// `POST /api/v1/subscriptions/tokens/rotate` (seed 000).
    case rotate
    /// `POST /api/public/credits/consume` (seed 002, Crovver).
    case consume
    /// `POST /api/v1/gateway/<listing id>` (seed 001, the pay-per-call gateway).
    case gateway

    /// The gateway's paths start with this; the listing id follows.
    static let gatewayPrefix = "/api/v1/gateway/"

    /// The path (for the gateway, the part before the listing id).
    var path: String {
        switch self {
        case .verify, .usage, .rotate: "/api/v1/subscriptions/tokens/\(self.rawValue)"
        case .consume: "/api/public/credits/consume"
        case .gateway: Self.gatewayPrefix
        }
    }

    /// How `--help`, error messages and the docs name its path.
    var pattern: String {
        self == .gateway ? Self.gatewayPrefix + ":listingId" : self.path
    }

    /// The endpoint whose path this is, if any: a gateway path needs a listing id and no
    /// further segment.
    init?(path: Substring) {
        if path.hasPrefix(Self.gatewayPrefix) {
            let listing = path.dropFirst(Self.gatewayPrefix.count)
            guard !listing.isEmpty, !listing.contains("/") else { return nil }
            self = .gateway
            return
        }
        guard let endpoint = Self.allCases.first(where: { $0 != .gateway && $0.path == path }) else { return nil }
        self = endpoint
    }
}
