import Testing

@testable import SubgateCore

/// One value that must not parse, and the whole message the parser must give for it.
struct BadValue: Sendable, CustomTestStringConvertible {
    /// What is wrong, in words: the name the test case shows.
    var what: String
    var key: String
    var value: String
    /// The message after `subgate.conf:1: key: `.
    var message: String

    var testDescription: String { "\(self.what): \(self.key) = \(self.value)" }

    init(_ what: String, _ key: String, _ value: String, _ message: String) {
        self.what = what
        self.key = key
        self.value = value
        self.message = message
    }
}

/// Every way a value can fail to parse (SPEC §2: durations, sizes, rates, booleans, choices,
/// addresses, URLs, header names, integers), each with the exact text the user sees.
@Suite("Config parser: values that do not parse")
struct ConfigValueErrorTests {
    static let durationForm = "expected a duration such as 10s, 100ms, 5m or 1h"
    static let sizeForm = "expected a number of bytes, or a size with k or m (1024-based) such as 16k or 10m"
    static let rateForm = "expected a rate such as 300/min or 5/s"
    static let hostPortForm = "expected host:port such as 0.0.0.0:8080, 127.0.0.1:9901 or [::1]:8080"
    static let upstreamForm = "expected http://host:port such as http://127.0.0.1:3000"
    static let baseURLForm = "expected an http:// or https:// URL such as https://getcrochet.ai/api/v1"

    static let durations: [BadValue] = [
        BadValue("duration without a unit", "negative_ttl", "10", "`10` has no unit; write 10s, 10ms, 10m or 10h"),
        BadValue("duration with an unknown unit", "idle_evict", "10x", "`10x` has an unknown unit `x`; use ms, s, m or h, as in 100ms, 10s, 5m or 1h"),
        BadValue("duration with a spelt-out unit", "upstream_timeout", "10sec", "`10sec` has an unknown unit `sec`; use ms, s, m or h, as in 100ms, 10s, 5m or 1h"),
        BadValue("duration with an upper-case unit", "idle_timeout", "10S", "`10S` has an unknown unit `S`; use ms, s, m or h, as in 100ms, 10s, 5m or 1h"),
        BadValue("fractional duration", "upstream_connect_timeout", "1.5s", "`1.5s` is not a whole number; use a smaller unit instead (1500ms, not 1.5s)"),
        BadValue("duration with a space before the unit", "header_read_timeout", "10 s", "`10 s` has a space before its unit; write it without one, such as 10s"),
        BadValue("negative duration", "stale_max", "-5s", "`-5s` is negative; \(durationForm)"),
        BadValue("duration that is a word", "shutdown_grace", "soon", "`soon` is not a duration; \(durationForm)"),
        BadValue("unit without a number", "usage_flush_interval", "s", "`s` is not a duration; \(durationForm)"),
        BadValue("zero where a positive duration is needed", "usage_flush_interval", "0s", "must be longer than zero; \(durationForm)"),
        BadValue("bare zero where a positive duration is needed", "negative_ttl", "0", "must be longer than zero; \(durationForm)"),
        BadValue("duration over a year", "stale_max", "8761h", "`8761h` is too long; the longest duration accepted is 8760h (a year)"),
        BadValue("duration too large for an integer", "drain_delay", "99999999999999999999s", "`99999999999999999999s` is too long; the longest duration accepted is 8760h (a year)"),
        BadValue("duration that overflows when converted", "drain_delay", "9223372036854775807h", "`9223372036854775807h` is too long; the longest duration accepted is 8760h (a year)"),
        BadValue("cache_ttl neither auto nor a duration", "cache_ttl", "forever", "`forever` is not a duration; expected auto or a duration such as 30s or 1m"),
        BadValue("cache_ttl in capitals", "cache_ttl", "AUTO", "`AUTO` is not a duration; expected auto or a duration such as 30s or 1m"),
        BadValue("cache_ttl of zero", "cache_ttl", "0s", "must be longer than zero; expected auto or a duration such as 30s or 1m"),
        BadValue("journal_sync neither always nor a duration", "journal_sync", "never", "`never` is not a duration; expected always or a duration such as 100ms or 1s"),
        BadValue("journal_sync of zero", "journal_sync", "0ms", "must be longer than zero; expected always or a duration such as 100ms or 1s"),
    ]

