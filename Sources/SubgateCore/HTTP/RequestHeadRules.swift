import NIOHTTP1

/// What a request head says about the message that follows, once it has passed the rules.
public struct RequestFraming: Sendable, Equatable {
    /// How the request body is delimited.
    public enum Body: Sendable, Equatable {
        /// No body (no Content-Length, no Transfer-Encoding).
        case none
        /// `Content-Length: n`.
        case contentLength(Int)
        /// `Transfer-Encoding: chunked`.
        case chunked
    }

    /// How the body is framed.
    public var body: Body
    /// The target to send upstream, always in origin-form (`/path?query`) or `*`.
    public var target: String
    /// Whether the client asked for `100-continue`.
    public var expectsContinue: Bool

    public init(body: Body, target: String, expectsContinue: Bool) {
        self.body = body
        self.target = target
        self.expectsContinue = expectsContinue
    }
}

/// The request-head rules of SPEC §3 step 1 and the hostile-input list of the proxy-core issue.
///
/// NIO's decoder already rejects CL+TE, duplicate Content-Length, obs-fold, bare LF and
/// control characters; these rules cover what it lets through (shared/KNOWN.md) and what a
/// proxy must decide itself so that it and its upstream never disagree on message boundaries.
public enum RequestHeadRules {
    /// Checks `head` and returns how its body is framed and which target to forward, or the
    /// answer to give instead.
    public static func check(_ head: HTTPRequestHead, maxBodyBytes: Int) -> Result<RequestFraming, ProxyRejection> {
        let version = head.version
        guard version.major == 1, version.minor <= 1 else {
            return .failure(.badRequest("Only HTTP/1.0 and HTTP/1.1 are supported."))
        }
        let isHTTP11 = version.minor == 1

        // Upgrades and CONNECT: refused, and the connection is closed so that bytes sent
        // after the head (a WebSocket frame, an h2 preface) are never read as a request.
        if head.method == .CONNECT || head.headers.contains(name: "upgrade") {
            return .failure(.upgradeNotSupported)
        }

        // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0.
        let hosts = head.headers["host"]
        if hosts.count > 1 || (isHTTP11 && hosts.isEmpty) {
            return .failure(.badRequest(hosts.isEmpty ? "The request has no Host header." : "The request has more than one Host header."))
        }
        let host = hosts.first.map { String($0.trimmingASCIIWhitespace()) }
        if let host, !Self.isValidAuthority(host, allowEmpty: !isHTTP11) {
            return .failure(.badRequest("The Host header is not a valid host[:port]."))
        }

        // Target form (RFC 9112 §3.2).
        let target: String
        switch Self.classify(target: head.uri) {
        case .origin:
            target = head.uri
        case .asterisk:
            guard head.method == .OPTIONS else {
                return .failure(.badRequest("The '*' target is only valid with OPTIONS."))
            }
            target = "*"
        case .absolute(let authority, let path):
            // An absolute-form target naming another host than Host would let the client
            // address something the upstream did not expect; only an exact match is relayed.
            guard let host, authority.lowercased() == host.lowercased() else {
                return .failure(.badRequest("The absolute request target names a different host than the Host header."))
            }
            target = path
        case .invalid:
            return .failure(.badRequest("The request target is not a valid origin-form or absolute-form target."))
        }

        // Framing. Transfer-Encoding must be exactly `chunked`, once, and only in HTTP/1.1:
        // anything else is a smuggling vector (`,chunked`, `chunked, chunked`, `gzip`).
        let transferEncodings = head.headers["transfer-encoding"]
        let body: RequestFraming.Body
        if !transferEncodings.isEmpty {
            guard isHTTP11 else {
                return .failure(.badRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request."))
            }
            // Compared on the raw field: the comma-splitting view would read `,chunked` as `chunked`.
            // Byte by byte, ignoring ASCII case only: `lowercased()` maps U+212A KELVIN SIGN to
            // `k`, so `chun\u{212A}ed` passed as chunked, while NIO's parser compares bytes, does
            // not take it for chunked and fails the request only after delivering its head
            // (fuzz/ `request-head` target's oracle).
            guard transferEncodings.count == 1,
                transferEncodings[0].trimmingASCIIWhitespace().caseInsensitiveEquals("chunked")
            else {
                return .failure(.badRequest("Transfer-Encoding must be exactly 'chunked'."))
            }
            body = .chunked
        } else if let lengthValue = head.headers.first(name: "content-length") {
            // NIO has already rejected duplicate or malformed Content-Length values.
            guard let length = Int(lengthValue.trimmingASCIIWhitespace()), length >= 0 else {
                return .failure(.badRequest("Content-Length is not a valid length."))
            }
            guard length <= maxBodyBytes else {
                return .failure(.payloadTooLarge)
            }
            body = length == 0 ? .contentLength(0) : .contentLength(length)
        } else {
            body = .none
        }

        // Expect (RFC 9110 §10.1.1): only 100-continue has a meaning.
        var expectsContinue = false
        let expects = head.headers["expect"]
        if !expects.isEmpty {
            guard expects.count == 1, expects[0].trimmingASCIIWhitespace().caseInsensitiveEquals("100-continue") else {
                return .failure(.expectationFailed)
            }
            expectsContinue = isHTTP11
        }

        return .success(RequestFraming(body: body, target: target, expectsContinue: expectsContinue))
    }

    // MARK: - Targets

    /// The four forms of RFC 9112 §3.2 (authority-form only goes with CONNECT, refused above).
    enum TargetForm: Equatable {
        case origin
        case asterisk
        case absolute(authority: String, path: String)
        case invalid
    }

    static func classify(target: String) -> TargetForm {
        let utf8 = target.utf8
        guard let first = utf8.first else { return .invalid }
        if first == UInt8(ascii: "/") { return .origin }
        if target == "*" { return .asterisk }
        let lower = target.lowercased()
        let schemeLength: Int
        if lower.hasPrefix("http://") {
            schemeLength = 7
        } else if lower.hasPrefix("https://") {
            schemeLength = 8
        } else {
            return .invalid
        }
        let rest = target.dropFirst(schemeLength)
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = String(rest[rest.startIndex..<authorityEnd])
        guard Self.isValidAuthority(authority, allowEmpty: false), !authority.contains("@") else { return .invalid }
        var path = String(rest[authorityEnd...])
        if path.hasPrefix("#") { path = "" }
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        return .absolute(authority: authority, path: path)
    }

    /// `host[:port]` or `[v6]:port`, visible ASCII without separators that would change meaning.
    static func isValidAuthority(_ value: String, allowEmpty: Bool) -> Bool {
        if value.isEmpty { return allowEmpty }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "~"), UInt8(ascii: "%"),
                UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"),
                UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"),
                UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
                continue
            default:
                return false
            }
        }
        return true
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces and tabs (OWS, RFC 9110 §5.6.3).
    func trimmingASCIIWhitespace() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
