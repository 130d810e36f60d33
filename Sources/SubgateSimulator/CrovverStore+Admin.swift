import Foundation
import NIOHTTP1

/// The Crovver part of the admin API: keys, tenants, pools, add-ons and what was consumed.
extension CrovverStore {
    static let tenantFields = ["tenant_id", "plan", "pools"]
    static let poolFields = ["pool_key", "limit", "credits", "expires_at", "addons"]
    static let addonFields = ["pool_key", "credits", "expires_at"]
    static let keyFields = ["key"]

    /// `POST /_sim/tenants`: `{"tenant_id","plan"?,"pools":[pool…]}`; 201 with its state.
    mutating func adminCreateTenant(_ body: Data, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.tenantFields)
        let id = try AdminBody.requiredString(fields, "tenant_id")
        guard SimulatorName.isValid(id) else { throw AdminBody.badField("tenant_id", SimulatorName.rule) }
        guard case .array(let list)? = fields["pools"] else {
            throw AdminBody.badField("pools", "is required: a list of pools such as [{\"pool_key\":\"api_calls\",\"limit\":\"hard\",\"credits\":1000}]")
        }
        var pools: [SimulatedCreditPool] = []
        for item in list {
            pools.append(try Self.pool(from: item))
        }
        let tenant = SimulatedTenant(tenantID: id, plan: try AdminBody.string(fields, "plan", default: "default"), pools: pools)
        do throws(SetupProblem) {
            try self.createTenant(tenant)
        } catch {
            throw Self.response(for: error, tenantID: id)
        }
        return SimulatorResponse(.created, tenant.adminState(now: now, events: []))
    }

    /// `POST /_sim/tenants/<id>/pools`: one pool; 201 with the tenant's state.
    mutating func adminAddPool(tenantID: String, _ body: Data, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let json = body.isEmpty ? JSONValue.object([]) : (JSONValue.parse(body) ?? .null)
        let pool = try Self.pool(from: json)
        do throws(SetupProblem) {
            try self.addPool(tenantID: tenantID, pool)
        } catch {
            throw Self.response(for: error, tenantID: tenantID)
        }
        return SimulatorResponse(.created, try self.existingTenant(tenantID).adminState(now: now, events: self.events(tenantID: tenantID)))
    }

    /// `POST /_sim/tenants/<id>/addons`: `{"pool_key","credits","expires_at"?}`; 201 with the
    /// tenant's state.
    mutating func adminAddAddon(tenantID: String, _ body: Data, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.addonFields)
        let poolKey = try AdminBody.requiredString(fields, "pool_key")
        guard let credits = try AdminBody.optionalInt(fields, "credits", in: 0...Self.maxAmount) else {
            throw AdminBody.badField("credits", "is required: an integer between 0 and \(Self.maxAmount)")
        }
        let expiresAt = try AdminBody.optionalDate(fields, "expires_at")
        do throws(SetupProblem) {
            _ = try self.addAddon(tenantID: tenantID, poolKey: poolKey, credits: credits, expiresAt: expiresAt)
        } catch {
            throw Self.response(for: error, tenantID: tenantID)
        }
        return SimulatorResponse(.created, try self.existingTenant(tenantID).adminState(now: now, events: self.events(tenantID: tenantID)))
    }

    /// `POST /_sim/crovver-keys`: `{"key":"sk_live_…"}` (or any service key); 201.
    mutating func adminAddKey(_ body: Data) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.keyFields)
        let key = try AdminBody.requiredString(fields, "key")
        guard key.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw AdminBody.badField("key", "must be visible ASCII without spaces")
        }
        self.addKey(key)
        return SimulatorResponse(.created, self.keysJSON)
    }

    var keysJSON: JSONValue {
        .object([("keys", .array(self.keys.sorted().map(JSONValue.string)))])
    }

    func existingTenant(_ id: String) throws(SimulatorResponse) -> SimulatedTenant {
        guard let tenant = self.tenants[id] else {
            throw .error(.notFound, "NOT_FOUND", "No tenant with tenant_id \(id).")
        }
        return tenant
    }

    func tenantsJSON(now: Date) -> JSONValue {
        .object([
            ("tenants", .array(self.tenants.values.sorted { $0.tenantID < $1.tenantID }.map { $0.adminState(now: now, events: nil) }))
        ])
    }

    /// A pool from the admin API's form:
    /// `{"pool_key","limit":"hard"|"soft","credits","expires_at"?,"addons":[{"credits","expires_at"?}]?}`.
    static func pool(from json: JSONValue) throws(SimulatorResponse) -> SimulatedCreditPool {
        let fields = try AdminBody.members(json, allowed: Self.poolFields, of: "A pool")
        let key = try AdminBody.requiredString(fields, "pool_key")
        guard SimulatorName.isValid(key) else { throw AdminBody.badField("pool_key", SimulatorName.rule) }
        let limitName = try AdminBody.string(fields, "limit", default: SimulatedCreditLimit.hard.rawValue)
        guard let limit = SimulatedCreditLimit(rawValue: limitName) else { throw AdminBody.badField("limit", "must be hard or soft") }
        guard let credits = try AdminBody.optionalInt(fields, "credits", in: 0...Self.maxAmount) else {
            throw AdminBody.badField("credits", "is required: the plan's base credits, an integer between 0 and \(Self.maxAmount)")
        }
        var addons: [(credits: Int, expiresAt: Date?)] = []
        switch fields["addons"] {
        case nil, .null?: break
        case .array(let items)?:
            for item in items {
                let addon = try AdminBody.members(item, allowed: ["credits", "expires_at"], of: "An add-on")
                guard let addonCredits = try AdminBody.optionalInt(addon, "credits", in: 0...Self.maxAmount) else {
                    throw AdminBody.badField("credits", "of an add-on is required: an integer between 0 and \(Self.maxAmount)")
                }
                addons.append((addonCredits, try AdminBody.optionalDate(addon, "expires_at")))
            }
        default: throw AdminBody.badField("addons", "must be a list such as [{\"credits\":500,\"expires_at\":\"2026-06-01T00:00:00Z\"}]")
        }
        return SimulatedCreditPool(poolKey: key, limit: limit, credits: credits, expiresAt: try AdminBody.optionalDate(fields, "expires_at"), addons: addons)
    }

    static func response(for problem: SetupProblem, tenantID: String) -> SimulatorResponse {
        switch problem {
        case .tenantExists: .error(.conflict, "CONFLICT", "A tenant with tenant_id \(tenantID) already exists.")
        case .unknownTenant: .error(.notFound, "NOT_FOUND", "No tenant with tenant_id \(tenantID).")
        case .poolExists(let key): .error(.conflict, "CONFLICT", "Tenant \(tenantID) already has a pool \(key); pool keys are unique per tenant.")
        case .unknownPool(let key): .error(.notFound, "NOT_FOUND", "Tenant \(tenantID) has no pool \(key); add it with POST /_sim/tenants/\(tenantID)/pools.")
        case .credits: .error(.badRequest, "BAD_REQUEST", "Credits must be 0 or more.")
        }
    }
}