    static let sizes: [BadValue] = [
        BadValue("size with a unit after k/m", "max_body_bytes", "10mb", "`10mb` is not a size; \(sizeForm)"),
        BadValue("size with an upper-case unit", "max_body_bytes", "16K", "`16K` is not a size; sizes use a lower-case k or m, such as 16k or 10m"),
        BadValue("negative size", "max_body_bytes", "-1", "`-1` is negative; \(sizeForm)"),
        BadValue("fractional size", "max_body_bytes", "1.5m", "`1.5m` is not a size; \(sizeForm)"),
        BadValue("unit without a number", "max_body_bytes", "k", "`k` is not a size; \(sizeForm)"),
        BadValue("size that overflows with its unit", "max_body_bytes", "99999999999999m", "`99999999999999m` is too large; \(sizeForm)"),
        BadValue("size too large for an integer", "max_body_bytes", "99999999999999999999", "`99999999999999999999` is too large; \(sizeForm)"),
        BadValue("header limit under 1k", "max_header_bytes", "512", "`512` is out of range; expected from 1k to 1m"),
        BadValue("header limit over 1m", "max_header_bytes", "2m", "`2m` is out of range; expected from 1k to 1m"),
    ]

    static let rates: [BadValue] = [
        BadValue("rate without a period", "verify_rate_limit", "300", "`300` is not a rate; \(rateForm)"),
        BadValue("rate per hour", "verify_rate_limit", "300/h", "`300/h` has an unknown period; use /min or /s, as in 300/min or 5/s"),
        BadValue("rate per spelt-out minute", "usage_rate_limit", "300/minute", "`300/minute` has an unknown period; use /min or /s, as in 300/min or 5/s"),
        BadValue("rate of zero", "usage_rate_limit", "0/s", "`0/s` allows no calls at all; \(rateForm), at least 1"),
        BadValue("negative rate", "usage_rate_limit", "-5/s", "`-5/s` is negative; \(rateForm)"),
        BadValue("rate whose count is a word", "verify_rate_limit", "many/min", "`many/min` is not a rate; \(rateForm)"),
        BadValue("rate without a count", "verify_rate_limit", "/s", "`/s` is not a rate; \(rateForm)"),
        BadValue("rate too large for an integer", "verify_rate_limit", "99999999999999999999/s", "`99999999999999999999/s` is too large; \(rateForm)"),
    ]

    static let words: [BadValue] = [
        BadValue("boolean that is not one", "forward_token", "maybe", "`maybe` is not a boolean; expected true or false (on/off and yes/no work too)"),
        BadValue("boolean as a digit", "expose_usage_headers", "1", "`1` is not a boolean; expected true or false (on/off and yes/no work too)"),
        BadValue("boolean in capitals", "access_log", "True", "`True` must be written in lower case: true"),
        BadValue("unknown backend", "backend", "stripe", "`stripe` is not a backend; expected `crochet` or `crovver`"),
        BadValue("backend in capitals", "backend", "Crovver", "`Crovver` must be written in lower case: crovver"),
        BadValue("enforce in capitals", "enforce", "SHADOW", "`SHADOW` must be written in lower case: shadow"),
        BadValue("unknown billing rule", "usage_count_on", "5xx", "`5xx` is not a billing rule; expected `2xx`, `non5xx` or `all`"),
        BadValue("billing rule in capitals", "usage_count_on", "2XX", "`2XX` must be written in lower case: 2xx"),
        BadValue("unknown failure mode", "fail_mode", "half", "`half` is not a failure mode; expected `closed` or `open`"),
        BadValue("unknown log format", "log_format", "logfmt", "`logfmt` is not a log format; expected `json` or `text`"),
        BadValue("unknown log level", "log_level", "warn", "`warn` is not a log level; expected `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`"),
        BadValue("log level in capitals", "log_level", "DEBUG", "`DEBUG` must be written in lower case: debug"),
    ]

