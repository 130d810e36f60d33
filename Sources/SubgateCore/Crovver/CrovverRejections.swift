import NIOHTTP1

/// Subgate's answers that only `backend = crovver` gives (SPEC §6). They reuse the codes of
/// SPEC §3's table, so a buyer's agent handles both backends alike.
extension ProxyRejection {
    /// 401 `MISSING_TOKEN`: no tenant header, or an empty one.
    public static func missingTenant(header: String) -> ProxyRejection {
        ProxyRejection(
            status: .unauthorized,
            code: "MISSING_TOKEN",
            message: "A tenant id is required in the \(header) header."
        )
    }

    /// 400 `BAD_REQUEST`: the tenant header twice, or a value that is not 1–256 visible ASCII
    /// characters (it is journaled and sent to Crovver as it is).
    public static func badTenant(header: String) -> ProxyRejection {
        ProxyRejection(
            status: .badRequest,
            code: "BAD_REQUEST",
            message: "Send the \(header) header exactly once, 1 to 256 visible ASCII characters."
        )
    }

    /// 403 `TOKEN_INVALID`: Crovver does not know the tenant or its pool (404/400).
    public static let tenantUnknown = ProxyRejection(
        status: .forbidden,
        code: "TOKEN_INVALID",
        message: "The tenant has no credit pool for this service. Check the tenant id or its plan."
    )
}

/// The tenant header's value, checked (SPEC §6: absent → 401 `MISSING_TOKEN`).
public enum TenantLookup: Sendable, Equatable {
    case missing
    case invalid
    case present(String)

    /// The longest tenant id accepted.
    public static let maxLength = 256

    public static func find(in headers: HTTPHeaders, name: String) -> TenantLookup {
        var found: String?
        for (fieldName, value) in headers where fieldName.caseInsensitiveEquals(name) {
            if found != nil { return .invalid }
            found = value
        }
        guard let value = found, !value.isEmpty else { return .missing }
        guard value.utf8.count <= Self.maxLength, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .invalid }
        return .present(value)
    }
}
