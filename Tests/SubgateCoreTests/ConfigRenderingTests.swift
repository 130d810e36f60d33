import Testing

@testable import SubgateCore

/// `Config.effectiveSettings()`, what `subgate check` prints: every SPEC §2 key, in the
/// SPEC table's order, in the file's own syntax.
@Suite("Config effective settings and rendering")
struct ConfigRenderingTests {
    @Test("the defaults are SPEC §2's, key by key, in the table's order")
    func defaultsMatchSpec() throws {
        let settings = try parsedConfig(ConfigFixture.minimal).effectiveSettings()
        let expected: [(String, String)] = [
            ("listen", "0.0.0.0:8080"),
            ("event_loops", "auto"),
            ("upstream", "http://127.0.0.1:3000"),
            ("admin_listen", "127.0.0.1:9901"),
            ("admin_token", "(unset)"),
            ("backend", "crochet"),
            ("enforce", "on"),
            ("control_plane_url", "https://getcrochet.ai/api/v1"),
            ("seller_key", "<redacted>"),
            ("seller_key_file", "(unset)"),
            ("token_header", "x-subscription-token"),
            ("token_prefix", "cro_sub_"),
            ("forward_token", "false"),
            ("cache_ttl", "auto"),
            ("cache_shards", "64"),
            ("cache_max_entries", "1000000"),
            ("negative_ttl", "10s"),
            ("idle_evict", "10m"),
            ("verify_rate_limit", "300/min"),
            ("usage_rate_limit", "300/min"),
            ("usage_flush_interval", "10s"),
            ("usage_count_on", "2xx"),
            ("usage_journal", "./subgate-usage.journal"),
            ("journal_sync", "100ms"),
            ("fail_mode", "closed"),
            ("stale_max", "15m"),
            ("upstream_connect_timeout", "2s"),
            ("upstream_timeout", "1m"),
            ("idle_timeout", "1m"),
            ("header_read_timeout", "10s"),
            ("max_header_bytes", "16k"),
            ("max_body_bytes", "10m"),
            ("max_connections", "10000"),
            ("expose_usage_headers", "true"),
            ("drain_delay", "0s"),
            ("shutdown_grace", "20s"),
            ("access_log", "on"),
            ("log_level", "info"),
            ("log_format", "json"),
            ("crovver_url", "https://app.crovver.com/api/public"),
            ("crovver_key", "(unset)"),
            ("crovver_tenant_header", "x-tenant-id"),
            ("crovver_pool", "api_calls"),
            ("crovver_amount", "1"),
            ("gateway_secret", "(unset)"),
            // Beyond SPEC §2's table: the gateway-relayed calls of SPEC §6 (docs/configuration.md).
            ("relay_store", "./subgate-relay.store"),
            ("relay_ttl", "24h"),
            ("relay_max_entries", "10000"),
            ("relay_max_answer_bytes", "16k"),
            ("gateway_price_per_call", "(unset)"),
        ]
        #expect(settings.map(\.key) == expected.map(\.0), "effectiveSettings() must list SPEC §2's keys in its order")
        for ((key, value), (expectedKey, expectedValue)) in zip(settings, expected) where key == expectedKey {
            #expect(value == expectedValue, "default of \(key) is \(value), SPEC §2 says \(expectedValue)")
        }
    }

    @Test("what check prints parses back to the same configuration (secrets and unset keys left out)")
    func renderingRoundTrips() throws {
        let original = try parsedConfig(
            """
            listen = [::1]:8181
            event_loops = 2
            upstream = http://app:8000
            admin_listen = 127.0.0.1:0
            backend = crochet
            enforce = shadow
            control_plane_url = http://127.0.0.1:7000/api/v1
            seller_key = am_k_round_trip
            token_header = X-Token
            token_prefix = tok_
            forward_token = yes
            cache_ttl = 90s
            cache_shards = 8
            cache_max_entries = 5000
            negative_ttl = 1500ms
            idle_evict = 2h
            verify_rate_limit = 5/s
            usage_rate_limit = 60/min
            usage_flush_interval = 1s
            usage_count_on = all
            usage_journal = off
            journal_sync = always
            fail_mode = open
            stale_max = 61m
            max_header_bytes = 1000000
            max_body_bytes = 0
            drain_delay = 5s
            access_log = off
            log_level = debug
            log_format = text
            crovver_pool = calls
            crovver_amount = 3
            """
        )
        let lines = original.effectiveSettings()
            .filter { $0.value != "(unset)" && $0.value != "<redacted>" }
            .map { "\($0.key) = \($0.value)" }
        let reparsed = try parsedConfig((lines + ["seller_key = am_k_round_trip"]).joined(separator: "\n"))
        #expect(reparsed == original, "printed:\n\(lines.joined(separator: "\n"))")
    }

    @Test("durations, sizes and rates render in the largest exact unit")
    func renderingUnits() {
        #expect(ConfigRendering.duration(.zero) == "0s")
        #expect(ConfigRendering.duration(.milliseconds(1500)) == "1500ms")
        #expect(ConfigRendering.duration(.seconds(90)) == "90s")
        #expect(ConfigRendering.duration(.seconds(600)) == "10m")
        #expect(ConfigRendering.duration(.seconds(7200)) == "2h")
        #expect(ConfigRendering.size(0) == "0")
        #expect(ConfigRendering.size(1000) == "1000")
        #expect(ConfigRendering.size(16 * 1024) == "16k")
        #expect(ConfigRendering.size(3 * 1024 * 1024) == "3m")
        #expect(ConfigRendering.rate(Rate(count: 5, per: .seconds(1))) == "5/s")
        #expect(ConfigRendering.rate(Rate(count: 300, per: .seconds(60))) == "300/min")
    }
}
