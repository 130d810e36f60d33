import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import SubgateCore

// Input: one options byte, then raw bytes as a client sends them. The bytes go through NIO's
// HTTP/1 request decoder configured as the proxy configures it; every head it produces goes
// through `RequestHeadRules.check` and, when it passes, `HeaderRewrite.upstreamRequestHeaders`;
// its fields also go through `HeaderRewrite.clientResponseHeaders` as if an upstream had sent
// them. Each result is compared with an oracle written from SPEC §3 and RFC 9110/9112, byte by
// byte (never through `String`'s Unicode-aware comparisons, which the code under test may use).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestHead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let options = Options(input[0])
    for head in Decoder.heads(of: UnsafeBufferPointer(rebasing: input[1...])) {
        HeadCheck(head: head, options: options).run()
    }
    return 0
}

// MARK: - Options

/// What the first byte selects: the settings a real configuration could give the proxy.
struct Options {
    /// `max_body_bytes`: SPEC's default, or small enough for a fuzzed Content-Length to pass it.
    var maxBodyBytes: Int
    /// `token_header`: one of the names the configuration parser accepts (see `TokenHeaders`).
    var tokenHeader: String
    /// `forward_token`.
    var forwardToken: Bool
    /// `gateway_secret` set: the proxy removes `x-crochet-gateway-secret`.
    var removeGatewaySecret: Bool
    /// The client's address, or none (a Unix socket in tests).
    var clientAddress: String?

    init(_ byte: UInt8) {
        self.maxBodyBytes = byte & 0x01 == 0 ? 10 * 1024 * 1024 : 100
        self.forwardToken = byte & 0x02 != 0
        self.removeGatewaySecret = byte & 0x04 != 0
        self.clientAddress = byte & 0x08 == 0 ? "203.0.113.7" : nil
        let names = TokenHeaders.accepted
        self.tokenHeader = names[Int(byte >> 4) % names.count]
    }
}

/// Token header names to try, kept only if the real configuration parser accepts them as
/// `token_header`: the rewrite must keep its promises for every configuration that can start.
enum TokenHeaders {
    static let candidates = [
        "x-subscription-token", "x-api-key", "authorization", "cookie",
        // Names the proxy itself reads or writes on the way upstream, or that are hop-by-hop.
        "x-request-id", "x-forwarded-for", "x-forwarded-proto", "expect", "te", "trailer",
        "proxy-authorization", "x-crochet-gateway-secret", "x-crochet-relay-request-id", "host",
        "content-length", "x-subgate-token",
    ]

    static let accepted: [String] = {
        let names = Self.candidates.filter { name in
            let text = "upstream = http://127.0.0.1:3000\nseller_key = am_k_fuzz\ntoken_header = \(name)\n"
            guard case .success(let config) = ConfigParser.parse(text, file: "fuzz.conf", environment: [:], readFile: { _ in "" }) else {
                return false
            }
            return config.tokenHeader == name
        }
        invariant(names.contains("x-subscription-token"), "the default token header is refused by the configuration parser")
        return names
    }()
}

// MARK: - Decoding

/// NIO's request decoder as `ProxyServer.configureClientPipeline` sets it up, with the
/// smallest `max_header_bytes` the configuration accepts (1k), so that oversized heads fit in
/// an input.
enum Decoder {
    static let maxHeaderBytes = 1024

    static func heads(of bytes: UnsafeBufferPointer<UInt8>) -> [HTTPRequestHead] {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = Self.maxHeaderBytes
        limits.maxHeaderFieldSize = Self.maxHeaderBytes
        limits.maxHeaderFieldCount = 100
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits))
            )
        } catch {
            invariant(false, "cannot add the decoder to an EmbeddedChannel: \(error)")
        }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        // A parser error is the proxy's 400 or 431, decided by NIO: not this target's business.
        // Heads decoded before it were delivered to the proxy all the same.
        _ = try? channel.writeInbound(buffer)
        var heads: [HTTPRequestHead] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            if case .head(let head) = part { heads.append(head) }
        }
        return heads
    }
}

// MARK: - The oracle