extension SimulatedTenant {
    /// The admin API's form: `credits` is each pool's balance at `now`; `events` are left
    /// out when nil (the tenant list).
    func adminState(now: Date, events: [SimulatedConsumeEvent]?) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("tenant_id", .string(self.tenantID)),
            ("plan", .string(self.plan)),
            ("credits", .object(self.pools.map { (key: $0.poolKey, value: .int($0.balance(at: now))) })),
            ("pools", .array(self.pools.map { $0.adminState(now: now) })),
        ]
        if let events {
            members.append(("events", .array(events.map(\.adminState))))
        }
        return .object(members)
    }
}

extension SimulatedCreditPool {
    func adminState(now: Date) -> JSONValue {
        .object([
            ("pool_key", .string(self.poolKey)),
            ("limit", .string(self.limit.rawValue)),
            ("balance", .int(self.balance(at: now))),
            ("overdraft", .int(self.overdraft)),
            (
                "grants",
                .array(
                    self.grants.map { grant in
                        .object([
                            ("grant_id", .string(grant.grantID)),
                            ("kind", .string(grant.kind.rawValue)),
                            ("credits", .int(grant.credits)),
                            ("remaining", .int(grant.remaining)),
                            ("expires_at", .stringOrNull(grant.expiresAt.map(ISO8601.format))),
                            ("expired", .bool(grant.isExpired(at: now))),
                        ])
                    }
                )
            ),
        ])
    }
}

extension SimulatedConsumeEvent {
    var adminState: JSONValue {
        .object([
            ("idempotency_key", .string(self.idempotencyKey)),
            ("tenant_id", .string(self.tenantID)),
            ("pool_key", .string(self.poolKey)),
            ("amount", .int(self.amount)),
            ("result", .string(self.result.rawValue)),
            ("remaining", .int(self.remaining)),
            ("deductions", .array(self.consumption.deductions.map { .object([("grant_id", .string($0.grantID)), ("credits", .int($0.credits))]) })),
            ("overdrawn", .int(self.consumption.overdrawn)),
            ("metadata", self.metadata.flatMap { JSONValue.parse(Data($0.utf8)) } ?? .null),
            ("at", .string(ISO8601.format(self.at))),
            ("replays", .int(self.replays)),
        ])
    }
}
