import Logging
import NIOCore
import SubgateCore

/// What every client connection of one server shares: immutable settings, metrics, the
/// logger and the readiness flags. Built once at start-up.
final class ProxyContext: Sendable {
    let config: Config
    let metrics: ProxyMetrics
    let logger: Logger
    let accessLog: Bool
    let decoderLimits: NIOHTTPDecoderLimitConfigurationBox
    /// Subscription enforcement; `nil` relays every request unchecked (tests of the data path).
    let enforcer: Enforcer?
    /// Gateway-relayed calls (SPEC §6); `nil` without `gateway_secret`.
    let relays: RelayLedger?

    init(config: Config, metrics: ProxyMetrics, logger: Logger, enforcer: Enforcer? = nil, relays: RelayLedger? = nil) {
        self.enforcer = enforcer
        self.relays = relays
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.accessLog = config.accessLog
        self.decoderLimits = NIOHTTPDecoderLimitConfigurationBox(maxHeaderBytes: config.maxHeaderBytes)
    }
}

import NIOHTTP1

/// The decoder limits derived from `max_header_bytes`.
struct NIOHTTPDecoderLimitConfigurationBox: Sendable {
    /// At most this many header fields in one head; more answers 431 (as Envoy's default).
    static let maxHeaderFieldCount = 100

    let value: NIOHTTPDecoderLimitConfiguration

    init(maxHeaderBytes: Int) {
        var limits = NIOHTTPDecoderLimitConfiguration()
        // NIO counts the target and every field name and value against these.
        limits.maxHeaderListSize = maxHeaderBytes
        limits.maxHeaderFieldSize = maxHeaderBytes
        limits.maxHeaderFieldCount = Self.maxHeaderFieldCount
        self.value = limits
    }
}
