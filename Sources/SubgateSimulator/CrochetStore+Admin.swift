import Foundation
import NIOHTTP1

/// The admin API under `/_sim` (no authentication: the simulator is a loopback tool).
/// Every body is JSON; an empty body is `{}`; an unknown field is a 400, so a typo never
/// silently falls back to a default.
extension CrochetStore {
    /// Fields `POST /_sim/tokens` accepts.
    static let tokenFields = ["seller_key", "listing_id", "subscriber_id", "usage_limit", "usage_count", "expires_at", "status"]
    /// Fields `POST /_sim/faults` accepts.
    static let faultFields = ["endpoint", "status", "retry_after", "latency_ms", "drop", "times"]

    mutating func admin(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        let parts = request.path.split(separator: "/").dropFirst().map(String.init)
        do throws(SimulatorResponse) {
            switch (request.method, parts) {
            case (.GET, ["tokens"]):
                return SimulatorResponse(.ok, .object([("tokens", .array(self.allTokens(now: now).map { $0.adminState() }))]))
            case (.POST, ["tokens"]):
                return try self.adminCreateToken(request.body, now: now)
            case (.GET, let parts) where parts.count == 2 && parts[0] == "tokens":
                return SimulatorResponse(.ok, try self.existingToken(parts[1], now: now).adminState())
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tokens" && parts[2] == "revoke":
                _ = try self.existingToken(parts[1], now: now)
                return SimulatorResponse(.ok, self.revoke(hash: parts[1])?.adminState() ?? .null)
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tokens" && parts[2] == "rotate":
                _ = try self.existingToken(parts[1], now: now)
                guard let (raw, hash) = self.rotate(hash: parts[1], now: now), let token = self.tokens[hash] else {
                    throw .error(.badRequest, "BAD_REQUEST", "This token is already revoked; rotate the token that replaced it.")
                }
                return SimulatorResponse(.created, token.adminState(prefix: [("token", .string(raw))]))
            case (.GET, ["usage"]):
                return SimulatorResponse(.ok, self.usageJSON)
            case (.GET, ["calls"]):
                return SimulatorResponse(.ok, self.callsJSON(now: now))
            case (.GET, ["faults"]):
                return SimulatorResponse(.ok, .object([("faults", .array(self.faults.map(\.json)))]))
            case (.POST, ["faults"]):
                let fault = try Self.fault(from: request.body)
                self.injectFault(fault)
                return SimulatorResponse(.created, fault.json)
            case (.DELETE, ["faults"]):
                return SimulatorResponse(.ok, .object([("cleared", .int(self.clearFaults()))]))
            case (.POST, ["reset"]):
                self.reset(now: now)
                return SimulatorResponse(.ok, .object([("reset", .bool(true))]))
            default:
                throw .error(
                    .notFound,
                    "NOT_FOUND",
                    "No admin route \(request.method.rawValue) \(request.path). Routes: GET|POST /_sim/tokens, GET /_sim/tokens/<hash>, POST /_sim/tokens/<hash>/revoke|rotate, GET /_sim/usage, GET /_sim/calls, GET|POST|DELETE /_sim/faults, POST /_sim/reset."
                )
            }
        } catch {
            return error
        }
    }

    // MARK: - Routes

    private mutating func adminCreateToken(_ body: Data, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try Self.object(body, allowed: Self.tokenFields)
        let sellerKey = try Self.string(fields, "seller_key", default: Self.demoSellerKey)
        guard sellerKey.hasPrefix(Self.sellerKeyPrefix), sellerKey.count > Self.sellerKeyPrefix.count else {
            throw Self.badField("seller_key", "must start with am_k_")
        }
        let status = try Self.string(fields, "status", default: SimulatedToken.active)
        guard SimulatedToken.statuses.contains(status) else {
            throw Self.badField("status", "must be active, expired or revoked")
        }
        let expiresAt: Date?
        switch fields["expires_at"] {
        case nil, .null?: expiresAt = nil
        case .string(let text)?:
            guard let date = ISO8601.parse(text) else { throw Self.badField("expires_at", "must be an ISO-8601 time such as 2026-04-17T00:00:00Z, or null") }
            expiresAt = date
        default: throw Self.badField("expires_at", "must be an ISO-8601 time such as 2026-04-17T00:00:00Z, or null")
        }
        let usageLimit: Int?
        switch fields["usage_limit"] {
        case nil: usageLimit = 100
        case .null?: usageLimit = nil
        case .int(let limit)? where limit >= 0: usageLimit = limit
        default: throw Self.badField("usage_limit", "must be an integer ≥ 0, or null for unlimited")
        }
        let usageCount: Int
        switch fields["usage_count"] {
        case nil: usageCount = 0
        case .int(let count)? where count >= 0: usageCount = count
        default: throw Self.badField("usage_count", "must be an integer ≥ 0")
        }
        let (raw, hash) = self.createToken(
            sellerKey: sellerKey,
            listingID: try Self.string(fields, "listing_id", default: "lst_demo"),
            subscriberID: try Self.string(fields, "subscriber_id", default: "usr_demo"),
            usageLimit: usageLimit,
            usageCount: usageCount,
            expiresAt: expiresAt,
            status: status
        )
        let token = try self.existingToken(hash, now: now)
        return SimulatorResponse(.created, token.adminState(prefix: [("token", .string(raw))]))
    }