/// One header field as bytes.
struct Field: Equatable {
    var name: [UInt8]
    var value: [UInt8]

    init(_ name: String, _ value: String) {
        self.name = Array(name.utf8)
        self.value = Array(value.utf8)
    }

    var lowerName: [UInt8] { self.name.map(Bytes.lower) }
    func named(_ lowercase: String) -> Bool { self.lowerName == Array(lowercase.utf8) }
    func namePrefixed(_ lowercase: String) -> Bool { self.lowerName.starts(with: Array(lowercase.utf8)) }
    var text: String { "\(String(decoding: self.name, as: UTF8.self)): \(String(decoding: self.value, as: UTF8.self))" }
}

/// The byte sets of RFC 3986 `host`: unreserved, sub-delims, `%`, `:`, `[`, `]`.
enum Authority {
    static func isValid(_ bytes: some Collection<UInt8>, allowEmpty: Bool) -> Bool {
        if bytes.isEmpty { return allowEmpty }
        let allowed = Array("-._~%!$&'()*+,;=:[]".utf8)
        return bytes.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || allowed.contains(byte)
        }
    }
}

/// The rejections `RequestHeadRules` may give (SPEC §3 and the proxy-core issue).
enum RejectionKind: String {
    case badRequest = "BAD_REQUEST"
    case upgrade = "UPGRADE_NOT_SUPPORTED"
    case tooLarge = "PAYLOAD_TOO_LARGE"
    case expectation = "EXPECTATION_FAILED"

    var status: UInt {
        switch self {
        case .badRequest: 400
        case .upgrade: 501
        case .tooLarge: 413
        case .expectation: 417
        }
    }
}

struct HeadCheck {
    let head: HTTPRequestHead
    let options: Options
    let fields: [Field]

    init(head: HTTPRequestHead, options: Options) {
        self.head = head
        self.options = options
        self.fields = head.headers.map { Field($0.name, $0.value) }
    }

    func values(_ lowercaseName: String) -> [[UInt8]] {
        self.fields.filter { $0.named(lowercaseName) }.map(\.value)
    }

    var isHTTP11: Bool { self.head.version.major == 1 && self.head.version.minor == 1 }

    func run() {
        let reasons = self.rejectionReasons()
        switch RequestHeadRules.check(self.head, maxBodyBytes: self.options.maxBodyBytes) {
        case .failure(let rejection):
            invariant(!reasons.isEmpty, "rejected a head the rules accept (\(rejection.code): \(rejection.message)); head: \(self.describe())")
            guard let kind = RejectionKind(rawValue: rejection.code) else {
                invariant(false, "undocumented rejection code \(rejection.code)")
                return
            }
            invariant(rejection.status.code == kind.status, "\(rejection.code) answered with status \(rejection.status.code)")
            invariant(rejection.closeConnection, "\(rejection.code) leaves the connection open after a head that failed the rules")
            invariant(
                reasons.contains { $0.kind == kind },
                "answered \(rejection.code) (\(rejection.message)), but the oracle expects one of \(reasons.map { "\($0.kind.rawValue): \($0.why)" }); head: \(self.describe())"
            )
        case .success(let framing):
            invariant(reasons.isEmpty, "accepted a head that must be rejected: \(reasons.map { "\($0.kind.rawValue): \($0.why)" }); head: \(self.describe())")
            self.checkAccepted(framing)
            self.checkUpstreamHeaders(framing)
        }
        self.checkResponseHeaders()
    }

    func describe() -> String {
        "\(self.head.method) \(String(reflecting: self.head.uri)) HTTP/\(self.head.version.major).\(self.head.version.minor) "
            + String(reflecting: self.fields.map(\.text))
    }

    // MARK: Request head rules

    struct Reason {
        var kind: RejectionKind
        var why: String
    }

