import Crypto
import Foundation
import FuzzSupport
import NIOHTTP1
import SubgateCore

// Input: one options byte, then header fields, one per line (`name:value`, split at the first
// `:`; a line without one is a name with an empty value). Any bytes: invalid UTF-8 is repaired
// as `String(decoding:)` does. The fields go to `TokenLookup.find` (SPEC §3 step 2),
// `TokenHash` (step 3), `TenantLookup.find` (§6) and `JSONString` (the rejection bodies), and
// each answer is compared with an oracle that works on bytes.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToken(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    _ = SPECAnswers.checked
    let input = UnsafeBufferPointer(start: data, count: size)
    let options = Options(input[0])
    let fields: [(String, String)] = FuzzInput.split(UnsafeBufferPointer(rebasing: input[1...]), separator: UInt8(ascii: "\n")).map { line in
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return (FuzzInput.text(line), "") }
        return (FuzzInput.text(line[..<colon]), FuzzInput.text(line[(colon + 1)...]))
    }
    let headers = HTTPHeaders(fields)
    TokenCheck.run(headers: headers, fields: fields, options: options)
    TenantCheck.run(headers: headers, fields: fields, options: options)
    JSONCheck.run(fields: fields)
    return 0
}

// MARK: - Options

/// `token_header`, `token_prefix` and `crovver_tenant_header` values, each kept only if the real
/// configuration parser accepts it, as the proxy receives them (header names lowercased).
struct Options {
    var tokenHeader: String
    var tokenPrefix: String
    var tenantHeader: String

    init(_ byte: UInt8) {
        self.tokenHeader = Accepted.tokenHeaders[Int(byte & 0x07) % Accepted.tokenHeaders.count]
        self.tokenPrefix = Accepted.tokenPrefixes[Int((byte >> 3) & 0x07) % Accepted.tokenPrefixes.count]
        self.tenantHeader = Accepted.tenantHeaders[Int(byte >> 6) % Accepted.tenantHeaders.count]
    }
}

enum Accepted {
    static let tokenHeaders = Self.values(of: "token_header", ["x-subscription-token", "X-Api-Key", "authorization", "t"]) { $0.tokenHeader }
    // `K`, `;` and `` ` `` are the ASCII characters that non-ASCII ones are canonically
    // equivalent to (U+212A KELVIN SIGN, U+037E, U+1FEF): a prefix check through `String`
    // comparison would take those for the prefix.
    static let tokenPrefixes = Self.values(of: "token_prefix", ["cro_sub_", "K", "am_", "Tok;`_", "c"]) { $0.tokenPrefix }
    static let tenantHeaders = Self.values(of: "crovver_tenant_header", ["x-tenant-id", "X-Org", "tenant", "x-subscription-token"]) { $0.crovverTenantHeader }

    /// What `Config` holds for each candidate the parser accepts for `key`.
    static func values(of key: String, _ candidates: [String], _ field: (Config) -> String) -> [String] {
        let values = candidates.compactMap { candidate -> String? in
            let text = "upstream = http://127.0.0.1:3000\nseller_key = am_k_fuzz\n\(key) = \(candidate)\n"
            guard case .success(let config) = ConfigParser.parse(text, file: "fuzz.conf", environment: [:], readFile: { _ in "" }) else {
                return nil
            }
            return field(config)
        }
        invariant(!values.isEmpty, "the configuration parser accepts no candidate for \(key)")
        return values
    }
}

// MARK: - SPEC's answers

/// SPEC §3 step 2: absent, empty or unprefixed → 401 MISSING_TOKEN; more than once → 400
/// BAD_REQUEST; both JSON bodies `{"success":false,"error":{"code":…,"message":…}}`.
enum SPECAnswers {
    static let checked: Bool = {
        JSONCheck.checkBody(of: .missingToken, status: 401, code: "MISSING_TOKEN")
        JSONCheck.checkBody(of: .duplicateToken, status: 400, code: "BAD_REQUEST")
        return true
    }()
}

// MARK: - Token

