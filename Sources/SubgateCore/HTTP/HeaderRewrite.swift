import NIOHTTP1
import Synchronization

/// The header rules of SPEC §3 steps 1 and 6: what crosses Subgate in each direction.
///
/// Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection and are never relayed:
/// `Connection`, every field `Connection` names, `Keep-Alive`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade` and every `Proxy-*` field. Subgate re-frames each message itself.
public enum HeaderRewrite {
    /// What a header name means to the rewrite. Header names are classified byte by byte
    /// (ASCII, case-insensitive) rather than lowercased into new strings and looked up in
    /// sets: this runs for every field of every request and answer (the bench's profile).
    enum NameKind: Equatable {
        /// Relayed as it is.
        case other
        /// Hop-by-hop (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`, `TE`, `Trailer`,
        /// `Transfer-Encoding`, `Upgrade`; every `Proxy-*` field; and `Proxy` itself.
        ///
        /// `Trailer` announces trailer fields of this hop's chunked framing, which Subgate
        /// redoes (RFC 2616 §13.5.1 listed it as "Trailers"; Go's httputil.ReverseProxy drops it
        /// too). A `Proxy-` field is for a proxy hop, never for the other side:
        /// `Proxy-Authorization` would hand a client's proxy credentials to the seller's
        /// service, `Proxy-Authenticate` would ask the buyer for credentials Subgate never
        /// checks, `Proxy-Connection` is the pre-standard `Connection`. `Proxy` ("httpoxy",
        /// CVE-2016-5385): a CGI-style upstream would take it as HTTP_PROXY.
        case hopByHop
        /// `Connection` (hop-by-hop, and it nominates more).
        case connection
        /// `x-subgate-*`: Subgate's own, never taken from the other side.
        case subgate
        case contentLength
        case expect
        case forwardedFor
        case forwardedProto
        case requestID
    }

    static func kind(of name: String) -> NameKind {
        var name = name
        return name.withUTF8 { bytes in
            guard let first = bytes.first else { return .other }
            switch first | 0x20 {
            case UInt8(ascii: "c"):
                if ASCII.equals(bytes, "connection") { return .connection }
                if ASCII.equals(bytes, "content-length") { return .contentLength }
            case UInt8(ascii: "k"):
                if ASCII.equals(bytes, "keep-alive") { return .hopByHop }
            case UInt8(ascii: "t"):
                if ASCII.equals(bytes, "te") || ASCII.equals(bytes, "trailer") || ASCII.equals(bytes, "transfer-encoding") {
                    return .hopByHop
                }
            case UInt8(ascii: "u"):
                if ASCII.equals(bytes, "upgrade") { return .hopByHop }
            case UInt8(ascii: "p"):
                if ASCII.equals(bytes, "proxy") || ASCII.hasPrefix(bytes, "proxy-") { return .hopByHop }
            case UInt8(ascii: "e"):
                if ASCII.equals(bytes, "expect") { return .expect }
            case UInt8(ascii: "x"):
                if ASCII.hasPrefix(bytes, "x-subgate-") { return .subgate }
                if ASCII.equals(bytes, "x-forwarded-for") { return .forwardedFor }
                if ASCII.equals(bytes, "x-forwarded-proto") { return .forwardedProto }
                if ASCII.equals(bytes, "x-request-id") { return .requestID }
            default:
                break
            }
            return .other
        }
    }

    /// Fields the `Connection` header(s) name, ASCII-lowercased (RFC 9110 §7.6.1). Field names
    /// are ASCII tokens: `lowercased()` would also map U+212A KELVIN SIGN to `k`, so that
    /// `Connection: \u{212A}-Foo` removed `K-Foo` (fuzz/ `request-head` target's oracle).
    static func connectionNominated(_ headers: HTTPHeaders) -> Set<String> {
        var names: Set<String> = []
        for (name, value) in headers where Self.kind(of: name) == .connection {
            var value = value
            value.withUTF8 { bytes in
                var start = 0
                while start <= bytes.count {
                    var end = start
                    while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
                    var (from, to) = (start, end)
                    while from < to && (bytes[from] == 0x20 || bytes[from] == 0x09) { from += 1 }
                    while to > from && (bytes[to - 1] == 0x20 || bytes[to - 1] == 0x09) { to -= 1 }
                    let token = UnsafeBufferPointer(rebasing: bytes[from..<to])
                    // `keep-alive` is hop-by-hop already: leaving it out keeps the usual
                    // `Connection: keep-alive` from costing a comparison per field.
                    if !token.isEmpty && !ASCII.equals(token, "keep-alive") {
                        names.insert(String(decoding: token.lazy.map(ASCII.lowercase), as: UTF8.self))
                    }
                    start = end + 1
                }
            }
        }
        return names
    }

    /// Whether `name` must not cross Subgate, given its kind and what `Connection` nominated.
    static func isHopByHop(_ name: String, kind: NameKind, nominated: Set<String>) -> Bool {
        switch kind {
        case .hopByHop, .connection: return true
        default: return !nominated.isEmpty && nominated.contains(ASCII.lowercased(name))
        }
    }

