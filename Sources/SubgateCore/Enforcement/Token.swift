import Crypto
import NIOHTTP1

/// What the token header of a request holds (SPEC §3 step 2).
public enum TokenLookup: Sendable, Equatable {
    /// Absent, empty, or without `token_prefix`: 401 `MISSING_TOKEN`.
    case missing
    /// The header appears more than once: 400 `BAD_REQUEST` (which one would the buyer mean?).
    case duplicate
    /// A well-formed raw token. It must go nowhere but `TokenHash.hex` (and the upstream when
    /// `forward_token = true`).
    case present(String)

    public static func find(in headers: HTTPHeaders, name: String, prefix: String) -> TokenLookup {
        var found: String?
        for (fieldName, value) in headers where fieldName.utf8.count == name.utf8.count {
            guard fieldName.caseInsensitiveEquals(name) else { continue }
            if found != nil { return .duplicate }
            found = value
        }
        // The prefix is compared as bytes, as the hash and the control plane see the token.
        // `hasPrefix` compares characters under canonical equivalence: it refused
        // `cro_sub_\u{319}…` (the combining mark joins the `_`) whose bytes start with `cro_sub_`
        // (found by the fuzz/ `token` target), and took `\u{212A}abc` (KELVIN SIGN) for a token
        // with prefix `K`.
        guard let raw = found, raw.utf8.count > prefix.utf8.count, raw.utf8.starts(with: prefix.utf8) else { return .missing }
        return .present(raw)
    }
}

/// The identity Subgate keeps of a token: the lowercase hex SHA-256 of the raw token (seed 000,
/// "Hash the incoming token"). Caches, the ledger, the journal, logs and the control plane
/// see only this.
public enum TokenHash {
    public static func hex(_ raw: String) -> String {
        var raw = raw
        let digest = raw.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }
        return digest.withUnsafeBytes(ASCII.hex)
    }

    /// The prefix logs may show ("only the first 8 hex digits of their hash", SPEC §2).
    public static func logPrefix(_ hash: String) -> String { String(hash.prefix(8)) }
}

extension StringProtocol {
    /// ASCII case-insensitive equality without allocating (header names are ASCII).
    public func caseInsensitiveEquals(_ other: some StringProtocol) -> Bool {
        guard self.utf8.count == other.utf8.count else { return false }
        // Native strings are contiguous UTF-8: compare the bytes (the generic path below walks
        // both views with iterators, which the bench's profile showed on every request).
        let contiguous = self.utf8.withContiguousStorageIfAvailable { a in
            other.utf8.withContiguousStorageIfAvailable { b in
                for i in 0..<a.count where a[i] != b[i] {
                    if ASCII.lowercase(a[i]) != ASCII.lowercase(b[i]) { return false }
                }
                return true
            }
        }
        if let contiguous = contiguous ?? nil { return contiguous }
        for (a, b) in zip(self.utf8, other.utf8) where a != b {
            if ASCII.lowercase(a) != ASCII.lowercase(b) { return false }
        }
        return true
    }
}
