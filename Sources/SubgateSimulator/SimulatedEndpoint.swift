/// The seller- and buyer-facing Crochet endpoints the simulator serves (seed 000), by the
/// name the admin API uses for them.
public enum SimulatedEndpoint: String, Sendable, Hashable, CaseIterable {
    /// `POST /api/v1/subscriptions/tokens/verify`.
    case verify
    /// `POST /api/v1/subscriptions/tokens/usage`.
    case usage
    /// `POST /api/v1/subscriptions/tokens/rotate`.
    case rotate

    /// The path under the API base, `/api/v1`.
    var path: String { "/api/v1/subscriptions/tokens/\(self.rawValue)" }

    /// The endpoint whose path this is, if any.
    init?(path: Substring) {
        guard let endpoint = Self.allCases.first(where: { $0.path == path }) else { return nil }
        self = endpoint
    }
}