    /// Every reason the head must be refused, with the answer each one calls for. Several can
    /// hold at once; the rules may answer any one of them.
    func rejectionReasons() -> [Reason] {
        var reasons: [Reason] = []
        let version = self.head.version
        if !(version.major == 1 && version.minor <= 1) {
            reasons.append(Reason(kind: .badRequest, why: "not HTTP/1.0 or 1.1"))
        }
        if self.head.method == .CONNECT || !self.values("upgrade").isEmpty {
            reasons.append(Reason(kind: .upgrade, why: "CONNECT or Upgrade"))
        }

        // Host: exactly one in HTTP/1.1, at most one in 1.0, a valid authority (RFC 9112 §3.2).
        let hosts = self.values("host")
        var host: ArraySlice<UInt8>? = nil
        if hosts.count > 1 {
            reasons.append(Reason(kind: .badRequest, why: "several Host fields"))
        } else if hosts.isEmpty {
            if self.isHTTP11 { reasons.append(Reason(kind: .badRequest, why: "HTTP/1.1 without Host")) }
        } else {
            let trimmed = Bytes.trimmingOWS(String(decoding: hosts[0], as: UTF8.self))
            host = trimmed
            if !Authority.isValid(trimmed, allowEmpty: !self.isHTTP11) {
                reasons.append(Reason(kind: .badRequest, why: "Host is not a valid authority"))
            }
        }

        // The target's form (RFC 9112 §3.2); authority-form goes with CONNECT, refused above.
        let target = Array(self.head.uri.utf8)
        if target.first == UInt8(ascii: "/") {
            // origin-form
        } else if target == [UInt8(ascii: "*")] {
            if self.head.method != .OPTIONS { reasons.append(Reason(kind: .badRequest, why: "* without OPTIONS")) }
        } else if let absolute = Self.splitAbsolute(target) {
            let authority = absolute.authority
            if !Authority.isValid(authority, allowEmpty: false) {
                reasons.append(Reason(kind: .badRequest, why: "absolute target with an invalid authority"))
            } else if host == nil || authority.map(Bytes.lower) != host!.map(Bytes.lower) {
                reasons.append(Reason(kind: .badRequest, why: "absolute target naming another host than Host"))
            }
        } else {
            reasons.append(Reason(kind: .badRequest, why: "target in no valid form"))
        }

        // Framing: Transfer-Encoding exactly `chunked`, once, HTTP/1.1 only; else a plain
        // decimal Content-Length within max_body_bytes.
        let transferEncodings = self.values("transfer-encoding")
        if !transferEncodings.isEmpty {
            if !self.isHTTP11 || transferEncodings.count != 1
                || !Bytes.equalsIgnoringASCIICase(Bytes.trimmingOWS(String(decoding: transferEncodings[0], as: UTF8.self)), literal: "chunked")
            {
                reasons.append(Reason(kind: .badRequest, why: "Transfer-Encoding other than one `chunked` in HTTP/1.1"))
            }
        } else if let length = self.values("content-length").first {
            switch Self.decimal(Bytes.trimmingOWS(String(decoding: length, as: UTF8.self))) {
            case .none:
                reasons.append(Reason(kind: .badRequest, why: "Content-Length is not 1*DIGIT"))
            case .some(let n) where n > self.options.maxBodyBytes:
                reasons.append(Reason(kind: .tooLarge, why: "Content-Length over max_body_bytes"))
            default:
                break
            }
        }

        // Expect: only one `100-continue` (RFC 9110 §10.1.1).
        let expects = self.values("expect")
        if !expects.isEmpty
            && (expects.count != 1 || !Bytes.equalsIgnoringASCIICase(Bytes.trimmingOWS(String(decoding: expects[0], as: UTF8.self)), literal: "100-continue"))
        {
            reasons.append(Reason(kind: .expectation, why: "Expect other than one 100-continue"))
        }
        return reasons
    }

    /// `http://` or `https://` (any case), the authority up to the first `/`, `?` or `#`, and the rest.
    static func splitAbsolute(_ target: [UInt8]) -> (authority: ArraySlice<UInt8>, rest: ArraySlice<UInt8>)? {
        let lower = target.map(Bytes.lower)
        let schemeLength: Int
        if lower.starts(with: Array("http://".utf8)) {
            schemeLength = 7
        } else if lower.starts(with: Array("https://".utf8)) {
            schemeLength = 8
        } else {
            return nil
        }
        let afterScheme = target[schemeLength...]
        let end = afterScheme.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? afterScheme.endIndex
        return (afterScheme[..<end], afterScheme[end...])
    }