    static let integers: [BadValue] = [
        BadValue("event_loops of zero", "event_loops", "0", "`0` is out of range; expected a whole number from 1 to 256, or auto for one per core"),
        BadValue("event_loops over 256", "event_loops", "300", "`300` is out of range; expected a whole number from 1 to 256, or auto for one per core"),
        BadValue("event_loops that is a word", "event_loops", "many", "`many` is not a whole number; expected a whole number from 1 to 256, or auto for one per core"),
        BadValue("cache_shards over 4096", "cache_shards", "5000", "`5000` is out of range; expected a whole number from 1 to 4096"),
        BadValue("cache_max_entries of zero", "cache_max_entries", "0", "`0` is out of range; expected a whole number of at least 1"),
        BadValue("negative cache_max_entries", "cache_max_entries", "-1", "`-1` is negative; expected a whole number of at least 1"),
        BadValue("integer in exponent notation", "cache_max_entries", "1e6", "`1e6` is not a whole number; expected a whole number of at least 1"),
        BadValue("integer with digit separators", "cache_max_entries", "1_000_000", "`1_000_000` is not a whole number; expected a whole number of at least 1"),
        BadValue("integer with a plus sign", "max_connections", "+5", "`+5` is not a whole number; expected a whole number of at least 1"),
        BadValue("integer too large", "max_connections", "99999999999999999999", "`99999999999999999999` is too large; expected a whole number of at least 1"),
        BadValue("crovver_amount of zero", "crovver_amount", "0", "`0` is out of range; expected a whole number from 1 to 1000000"),
    ]

    static let addresses: [BadValue] = [
        BadValue("listen without a port", "listen", "8080", "`8080` has no port; \(hostPortForm)"),
        BadValue("listen without a host", "listen", ":8080", "has no host; \(hostPortForm)"),
        BadValue("listen with an empty port", "listen", "0.0.0.0:", "has an empty port after `:`; \(hostPortForm)"),
        BadValue("listen with a named port", "listen", "0.0.0.0:http", "port `http` is not a number; \(hostPortForm)"),
        BadValue("listen port over 65535", "listen", "0.0.0.0:70000", "port 70000 is out of range; ports run from 0 to 65535"),
        BadValue("IPv6 without brackets", "listen", "::1:8080", "looks like an IPv6 address without brackets; write it as [::1]:8080"),
        BadValue("IPv6 without its closing bracket", "listen", "[::1:8080", "has a `[` without its `]`; \(hostPortForm)"),
        BadValue("brackets around a name", "listen", "[example]:80", "`[example]` is not an IPv6 address; \(hostPortForm)"),
        BadValue("IPv6 followed by a bare port", "listen", "[::1]8080", "has something other than :port after `]`; \(hostPortForm)"),
        BadValue("IPv6 without a port", "admin_listen", "[::1]", "`[::1]` has no port; \(hostPortForm)"),
        BadValue("host with a space", "admin_listen", "my host:9901", "`my host` is not a host name or IP address; \(hostPortForm)"),
    ]

