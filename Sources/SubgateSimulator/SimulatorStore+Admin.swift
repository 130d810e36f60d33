import Foundation
import NIOHTTP1

/// The admin API under `/_sim` (no authentication: the simulator is a loopback tool).
/// Every body is JSON; an empty body is `{}`; an unknown field is a 400, so a typo never
/// silently falls back to a default. docs/simulator.md lists every route.
extension SimulatorStore {
    /// Fields `POST /_sim/faults` accepts.
    static let faultFields = ["endpoint", "status", "retry_after", "retry_after_date", "latency_ms", "drop", "hang", "drop_after_commit", "times"]

    /// Every route, for the 404 answer.
    static let adminRoutes = [
        "GET|POST /_sim/sellers",
        "GET|POST /_sim/tokens", "GET /_sim/tokens/<hash>", "POST /_sim/tokens/<hash>/revoke|rotate", "GET /_sim/usage",
        "GET|POST /_sim/listings", "GET /_sim/listings/<id>", "GET /_sim/relays", "GET /_sim/relays/<id>",
        "POST /_sim/payments/<relay or payment id>/settle", "GET /_sim/ledger",
        "GET|POST /_sim/tenants", "GET /_sim/tenants/<id>", "POST /_sim/tenants/<id>/pools|addons", "GET|POST /_sim/crovver-keys",
        "GET /_sim/calls", "GET|POST|DELETE /_sim/faults", "POST /_sim/reset",
    ]