    /// `1*DIGIT` as an `Int`, or nil (also when it overflows).
    static func decimal(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var n = 0
        for byte in bytes {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            let (times10, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(byte - 0x30))
            if o1 || o2 { return nil }
            n = sum
        }
        return n
    }

    /// What an accepted head's framing must say.
    func checkAccepted(_ framing: RequestFraming) {
        let target = Array(framing.target.utf8)
        let uri = Array(self.head.uri.utf8)
        // The target goes into the upstream's request line: a space or control byte there would
        // let the client write the rest of that line (RFC 9112 §3: request-target has neither).
        invariant(
            !target.isEmpty && target.allSatisfy { $0 > 0x20 && $0 != 0x7F },
            "the target forwarded upstream contains a space or control byte: \(String(reflecting: framing.target)); head: \(self.describe())"
        )
        if uri.first == UInt8(ascii: "/") {
            invariant(target == uri, "origin-form target changed on the way: \(String(reflecting: framing.target))")
        } else if uri == [UInt8(ascii: "*")] {
            invariant(target == uri, "`*` became \(String(reflecting: framing.target))")
        } else if let absolute = Self.splitAbsolute(uri) {
            // The origin-form of an absolute target: its path and query, `/` when it has no path.
            var expected = Array(absolute.rest)
            if expected.first == UInt8(ascii: "#") { expected = [] }
            if expected.isEmpty || expected.first == UInt8(ascii: "?") { expected = [UInt8(ascii: "/")] + expected }
            invariant(target == expected, "absolute target \(String(reflecting: self.head.uri)) forwarded as \(String(reflecting: framing.target))")
        } else {
            invariant(false, "accepted a target in no valid form: \(String(reflecting: self.head.uri))")
        }

        let transferEncodings = self.values("transfer-encoding")
        if !transferEncodings.isEmpty {
            invariant(framing.body == .chunked, "Transfer-Encoding: chunked framed as \(framing.body)")
        } else if let length = self.values("content-length").first {
            let n = Self.decimal(Bytes.trimmingOWS(String(decoding: length, as: UTF8.self)))
            invariant(framing.body == .contentLength(n ?? -1), "Content-Length \(String(reflecting: String(decoding: length, as: UTF8.self))) framed as \(framing.body)")
        } else {
            invariant(framing.body == .none, "a head without Content-Length or Transfer-Encoding framed as \(framing.body)")
        }
        invariant(
            framing.expectsContinue == (!self.values("expect").isEmpty && self.isHTTP11),
            "expectsContinue is \(framing.expectsContinue) for \(self.describe())"
        )
    }

    // MARK: Header rewrites

