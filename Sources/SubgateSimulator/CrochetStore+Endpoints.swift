import Foundation
import NIOHTTP1

/// Thrown inside the store to answer a call early (401, 429, 400, …).
extension SimulatorResponse: Error {}

extension CrochetStore {
    // MARK: - POST /subscriptions/tokens/verify

    /// `{"token_hash"}` → `{"valid":true,"data":{…}}`, or a bare `{"valid":false}` for a hash
    /// that is unknown, revoked, expired (by date or usage) or another seller's: verify never
    /// tells which (the seed: "so you can't enumerate other sellers' tokens"), so the seed
    /// table's 403 FORBIDDEN is not used here; `tokens/usage` answers it.
    mutating func verify(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        do throws(SimulatorResponse) {
            let seller = try self.authenticate(request.authorization)
            try self.spendBudget(.verify, owner: seller, now: now)
            let hash = try Self.tokenHash(in: JSONValue.parse(request.body))
            guard let token = self.token(hash: hash, now: now), token.sellerKey == seller,
                token.status == SimulatedToken.active
            else {
                return SimulatorResponse(.ok, .object([("valid", .bool(false))]))
            }
            return SimulatorResponse(.ok, .object([("valid", .bool(true)), ("data", token.verifyData)]))
        } catch {
            return error
        }
    }

    // MARK: - POST /subscriptions/tokens/usage

    /// `{"token_hash","count"}` → `{"success":true,"data":{…}}`: the count is added at once
    /// and, when `usage_count` reaches `usage_limit`, the token becomes `expired`.
    ///
    /// Answers, in this order: 401 UNAUTHORIZED (no or unknown seller key); 429 RATE_LIMITED;
    /// 400 BAD_REQUEST (not a JSON object, `token_hash` missing or empty, `count` not an
    /// integer in 1…1000); 404 NOT_FOUND (unknown hash); 403 FORBIDDEN (another seller's
    /// token); 403 FORBIDDEN for a token that is `expired` or `revoked`, or active with
    /// nothing remaining: the seed's lifecycle table rejects those states with 403 and says
    /// usage reports on an exhausted token "will fail"; the units can never be billed.
    /// A report larger than what remains is accepted whole (the increment is atomic) and
    /// `remaining` then stays at 0.
    mutating func reportUsage(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        let json = JSONValue.parse(request.body)
        let response: SimulatorResponse
        do throws(SimulatorResponse) {
            response = try self.applyUsage(json, authorization: request.authorization, now: now)
        } catch {
            response = error
        }
        self.recordUsageReport(json, status: Int(response.status.code))
        return response
    }

    private mutating func applyUsage(_ json: JSONValue?, authorization: String?, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let seller = try self.authenticate(authorization)
        try self.spendBudget(.usage, owner: seller, now: now)
        let hash = try Self.tokenHash(in: json)
        guard let count = json?["count"]?.intValue, (1...1000).contains(count) else {
            throw .error(.badRequest, "BAD_REQUEST", "count is required and must be an integer between 1 and 1000")
        }
        guard var token = self.token(hash: hash, now: now) else {
            throw .error(.notFound, "NOT_FOUND", "Token hash not found; it may be misformatted or the subscription was cancelled.")
        }
        guard token.sellerKey == seller else {
            throw .error(.forbidden, "FORBIDDEN", "This token belongs to a different seller's listing; you can only report usage for your own listings.")
        }
        switch token.status {
        case SimulatedToken.active where token.remaining != 0:
            break
        case SimulatedToken.active:
            throw .error(.forbidden, "FORBIDDEN", "This token has no usage remaining; the subscriber must upgrade or renew.")
        case SimulatedToken.revoked:
            throw .error(.forbidden, "FORBIDDEN", "This token was revoked (the buyer rotated it); usage can no longer be reported on it.")
        default:
            throw .error(.forbidden, "FORBIDDEN", "This token is \(token.status) (past its expiry date or usage limit); usage can no longer be reported on it.")
        }
        token.usageCount += count
        if let limit = token.usageLimit, token.usageCount >= limit {
            token.status = SimulatedToken.expired
        }
        self.save(token)
        return .success(token.usageData)
    }

    // MARK: - POST /subscriptions/tokens/rotate

