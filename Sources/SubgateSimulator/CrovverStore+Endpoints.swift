import Foundation
import NIOHTTP1

extension CrovverStore {
    // MARK: - POST /api/public/credits/consume

    /// `{"tenantId","poolKey","amount","idempotencyKey","metadata"?}` →
    /// `{"success":true,"data":{"result","remaining","alreadyProcessed","poolKey"}}` (200 for
    /// every result, `blocked` included).
    ///
    /// Answers, in this order: 401 UNAUTHORIZED (no accepted key); 400 BAD_REQUEST (not a
    /// JSON object, a field missing or of the wrong type, `amount` not an integer in
    /// 1…1000000000, `metadata` not an object); then a repeated `idempotencyKey` answers its
    /// first result with `alreadyProcessed: true`; 404 TENANT_NOT_FOUND; 404 POOL_NOT_FOUND
    /// (the pool is not on the tenant's plan).
    mutating func consume(_ request: SimulatorRequest, now: Date) -> SimulatorResponse {
        do throws(SimulatorResponse) {
            try self.authenticate(request)
            guard let json = JSONValue.parse(request.body), case .object = json else {
                throw .error(.badRequest, "BAD_REQUEST", "The body must be a JSON object such as {\"tenantId\":\"workspace_123\",\"poolKey\":\"api_calls\",\"amount\":1,\"idempotencyKey\":\"…\"}.")
            }
            let tenantID = try Self.requiredString(json, "tenantId")
            let poolKey = try Self.requiredString(json, "poolKey")
            guard let amount = json["amount"]?.intValue, (1...Self.maxAmount).contains(amount) else {
                throw .error(.badRequest, "BAD_REQUEST", "amount is required and must be a positive integer (at most \(Self.maxAmount))")
            }
            let key = try Self.requiredString(json, "idempotencyKey")
            guard key.count <= Self.maxIdempotencyKeyLength else {
                throw .error(.badRequest, "BAD_REQUEST", "idempotencyKey must be at most \(Self.maxIdempotencyKeyLength) characters")
            }
            let metadata: String?
            switch json["metadata"] {
            case nil, .null?: metadata = nil
            case .object(let members)?: metadata = JSONValue.object(members).rendered
            default: throw .error(.badRequest, "BAD_REQUEST", "metadata must be an object, such as {\"endpoint\":\"/api/export\"}")
            }
            let outcome: ConsumeOutcome
            do throws(ConsumeProblem) {
                outcome = try self.consume(tenantID: tenantID, poolKey: poolKey, amount: amount, idempotencyKey: key, metadata: metadata, now: now)
            } catch .unknownTenant {
                throw .error(.notFound, "TENANT_NOT_FOUND", "No tenant with tenantId \(tenantID); create it first.")
            } catch {
                throw .error(.notFound, "POOL_NOT_FOUND", "The active plan of tenant \(tenantID) has no pool \(poolKey); poolKey must match a pool on the plan.")
            }
            switch outcome {
            case .processed(let event): return .success(Self.data(event, alreadyProcessed: false))
            case .alreadyProcessed(let event): return .success(Self.data(event, alreadyProcessed: true))
            }
        } catch {
            return error
        }
    }

    /// The seed's `data`, its fields in the seed's order.
    static func data(_ event: SimulatedConsumeEvent, alreadyProcessed: Bool) -> JSONValue {
        .object([
            ("result", .string(event.result.rawValue)),
            ("remaining", .int(event.remaining)),
            ("alreadyProcessed", .bool(alreadyProcessed)),
            ("poolKey", .string(event.poolKey)),
        ])
    }

    /// Accepts `Authorization: Bearer sk_…` or `x-service-key: …` with an accepted key.
    func authenticate(_ request: SimulatorRequest) throws(SimulatorResponse) {
        let bearer = CrochetStore.bearer(request.authorization)
        let serviceKey = request.header("x-service-key")
        if bearer == nil && serviceKey == nil {
            throw .error(.unauthorized, "UNAUTHORIZED", "Missing key: send 'Authorization: Bearer sk_…' with a secret key, or 'x-service-key: …' with a service key.")
        }
        if let bearer, bearer.hasPrefix(Self.secretKeyPrefix), self.keys.contains(bearer) { return }
        if let serviceKey, self.keys.contains(serviceKey) { return }
        throw .error(.unauthorized, "UNAUTHORIZED", "Invalid key: no secret key (Bearer sk_…) or service key (x-service-key) matches.")
    }

    static func requiredString(_ json: JSONValue, _ name: String) throws(SimulatorResponse) -> String {
        guard let value = json[name]?.stringValue, !value.isEmpty else {
            throw .error(.badRequest, "BAD_REQUEST", "\(name) is required and must be a non-empty string")
        }
        return value
    }
}