    static let upstreams: [BadValue] = [
        BadValue("upstream over https", "upstream", "https://127.0.0.1:3443", "is https://, but Subgate speaks plain HTTP to its sidecar upstream; terminate TLS in front of Subgate or point upstream at the plain port"),
        BadValue("upstream with another scheme", "upstream", "ftp://127.0.0.1", "uses a scheme other than http://; \(upstreamForm)"),
        BadValue("upstream without a scheme", "upstream", "127.0.0.1:3000", "has no http:// in front; \(upstreamForm)"),
        BadValue("upstream with a path", "upstream", "http://127.0.0.1:3000/api", "has a path; upstream takes only http://host:port, because each request is forwarded with its own path"),
        BadValue("upstream with a query", "upstream", "http://127.0.0.1:3000?debug=1", "has a query or fragment; upstream takes only http://host:port (each request brings its own path and query)"),
        BadValue("upstream with a fragment", "upstream", "http://127.0.0.1:3000/#top", "has a query or fragment; upstream takes only http://host:port (each request brings its own path and query)"),
        BadValue("upstream with credentials", "upstream", "http://user:pw@127.0.0.1:3000", "has a user name or password (user@host), which is not supported; remove it"),
        BadValue("upstream on port 0", "upstream", "http://127.0.0.1:0", "port 0 is out of range; ports run from 1 to 65535"),
        BadValue("upstream port over 65535", "upstream", "http://127.0.0.1:99999", "port 99999 is out of range; ports run from 1 to 65535"),
        BadValue("upstream without a host", "upstream", "http://:3000", "has no host; \(upstreamForm)"),
        BadValue("control_plane_url without a scheme", "control_plane_url", "getcrochet.ai/api/v1", "is not an http:// or https:// URL; \(baseURLForm)"),
        BadValue("control_plane_url with a space in its path", "control_plane_url", "https://getcrochet.ai/api v1", "has a space in its path; encode it as %20"),
        BadValue("control_plane_url with a query", "control_plane_url", "https://getcrochet.ai/api?x=1", "has a query or fragment; a base URL ends with its path, \(baseURLForm)"),
        BadValue("control_plane_url on port 0", "control_plane_url", "https://getcrochet.ai:0/api", "port 0 is out of range; ports run from 1 to 65535"),
        BadValue("crovver_url with another scheme", "crovver_url", "ftp://app.crovver.com", "is not an http:// or https:// URL; \(baseURLForm)"),
        BadValue("crovver_url with credentials", "crovver_url", "https://u:p@app.crovver.com", "has a user name or password (user@host), which is not supported; remove it"),
    ]

