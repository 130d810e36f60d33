/// Subgate's enforcement answers (SPEC §3 step 5; codes from seed 000's recommended table).
extension ProxyRejection {
    /// 401: no token, an empty one, or one without `token_prefix`.
    public static let missingToken = ProxyRejection(
        status: .unauthorized,
        code: "MISSING_TOKEN",
        message: "A subscription token is required in the x-subscription-token header."
    )

    /// 400: the token header appears more than once.
    public static let duplicateToken = ProxyRejection(
        status: .badRequest,
        code: "BAD_REQUEST",
        message: "The subscription token header appears more than once; send exactly one."
    )

    /// 403: unknown, rotated or revoked token.
    public static let tokenInvalid = ProxyRejection(
        status: .forbidden,
        code: "TOKEN_INVALID",
        message: "Subscription token is not valid. It may have been rotated or cancelled."
    )

    /// 403: past `expires_at`, or expired by the control plane with units left.
    public static let tokenExpired = ProxyRejection(
        status: .forbidden,
        code: "TOKEN_EXPIRED",
        message: "Subscription token has expired. The subscriber must renew."
    )

    /// 429: nothing remaining.
    public static let usageLimitReached = ProxyRejection(
        status: .tooManyRequests,
        code: "USAGE_LIMIT_REACHED",
        message: "Usage limit exhausted. Subscriber must upgrade or renew."
    )

    /// 503: no usable verdict while the control plane fails and `fail_mode = closed`.
    public static func verificationUnavailable(retryAfterSeconds: Int) -> ProxyRejection {
        ProxyRejection(
            status: .serviceUnavailable,
            code: "VERIFICATION_UNAVAILABLE",
            message: "The subscription could not be verified right now; retry after the indicated delay.",
            extraHeaders: [("retry-after", String(max(1, retryAfterSeconds)))]
        )
    }

    /// 503: the usage journal cannot be written and `fail_mode = closed`: a billable answer
    /// would not be durable, so none is served.
    public static let journalUnavailable = ProxyRejection(
        status: .serviceUnavailable,
        code: "USAGE_JOURNAL_UNAVAILABLE",
        message: "Usage cannot be recorded durably right now; retry shortly.",
        extraHeaders: [("retry-after", "5")]
    )
}
