import Foundation
import NIOHTTP1

/// The Crochet part of the admin API: sellers, tokens and what was reported.
extension CrochetStore {
    /// Fields `POST /_sim/tokens` accepts.
    static let tokenFields = ["token", "seller_key", "listing_id", "subscriber_id", "usage_limit", "usage_count", "expires_at", "status"]
    /// Fields `POST /_sim/sellers` accepts.
    static let sellerFields = ["seller_key", "seller_id", "gateway_secret"]

    /// `POST /_sim/sellers`: 201 with the seller (its gateway secret never echoed).
    mutating func adminCreateSeller(_ body: Data) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.sellerFields)
        let key = try AdminBody.requiredString(fields, "seller_key")
        guard Self.isSellerKey(key) else { throw AdminBody.badField("seller_key", "must start with am_k_") }
        let id = try AdminBody.optionalString(fields, "seller_id") ?? String(key.dropFirst(Self.sellerKeyPrefix.count))
        guard SimulatorName.isValid(id) else { throw AdminBody.badField("seller_id", SimulatorName.rule) }
        let seller = SimulatedSeller(sellerID: id, sellerKey: key, gatewaySecret: try AdminBody.optionalString(fields, "gateway_secret"))
        do throws(SellerProblem) {
            try self.createSeller(seller)
        } catch .keyTaken {
            throw .error(.conflict, "CONFLICT", "A seller with this seller_key already exists.")
        } catch {
            throw .error(.conflict, "CONFLICT", "A seller with seller_id \(id) already exists; choose another seller_id.")
        }
        return SimulatorResponse(.created, seller.adminState)
    }

    var sellersJSON: JSONValue {
        .object([("sellers", .array(self.sellers.values.sorted { $0.sellerID < $1.sellerID }.map(\.adminState)))])
    }

    /// `POST /_sim/tokens`: 201 with the raw token (shown only here) and the state.
    mutating func adminCreateToken(_ body: Data, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        let fields = try AdminBody.object(body, allowed: Self.tokenFields)
        let raw = try AdminBody.optionalString(fields, "token")
        if let raw {
            guard raw.hasPrefix(RawToken.prefix), raw.count > RawToken.prefix.count else {
                throw AdminBody.badField("token", "must start with cro_sub_ (leave it out to have one generated)")
            }
            guard self.tokens[RawToken.hash(raw)] == nil else {
                throw .error(.conflict, "CONFLICT", "This raw token already exists; choose another or leave token out.")
            }
        }
        let sellerKey = try AdminBody.string(fields, "seller_key", default: Self.demoSellerKey)
        guard Self.isSellerKey(sellerKey) else {
            throw AdminBody.badField("seller_key", "must start with am_k_")
        }
        let status = try AdminBody.string(fields, "status", default: SimulatedToken.active)
        guard SimulatedToken.statuses.contains(status) else {
            throw AdminBody.badField("status", "must be active, expired or revoked")
        }
        let usageLimit: Int?
        switch fields["usage_limit"] {
        case nil: usageLimit = 100
        case .null?: usageLimit = nil
        case .int(let limit)? where limit >= 0: usageLimit = limit
        default: throw AdminBody.badField("usage_limit", "must be an integer ≥ 0, or null for unlimited")
        }
        let (created, hash) = self.createToken(
            sellerKey: sellerKey,
            listingID: try AdminBody.string(fields, "listing_id", default: "lst_demo"),
            subscriberID: try AdminBody.string(fields, "subscriber_id", default: "usr_demo"),
            usageLimit: usageLimit,
            usageCount: try AdminBody.optionalInt(fields, "usage_count", in: 0...Int.max) ?? 0,
            expiresAt: try AdminBody.optionalDate(fields, "expires_at"),
            status: status,
            raw: raw
        )
        let token = try self.existingToken(hash, now: now)
        return SimulatorResponse(.created, token.adminState(prefix: [("token", .string(created))]))
    }

    mutating func existingToken(_ hash: String, now: Date) throws(SimulatorResponse) -> SimulatedToken {
        guard let token = self.token(hash: hash, now: now) else {
            throw .error(.notFound, "NOT_FOUND", "No token with hash \(hash).")
        }
        return token
    }

    /// `POST /_sim/tokens/<hash>/rotate`: 201 with the new raw token.
    mutating func adminRotate(_ hash: String, now: Date) throws(SimulatorResponse) -> SimulatorResponse {
        _ = try self.existingToken(hash, now: now)
        guard let (raw, newHash) = self.rotate(hash: hash, now: now), let token = self.tokens[newHash] else {
            throw .error(.badRequest, "BAD_REQUEST", "This token is already revoked; rotate the token that replaced it.")
        }
        return SimulatorResponse(.created, token.adminState(prefix: [("token", .string(raw))]))
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

    static func isSellerKey(_ key: String) -> Bool {
        key.hasPrefix(Self.sellerKeyPrefix) && key.count > Self.sellerKeyPrefix.count
    }
}

/// Names the simulator lets a user choose (seller, listing, tenant and pool ids; seed-file
/// names): letters, digits, `_`, `-` and `.`, so that they sit in a URL path unescaped.
enum SimulatorName {
    static let rule = "must be 1 to 128 letters, digits, _, - or ."

    static func isValid(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
    }
}
