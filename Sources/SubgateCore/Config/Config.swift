import Logging

/// The whole effective configuration of one Subgate process (shared/SPEC.md §2).
///
/// Produced only by `ConfigParser` from a key=value file plus `SUBGATE_<KEY>` environment
/// overrides; every field has the SPEC's documented default. A `Sendable` value: handlers
/// and services receive a copy and never re-read the file.
public struct Config: Sendable, Equatable {
    // MARK: - Listeners and upstream

    /// `listen`: where buyers connect.
    public var listen: HostPort = HostPort(host: "0.0.0.0", port: 8080)
    /// `event_loops`: NIO event-loop threads serving traffic; `nil` means one per core.
    public var eventLoops: Int? = nil
    /// `upstream` (required): the seller's service.
    public var upstream: UpstreamTarget = UpstreamTarget(host: "127.0.0.1", port: 3000)
    /// `admin_listen`: health, readiness, metrics and status.
    public var adminListen: HostPort = HostPort(host: "127.0.0.1", port: 9901)
    /// `admin_token`: when set, every admin path but `/healthz` needs `Authorization: Bearer <token>`.
    public var adminToken: Secret? = nil

    // MARK: - Enforcement

    /// `backend`: which billing system decides.
    public var backend: Backend = .crochet
    /// `enforce`: `on`, or `shadow` (decide and count, but serve everything).
    public var enforce: EnforceMode = .on
    /// `control_plane_url`: base of the Crochet API.
    public var controlPlaneURL: String = "https://getcrochet.ai/api/v1"
    /// `seller_key`, or the trimmed contents of `seller_key_file`.
    public var sellerKey: Secret? = nil
    /// `seller_key_file`: where the seller key was read from, if it came from a file.
    public var sellerKeyFile: String? = nil
    /// `token_header`, lowercased.
    public var tokenHeader: String = "x-subscription-token"
    /// `token_prefix`: tokens without it are treated as missing.
    public var tokenPrefix: String = "cro_sub_"
    /// `forward_token`: whether the raw token header reaches the upstream.
    public var forwardToken: Bool = false

    // MARK: - Verdict cache

    /// `cache_ttl`: `auto` follows the seed's table from the measured request rate.
    public var cacheTTL: CacheTTL = .auto
    /// `cache_shards`.
    public var cacheShards: Int = 64
    /// `cache_max_entries`.
    public var cacheMaxEntries: Int = 1_000_000
    /// `negative_ttl`: how long a definitive "invalid" verdict is remembered.
    public var negativeTTL: Duration = .seconds(10)
    /// `idle_evict`: tokens unseen this long stop being polled and leave the cache.
    public var idleEvict: Duration = .seconds(600)
    /// `verify_rate_limit`: Subgate's own ceiling on verify calls.
    public var verifyRateLimit: Rate = Rate(count: 300, per: .seconds(60))
    /// `usage_rate_limit`: Subgate's own ceiling on usage reports.
    public var usageRateLimit: Rate = Rate(count: 300, per: .seconds(60))

    // MARK: - Usage

    /// `usage_flush_interval`.
    public var usageFlushInterval: Duration = .seconds(10)
    /// `usage_count_on`: which upstream answers are billed.
    public var usageCountOn: UsageCountOn = .success
    /// `usage_journal`: path of the durable record of unreported usage; `nil` when `off`.
    public var usageJournal: String? = "./subgate-usage.journal"
    /// `journal_sync`: group-commit interval, or `always`.
    public var journalSync: JournalSync = .interval(.milliseconds(100))
    /// `fail_mode`: what happens with no usable verdict while the control plane fails.
    public var failMode: FailMode = .closed
    /// `stale_max`: how long a cached verdict may be served while the control plane fails.
    public var staleMax: Duration = .seconds(900)

    // MARK: - Timeouts and limits

    /// `upstream_connect_timeout`.
    public var upstreamConnectTimeout: Duration = .seconds(2)
    /// `upstream_timeout`: time to the upstream's response head.
    public var upstreamTimeout: Duration = .seconds(60)
    /// `idle_timeout`: idle keep-alive connection, both sides.
    public var idleTimeout: Duration = .seconds(60)
    /// `header_read_timeout`: a client must send its whole head within this.
    public var headerReadTimeout: Duration = .seconds(10)
    /// `max_header_bytes`: larger heads answer 431.
    public var maxHeaderBytes: Int = 16 * 1024
    /// `max_body_bytes`: larger bodies answer 413.
    public var maxBodyBytes: Int = 10 * 1024 * 1024
    /// `max_connections`: accepted client connections at once.
    public var maxConnections: Int = 10_000
    /// `expose_usage_headers`: add `x-subscription-remaining` / `x-subscription-limit`.
    public var exposeUsageHeaders: Bool = true

    // MARK: - Lifecycle and logging