    static let names: [BadValue] = [
        BadValue("header name with spaces", "token_header", "x subscription token", "`x subscription token` is not an HTTP header name; use letters, digits and - (RFC 9110 token characters), such as x-subscription-token"),
        BadValue("header name with a colon", "crovver_tenant_header", "x:tenant", "`x:tenant` is not an HTTP header name; use letters, digits and - (RFC 9110 token characters), such as x-subscription-token"),
        BadValue("header Subgate strips from clients", "token_header", "X-Subgate-Token", "`X-Subgate-Token` starts with x-subgate-, and Subgate removes those headers from every client request; choose another name"),
        BadValue("framing header", "token_header", "Host", "`Host` describes the connection or message framing, and proxies consume or rewrite it; choose a header of its own such as x-subscription-token"),
        BadValue("hop-by-hop header", "crovver_tenant_header", "connection", "`connection` describes the connection or message framing, and proxies consume or rewrite it; choose a header of its own such as x-subscription-token"),
        BadValue("proxy- header (hop-by-hop)", "token_header", "Proxy-Authorization", "`Proxy-Authorization` describes the connection or message framing, and proxies consume or rewrite it; choose a header of its own such as x-subscription-token"),
        // Found by fuzz/ (request-head): a token in x-request-id became the logged request id and
        // reached the upstream with forward_token = false; in x-forwarded-for it was relayed.
        BadValue("the request id header", "token_header", "X-Request-Id", "`X-Request-Id` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("the forwarding chain header", "token_header", "x-forwarded-for", "`x-forwarded-for` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("the forwarded protocol header", "crovver_tenant_header", "x-forwarded-proto", "`x-forwarded-proto` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("Expect", "token_header", "expect", "`expect` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("the gateway's secret header", "token_header", "x-crochet-gateway-secret", "`x-crochet-gateway-secret` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("the gateway's relay id header", "crovver_tenant_header", "x-crochet-relay-request-id", "`x-crochet-relay-request-id` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token"),
        BadValue("token prefix with a space", "token_prefix", "cro sub", "`cro sub` contains a space or a non-ASCII character; expected visible ASCII such as cro_sub_"),
        BadValue("crovver pool with non-ASCII", "crovver_pool", "appels_é", "`appels_é` contains a space or a non-ASCII character; expected visible ASCII such as api_calls"),
    ]

    static let shapes: [BadValue] = [
        BadValue("value in double quotes", "cache_ttl", "\"30s\"", "is written in quotes, but values take no quotes; remove them"),
        BadValue("value in single quotes", "listen", "'0.0.0.0:8080'", "is written in quotes, but values take no quotes; remove them"),
        BadValue("value with a tab inside", "token_prefix", "cro\tsub", "contains a control character (a tab or a stray carriage return, perhaps); remove it"),
        BadValue("value with a stray carriage return inside", "usage_journal", "a\rb", "contains a control character (a tab or a stray carriage return, perhaps); remove it"),
        BadValue("empty value", "log_level", "", "has no value; give it one, or delete the line to keep the default"),
    ]

    @Test("durations", arguments: Self.durations)
    func duration(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("sizes", arguments: Self.sizes)
    func size(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("rates (N/min or N/s)", arguments: Self.rates)
    func rate(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("booleans and enumerations", arguments: Self.words)
    func word(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("integers out of range or not integers", arguments: Self.integers)
    func integer(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("host:port listen addresses", arguments: Self.addresses)
    func address(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("upstream and control-plane URLs", arguments: Self.upstreams)
    func url(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("header names and visible-ASCII values", arguments: Self.names)
    func name(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("quotes, control characters and empty values, for every key", arguments: Self.shapes)
    func shape(_ bad: BadValue) throws { try Self.check(bad) }

    @Test("an unknown enforce value is an error listing on and shadow")
    func unknownEnforceMode() throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: "enforce", value: "off"))
        #expect(error.line == 1 && error.key == "enforce", "got: \(error)")
        #expect(error.message.hasPrefix("`off` is not a"), "got: \(error.message)")
        #expect(error.message.hasSuffix("enforcement mode; expected `on` or `shadow`"), "got: \(error.message)")
    }

    @Test("an unknown enforce value's message reads 'an enforcement mode'")
    func enforceModeArticle() throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: "enforce", value: "off"))
        #expect(error.message == "`off` is not an enforcement mode; expected `on` or `shadow`")
    }

    @Test("a `#` after a value is explained as not being a comment")
    func inlineCommentHint() throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: "cache_ttl", value: "30s # half a minute"))
        #expect(error.key == "cache_ttl", "got: \(error)")
        #expect(error.message.hasSuffix(" (a `#` starts a comment only at the start of a line)"), "got: \(error.message)")
    }

    @Test("a tab before `#` after a value gets the same hint")
    func inlineCommentHintAfterTab() throws {
        // The tab is inside the value, so the value also has a control character.
        let error = try onlyConfigError(ConfigFixture.withLine(key: "negative_ttl", value: "10s\t# ten seconds"))
        #expect(error.message.contains("control character"), "got: \(error.message)")
        #expect(error.message.hasSuffix("(a `#` starts a comment only at the start of a line)"), "got: \(error.message)")
    }

    /// The value on line 1 must be the only error, with exactly this text.
    private static func check(_ bad: BadValue, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: bad.key, value: bad.value), sourceLocation: sourceLocation)
        #expect(
            error.description == "subgate.conf:1: \(bad.key): \(bad.message)",
            "\(bad.what): `\(bad.key) = \(bad.value)` gave the wrong error",
            sourceLocation: sourceLocation
        )
    }
}