    /// The buyer's rotation, authenticated by the current raw token:
    /// `Authorization: Bearer cro_sub_…` (no body needed). The old token becomes `revoked`;
    /// the answer carries the new raw token (shown only this once) with the same listing,
    /// subscriber, limit, usage, expiry and status. 401 UNAUTHORIZED for a missing, unknown
    /// or already revoked token; 429 RATE_LIMITED past 10 rotations a minute per subscriber.
    mutating func rotate(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        do throws(SimulatorResponse) {
            guard let raw = Self.bearer(request.authorization), raw.hasPrefix(RawToken.prefix) else {
                throw .error(.unauthorized, "UNAUTHORIZED", "Rotation is done by the buyer: send the current token as 'Authorization: Bearer cro_sub_…'.")
            }
            let oldHash = RawToken.hash(raw)
            guard let old = self.token(hash: oldHash, now: now), old.status != SimulatedToken.revoked else {
                throw .error(.unauthorized, "UNAUTHORIZED", "This subscription token is unknown or was already rotated; use the token that replaced it.")
            }
            try self.spendBudget(.rotate, owner: old.subscriberID, now: now)
            guard let (newRaw, newHash) = self.rotate(hash: oldHash, now: now), let new = self.tokens[newHash] else {
                throw .error(.internalServerError, "INTERNAL_ERROR", "The rotation could not be completed; retry.")
            }
            return .success(
                .object(
                    [("token", .string(newRaw)), ("token_hash", .string(newHash)), ("token_id", .string(new.tokenID))]
                        + new.verifyMembers
                        + [("revoked_token_hash", .string(oldHash))]
                )
            )
        } catch {
            return error
        }
    }

    // MARK: - Shared checks

    /// The seller key of `Authorization: Bearer am_k_…`, when this control plane knows it.
    func authenticate(_ authorization: String?) throws(SimulatorResponse) -> String {
        guard let key = Self.bearer(authorization), key.hasPrefix(Self.sellerKeyPrefix) else {
            throw .error(.unauthorized, "UNAUTHORIZED", "Missing API key: send 'Authorization: Bearer am_k_…' with your seller key.")
        }
        guard self.sellers[key] != nil else {
            throw .error(.unauthorized, "UNAUTHORIZED", "Invalid API key: no seller has this am_k_… key.")
        }
        return key
    }

    /// Uses one call of the budget, or throws 429 with `Retry-After`.
    mutating func spendBudget(_ endpoint: SimulatedEndpoint, owner: String, now: Date) throws(SimulatorResponse) {
        if case .limited(let retryAfter) = self.admit(endpoint, owner: owner, now: now) {
            let limit = endpoint == .rotate ? self.rotatePerMinute : self.ratePerMinute
            throw .error(
                .tooManyRequests,
                "RATE_LIMITED",
                "Over \(limit) requests/minute on \(endpoint.rawValue); retry after \(retryAfter) s, and cache verdicts or batch usage reports.",
                headers: [("Retry-After", String(retryAfter))]
            )
        }
    }

    /// A non-empty string `token_hash`, or the seed's own 400 message.
    static func tokenHash(in json: JSONValue?) throws(SimulatorResponse) -> String {
        guard case .object = json else {
            throw .error(.badRequest, "BAD_REQUEST", "The body must be a JSON object such as {\"token_hash\":\"…\"}.")
        }
        guard let hash = json?["token_hash"]?.stringValue, !hash.isEmpty else {
            throw .error(.badRequest, "BAD_REQUEST", "token_hash is required and must be a non-empty string")
        }
        return hash
    }

    /// The credentials of `Authorization: Bearer <credentials>` (scheme case-insensitive).
    static func bearer(_ authorization: String?) -> String? {
        guard let authorization else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let credentials = parts[1].trimmingCharacters(in: .whitespaces)
        return credentials.isEmpty ? nil : credentials
    }

    /// Records a `tokens/usage` call from its (maybe invalid) body.
    mutating func recordUsageReport(_ json: JSONValue?, status: Int) {
        self.recordUsageReport(
            tokenHash: json?["token_hash"]?.stringValue ?? "",
            count: json?["count"]?.intValue ?? 0,
            status: status
        )
    }
}
