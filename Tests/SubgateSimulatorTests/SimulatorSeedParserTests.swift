import Foundation
import SubgateCore
import Testing
@testable import SubgateSimulator

/// `subgate simulate --seed FILE`: the fixture grammar, its errors (file, line, key) and
/// what applying a seed creates. No sockets.
@Suite struct SimulatorSeedParserTests {
    /// docs/simulator-seed.example.conf, which the docs show.
    static var exampleFile: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/simulator-seed.example.conf").path
    }

    static func errors(_ text: String) -> [String] {
        switch SimulatorSeedParser.parse(text, file: "seed.conf") {
        case .success: return []
        case .failure(let errors): return errors.errors.map(\.description)
        }
    }

    @Test("the example file in docs/ parses, and applying it creates what it describes")
    func exampleFile() throws {
        let seed = try SimulatorSeedParser.load(file: Self.exampleFile).get()
        #expect(seed.sellers == [SimulatedSeller(sellerID: "acme", sellerKey: "am_k_acme", gatewaySecret: "gw_acme_example_secret")])
        #expect(seed.listings.map(\.listingID) == ["lst_forecast", "lst_cheap"] && seed.listings.map(\.priceMicroUSD) == [1_000_000, 50_000])
        #expect(seed.tokens.map(\.name) == ["healthy", "unlimited", "almost_used_up", "expired", "rotated"])
        #expect(seed.crovverKeys == ["sk_test_acme"])

        var store = SimulatorStore(now: t0)
        let tokens = try store.apply(seed, now: t0)
        #expect(tokens.map(\.name) == seed.tokens.map(\.name))
        let raw = Dictionary(tokens.map { ($0.name, $0.token) }, uniquingKeysWith: { a, _ in a })
        #expect(raw["healthy"] == "cro_sub_0123456789abcdef0123456789abcdef", "a fixed raw token is kept")
        let healthy = store.crochet.tokens[sha256Hex(raw["healthy"] ?? "")]
        #expect(healthy?.sellerKey == "am_k_acme" && healthy?.listingID == "lst_forecast" && healthy?.usageLimit == 100, "the seller comes from the listing")
        #expect(store.crochet.tokens[sha256Hex(raw["unlimited"] ?? "")]?.usageLimit == nil)
        #expect(store.crochet.tokens[sha256Hex(raw["unlimited"] ?? "")]?.sellerKey == "am_k_demo", "no listing, no seller: the demo seller")
        #expect(store.crochet.tokens[sha256Hex(raw["almost_used_up"] ?? "")]?.remaining == 1)
        #expect(store.crochet.token(hash: sha256Hex(raw["expired"] ?? ""), now: t0)?.status == "expired", "-1h is an hour before the start")
        #expect(store.crochet.tokens[sha256Hex(raw["rotated"] ?? "")]?.status == "revoked")
        #expect(store.gateway.listings["lst_forecast"]?.sellerID == "acme")
        let tenant = store.crovver.tenants["workspace_123"]
        #expect(tenant?.plan == "pro" && tenant?.pools.map(\.poolKey) == ["api_calls", "ai_tokens"])
        #expect(store.crovver.balance(tenantID: "workspace_123", poolKey: "api_calls", now: t0) == 1350)
        #expect(tenant?.pool("api_calls")?.grants.last?.expiresAt == t0.addingTimeInterval(30 * 86_400))
        #expect(tenant?.pool("ai_tokens")?.limit == .soft)
        #expect(store.crovver.keys.contains("sk_test_acme"))
        #expect(throws: SimulatorSeedConflict.self, "applying it twice collides and creates nothing") { try store.apply(seed, now: t0) }
        #expect(store.crochet.tokens.count == 5)
    }

    @Test("bad lines name the file, the line and the key, all in one pass")
    func errorsNameFileLineAndKey() {
        let text = """
            # a comment

            seller.acme.key = am_k_acme
            this line has no equals sign
            token.a.usage_limit = lots
            token.a.usage_limit = 5
            token.b.colour = red
            widget.x.y = 1
            token.bad.name.x = 1
            token.c.expires_at = tomorrow
            listing.l.seller = nobody
            pool.p.tenant = ghost
            seller.acme.gateway_secret =
            crovver = sk_x
            """
        #expect(
            Self.errors(text) == [
                "seed.conf:4: this line has no `=`; write entries as `kind.name.field = value`, and start comment lines with `#`",
                "seed.conf:5: token.a.usage_limit: must be an integer ≥ 0, or unlimited",
                "seed.conf:6: token.a.usage_limit: is set twice, on line 5 and again here; keep one of them",
                "seed.conf:7: token.b.colour: unknown field `colour`; a token takes seller, listing, subscriber, usage_limit, usage_count, expires_at, status, raw",
                "seed.conf:8: widget.x.y: unknown kind `widget`; the kinds are addon, listing, pool, seller, tenant, token",
                "seed.conf:9: token.bad.name.x: a key is kind.name.field, three parts joined by dots, such as token.healthy.usage_limit",
                "seed.conf:10: token.c.expires_at: must be never, an ISO-8601 time such as 2026-04-17T00:00:00Z, or a time from the start such as +30d or -1h (units s, m, h, d)",
                "seed.conf:11: listing.l.seller: no seller `nobody`; define it with seller.nobody.key = am_k_…, or use demo",
                "seed.conf:11: listing.l.endpoint: is required: the seller's http:// URL that paid calls are POSTed to",
                "seed.conf:11: listing.l.price_usd: is required: the price of one call in dollars, such as 0.25",
                "seed.conf:12: pool.p.tenant: no tenant `ghost`; declare it with tenant.ghost.plan = …",
                "seed.conf:13: seller.acme.gateway_secret: has no value; give it one, or delete the line",
                "seed.conf:14: crovver: unknown key; keys are kind.name.field (kinds: addon, listing, pool, seller, tenant, token) or crovver_key",
            ]
        )
    }

    @Test("secret values are never quoted back in errors")
    func secretsNotEchoed() {
        let errors = Self.errors(
            """
            seller.x.key = sk_secret_value_1
            token.t.raw = not_a_token_secret_2
            seller.y.key = am_k_dup
            seller.z.key = am_k_dup
            """
        )
        #expect(errors.count == 3, "\(errors)")
        for error in errors {
            #expect(!error.contains("secret_value") && !error.contains("token_secret") && !error.contains("am_k_dup"), "\(error)")
        }
    }

    @Test("cross-references and uniqueness are checked: listing sellers, token sellers, pools of add-ons, raw tokens, the demo seller")
    func crossReferences() {
        let errors = Self.errors(
            """
            seller.acme.key = am_k_acme
            seller.demo.key = am_k_other
            seller.beta.key = am_k_demo
            listing.l.seller = acme
            listing.l.endpoint = ftp://x
            listing.l.price_usd = 0
            listing.m.seller = acme
            listing.m.endpoint = http://127.0.0.1:1/x
            listing.m.price_usd = 1
            token.t.listing = m
            token.t.seller = demo
            token.u.raw = cro_sub_same
            token.v.raw = cro_sub_same
            tenant.w.plan = pro
            pool.p.tenant = w
            pool.p.credits = 5
            pool.q.tenant = w
            pool.q.pool_key = p
            pool.q.credits = 1
            addon.a.tenant = w
            addon.a.pool_key = nope
            addon.a.credits = 1
            """
        )
        #expect(
            errors == [
                "seed.conf:2: seller.demo: the seller `demo` is built in (key am_k_demo); choose another name",
                "seed.conf:3: seller.beta.key: this seller key is already the built-in demo seller's; each seller has its own key",
                "seed.conf:5: listing.l.endpoint: must be an http:// or https:// URL with a host and no query, such as http://127.0.0.1:8080/run",
                "seed.conf:11: token.t.seller: listing m is seller acme's; a token is for its listing's seller (leave seller out to take it from the listing)",
                "seed.conf:13: token.v.raw: is the same raw token as token.u's; each token needs its own",
                "seed.conf:17: pool.q: tenant w already has a pool p; pool keys are unique per tenant",
                "seed.conf:21: addon.a.pool_key: tenant w has no pool nope; define it with pool.NAME.tenant = w and pool.NAME.pool_key = nope",
            ],
            "\(errors)"
        )
    }

    @Test("values: unlimited, never, relative times, CRLF and a byte-order mark")
    func values() throws {
        let seed = try SimulatorSeedParser.parse(
            "\u{FEFF}token.a.usage_limit = unlimited\r\ntoken.a.expires_at = never\r\ntoken.b.expires_at = +90s\ntoken.c.expires_at = 2026-04-17T00:00:00Z\ntoken.d.expires_at = -2d\n",
            file: "x"
        ).get()
        #expect(seed.tokens.map(\.expiresAt) == [nil, .relative(seconds: 90), .absolute(Date(timeIntervalSince1970: 1_776_384_000)), .relative(seconds: -172_800)])
        #expect(seed.tokens.first?.usageLimit == nil && seed.tokens.dropFirst().first?.usageLimit == 100)
        #expect(seed.tokens.first?.subscriberID == "usr_a", "each token has its own subscriber unless set")
        #expect(SimulatorSeedParser.relative("+1x") == nil && SimulatorSeedParser.relative("30d") == nil && SimulatorSeedParser.relative("+d") == nil)
    }

    @Test("a file that cannot be read is one error naming it")
    func unreadable() {
        guard case .failure(let errors) = SimulatorSeedParser.load(file: "/nonexistent/seed.conf") else {
            Issue.record("a missing file parsed")
            return
        }
        #expect(errors.errors.count == 1 && errors.description.hasPrefix("/nonexistent/seed.conf: cannot read the seed file"), "\(errors)")
    }
}
