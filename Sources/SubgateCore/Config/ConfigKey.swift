/// Every key of the configuration file, in the order of the table in SPEC §2.
///
/// The order matters: `Config.effectiveSettings()` and `subgate check` list keys in it, and
/// the raw values are the exact spellings a file must use (keys are case-sensitive).
enum ConfigKey: String, CaseIterable, Sendable {
    /// `listen` → `Config.listen`.
    case listen
    /// `event_loops` → `Config.eventLoops`.
    case eventLoops = "event_loops"
    /// `upstream` (required) → `Config.upstream`.
    case upstream
    /// `admin_listen` → `Config.adminListen`.
    case adminListen = "admin_listen"
    /// `admin_token` (secret) → `Config.adminToken`.
    case adminToken = "admin_token"
    /// `backend` → `Config.backend`.
    case backend
    /// `enforce` → `Config.enforce`.
    case enforce
    /// `control_plane_url` → `Config.controlPlaneURL`.
    case controlPlaneURL = "control_plane_url"
    /// `seller_key` (secret) → `Config.sellerKey`.
    case sellerKey = "seller_key"
    /// `seller_key_file` → `Config.sellerKeyFile`, and its contents → `Config.sellerKey`.
    case sellerKeyFile = "seller_key_file"
    /// `token_header` → `Config.tokenHeader`.
    case tokenHeader = "token_header"
    /// `token_prefix` → `Config.tokenPrefix`.
    case tokenPrefix = "token_prefix"
    /// `forward_token` → `Config.forwardToken`.
    case forwardToken = "forward_token"
    /// `cache_ttl` → `Config.cacheTTL`.
    case cacheTTL = "cache_ttl"
    /// `cache_shards` → `Config.cacheShards`.
    case cacheShards = "cache_shards"
    /// `cache_max_entries` → `Config.cacheMaxEntries`.
    case cacheMaxEntries = "cache_max_entries"
    /// `negative_ttl` → `Config.negativeTTL`.
    case negativeTTL = "negative_ttl"
    /// `idle_evict` → `Config.idleEvict`.
    case idleEvict = "idle_evict"
    /// `verify_rate_limit` → `Config.verifyRateLimit`.
    case verifyRateLimit = "verify_rate_limit"
    /// `usage_rate_limit` → `Config.usageRateLimit`.
    case usageRateLimit = "usage_rate_limit"
    /// `usage_flush_interval` → `Config.usageFlushInterval`.
    case usageFlushInterval = "usage_flush_interval"
    /// `usage_count_on` → `Config.usageCountOn`.
    case usageCountOn = "usage_count_on"
    /// `usage_journal` → `Config.usageJournal`.
    case usageJournal = "usage_journal"
    /// `journal_sync` → `Config.journalSync`.
    case journalSync = "journal_sync"
    /// `fail_mode` → `Config.failMode`.
    case failMode = "fail_mode"
    /// `stale_max` → `Config.staleMax`.
    case staleMax = "stale_max"
    /// `upstream_connect_timeout` → `Config.upstreamConnectTimeout`.
    case upstreamConnectTimeout = "upstream_connect_timeout"
    /// `upstream_timeout` → `Config.upstreamTimeout`.
    case upstreamTimeout = "upstream_timeout"
    /// `idle_timeout` → `Config.idleTimeout`.
    case idleTimeout = "idle_timeout"
    /// `header_read_timeout` → `Config.headerReadTimeout`.
    case headerReadTimeout = "header_read_timeout"
    /// `max_header_bytes` → `Config.maxHeaderBytes`.
    case maxHeaderBytes = "max_header_bytes"
    /// `max_body_bytes` → `Config.maxBodyBytes`.
    case maxBodyBytes = "max_body_bytes"
    /// `max_connections` → `Config.maxConnections`.
    case maxConnections = "max_connections"
    /// `expose_usage_headers` → `Config.exposeUsageHeaders`.
    case exposeUsageHeaders = "expose_usage_headers"
    /// `drain_delay` → `Config.drainDelay`.
    case drainDelay = "drain_delay"
    /// `shutdown_grace` → `Config.shutdownGrace`.
    case shutdownGrace = "shutdown_grace"
    /// `access_log` → `Config.accessLog`.
    case accessLog = "access_log"
    /// `log_level` → `Config.logLevel`.
    case logLevel = "log_level"
    /// `log_format` → `Config.logFormat`.
    case logFormat = "log_format"
    /// `crovver_url` → `Config.crovverURL`.
    case crovverURL = "crovver_url"
    /// `crovver_key` (secret) → `Config.crovverKey`.
    case crovverKey = "crovver_key"
    /// `crovver_tenant_header` → `Config.crovverTenantHeader`.
    case crovverTenantHeader = "crovver_tenant_header"
    /// `crovver_pool` → `Config.crovverPool`.
    case crovverPool = "crovver_pool"
    /// `crovver_amount` → `Config.crovverAmount`.
    case crovverAmount = "crovver_amount"
    /// `gateway_secret` (secret) → `Config.gatewaySecret`.
    case gatewaySecret = "gateway_secret"
    /// `relay_store` → `Config.relayStore`.
    case relayStore = "relay_store"
    /// `relay_ttl` → `Config.relayTTL`.
    case relayTTL = "relay_ttl"
    /// `relay_max_entries` → `Config.relayMaxEntries`.
    case relayMaxEntries = "relay_max_entries"
    /// `relay_max_answer_bytes` → `Config.relayMaxAnswerBytes`.
    case relayMaxAnswerBytes = "relay_max_answer_bytes"
    /// `gateway_price_per_call` → `Config.gatewayPricePerCallMicros`.
    case gatewayPricePerCall = "gateway_price_per_call"