/// The accepted spellings next to the rejected ones, so that a too-strict parser fails too.
@Suite("Config parser: values that parse")
struct ConfigValueTests {
    @Test("durations in every unit, and a bare 0 where zero is allowed")
    func durations() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal + """
                negative_ttl = 250ms
                idle_evict = 10s
                stale_max = 5m
                upstream_timeout = 1h
                drain_delay = 0
                shutdown_grace = 8760h
                cache_ttl = 30s
                journal_sync = always
                """
        )
        #expect(config.negativeTTL == .milliseconds(250))
        #expect(config.idleEvict == .seconds(10))
        #expect(config.staleMax == .seconds(300))
        #expect(config.upstreamTimeout == .seconds(3600))
        #expect(config.drainDelay == .zero, "drain_delay may be zero")
        #expect(config.shutdownGrace == .seconds(8760 * 3600), "8760h is the longest duration accepted")
        #expect(config.cacheTTL == .fixed(.seconds(30)))
        #expect(config.journalSync == .always)
    }

    @Test("sizes plain and with k or m, 1024-based")
    func sizes() throws {
        let config = try parsedConfig(ConfigFixture.minimal + "max_header_bytes = 1k\nmax_body_bytes = 4096\n")
        #expect(config.maxHeaderBytes == 1024)
        #expect(config.maxBodyBytes == 4096)
        let mebibytes = try parsedConfig(ConfigFixture.minimal + "max_header_bytes = 1m\nmax_body_bytes = 10m\n")
        #expect(mebibytes.maxHeaderBytes == 1_048_576 && mebibytes.maxBodyBytes == 10_485_760)
    }

    @Test("rates per minute and per second")
    func rates() throws {
        let config = try parsedConfig(ConfigFixture.minimal + "verify_rate_limit = 5/s\nusage_rate_limit = 120/min\n")
        #expect(config.verifyRateLimit == Rate(count: 5, per: .seconds(1)))
        #expect(config.usageRateLimit == Rate(count: 120, per: .seconds(60)))
    }

    @Test("booleans: true/false, on/off and yes/no", arguments: [
        ("true", true), ("on", true), ("yes", true), ("false", false), ("off", false), ("no", false),
    ])
    func booleans(text: String, value: Bool) throws {
        let config = try parsedConfig(ConfigFixture.minimal + "forward_token = \(text)\n")
        #expect(config.forwardToken == value, "forward_token = \(text) must read as \(value)")
    }

    @Test("every enumeration's spellings")
    func enumerations() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal + """
                enforce = shadow
                usage_count_on = non5xx
                fail_mode = open
                log_format = text
                log_level = trace
                event_loops = auto
                usage_journal = off
                """
        )
        #expect(config.enforce == .shadow)
        #expect(config.usageCountOn == .non5xx)
        #expect(config.failMode == .open)
        #expect(config.logFormat == .text)
        #expect(config.logLevel.rawValue == "trace")
        #expect(config.eventLoops == nil, "event_loops = auto means one per core")
        #expect(config.usageJournal == nil, "usage_journal = off disables the journal")
    }

    @Test("addresses: IPv4, IPv6 in brackets, names with _ , port 0")
    func addresses() throws {
        let config = try parsedConfig(
            "listen = [::]:0\nadmin_listen = subgate_admin:9901\nupstream = http://[::1]:3000/\nseller_key = am_k_x\n"
        )
        #expect(config.listen == HostPort(host: "::", port: 0))
        #expect(config.adminListen == HostPort(host: "subgate_admin", port: 9901))
        #expect(config.upstream == UpstreamTarget(host: "::1", port: 3000), "a trailing / on upstream is allowed")
    }

    @Test("upstream without a port means port 80, and the scheme is case-insensitive")
    func upstreamDefaultPort() throws {
        let config = try parsedConfig("upstream = HTTP://app\nseller_key = am_k_x\n")
        #expect(config.upstream == UpstreamTarget(host: "app", port: 80))
    }

    @Test("base URLs lose their trailing slashes")
    func baseURLs() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal + "control_plane_url = http://127.0.0.1:7000/api/v1//\ncrovver_url = https://app.crovver.com/api/public/\n"
        )
        #expect(config.controlPlaneURL == "http://127.0.0.1:7000/api/v1")
        #expect(config.crovverURL == "https://app.crovver.com/api/public")
    }

    @Test("header names are stored in lower case")
    func headerNames() throws {
        let config = try parsedConfig(ConfigFixture.minimal + "token_header = X-Api-Token\ncrovver_tenant_header = X-Tenant\n")
        #expect(config.tokenHeader == "x-api-token")
        #expect(config.crovverTenantHeader == "x-tenant")
    }
}