    /// What the request needs to be relayed: the inputs of `upstreamRequestHeaders`.
    public struct RequestContext: Sendable {
        /// The client's address as text (`203.0.113.7`), appended to `x-forwarded-for`.
        public var clientAddress: String?
        /// The token header, removed unless it is to be forwarded (lowercased), or `nil`.
        public var tokenHeaderToRemove: String?
        /// Remove `x-crochet-gateway-secret` (with `gateway_secret` set: the secret is Subgate's,
        /// never the seller's).
        public var removeGatewaySecret: Bool
        /// Headers Subgate adds for the upstream (`x-subgate-…`), after removing the client's.
        public var added: [(String, String)]

        public init(clientAddress: String?, tokenHeaderToRemove: String?, removeGatewaySecret: Bool = false, added: [(String, String)] = []) {
            self.clientAddress = clientAddress
            self.tokenHeaderToRemove = tokenHeaderToRemove
            self.removeGatewaySecret = removeGatewaySecret
            self.added = added
        }
    }

    /// The header block to send upstream for `head`, and the request id it carries.
    ///
    /// - Removes hop-by-hop fields, `Expect`, and every client field starting with `x-subgate-`.
    /// - Sets `x-forwarded-proto: http`, appends the client to `x-forwarded-for`, keeps a
    ///   well-formed client `x-request-id` or generates one.
    /// - Writes the framing Subgate will use: the client's Content-Length, or
    ///   `transfer-encoding: chunked`, or nothing for a body-less request.
    public static func upstreamRequestHeaders(
        _ headers: HTTPHeaders,
        framing: RequestFraming.Body,
        context: RequestContext,
        generateRequestID: () -> String
    ) -> (headers: HTTPHeaders, requestID: String) {
        let nominated = Self.connectionNominated(headers)
        // One pass keeps the fields that cross, and one `HTTPHeaders(_:)` builds the block:
        // NIO's `add` scans every field it is given (the bench's profile), and removing by name
        // costs a pass per name (a hostile head can name a hundred).
        var kept: [(String, String)] = []
        kept.reserveCapacity(headers.count + 4 + context.added.count)
        var forwardedFor: String? = nil
        var requestID: String? = nil
        for (name, value) in headers {
            let kind = Self.kind(of: name)
            if Self.isHopByHop(name, kind: kind, nominated: nominated) { continue }
            switch kind {
            case .subgate, .contentLength, .expect, .forwardedProto:
                // content-length: re-added below from the checked framing.
                // x-forwarded-proto: Subgate receives plain HTTP; a client must not claim otherwise.
                // expect: Subgate answers `100-continue` itself when it is ready for the body (the
                // only expectation `RequestHeadRules` lets through); asking the upstream too would
                // make a client that waits for the 100 depend on the upstream's support for it.
                continue
            case .forwardedFor:
                forwardedFor = forwardedFor.map { $0 + ", " + value } ?? value
            case .requestID:
                if requestID == nil, Self.isAcceptableRequestID(value) { requestID = value }
            case .other, .hopByHop, .connection:
                if let token = context.tokenHeaderToRemove, name.caseInsensitiveEquals(token) { continue }
                if context.removeGatewaySecret, name.caseInsensitiveEquals(GatewayRelay.secretHeader) { continue }
                kept.append((name, value))
            }
        }
        switch framing {
        case .none: break
        case .contentLength(let n): kept.append(("content-length", String(n)))
        case .chunked: kept.append(("transfer-encoding", "chunked"))
        }
        if let client = context.clientAddress {
            kept.append(("x-forwarded-for", forwardedFor.map { $0 + ", " + client } ?? client))
        } else if let forwardedFor {
            kept.append(("x-forwarded-for", forwardedFor))
        }
        kept.append(("x-forwarded-proto", "http"))
        let id = requestID ?? generateRequestID()
        kept.append(("x-request-id", id))
        kept.append(contentsOf: context.added)
        return (HTTPHeaders(kept), id)
    }