    private mutating func existingToken(_ hash: String, now: Date) throws(SimulatorResponse) -> SimulatedToken {
        guard let token = self.token(hash: hash, now: now) else {
            throw .error(.notFound, "NOT_FOUND", "No token with hash \(hash).")
        }
        return token
    }

    /// `{"reports":[{"token_hash","count","status"}…],"totals":{"<hash>":units accepted}}`.
    var usageJSON: JSONValue {
        .object([
            (
                "reports",
                .array(
                    self.usageReports.map { report in
                        .object([("token_hash", .string(report.tokenHash)), ("count", .int(report.count)), ("status", .int(report.status))])
                    }
                )
            ),
            ("totals", .object(self.acceptedUnits.sorted { $0.key < $1.key }.map { (key: $0.key, value: .int($0.value)) })),
        ])
    }

    /// `{"verify":{"total","max_per_minute","per_minute":[…]},"usage":{…},"rotate":{…}}`.
    func callsJSON(now: Date) -> JSONValue {
        .object(
            SimulatedEndpoint.allCases.map { endpoint in
                let log = self.callLog(endpoint)
                return (
                    key: endpoint.rawValue,
                    value: .object([
                        ("total", .int(log.total)),
                        ("max_per_minute", .int(log.maxPerMinute)),
                        ("per_minute", .array(log.perMinute(upTo: now, since: self.startedAt).map(JSONValue.int))),
                    ])
                )
            }
        )
    }

    /// A fault from `POST /_sim/faults`.
    static func fault(from body: Data) throws(SimulatorResponse) -> SimulatedFault {
        let fields = try Self.object(body, allowed: Self.faultFields)
        var fault = SimulatedFault()
        switch fields["endpoint"] {
        case .string("all")?: fault.endpoint = nil
        case .string(let name)? where SimulatedEndpoint(rawValue: name) != nil: fault.endpoint = SimulatedEndpoint(rawValue: name)
        default: throw Self.badField("endpoint", "is required: verify, usage, rotate or all")
        }
        fault.status = try Self.optionalInt(fields, "status", in: 400...599)
        fault.retryAfter = try Self.optionalInt(fields, "retry_after", in: 0...86_400)
        fault.latency = try Self.optionalInt(fields, "latency_ms", in: 0...600_000).map { .milliseconds($0) }
        fault.times = try Self.optionalInt(fields, "times", in: 1...Int.max)
        switch fields["drop"] {
        case nil, .null?: fault.drop = false
        case .bool(let drop)?: fault.drop = drop
        default: throw Self.badField("drop", "must be true or false")
        }
        if fault.retryAfter != nil && fault.status == nil {
            throw Self.badField("retry_after", "goes with a status (429 or 5xx)")
        }
        if fault.status == nil && fault.latency == nil && !fault.drop {
            throw .error(.badRequest, "BAD_REQUEST", "A fault needs at least one of status, latency_ms or drop.")
        }
        return fault
    }

    // MARK: - Body fields

    /// The members of a JSON object body (an empty body is `{}`); unknown names are a 400.
    static func object(_ body: Data, allowed: [String]) throws(SimulatorResponse) -> [String: JSONValue] {
        let json = body.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) ? .object([]) : JSONValue.parse(body)
        guard case .object(let members)? = json else {
            throw .error(.badRequest, "BAD_REQUEST", "The body must be a JSON object (or empty).")
        }
        var fields: [String: JSONValue] = [:]
        for member in members {
            guard allowed.contains(member.key) else {
                throw .error(.badRequest, "BAD_REQUEST", "Unknown field \(member.key); the fields are \(allowed.joined(separator: ", ")).")
            }
            fields[member.key] = member.value
        }
        return fields
    }

    static func string(_ fields: [String: JSONValue], _ name: String, default value: String) throws(SimulatorResponse) -> String {
        switch fields[name] {
        case nil: return value
        case .string(let text)? where !text.isEmpty: return text
        default: throw Self.badField(name, "must be a non-empty string")
        }
    }

    static func optionalInt(_ fields: [String: JSONValue], _ name: String, in range: ClosedRange<Int>) throws(SimulatorResponse) -> Int? {
        switch fields[name] {
        case nil, .null?: return nil
        case .int(let value)? where range.contains(value): return value
        default:
            let rule = range.upperBound == Int.max
                ? "must be an integer ≥ \(range.lowerBound)"
                : "must be an integer between \(range.lowerBound) and \(range.upperBound)"
            throw Self.badField(name, rule)
        }
    }

    static func badField(_ name: String, _ rule: String) -> SimulatorResponse {
        .error(.badRequest, "BAD_REQUEST", "\(name) \(rule).")
    }
}

extension SimulatedFault {
    /// The admin API's form.
    var json: JSONValue {
        .object([
            ("endpoint", .string(self.endpoint?.rawValue ?? "all")),
            ("status", .intOrNull(self.status)),
            ("retry_after", .intOrNull(self.retryAfter)),
            ("latency_ms", .intOrNull(self.latency.map { Int($0.components.seconds) * 1000 + Int($0.components.attoseconds / 1_000_000_000_000_000) })),
            ("drop", .bool(self.drop)),
            ("times", .intOrNull(self.times)),
        ])
    }
}
