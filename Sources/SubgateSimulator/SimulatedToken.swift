import Foundation

/// A subscription token as the simulated control plane stores it: only its hash, never
/// the raw `cro_sub_…` value.
public struct SimulatedToken: Sendable, Equatable {
    /// Lowercase hex SHA-256 of the raw token; the store's key.
    public var hash: String
    /// `tok_…`, answered by `tokens/usage` as `token_id`.
    public var tokenID: String
    /// The `am_k_…` key of the seller whose listing this token is for.
    public var sellerKey: String
    /// `lst_…`.
    public var listingID: String
    /// `usr_…`.
    public var subscriberID: String
    /// Units accepted so far.
    public var usageCount: Int
    /// nil: unlimited.
    public var usageLimit: Int?
    /// nil: never expires by date.
    public var expiresAt: Date?
    /// `active`, `expired` (past `expiresAt` or usage limit reached) or `revoked` (rotated).
    public var status: String

    /// Units left; nil when unlimited. Never negative, even when a report overshot the limit.
    public var remaining: Int? {
        self.usageLimit.map { max(0, $0 - self.usageCount) }
    }

    public init(
        hash: String,
        tokenID: String,
        sellerKey: String,
        listingID: String,
        subscriberID: String,
        usageCount: Int,
        usageLimit: Int?,
        expiresAt: Date?,
        status: String
    ) {
        self.hash = hash
        self.tokenID = tokenID
        self.sellerKey = sellerKey
        self.listingID = listingID
        self.subscriberID = subscriberID
        self.usageCount = usageCount
        self.usageLimit = usageLimit
        self.expiresAt = expiresAt
        self.status = status
    }
}

extension SimulatedToken {
    /// The seed's three states (section 4, "Token Lifecycle").
    public static let active = "active"
    public static let expired = "expired"
    public static let revoked = "revoked"
    static let statuses: Set<String> = [active, expired, revoked]

    /// An active token past its date becomes expired (the seed: "Past expiration date").
    /// A revoked token stays revoked.
    mutating func applyDateExpiry(now: Date) {
        if self.status == Self.active, let expiresAt = self.expiresAt, expiresAt <= now {
            self.status = Self.expired
        }
    }

    // MARK: - JSON shapes

    /// `data` of a valid `tokens/verify` answer, the seed's fields in the seed's order.
    var verifyData: JSONValue {
        .object(self.verifyMembers)
    }

    /// The members of `verifyData`, for answers that add to them (rotate).
    var verifyMembers: [(key: String, value: JSONValue)] {
        [
            ("listing_id", .string(self.listingID)),
            ("status", .string(self.status)),
            ("usage_count", .int(self.usageCount)),
            ("usage_limit", .intOrNull(self.usageLimit)),
            ("remaining", .intOrNull(self.remaining)),
            ("expires_at", .stringOrNull(self.expiresAt.map(ISO8601.format))),
            ("subscriber_id", .string(self.subscriberID)),
        ]
    }

    /// `data` of a `tokens/usage` answer.
    var usageData: JSONValue {
        .object([
            ("token_id", .string(self.tokenID)),
            ("usage_count", .int(self.usageCount)),
            ("usage_limit", .intOrNull(self.usageLimit)),
            ("remaining", .intOrNull(self.remaining)),
            ("status", .string(self.status)),
        ])
    }

    /// Everything, for the admin API; `extra` members come first (`token`).
    func adminState(prefix extra: [(key: String, value: JSONValue)] = []) -> JSONValue {
        .object(
            extra
                + [("token_hash", .string(self.hash)), ("token_id", .string(self.tokenID)), ("seller_key", .string(self.sellerKey))]
                + self.verifyMembers
        )
    }
}

/// The seed's timestamp form, `2026-04-17T00:00:00Z`.
enum ISO8601 {
    /// Whole seconds, UTC, `Z`.
    static func format(_ date: Date) -> String {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)).formatted(.iso8601)
    }

    /// Accepts an offset or `Z`, with or without fractional seconds.
    static func parse(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
