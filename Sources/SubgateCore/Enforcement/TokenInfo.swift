import Foundation

/// What a `{valid:true}` verify (or a usage report's answer) says about a token (seed 000).
public struct TokenInfo: Sendable, Equatable {
    public var listingID: String
    public var subscriberID: String
    /// `active`, `expired` or `revoked` (kept as text: a status Subgate does not know is not `active`).
    public var status: String
    public var usageCount: Int?
    /// `nil` is unlimited.
    public var usageLimit: Int?
    /// `nil` is unlimited.
    public var remaining: Int?
    public var expiresAt: Date?

    public init(
        listingID: String,
        subscriberID: String,
        status: String,
        usageCount: Int?,
        usageLimit: Int?,
        remaining: Int?,
        expiresAt: Date?
    ) {
        self.listingID = listingID
        self.subscriberID = subscriberID
        self.status = status
        self.usageCount = usageCount
        self.usageLimit = usageLimit
        self.remaining = remaining
        self.expiresAt = expiresAt
    }
}

/// The answer to `POST /subscriptions/tokens/verify`, reduced to what decides a request.
public enum VerifyOutcome: Sendable, Equatable {
    /// `{valid:true, data:{…}}`.
    case valid(TokenInfo)
    /// Definitive: `{valid:false}`, or 403/404 for the hash. The only failure that is cached.
    case invalid
    /// 401: the seller key is wrong. Nothing about the token is known.
    case unauthorized
    /// Not definitive: timeout, connection error, 5xx, 429 (with its `Retry-After`), garbage.
    case failed(reason: String, retryAfter: Duration?)
}

/// The answer to `POST /subscriptions/tokens/usage` (SPEC §4).
public enum UsageOutcome: Sendable, Equatable {
    /// Accepted; the answer refreshes the cache for free. `info` carries only the fields the
    /// usage answer has (count, limit, remaining, status).
    case accepted(usageCount: Int?, usageLimit: Int?, remaining: Int?, status: String?)
    /// 404 / 403 / 400: these units can never be billed.
    case rejected(status: Int)
    /// 401: the seller key is wrong; units are kept.
    case unauthorized
    /// 429: pause the endpoint until `retryAfter` has passed; units are kept.
    case rateLimited(retryAfter: Duration?)
    /// 5xx or a connection error before the request was sent: retry with back-off.
    case failed(reason: String)
    /// The request went out but no answer came (timeout, reset after sending): the control
    /// plane may have counted the units. They are retried and counted as ambiguous.
    case unknown(reason: String)
}
