import NIOHTTP1
import Testing

import SubgateCore

/// Inputs on which the fuzz/ targets' oracles and the code disagreed, kept as tests: the fuzz
/// corpus is no test suite, and CI's short fuzz runs need not meet them again (fuzz/README.md).
/// Every one is a protocol comparison that went through `String`'s Unicode-aware operations
/// (`lowercased()`, `hasPrefix`) where HTTP and the token's hash compare bytes.
@Suite("Regressions from the fuzz targets")
struct FuzzFindingTests {
    static func head(_ fields: [(String, String)], method: HTTPMethod = .POST) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: "/", headers: HTTPHeaders([("host", "a.example")] + fields))
    }

    // MARK: - request-head

    @Test("SPEC §3 step 1: Transfer-Encoding `chun\\u{212A}ed` (KELVIN SIGN, which lowercases to k) is not `chunked`: 400 and close")
    func kelvinSignTransferEncoding() {
        let result = RequestHeadRules.check(Self.head([("transfer-encoding", "chun\u{212A}ed")]), maxBodyBytes: 1000)
        guard case .failure(let rejection) = result else {
            Issue.record("a Transfer-Encoding that is not the bytes of `chunked` was framed as \(result)")
            return
        }
        #expect(rejection.code == "BAD_REQUEST" && rejection.closeConnection, "got \(rejection)")
        // ASCII case still does not matter.
        let upper = RequestHeadRules.check(Self.head([("transfer-encoding", "CHUNKED")]), maxBodyBytes: 1000)
        #expect((try? upper.get())?.body == .chunked, "`CHUNKED` must stay chunked, got \(upper)")
    }

    @Test("RFC 9110 §7.6.1: a Connection token with a non-ASCII letter names no ASCII field (upstream and client side)")
    func kelvinSignConnectionToken() throws {
        let head = Self.head([("connection", "\u{212A}-Foo"), ("K-Foo", "1"), ("x-bar", "2")], method: .GET)
        let framing = try RequestHeadRules.check(head, maxBodyBytes: 1000).get()
        let (upstream, _) = HeaderRewrite.upstreamRequestHeaders(
            head.headers,
            framing: framing.body,
            context: HeaderRewrite.RequestContext(clientAddress: nil, tokenHeaderToRemove: "x-subscription-token"),
            generateRequestID: { "id" }
        )
        #expect(upstream["k-foo"] == ["1"], "K-Foo was removed by a Connection token that does not name it: \(upstream)")
        #expect(!upstream.contains(name: "connection"), "Connection is hop-by-hop: \(upstream)")

        let answer = try HeaderRewrite.clientResponseHeaders(head.headers).get()
        #expect(answer.headers["k-foo"] == ["1"], "K-Foo was removed from the answer: \(answer.headers)")

        // An ASCII nomination, in any case, still removes the field.
        let named = Self.head([("connection", "K-FOO"), ("k-foo", "1")], method: .GET)
        let (named2, _) = HeaderRewrite.upstreamRequestHeaders(
            named.headers,
            framing: .none,
            context: HeaderRewrite.RequestContext(clientAddress: nil, tokenHeaderToRemove: nil),
            generateRequestID: { "id" }
        )
        #expect(!named2.contains(name: "k-foo"), "a field Connection names reached the upstream: \(named2)")
    }

    // MARK: - token

    @Test("SPEC §3 step 2: token_prefix is compared as bytes")
    func tokenPrefixIsBytes() {
        // U+212A KELVIN SIGN is canonically equivalent to `K`, but its bytes are not `K`.
        let kelvin = HTTPHeaders([("x-subscription-token", "\u{212A}abc")])
        #expect(TokenLookup.find(in: kelvin, name: "x-subscription-token", prefix: "K") == .missing)
        // A combining mark after the prefix joins its last character, but the bytes start with it.
        let combining = "cro_sub_\u{301}x"
        let joined = HTTPHeaders([("x-subscription-token", combining)])
        guard case .present(let raw) = TokenLookup.find(in: joined, name: "x-subscription-token", prefix: "cro_sub_") else {
            Issue.record("a token whose bytes start with cro_sub_ was taken as missing")
            return
        }
        #expect(Array(raw.utf8) == Array(combining.utf8), "the token must be the header's exact bytes")
    }
}
