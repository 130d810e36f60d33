import NIOHTTP1
import Testing

@testable import SubgateCore

/// SPEC §3 steps 1 and 6 as values: `RequestHeadRules.check` and `HeaderRewrite`, no channel.
@Suite struct RequestHeadRulesTests {
    static func head(
        _ method: HTTPMethod = .GET,
        _ uri: String = "/",
        version: HTTPVersion = .http1_1,
        _ headers: [(String, String)] = [("host", "a.example")]
    ) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers))
    }

    static func check(_ head: HTTPRequestHead, maxBodyBytes: Int = 1000) -> Result<RequestFraming, ProxyRejection> {
        RequestHeadRules.check(head, maxBodyBytes: maxBodyBytes)
    }

    static func rejection(_ result: Result<RequestFraming, ProxyRejection>) -> ProxyRejection? {
        if case .failure(let rejection) = result { return rejection }
        return nil
    }

    static func framing(_ result: Result<RequestFraming, ProxyRejection>) -> RequestFraming? {
        if case .success(let framing) = result { return framing }
        return nil
    }

    // MARK: - Framing

    @Test("RFC 9112 §6: no body, Content-Length and chunked are framed as such")
    func framingOfAcceptedHeads() {
        #expect(Self.framing(Self.check(Self.head()))?.body == RequestFraming.Body.none)
        #expect(Self.framing(Self.check(Self.head(.POST, "/", [("host", "a"), ("content-length", "12")])))?.body == .contentLength(12))
        #expect(Self.framing(Self.check(Self.head(.POST, "/", [("host", "a"), ("content-length", "0")])))?.body == .contentLength(0))
        #expect(Self.framing(Self.check(Self.head(.POST, "/", [("host", "a"), ("transfer-encoding", "Chunked ")])))?.body == .chunked)
        // HTTP/1.0 may omit Host.
        #expect(Self.framing(Self.check(Self.head(version: .http1_0, []))) != nil, "HTTP/1.0 without Host is valid")
    }

    @Test("SPEC §2 max_body_bytes: a declared length over the limit is 413, at the limit is accepted")
    func declaredLengthLimit() {
        #expect(Self.rejection(Self.check(Self.head(.POST, "/", [("host", "a"), ("content-length", "1001")]))) == .payloadTooLarge)
        #expect(Self.framing(Self.check(Self.head(.POST, "/", [("host", "a"), ("content-length", "1000")])))?.body == .contentLength(1000))
        #expect(Self.rejection(Self.check(Self.head(.POST, "/", [("host", "a"), ("content-length", "-1")])))?.code == "BAD_REQUEST")
    }

    static let badTransferEncodings: [[String]] = [
        [",chunked"], ["chunked, chunked"], ["gzip"], ["gzip, chunked"], ["chunked", "chunked"], ["chunked,"], ["identity"],
    ]

    @Test("SPEC §3 step 1: Transfer-Encoding other than exactly one `chunked` is 400 and closes", arguments: badTransferEncodings)
    func transferEncodingMustBeExactlyChunked(_ values: [String]) {
        let headers = [("host", "a")] + values.map { ("transfer-encoding", $0) }
        let rejection = Self.rejection(Self.check(Self.head(.POST, "/", headers)))
        #expect(rejection?.status == .badRequest, "Transfer-Encoding \(values) was accepted")
        #expect(rejection?.closeConnection == true, "a framing refusal must close the connection")
    }

    @Test("SPEC §3 step 1: HTTP/1.0 with Transfer-Encoding is 400")
    func http10WithTransferEncoding() {
        let rejection = Self.rejection(Self.check(Self.head(.POST, "/", version: .http1_0, [("host", "a"), ("transfer-encoding", "chunked")])))
        #expect(rejection?.status == .badRequest && rejection?.closeConnection == true)
    }

    // MARK: - Host and targets

    @Test("RFC 9112 §3.2: HTTP/1.1 needs exactly one valid Host")
    func hostRules() {
        #expect(Self.rejection(Self.check(Self.head(.GET, "/", []))) == .badRequest("The request has no Host header."))
        #expect(Self.rejection(Self.check(Self.head(.GET, "/", [("host", "a"), ("host", "a")]))) == .badRequest("The request has more than one Host header."))
        #expect(Self.rejection(Self.check(Self.head(.GET, "/", [("host", "")])))?.status == .badRequest, "an empty Host in HTTP/1.1 was accepted")
        #expect(Self.rejection(Self.check(Self.head(.GET, "/", [("host", "a@b")])))?.status == .badRequest, "userinfo in Host was accepted")
        #expect(Self.framing(Self.check(Self.head(.GET, "/", [("host", "[::1]:8080")]))) != nil, "an IPv6 Host was refused")
    }

    @Test("RFC 9112 §3.2: absolute-form is accepted only for the Host it names, and forwarded in origin-form")
    func absoluteForm() {
        let same = Self.framing(Self.check(Self.head(.GET, "http://A.example:80/p?q=1", [("host", "a.example:80")])))
        #expect(same?.target == "/p?q=1")
        let bare = Self.framing(Self.check(Self.head(.GET, "http://a.example", [("host", "a.example")])))
        #expect(bare?.target == "/", "an absolute target without a path must become `/`")
        let query = Self.framing(Self.check(Self.head(.GET, "http://a.example?x", [("host", "a.example")])))
        #expect(query?.target == "/?x")
        #expect(Self.rejection(Self.check(Self.head(.GET, "http://b.example/", [("host", "a.example")])))?.status == .badRequest)
        #expect(Self.rejection(Self.check(Self.head(.GET, "http://a.example@b.example/", [("host", "a.example@b.example")])))?.status == .badRequest)
        #expect(Self.rejection(Self.check(Self.head(.GET, "ftp://a.example/", [("host", "a.example")])))?.status == .badRequest)
        #expect(Self.rejection(Self.check(Self.head(.GET, "relative", [("host", "a")])))?.status == .badRequest)
    }

    @Test("RFC 9112 §3.2.4: `*` only with OPTIONS")
    func asteriskForm() {
        #expect(Self.framing(Self.check(Self.head(.OPTIONS, "*")))?.target == "*")
        #expect(Self.rejection(Self.check(Self.head(.GET, "*")))?.status == .badRequest)
    }

    // MARK: - Upgrades, CONNECT, Expect, versions

    @Test("SPEC §3: Upgrade and CONNECT are 501 and close")
    func upgradeAndConnect() {
        #expect(Self.rejection(Self.check(Self.head(.GET, "/", [("host", "a"), ("upgrade", "websocket"), ("connection", "upgrade")]))) == .upgradeNotSupported)
        #expect(Self.rejection(Self.check(Self.head(.CONNECT, "a:443", [("host", "a:443")]))) == .upgradeNotSupported)
        #expect(ProxyRejection.upgradeNotSupported.closeConnection)
    }

    @Test("RFC 9110 §10.1.1: Expect: 100-continue is understood (HTTP/1.1 only), any other expectation is 417")
    func expect() {
        let headers = [("host", "a"), ("content-length", "3"), ("expect", "100-Continue")]
        #expect(Self.framing(Self.check(Self.head(.POST, "/", headers)))?.expectsContinue == true)
        #expect(Self.framing(Self.check(Self.head(.POST, "/", version: .http1_0, headers)))?.expectsContinue == false, "HTTP/1.0 clients do not understand 100")
        #expect(Self.rejection(Self.check(Self.head(.POST, "/", [("host", "a"), ("expect", "bananas")]))) == .expectationFailed)
    }

    @Test("only HTTP/1.0 and HTTP/1.1 are spoken")
    func versions() {
        #expect(Self.rejection(Self.check(Self.head(version: HTTPVersion(major: 2, minor: 0))))?.status == .badRequest)
        #expect(Self.rejection(Self.check(Self.head(version: HTTPVersion(major: 1, minor: 2))))?.status == .badRequest)
    }

    // MARK: - SPEC §3 step 6: HeaderRewrite towards the upstream

    static func upstream(
        _ headers: [(String, String)],
        framing: RequestFraming.Body = .none,
        client: String? = "203.0.113.7",
        token: String? = "x-subscription-token",
        added: [(String, String)] = []
    ) -> (headers: HTTPHeaders, requestID: String) {
        HeaderRewrite.upstreamRequestHeaders(
            HTTPHeaders(headers),
            framing: framing,
            context: HeaderRewrite.RequestContext(clientAddress: client, tokenHeaderToRemove: token, added: added),
            generateRequestID: { "generated-id" }
        )
    }

    @Test("RFC 9110 §7.6.1: hop-by-hop fields and the fields Connection names never reach the upstream")
    func hopByHopRemoved() {
        let (headers, _) = Self.upstream([
            ("Host", "a"), ("Connection", "keep-alive, X-Private"), ("connection", "X-Other"), ("X-Private", "1"), ("X-Other", "2"),
            ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X-Sum"), ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "keep-alive"), ("Proxy-Authenticate", "Basic"),
            ("Proxy", "http://evil.example:8080"), ("Transfer-Encoding", "chunked"), ("X-End-To-End", "kept"),
        ], framing: .chunked)
        for name in [
            "connection", "x-private", "x-other", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
            "proxy-connection", "proxy-authenticate", "proxy",
        ] {
            #expect(headers[name] == [], "`\(name)` reached the upstream")
        }
        #expect(headers["x-end-to-end"] == ["kept"])
        #expect(headers["host"] == ["a"])
        #expect(headers["transfer-encoding"] == ["chunked"], "Subgate re-frames the body itself as chunked")
    }

    @Test("SPEC §3 step 1: every client field starting with x-subgate- is removed; Subgate's own are added after")
    func subgateHeadersCannotBeSpoofed() {
        let (headers, _) = Self.upstream(
            [("host", "a"), ("X-Subgate-Subscriber-Id", "evil"), ("x-subgate-remaining", "999999"), ("X-SUBGATE-TOKEN-HASH", "evil")],
            added: [("x-subgate-subscriber-id", "sub_1")]
        )
        #expect(headers["x-subgate-subscriber-id"] == ["sub_1"], "only Subgate's value may remain")
        #expect(headers["x-subgate-remaining"] == [])
        #expect(headers["x-subgate-token-hash"] == [])
    }

    @Test("SPEC §3 step 6: the token header is removed unless forward_token")
    func tokenRemoval() {
        #expect(Self.upstream([("host", "a"), ("X-Subscription-Token", "cro_sub_1")]).headers["x-subscription-token"] == [])
        #expect(Self.upstream([("host", "a"), ("X-Subscription-Token", "cro_sub_1")], token: nil).headers["x-subscription-token"] == ["cro_sub_1"])
    }

    @Test("SPEC §3 step 6: x-forwarded-for appended, x-forwarded-proto set by Subgate, x-request-id kept or generated")
    func forwardedHeaders() {
        let (headers, id) = Self.upstream([("host", "a"), ("X-Forwarded-For", "198.51.100.1"), ("x-forwarded-proto", "https"), ("X-Request-Id", "abc-123")])
        #expect(headers["x-forwarded-for"] == ["198.51.100.1, 203.0.113.7"])
        #expect(headers["x-forwarded-proto"] == ["http"])
        #expect(headers["x-request-id"] == ["abc-123"] && id == "abc-123")

        let (generated, newID) = Self.upstream([("host", "a")])
        #expect(generated["x-request-id"] == ["generated-id"] && newID == "generated-id")
        #expect(generated["x-forwarded-for"] == ["203.0.113.7"])

        // A client id that could inject into logs or the upstream's head is replaced.
        let (replaced, _) = Self.upstream([("host", "a"), ("x-request-id", "has space")])
        #expect(replaced["x-request-id"] == ["generated-id"])
        let (long, _) = Self.upstream([("host", "a"), ("x-request-id", String(repeating: "a", count: 129))])
        #expect(long["x-request-id"] == ["generated-id"])
    }

    @Test("SPEC §3 step 6: the client's Content-Length is replaced by the checked framing")
    func framingHeadersRewritten() {
        let (cl, _) = Self.upstream([("host", "a"), ("Content-Length", "007")], framing: .contentLength(7))
        #expect(cl["content-length"] == ["7"])
        #expect(cl["transfer-encoding"] == [])
        let (none, _) = Self.upstream([("host", "a")])
        #expect(none["content-length"] == [] && none["transfer-encoding"] == [])
    }

    @Test("RFC 9110 §10.1.1: Subgate answers Expect itself, so the upstream is not asked to")
    func expectNotForwarded() {
        let (headers, _) = Self.upstream([("host", "a"), ("Expect", "100-continue"), ("content-length", "3")], framing: .contentLength(3))
        #expect(headers["expect"] == [])
    }

    // MARK: - HeaderRewrite towards the client

    @Test("SPEC §3 step 6: an upstream answer loses its hop-by-hop and x-subgate-* fields; x-subgate-usage is handed to Subgate")
    func clientResponseHeaders() throws {
        let upstream = HTTPHeaders([
            ("Content-Type", "text/plain"), ("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=1"),
            ("Transfer-Encoding", "chunked"), ("Proxy-Authenticate", "Basic"), ("X-Subgate-Usage", "3"), ("x-subgate-other", "1"),
            ("Proxy", "http://evil"), ("TE", "trailers"), ("Trailer", "x"), ("Upgrade", "h2c"), ("X-Kept", "1"),
        ])
        let out = try HeaderRewrite.clientResponseHeaders(upstream).get()
        for name in ["connection", "x-hop", "keep-alive", "transfer-encoding", "proxy-authenticate", "x-subgate-usage", "x-subgate-other", "proxy", "te", "trailer", "upgrade"] {
            #expect(out.headers[name] == [], "`\(name)` reached the client")
        }
        #expect(out.headers["content-type"] == ["text/plain"] && out.headers["x-kept"] == ["1"], "end-to-end fields are relayed: \(out.headers)")
        #expect(out.usage == "3", "the upstream's billing instruction is returned to Subgate")
    }

    @Test("header names are classified ignoring ASCII case, and only whole names or the documented prefixes match")
    func nameClassification() {
        let cases: [(String, HeaderRewrite.NameKind)] = [
            ("Connection", .connection), ("CONTENT-LENGTH", .contentLength), ("content-lengthx", .other),
            ("Keep-Alive", .hopByHop), ("te", .hopByHop), ("TEx", .other), ("Trailer", .hopByHop), ("Trailers", .other),
            ("Transfer-Encoding", .hopByHop), ("Upgrade", .hopByHop), ("Proxy", .hopByHop), ("Proxy-Authorization", .hopByHop),
            ("Proxyx", .other), ("Expect", .expect), ("X-Subgate-Anything", .subgate), ("x-subgate", .other),
            ("X-Forwarded-For", .forwardedFor), ("x-forwarded-proto", .forwardedProto), ("X-Request-Id", .requestID),
            ("Host", .other), ("", .other), ("Ç", .other),
        ]
        for (name, kind) in cases {
            #expect(HeaderRewrite.kind(of: name) == kind, "`\(name)` is \(kind)")
        }
        let nominated = HeaderRewrite.connectionNominated(HTTPHeaders([("Connection", " close, X-Hop ,\tFoo,,Keep-Alive"), ("CONNECTION", "bar"), ("X", "y")]))
        #expect(nominated == ["close", "x-hop", "foo", "bar"] as Set, "Connection's tokens, trimmed and lowercased, keep-alive left out: \(nominated)")
    }

    @Test("SPEC §3 step 6: an upstream Transfer-Encoding other than exactly `chunked` is ambiguous framing (502)")
    func ambiguousUpstreamFraming() {
        for values in [["gzip, chunked"], ["chunked", "chunked"], ["identity"]] {
            let headers = HTTPHeaders(values.map { ("transfer-encoding", $0) })
            #expect(throws: HeaderRewrite.UpstreamResponseProblem.ambiguousFraming, "Transfer-Encoding \(values) was relayed") {
                try HeaderRewrite.clientResponseHeaders(headers).get()
            }
        }
        #expect((try? HeaderRewrite.clientResponseHeaders(HTTPHeaders([("Transfer-Encoding", "chunked")])).get()) != nil)
    }

    // MARK: - The JSON body

    @Test("SPEC §3: the rejection body is `{\"success\":false,\"error\":{\"code\",\"message\"}}`, escaped")
    func jsonBody() {
        let rejection = ProxyRejection(status: .badRequest, code: "BAD_REQUEST", message: "a \"quoted\"\nline\u{01}")
        #expect(rejection.jsonBody == #"{"success":false,"error":{"code":"BAD_REQUEST","message":"a \"quoted\"\nline\u0001"}}"#)
    }

    @Test("RequestID.generate: 32 lowercase hex digits, different each time")
    func requestIDs() {
        let a = RequestID.generate()
        let b = RequestID.generate()
        #expect(a.count == 32 && a.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        #expect(a != b)
        let many = Set((0..<100_000).map { _ in RequestID.generate() })
        #expect(many.count == 100_000, "request ids repeated: \(100_000 - many.count) duplicates")
    }
}