    mutating func admin(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        let parts = request.path.split(separator: "/").dropFirst().map { String($0).removingPercentEncoding ?? String($0) }
        do throws(SimulatorResponse) {
            switch (request.method, parts) {
            // Crochet sellers and tokens (seed 000)
            case (.GET, ["sellers"]):
                return SimulatorResponse(.ok, self.crochet.sellersJSON)
            case (.POST, ["sellers"]):
                return try self.crochet.adminCreateSeller(request.body)
            case (.GET, ["tokens"]):
                return SimulatorResponse(.ok, .object([("tokens", .array(self.crochet.allTokens(now: now).map { $0.adminState() }))]))
            case (.POST, ["tokens"]):
                return try self.crochet.adminCreateToken(request.body, now: now)
            case (.GET, let parts) where parts.count == 2 && parts[0] == "tokens":
                return SimulatorResponse(.ok, try self.crochet.existingToken(parts[1], now: now).adminState())
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tokens" && parts[2] == "revoke":
                _ = try self.crochet.existingToken(parts[1], now: now)
                return SimulatorResponse(.ok, self.crochet.revoke(hash: parts[1])?.adminState() ?? .null)
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tokens" && parts[2] == "rotate":
                return try self.crochet.adminRotate(parts[1], now: now)
            case (.GET, ["usage"]):
                return SimulatorResponse(.ok, self.crochet.usageJSON)

            // The gateway (seed 001)
            case (.GET, ["listings"]):
                return SimulatorResponse(.ok, self.gateway.listingsJSON)
            case (.POST, ["listings"]):
                return try self.gateway.adminCreateListing(request.body, sellers: self.crochet)
            case (.GET, let parts) where parts.count == 2 && parts[0] == "listings":
                return SimulatorResponse(.ok, try self.gateway.existingListing(parts[1]).adminState)
            case (.GET, ["relays"]):
                return SimulatorResponse(.ok, self.gateway.relaysJSON)
            case (.GET, let parts) where parts.count == 2 && parts[0] == "relays":
                return SimulatorResponse(.ok, try self.gateway.existingRelay(parts[1]).adminState)
            case (.POST, let parts) where parts.count == 3 && parts[0] == "payments" && parts[2] == "settle":
                return SimulatorResponse(.ok, try self.gateway.adminSettle(parts[1], now: now).adminState)
            case (.GET, ["ledger"]):
                return SimulatorResponse(.ok, self.gateway.ledgerJSON)

            // Crovver (seed 002)
            case (.GET, ["tenants"]):
                return SimulatorResponse(.ok, self.crovver.tenantsJSON(now: now))
            case (.POST, ["tenants"]):
                return try self.crovver.adminCreateTenant(request.body, now: now)
            case (.GET, let parts) where parts.count == 2 && parts[0] == "tenants":
                return SimulatorResponse(.ok, try self.crovver.existingTenant(parts[1]).adminState(now: now, events: self.crovver.events(tenantID: parts[1])))
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tenants" && parts[2] == "pools":
                return try self.crovver.adminAddPool(tenantID: parts[1], request.body, now: now)
            case (.POST, let parts) where parts.count == 3 && parts[0] == "tenants" && parts[2] == "addons":
                return try self.crovver.adminAddAddon(tenantID: parts[1], request.body, now: now)
            case (.GET, ["crovver-keys"]):
                return SimulatorResponse(.ok, self.crovver.keysJSON)
            case (.POST, ["crovver-keys"]):
                return try self.crovver.adminAddKey(request.body)

            // Shared
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
                    "No admin route \(request.method.rawValue) \(request.path). Routes: \(Self.adminRoutes.joined(separator: ", "))."
                )
            }
        } catch {
            return error
        }
    }

    /// `{"verify":{"total","max_per_minute","per_minute":[…]},"usage":{…},…}`, every endpoint.
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
        let fields = try AdminBody.object(body, allowed: Self.faultFields)
        var fault = SimulatedFault()
        let names = SimulatedEndpoint.allCases.map(\.rawValue).joined(separator: ", ")
        switch fields["endpoint"] {
        case .string("all")?: fault.endpoint = nil
        case .string(let name)? where SimulatedEndpoint(rawValue: name) != nil: fault.endpoint = SimulatedEndpoint(rawValue: name)
        default: throw AdminBody.badField("endpoint", "is required: \(names) or all")
        }
        fault.status = try AdminBody.optionalInt(fields, "status", in: 400...599)
        fault.retryAfter = try AdminBody.optionalInt(fields, "retry_after", in: 0...86_400)
        fault.retryAfterAsDate = try AdminBody.bool(fields, "retry_after_date")
        fault.latency = try AdminBody.optionalInt(fields, "latency_ms", in: 0...600_000).map { .milliseconds($0) }
        fault.times = try AdminBody.optionalInt(fields, "times", in: 1...Int.max)
        fault.drop = try AdminBody.bool(fields, "drop")
        fault.hang = try AdminBody.bool(fields, "hang")
        fault.dropAfterCommit = try AdminBody.bool(fields, "drop_after_commit")
        if fault.retryAfter != nil && fault.status == nil {
            throw AdminBody.badField("retry_after", "goes with a status (429 or 5xx)")
        }
        if fault.retryAfterAsDate && fault.status == nil {
            throw AdminBody.badField("retry_after_date", "goes with a status (429 or 5xx)")
        }
        let kinds = [fault.status != nil, fault.drop, fault.hang, fault.dropAfterCommit].filter { $0 }.count
        if kinds > 1 {
            throw .error(.badRequest, "BAD_REQUEST", "A fault is one of status, drop, hang or drop_after_commit (each with an optional latency_ms); inject two faults for two behaviours.")
        }
        if kinds == 0 && fault.latency == nil {
            throw .error(.badRequest, "BAD_REQUEST", "A fault needs at least one of status, latency_ms, drop, hang or drop_after_commit.")
        }
        return fault
    }
}

extension SimulatedFault {
    /// The admin API's form.
    var json: JSONValue {
        .object([
            ("endpoint", .string(self.endpoint?.rawValue ?? "all")),
            ("status", .intOrNull(self.status)),
            ("retry_after", .intOrNull(self.retryAfter)),
            ("retry_after_date", .bool(self.retryAfterAsDate)),
            ("latency_ms", .intOrNull(self.latency.map { Int($0.components.seconds) * 1000 + Int($0.components.attoseconds / 1_000_000_000_000_000) })),
            ("drop", .bool(self.drop)),
            ("hang", .bool(self.hang)),
            ("drop_after_commit", .bool(self.dropAfterCommit)),
            ("times", .intOrNull(self.times)),
        ])
    }
}
