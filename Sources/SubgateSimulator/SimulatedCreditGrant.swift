import Foundation

/// Credits granted to one Crovver pool: the plan's base credits, or an add-on bought on
/// top of them. Consumption takes from grants in FIFO order (seed 002: "base credits
/// first, then add-on credits, earliest-expiry first").
public struct SimulatedCreditGrant: Sendable, Equatable {
    /// Where the credits come from.
    public enum Kind: String, Sendable, Equatable {
        /// The plan's own credits for the pool.
        case base
        /// Credits bought on top of the plan.
        case addon
    }

    /// `base`, or `addon_1`, `addon_2`, … in the order they were added to the pool.
    public var grantID: String
    public var kind: Kind
    /// Credits granted.
    public var credits: Int
    /// Credits not consumed yet.
    public var remaining: Int
    /// nil: never expires. At and after this time the grant's remaining credits are gone.
    public var expiresAt: Date?

    public init(grantID: String, kind: Kind, credits: Int, remaining: Int? = nil, expiresAt: Date? = nil) {
        self.grantID = grantID
        self.kind = kind
        self.credits = credits
        self.remaining = remaining ?? credits
        self.expiresAt = expiresAt
    }

    /// Whether its credits are gone at `now` because of its date.
    public func isExpired(at now: Date) -> Bool {
        self.expiresAt.map { $0 <= now } ?? false
    }
}