    /// The prefix of every environment override.
    static let environmentPrefix = "SUBGATE_"

    /// The variable that names the configuration file itself. It is read by the CLI, not by
    /// the parser, so it is the one `SUBGATE_*` variable that is not an override.
    static let configPathVariable = "SUBGATE_CONFIG"

    /// `SUBGATE_<KEY IN UPPER CASE>`, the variable that overrides this key.
    var environmentVariable: String { Self.environmentPrefix + self.rawValue.uppercased() }

    /// Secrets are never printed, logged or echoed in an error message.
    var isSecret: Bool {
        switch self {
        case .sellerKey, .crovverKey, .adminToken, .gatewaySecret: true
        default: false
        }
    }

    // MARK: - Did you mean

    /// The known key closest to a misspelt one, when it is close enough to be the likely intent.
    ///
    /// Compared in lower case so that `LISTEN` suggests `listen`: keys are exact, but the
    /// error should still say which spelling was meant.
    static func suggestion(for unknown: String) -> ConfigKey? {
        let candidates = Self.allCases.map { (key: $0, name: $0.rawValue) }
        return closest(to: unknown, among: candidates)?.key
    }

    /// The override variable closest to a misspelt `SUBGATE_*` variable (`SUBGATE_CONFIG` included).
    static func environmentSuggestion(for unknown: String) -> String? {
        let candidates = Self.allCases.map { (key: $0.environmentVariable, name: $0.environmentVariable) }
            + [(key: Self.configPathVariable, name: Self.configPathVariable)]
        return closest(to: unknown.uppercased(), among: candidates)?.key
    }

    private static func closest<Value>(to unknown: String, among candidates: [(key: Value, name: String)]) -> (key: Value, distance: Int)? {
        let typed = Array(unknown.lowercased().unicodeScalars)
        // Two edits, or a third of the word for long keys, catches transpositions and a
        // missing underscore without suggesting an unrelated key for a short random word.
        let allowed = max(2, typed.count / 3)
        var best: (key: Value, distance: Int)? = nil
        for candidate in candidates {
            let distance = editDistance(typed, Array(candidate.name.lowercased().unicodeScalars))
            if distance <= allowed, distance < (best?.distance ?? Int.max) {
                best = (candidate.key, distance)
            }
        }
        return best
    }

    /// Levenshtein distance (insertions, deletions and substitutions each cost one).
    private static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