    /// Lowercased, OWS-trimmed names the Connection fields nominate (RFC 9110 §7.6.1).
    func nominated() -> Set<[UInt8]> {
        var names: Set<[UInt8]> = []
        for value in self.values("connection") {
            for token in value.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
                let trimmed = Bytes.trimmingOWS(String(decoding: token, as: UTF8.self))
                if !trimmed.isEmpty { names.insert(trimmed.map(Bytes.lower)) }
            }
        }
        return names
    }

    /// Hop-by-hop by name (RFC 9110 §7.6.1 and the list in HeaderRewrite's documentation).
    static func isHopByHop(_ field: Field) -> Bool {
        ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy"].contains { field.named($0) }
            || field.namePrefixed("proxy-")
    }

    /// Names whose fields Subgate writes itself on the way upstream.
    static func isSubgateWritten(_ field: Field) -> Bool {
        ["content-length", "transfer-encoding", "x-forwarded-for", "x-forwarded-proto", "x-request-id"].contains { field.named($0) }
            || field.namePrefixed("x-subgate-")
    }

    static let added = [("x-subgate-token-hash", String(repeating: "ab", count: 32)), ("x-subgate-subscriber-id", "sub_fuzz")]
    static let generatedID = "fuzz-generated-request-id"

    func checkUpstreamHeaders(_ framing: RequestFraming) {
        let options = self.options
        let removeToken = !options.forwardToken
        let nominated = self.nominated()
        let crosses: (Field) -> Bool = { field in
            !Self.isHopByHop(field) && !nominated.contains(field.lowerName)
        }
        let isToken: (Field) -> Bool = { $0.named(options.tokenHeader) }
        let isGatewaySecret: (Field) -> Bool = { options.removeGatewaySecret && $0.named("x-crochet-gateway-secret") }

        let (headers, requestID) = HeaderRewrite.upstreamRequestHeaders(
            self.head.headers,
            framing: framing.body,
            context: HeaderRewrite.RequestContext(
                clientAddress: options.clientAddress,
                tokenHeaderToRemove: removeToken ? options.tokenHeader : nil,
                removeGatewaySecret: options.removeGatewaySecret,
                added: Self.added
            ),
            generateRequestID: { Self.generatedID }
        )
        let out = headers.map { Field($0.name, $0.value) }
        let context = "forward_token=\(options.forwardToken) token_header=\(options.tokenHeader) gateway_secret=\(options.removeGatewaySecret); head: \(self.describe()); upstream head: \(String(reflecting: out.map(\.text)))"

        // Serialisable: no CR, LF or NUL anywhere (NIO's decoder refused them; nothing may add them).
        for field in out {
            invariant(
                !field.name.isEmpty && !field.name.contains { $0 <= 0x20 || $0 == 0x3A || $0 == 0x7F }
                    && !field.value.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 },
                "unserialisable upstream field \(String(reflecting: field.text)); \(context)"
            )
        }

        // Client fields relay unchanged, in order, except hop-by-hop and nominated ones, the
        // client's x-subgate-*, Expect, the token (unless forward_token) and the gateway secret
        // (with gateway_secret set), and the fields Subgate writes itself.
        let expectedClientFields = self.fields.filter { field in
            crosses(field) && !Self.isSubgateWritten(field) && !field.named("expect") && !(removeToken && isToken(field))
                && !isGatewaySecret(field)
        }
        let relayedClientFields = out.filter { !Self.isSubgateWritten($0) }
        invariant(relayedClientFields == expectedClientFields, "client fields relayed as \(String(reflecting: relayedClientFields.map(\.text))), expected \(String(reflecting: expectedClientFields.map(\.text))); \(context)")

        // Never hop-by-hop, except the one Transfer-Encoding Subgate's own framing needs.
        for field in out where Self.isHopByHop(field) {
            invariant(field.named("transfer-encoding"), "hop-by-hop field \(String(reflecting: field.text)) relayed upstream; \(context)")
        }
        // The token never crosses unless forward_token; the gateway secret never with gateway_secret set.
        // (A name Subgate writes itself is held to its own oracle below: what Subgate writes
        // under it must not come from the token field.)
        if removeToken {
            invariant(!out.contains { isToken($0) && !Self.isSubgateWritten($0) }, "the token header crossed with forward_token = false; \(context)")
        }
        invariant(!out.contains(where: isGatewaySecret), "x-crochet-gateway-secret crossed with gateway_secret set; \(context)")
        invariant(!out.contains { $0.named("expect") }, "Expect crossed; \(context)")

        // Framing: exactly what the checked framing says, once (never two Content-Length).
        let lengths = out.filter { $0.named("content-length") }
        let transferEncodings = out.filter { $0.named("transfer-encoding") }
        switch framing.body {
        case .none:
            invariant(lengths.isEmpty && transferEncodings.isEmpty, "framing fields on a body-less request; \(context)")
        case .contentLength(let n):
            invariant(lengths.map(\.value) == [Array(String(n).utf8)] && transferEncodings.isEmpty, "Content-Length \(n) framed upstream as \(String(reflecting: (lengths + transferEncodings).map(\.text))); \(context)")
        case .chunked:
            invariant(lengths.isEmpty && transferEncodings.map(\.value) == [Array("chunked".utf8)], "chunked framed upstream as \(String(reflecting: (lengths + transferEncodings).map(\.text))); \(context)")
        }

        // x-subgate-*: Subgate's own fields and nothing from the client.
        let subgate = out.filter { $0.namePrefixed("x-subgate-") }
        invariant(subgate == Self.added.map { Field($0.0, $0.1) }, "x-subgate-* upstream are \(String(reflecting: subgate.map(\.text))); \(context)")

        // x-forwarded-proto: one, `http`.
        invariant(out.filter { $0.named("x-forwarded-proto") }.map(\.value) == [Array("http".utf8)], "x-forwarded-proto is not exactly one `http`; \(context)")

        // x-forwarded-for: the client's crossing values, then the client address.
        let clientForwardedFor = self.fields.filter { $0.named("x-forwarded-for") && crosses($0) && !(removeToken && isToken($0)) }.map(\.value)
        var chain = clientForwardedFor
        if let address = options.clientAddress { chain.append(Array(address.utf8)) }
        let expectedForwardedFor: [[UInt8]] = chain.isEmpty ? [] : [Array(chain.joined(separator: Array(", ".utf8)))]
        invariant(out.filter { $0.named("x-forwarded-for") }.map(\.value) == expectedForwardedFor, "x-forwarded-for upstream differs from the client's chain plus its address; \(context)")

        // x-request-id: one; the first crossing client id that is 1…128 visible ASCII bytes, else
        // a generated one. It is logged, so it is never a raw token.
        let clientID = self.fields.first { field in
            field.named("x-request-id") && crosses(field) && !(removeToken && isToken(field))
                && !field.value.isEmpty && field.value.count <= 128 && field.value.allSatisfy { $0 > 0x20 && $0 < 0x7F }
        }
        invariant(clientID.map(isToken) != true, "the request id, which is logged, is taken from the token header: a raw token would reach the log; \(context)")
        let expectedID = clientID?.value ?? Array(Self.generatedID.utf8)
        invariant(Array(requestID.utf8) == expectedID, "request id \(String(reflecting: requestID)); \(context)")
        invariant(out.filter { $0.named("x-request-id") }.map(\.value) == [expectedID], "x-request-id upstream differs from the returned id; \(context)")

        invariant(out.count == expectedClientFields.count + subgate.count + 2 + (expectedForwardedFor.isEmpty ? 0 : 1) + lengths.count + transferEncodings.count, "unexpected extra fields upstream; \(context)")
    }

    /// The same fields as an upstream answer's: hop-by-hop, nominated and x-subgate-* fields
    /// removed, x-subgate-usage handed to Subgate, framing only exactly `chunked` or none.
    func checkResponseHeaders() {
        let nominated = self.nominated()
        let transferEncodings = self.values("transfer-encoding")
        let ambiguous = transferEncodings.count > 1
            || (transferEncodings.count == 1 && !Bytes.equalsIgnoringASCIICase(Bytes.trimmingOWS(String(decoding: transferEncodings[0], as: UTF8.self)), literal: "chunked"))
        let context = "upstream answer fields: \(String(reflecting: self.fields.map(\.text)))"
        switch HeaderRewrite.clientResponseHeaders(self.head.headers) {
        case .failure:
            invariant(ambiguous, "refused an answer framed by one `chunked` or none; \(context)")
        case .success(let answer):
            invariant(!ambiguous, "relayed an answer with ambiguous Transfer-Encoding; \(context)")
            let out = answer.headers.map { Field($0.name, $0.value) }
            let expected = self.fields.filter { field in
                !Self.isHopByHop(field) && !nominated.contains(field.lowerName) && !field.namePrefixed("x-subgate-")
            }
            invariant(out == expected, "client answer fields \(String(reflecting: out.map(\.text))), expected \(String(reflecting: expected.map(\.text))); \(context)")
            let usage = self.fields.first { $0.named("x-subgate-usage") && !nominated.contains($0.lowerName) }?.value
            invariant(answer.usage.map { Array($0.utf8) } == usage, "x-subgate-usage taken as \(String(reflecting: answer.usage)); \(context)")
        }
    }
}
