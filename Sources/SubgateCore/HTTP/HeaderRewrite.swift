import NIOHTTP1
import Synchronization

/// The header rules of SPEC §3 steps 1 and 6: what crosses Subgate in each direction.
///
/// Hop-by-hop fields (RFC 9110 §7.6.1) describe one connection and are never relayed:
/// `Connection`, every field `Connection` names, `Keep-Alive`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade` and every `Proxy-*` field. Subgate re-frames each message itself.
public enum HeaderRewrite {
    /// Fields that are always hop-by-hop, lowercased.
    ///
    /// `Trailer` announces trailer fields of this hop's chunked framing, which Subgate redoes
    /// (RFC 2616 §13.5.1 listed it as "Trailers"; Go's httputil.ReverseProxy drops it too).
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// Whether the lowercased `name` must not cross Subgate. Besides the fixed set and what
    /// `Connection` nominates, every `Proxy-` field is for a proxy hop, never for the other side:
    /// `Proxy-Authorization` would hand a client's proxy credentials to the seller's service,
    /// `Proxy-Authenticate` would ask the buyer for credentials Subgate never checks,
    /// `Proxy-Connection` is the pre-standard `Connection`.
    static func isHopByHop(_ name: String, nominated: Set<String>) -> Bool {
        // `Proxy` itself ("httpoxy", CVE-2016-5385): a CGI-style upstream would take it as HTTP_PROXY.
        Self.hopByHop.contains(name) || nominated.contains(name) || name.hasPrefix("proxy-") || name == "proxy"
    }

    /// Fields the `Connection` header(s) name, lowercased (RFC 9110 §7.6.1).
    static func connectionNominated(_ headers: HTTPHeaders) -> Set<String> {
        var names: Set<String> = []
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                let name = token.trimmingASCIIWhitespace().lowercased()
                if !name.isEmpty { names.insert(name) }
            }
        }
        return names
    }

    /// What the request needs to be relayed: the inputs of `upstreamRequestHeaders`.
    public struct RequestContext: Sendable {
        /// The client's address as text (`203.0.113.7`), appended to `x-forwarded-for`.
        public var clientAddress: String?
        /// The token header, removed unless it is to be forwarded (lowercased), or `nil`.
        public var tokenHeaderToRemove: String?
        /// Headers Subgate adds for the upstream (`x-subgate-…`), after removing the client's.
        public var added: [(String, String)]

        public init(clientAddress: String?, tokenHeaderToRemove: String?, added: [(String, String)] = []) {
            self.clientAddress = clientAddress
            self.tokenHeaderToRemove = tokenHeaderToRemove
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
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + 4 + context.added.count)
        var forwardedFor: String? = nil
        var requestID: String? = nil
        for (name, value) in headers {
            let lower = name.lowercased()
            if Self.isHopByHop(lower, nominated: nominated) { continue }
            if lower.hasPrefix("x-subgate-") { continue }
            if let token = context.tokenHeaderToRemove, lower == token { continue }
            switch lower {
            case "content-length":
                continue  // re-added below from the checked framing
            case "x-forwarded-proto":
                continue  // Subgate receives plain HTTP; a client must not claim otherwise
            case "expect":
                // Subgate answers `100-continue` itself when it is ready for the body (the only
                // expectation `RequestHeadRules` lets through); asking the upstream too would
                // make a client that waits for the 100 depend on the upstream's support for it.
                continue
            case "x-forwarded-for":
                forwardedFor = forwardedFor.map { $0 + ", " + value } ?? value
                continue
            case "x-request-id":
                if requestID == nil, Self.isAcceptableRequestID(value) { requestID = value }
                continue
            default:
                out.add(name: name, value: value)
            }
        }
        switch framing {
        case .none: break
        case .contentLength(let n): out.add(name: "content-length", value: String(n))
        case .chunked: out.add(name: "transfer-encoding", value: "chunked")
        }
        if let client = context.clientAddress {
            out.add(name: "x-forwarded-for", value: forwardedFor.map { $0 + ", " + client } ?? client)
        } else if let forwardedFor {
            out.add(name: "x-forwarded-for", value: forwardedFor)
        }
        out.add(name: "x-forwarded-proto", value: "http")
        let id = requestID ?? generateRequestID()
        out.add(name: "x-request-id", value: id)
        for (name, value) in context.added {
            out.add(name: name, value: value)
        }
        return (out, id)
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

    /// The header block to send the client for an upstream answer: hop-by-hop fields and
    /// `removing` (lowercased names, e.g. `x-subgate-usage`) are removed. Framing is left to
    /// the response encoder, which keeps a Content-Length or chunks the body.
    public static func clientResponseHeaders(
        _ headers: HTTPHeaders,
        removing: Set<String> = []
    ) -> Result<HTTPHeaders, UpstreamResponseProblem> {
        let te = headers["transfer-encoding"]
        if !te.isEmpty {
            guard te.count == 1, te[0].trimmingASCIIWhitespace().lowercased() == "chunked" else {
                return .failure(.ambiguousFraming)
            }
        }
        let nominated = Self.connectionNominated(headers)
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count)
        for (name, value) in headers {
            let lower = name.lowercased()
            if Self.isHopByHop(lower, nominated: nominated) || removing.contains(lower) { continue }
            out.add(name: name, value: value)
        }
        return .success(out)
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
        return Self.hex(a) + Self.hex(b)
    }

    /// SplitMix64's finaliser: a bijection on 64 bits, so distinct counters give distinct ids.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func hex(_ value: UInt64) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes = [UInt8](repeating: 0, count: 16)
        var v = value
        for i in stride(from: 15, through: 0, by: -1) {
            bytes[i] = digits[Int(v & 0xF)]
            v >>= 4
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