    /// `drain_delay`: on SIGTERM, keep accepting this long after `/readyz` turns 503.
    public var drainDelay: Duration = .zero
    /// `shutdown_grace`: on SIGTERM, drain in-flight requests and flush usage within this.
    public var shutdownGrace: Duration = .seconds(20)
    /// `access_log`: one line per request.
    public var accessLog: Bool = true
    /// `log_level`.
    public var logLevel: Logger.Level = .info
    /// `log_format`.
    public var logFormat: LogFormat = .json

    // MARK: - Crovver and the gateway

    /// `crovver_url`.
    public var crovverURL: String = "https://app.crovver.com/api/public"
    /// `crovver_key`.
    public var crovverKey: Secret? = nil
    /// `crovver_tenant_header`, lowercased.
    public var crovverTenantHeader: String = "x-tenant-id"
    /// `crovver_pool`.
    public var crovverPool: String = "api_calls"
    /// `crovver_amount`.
    public var crovverAmount: Int = 1
    /// `gateway_secret`: marks a request as relayed by the Crochet gateway.
    public var gatewaySecret: Secret? = nil
    /// `relay_store`: where relayed calls' outcomes are kept across restarts; nil (`off`) keeps
    /// them in memory only.
    public var relayStore: String? = "./subgate-relay.store"
    /// `relay_ttl`: how long a relay id's outcome is kept and replayed.
    public var relayTTL: Duration = .seconds(24 * 3600)
    /// `relay_max_entries`: bound on remembered relay ids; the oldest go first.
    public var relayMaxEntries: Int = 10_000
    /// `relay_max_answer_bytes`: larger answers are recorded as not replayable.
    public var relayMaxAnswerBytes: Int = 16 * 1024
    /// `gateway_price_per_call`, in micro-dollars: the listing's price, for the seller's
    /// estimated share of relayed calls in `/status`; nil when not configured.
    public var gatewayPricePerCallMicros: Int? = nil

    public init() {}
}

// MARK: - Value types used by Config

/// A `host:port` pair to listen on (`0.0.0.0:8080`, `[::1]:9901`). Port 0 asks the OS for a free port.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    /// A literal IPv4/IPv6 address (IPv6 without brackets) or a host name.
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

/// The seller's service: plain `http://host:port` (Subgate is a sidecar; the hop is local).
public struct UpstreamTarget: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { "http://\(HostPort(host: self.host, port: self.port))" }
}

/// A value that must never be printed or logged (seller keys, admin token, shared secrets).
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The raw secret; read it only where it is sent.
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }

    /// Whether `given` is this secret, compared in constant time (no early exit on the first
    /// differing byte), so it cannot be guessed byte by byte from response times.
    public func matches(_ given: some Collection<UInt8>) -> Bool {
        let given = Array(given)
        let expected = Array(self.value.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for i in 0..<expected.count {
            difference |= expected[i] ^ (i < given.count ? given[i] : 0)
        }
        return difference == 0
    }
}

/// `backend`: which billing system Subgate enforces.
public enum Backend: String, Sendable, Equatable, CaseIterable {
    /// Crochet subscription tokens (seed 000).
    case crochet
    /// Crovver credit pools (seed 002).
    case crovver
}

/// `enforce`.
public enum EnforceMode: String, Sendable, Equatable, CaseIterable {
    /// Rejections are answered.
    case on
    /// Every verdict is decided, logged and counted, but every request is served.
    case shadow
}

/// `cache_ttl`.
public enum CacheTTL: Sendable, Equatable {
    /// The seed's table, from the measured total request rate.
    case auto
    /// A fixed re-verification interval.
    case fixed(Duration)
}

/// A rate such as `300/min` or `5/s`.
public struct Rate: Sendable, Equatable, CustomStringConvertible {
    public var count: Int
    public var per: Duration
    public init(count: Int, per: Duration) {
        self.count = count
        self.per = per
    }
    public var description: String { self.per == .seconds(1) ? "\(self.count)/s" : "\(self.count)/min" }
}

/// `usage_count_on`: which upstream answers are billed.
public enum UsageCountOn: String, Sendable, Equatable, CaseIterable {
    /// 2xx and 3xx (the config spelling is `2xx`).
    case success = "2xx"
    /// Everything but 5xx.
    case non5xx
    /// Every answer.
    case all
}

/// `journal_sync`.
public enum JournalSync: Sendable, Equatable {
    /// fsync after every record.
    case always
    /// Group commit at this interval.
    case interval(Duration)
}

/// `fail_mode`.
public enum FailMode: String, Sendable, Equatable, CaseIterable {
    /// No usable verdict while the control plane fails → 503.
    case closed
    /// No usable verdict while the control plane fails → serve and bill later.
    case open
}

/// `log_format`.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    case json
    case text
}