enum TokenCheck {
    static func run(headers: HTTPHeaders, fields: [(String, String)], options: Options) {
        let name = options.tokenHeader
        let matching = fields.filter { Bytes.equalsIgnoringASCIICase($0.0, name) }
        let context = "token_header=\(name) token_prefix=\(options.tokenPrefix) fields=\(String(reflecting: fields))"
        let found = TokenLookup.find(in: headers, name: name, prefix: options.tokenPrefix)
        switch matching.count {
        case 0:
            invariant(found == .missing, "no token field, but the lookup says \(found); \(context)")
        case 1:
            let value = matching[0].1
            // The prefix is bytes: the hash, the control plane and the prefix all see the raw bytes.
            let prefixed = value.utf8.count > options.tokenPrefix.utf8.count && Bytes.hasPrefix(value, options.tokenPrefix)
            if prefixed {
                guard case .present(let raw) = found else {
                    invariant(false, "a token starting with the prefix's bytes was taken as \(found); \(context)")
                    return
                }
                invariant(Array(raw.utf8) == Array(value.utf8), "the token is not the header's exact value: \(String(reflecting: raw)); \(context)")
                self.checkHash(raw)
            } else {
                invariant(found == .missing, "an empty or unprefixed token was taken as \(found); \(context)")
            }
        default:
            invariant(found == .duplicate, "\(matching.count) token fields, but the lookup says \(found); \(context)")
        }
    }

    /// SPEC §3 step 3: lowercase hex SHA-256 of the raw token's bytes; logs get 8 hex digits.
    static func checkHash(_ raw: String) {
        let hash = TokenHash.hex(raw)
        let expected = Bytes.hex(SHA256.hash(data: Array(raw.utf8)))
        invariant(hash == expected, "TokenHash.hex(\(String(reflecting: raw))) is \(hash), expected \(expected)")
        invariant(TokenHash.logPrefix(hash) == String(expected.prefix(8)), "the log prefix of \(hash) is \(TokenHash.logPrefix(hash))")
    }
}

// MARK: - Crovver tenant

enum TenantCheck {
    /// SPEC §6: absent or empty → missing (401); twice, or not 1–256 visible ASCII → invalid (400).
    static func run(headers: HTTPHeaders, fields: [(String, String)], options: Options) {
        let name = options.tenantHeader
        let matching = fields.filter { Bytes.equalsIgnoringASCIICase($0.0, name) }
        let found = TenantLookup.find(in: headers, name: name)
        let context = "crovver_tenant_header=\(name) fields=\(String(reflecting: fields))"
        if matching.count > 1 {
            invariant(found == .invalid, "\(matching.count) tenant fields, but the lookup says \(found); \(context)")
        } else if matching.isEmpty || matching[0].1.utf8.isEmpty {
            invariant(found == .missing, "no tenant, but the lookup says \(found); \(context)")
        } else {
            let value = matching[0].1
            let bytes = Array(value.utf8)
            if bytes.count <= TenantLookup.maxLength && bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                guard case .present(let tenant) = found else {
                    invariant(false, "a well-formed tenant was taken as \(found); \(context)")
                    return
                }
                invariant(Array(tenant.utf8) == bytes, "the tenant is not the header's exact value; \(context)")
            } else {
                invariant(found == .invalid, "a tenant that is not 1–256 visible ASCII bytes was taken as \(found); \(context)")
            }
        }
    }
}

// MARK: - JSON bodies

enum JSONCheck {
    /// Every string Subgate quotes into a body reads back as itself in a real JSON parser.
    static func run(fields: [(String, String)]) {
        for (name, value) in fields {
            for text in [name, value] {
                let quoted = JSONString.quote(text)
                let parsed = try? JSONSerialization.jsonObject(with: Data(quoted.utf8), options: [.fragmentsAllowed]) as? String
                invariant(
                    parsed.map { Array($0.unicodeScalars) == Array(text.unicodeScalars) } == true,
                    "JSONString.quote(\(String(reflecting: text))) = \(quoted) reads back as \(String(reflecting: parsed))"
                )
            }
            // A rejection whose message carries client text (the tenant header's name does).
            self.checkBody(of: ProxyRejection(status: .badRequest, code: "BAD_REQUEST", message: value), status: 400, code: "BAD_REQUEST")
        }
    }

    static func checkBody(of rejection: ProxyRejection, status: UInt, code: String) {
        invariant(rejection.status.code == status && rejection.code == code, "\(code) is answered with \(rejection.status.code) \(rejection.code)")
        let body = rejection.jsonBody
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        let error = object?["error"] as? [String: Any]
        invariant(
            object?["success"] as? Bool == false && error?["code"] as? String == code
                && (error?["message"] as? String).map { Array($0.unicodeScalars) == Array(rejection.message.unicodeScalars) } == true,
            "the \(code) body is not {\"success\":false,\"error\":{\"code\":…,\"message\":…}}: \(body)"
        )
    }
}
