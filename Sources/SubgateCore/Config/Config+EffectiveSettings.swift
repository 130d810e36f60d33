extension Config {
    /// Every SPEC §2 key, in the SPEC table's order, with its effective value in the
    /// configuration file's own syntax (`10s`, `16k`, `300/min`, `off`, `auto`).
    ///
    /// What `subgate check` prints. Secrets (`seller_key`, `crovver_key`, `admin_token`,
    /// `gateway_secret`) show as `<redacted>` when set and `(unset)` when not;
    /// `seller_key_file` shows its path. `event_loops` shows `auto` when it follows the
    /// number of cores: this function is pure, and the core count is the runtime's business.
    public func effectiveSettings() -> [(key: String, value: String)] {
        ConfigKey.allCases.map { key in (key: key.rawValue, value: self.renderedValue(of: key)) }
    }

    /// One key's effective value in the file's syntax.
    func renderedValue(of key: ConfigKey) -> String {
        switch key {
        case .listen: return self.listen.description
        case .eventLoops: return self.eventLoops.map { "\($0)" } ?? "auto"
        case .upstream: return self.upstream.description
        case .adminListen: return self.adminListen.description
        case .adminToken: return ConfigRendering.secret(self.adminToken)
        case .backend: return self.backend.rawValue
        case .enforce: return self.enforce.rawValue
        case .controlPlaneURL: return self.controlPlaneURL
        case .sellerKey: return ConfigRendering.secret(self.sellerKey)
        case .sellerKeyFile: return self.sellerKeyFile ?? "(unset)"
        case .tokenHeader: return self.tokenHeader
        case .tokenPrefix: return self.tokenPrefix
        case .forwardToken: return self.forwardToken ? "true" : "false"
        case .cacheTTL:
            switch self.cacheTTL {
            case .auto: return "auto"
            case .fixed(let ttl): return ConfigRendering.duration(ttl)
            }
        case .cacheShards: return "\(self.cacheShards)"
        case .cacheMaxEntries: return "\(self.cacheMaxEntries)"
        case .negativeTTL: return ConfigRendering.duration(self.negativeTTL)
        case .idleEvict: return ConfigRendering.duration(self.idleEvict)
        case .verifyRateLimit: return ConfigRendering.rate(self.verifyRateLimit)
        case .usageRateLimit: return ConfigRendering.rate(self.usageRateLimit)
        case .usageFlushInterval: return ConfigRendering.duration(self.usageFlushInterval)
        case .usageCountOn: return self.usageCountOn.rawValue
        case .usageJournal: return self.usageJournal ?? "off"
        case .journalSync:
            switch self.journalSync {
            case .always: return "always"
            case .interval(let interval): return ConfigRendering.duration(interval)
            }
        case .failMode: return self.failMode.rawValue
        case .staleMax: return ConfigRendering.duration(self.staleMax)
        case .upstreamConnectTimeout: return ConfigRendering.duration(self.upstreamConnectTimeout)
        case .upstreamTimeout: return ConfigRendering.duration(self.upstreamTimeout)
        case .idleTimeout: return ConfigRendering.duration(self.idleTimeout)
        case .headerReadTimeout: return ConfigRendering.duration(self.headerReadTimeout)
        case .maxHeaderBytes: return ConfigRendering.size(self.maxHeaderBytes)
        case .maxBodyBytes: return ConfigRendering.size(self.maxBodyBytes)
        case .maxConnections: return "\(self.maxConnections)"
        case .exposeUsageHeaders: return self.exposeUsageHeaders ? "true" : "false"
        case .drainDelay: return ConfigRendering.duration(self.drainDelay)
        case .shutdownGrace: return ConfigRendering.duration(self.shutdownGrace)
        // `on`/`off` rather than `true`/`false`: the spelling SPEC §2 uses for this key.
        case .accessLog: return self.accessLog ? "on" : "off"
        case .logLevel: return self.logLevel.rawValue
        case .logFormat: return self.logFormat.rawValue
        case .crovverURL: return self.crovverURL
        case .crovverKey: return ConfigRendering.secret(self.crovverKey)
        case .crovverTenantHeader: return self.crovverTenantHeader
        case .crovverPool: return self.crovverPool
        case .crovverAmount: return "\(self.crovverAmount)"
        case .gatewaySecret: return ConfigRendering.secret(self.gatewaySecret)
        case .relayStore: return self.relayStore ?? "off"
        case .relayTTL: return ConfigRendering.duration(self.relayTTL)
        case .relayMaxEntries: return "\(self.relayMaxEntries)"
        case .relayMaxAnswerBytes: return ConfigRendering.size(self.relayMaxAnswerBytes)
        case .gatewayPricePerCall: return self.gatewayPricePerCallMicros.map(MicroDollars.format) ?? "(unset)"
        }
    }
}