    /// A client-supplied request id is kept when it is short visible ASCII, so it cannot
    /// inject anything into logs or the upstream's head.
    static func isAcceptableRequestID(_ value: String) -> Bool {
        guard !value.isEmpty, value.utf8.count <= 128 else { return false }
        return value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// Why an upstream answer cannot be relayed.
    public enum UpstreamResponseProblem: Error, Equatable {
        /// A Transfer-Encoding other than exactly `chunked`: Subgate cannot tell where the body ends
        /// the way the upstream meant it.
        case ambiguousFraming
    }

    /// An upstream answer's header block as the client gets it.
    public struct ClientResponseHeaders {
        public var headers: HTTPHeaders
        /// The upstream's `x-subgate-usage` (its billing instruction to Subgate), if it sent one.
        public var usage: String?
    }

    /// The header block to send the client for an upstream answer: hop-by-hop fields and every
    /// `x-subgate-*` field are removed (`x-subgate-usage` is returned apart: it is Subgate's,
    /// never the client's). Framing is left to the response encoder, which keeps a
    /// Content-Length or chunks the body.
    public static func clientResponseHeaders(_ headers: HTTPHeaders) -> Result<ClientResponseHeaders, UpstreamResponseProblem> {
        var transferEncodings = 0
        var chunked = false
        var hasConnection = false
        for (name, value) in headers {
            switch Self.kind(of: name) {
            case .connection:
                hasConnection = true
            case .hopByHop where name.caseInsensitiveEquals("transfer-encoding"):
                transferEncodings += 1
                chunked = value.trimmingASCIIWhitespace().caseInsensitiveEquals("chunked")
            default:
                break
            }
        }
        guard transferEncodings == 0 || (transferEncodings == 1 && chunked) else { return .failure(.ambiguousFraming) }
        let nominated = hasConnection ? Self.connectionNominated(headers) : []
        var kept: [(String, String)] = []
        kept.reserveCapacity(headers.count)
        var usage: String?
        for (name, value) in headers {
            let kind = Self.kind(of: name)
            if Self.isHopByHop(name, kind: kind, nominated: nominated) { continue }
            if kind == .subgate {
                if usage == nil && name.caseInsensitiveEquals("x-subgate-usage") { usage = value }
                continue
            }
            kept.append((name, value))
        }
        let out = HTTPHeaders(kept)
        return .success(ClientResponseHeaders(headers: out, usage: usage))
    }
}

/// Request ids: 128 bits as 32 lowercase hex digits, without Foundation on the hot path.
///
/// They must be unique, not secret: a per-process random seed (one `getrandom` at start) and
/// an atomic counter, mixed by SplitMix64, instead of two `getrandom` system calls per request
/// (the bench saw them in every request's profile).
public enum RequestID {
    private static let seed: (UInt64, UInt64) = {
        var rng = SystemRandomNumberGenerator()
        return (rng.next(), rng.next())
    }()
    private static let counter = Atomic<UInt64>(0)

    public static func generate() -> String {
        let n = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let a = Self.mix(Self.seed.0 &+ n &* 0x9E37_79B9_7F4A_7C15)
        let b = Self.mix(Self.seed.1 ^ n)
        return String(unsafeUninitializedCapacity: 32) { out in
            var (a, b) = (a, b)
            for i in stride(from: 15, through: 0, by: -1) {
                out[i] = ASCII.hexDigit(UInt8(truncatingIfNeeded: a & 0xF))
                out[i + 16] = ASCII.hexDigit(UInt8(truncatingIfNeeded: b & 0xF))
                a >>= 4
                b >>= 4
            }
            return 32
        }
    }

    /// SplitMix64's finaliser: a bijection on 64 bits, so distinct counters give distinct ids.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { out in
            var v = value
            for i in stride(from: 15, through: 0, by: -1) {
                out[i] = ASCII.hexDigit(UInt8(truncatingIfNeeded: v & 0xF))
                v >>= 4
            }
            return 16
        }
    }
}

/// Byte-level ASCII helpers for the hot path: no lowercased copies, no lookups in sets.
enum ASCII {
    /// Whether `bytes` equal `lowercase` (a lowercase ASCII literal), ignoring ASCII case.
    @inline(__always)
    static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        bytes.count == lowercase.utf8CodeUnitCount && self.hasPrefix(bytes, lowercase)
    }

    /// Whether `bytes` start with `lowercase` (a lowercase ASCII literal), ignoring ASCII case.
    @inline(__always)
    static func hasPrefix(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
        let count = lowercase.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let literal = lowercase.utf8Start
        for i in 0..<count {
            if Self.lowercase(bytes[i]) != literal[i] { return false }
        }
        return true
    }

    /// `A`…`Z` as `a`…`z`; every other byte as it is.
    @inline(__always)
    static func lowercase(_ byte: UInt8) -> UInt8 {
        byte >= 65 && byte <= 90 ? byte | 0x20 : byte
    }

    /// `text` with `A`…`Z` as `a`…`z` and every other byte as it is (unlike `lowercased()`,
    /// which maps non-ASCII letters too, some of them to ASCII).
    static func lowercased(_ text: String) -> String {
        String(decoding: text.utf8.lazy.map(Self.lowercase), as: UTF8.self)
    }

    /// `bytes` as lowercase hex, two digits a byte.
    static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 2 * bytes.count) { out in
            for (i, byte) in bytes.enumerated() {
                out[2 * i] = Self.hexDigit(byte >> 4)
                out[2 * i + 1] = Self.hexDigit(byte & 0x0f)
            }
            return 2 * bytes.count
        }
    }

    /// `0`…`9`, `a`…`f` for 0…15.
    @inline(__always)
    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : 0x57 + nibble
    }
}
