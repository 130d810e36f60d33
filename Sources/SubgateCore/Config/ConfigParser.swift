/// The strict key=value parser of SPEC §2 (docs/configuration.md is the user's guide).
///
/// `parse` is pure: the file's text, the environment and a way to read `seller_key_file`
/// come in, and either a `Config` or every problem found comes out. Strict on purpose: a
/// proxy that ignored a misspelt `admin_token` or `enforce` would open itself to everyone,
/// so an unknown key, a duplicate, a line without `=` or a value that does not parse stops
/// the start, and all of them are reported in one pass.
///
/// Environment overrides: `SUBGATE_<KEY IN UPPER CASE>` replaces the file's value for that
/// key. Any other variable whose name starts with `SUBGATE_` (in any case) is an error, so a
/// misspelt override cannot be silently ignored, with one exception: `SUBGATE_CONFIG`,
/// which names the configuration file and is read by the CLI, not here.
public enum ConfigParser {
    // MARK: - Public API

    /// Parses a configuration file's text, applies `SUBGATE_*` overrides from `environment`,
    /// and validates the result.
    ///
    /// - Parameters:
    ///   - text: the file's contents; a UTF-8 byte-order mark and CRLF line endings are accepted.
    ///   - file: the file's path as the user gave it, used in error messages only.
    ///   - environment: the process environment (or a test's); only `SUBGATE_*` names are read.
    ///   - readFile: reads `seller_key_file`; its error's description becomes part of the message.
    public static func parse(
        _ text: String,
        file: String,
        environment: [String: String],
        readFile: (String) throws -> String
    ) -> Result<Config, ConfigErrors> {
        var report = Report(file: file)
        var settings = self.settings(fromFile: text, report: &report)
        self.applyOverrides(environment, to: &settings, report: &report)

        var config = Config()
        var invalid: Set<ConfigKey> = []
        for key in ConfigKey.allCases {
            guard let setting = settings[key] else { continue }
            do throws(ConfigValueProblem) {
                try self.checkPresent(setting)
                try ConfigValue.checkCommonShape(setting.value)
                try self.apply(key, setting.value, to: &config, readFile: readFile)
            } catch {
                invalid.insert(key)
                var message = error.message
                // `key = value  # note` is the most likely cause of a value that does not parse.
                if setting.value.contains(" #") || setting.value.contains("\t#") {
                    message += " (a `#` starts a comment only at the start of a line)"
                }
                report.add(message, key: key, at: setting.source)
            }
        }
        self.checkCombinations(of: settings, invalid: invalid, config: config, report: &report)

        if report.isEmpty { return .success(config) }
        return .failure(ConfigErrors(report.sorted()))
    }

    /// Reads `file` from disk and parses it (see `parse`); `seller_key_file` is read from
    /// disk too. A file that cannot be read is one error naming it.
    public static func load(file: String, environment: [String: String]) -> Result<Config, ConfigErrors> {
        let text: String
        switch ConfigFileReader.read(file) {
        case .success(let contents):
            text = contents
        case .failure(let failure):
            return .failure(ConfigErrors([ConfigError(
                file: file,
                line: nil,
                key: nil,
                message: "cannot read the configuration file (\(failure.reason)); check the path, pass another with --config FILE, or set SUBGATE_CONFIG"
            )]))
        }
        return self.parse(text, file: file, environment: environment) { path in
            try ConfigFileReader.read(path).get()
        }
    }

    // MARK: - Where values come from

    /// Where a value came from, so that its error can point at it.
    enum Source: Equatable {
        /// A line of the file (1-based).
        case line(Int)
        /// A `SUBGATE_*` variable.
        case environment(variable: String)

        /// `line 3` or `SUBGATE_SELLER_KEY`, for messages that refer to another setting.
        var reference: String {
            switch self {
            case .line(let line): "line \(line)"
            case .environment(let variable): variable
            }
        }
    }

    /// One key's raw, trimmed value and its source.
    struct Setting: Equatable {
        var value: String
        var source: Source
    }

    /// Collects errors as they are found and orders them for the reader at the end: the
    /// file's lines top to bottom, then overrides by variable name, then problems of the
    /// configuration as a whole.
    struct Report {
        /// The file name written into file-located errors.
        let file: String
        private var lineErrors: [ConfigError] = []
        private var environmentErrors: [ConfigError] = []
        private var wholeErrors: [ConfigError] = []

        init(file: String) { self.file = file }

        var isEmpty: Bool { self.lineErrors.isEmpty && self.environmentErrors.isEmpty && self.wholeErrors.isEmpty }

        /// A problem with one key's value, wherever it came from.
        mutating func add(_ message: String, key: ConfigKey, at source: Source) {
            switch source {
            case .line(let line):
                self.add(line: line, key: key.rawValue, message)
            case .environment(let variable):
                self.addEnvironment(variable: variable, message)
            }
        }

        /// A problem located in the file; `line == nil` for the configuration as a whole.
        mutating func add(line: Int?, key: String?, _ message: String) {
            let error = ConfigError(file: self.file, line: line, key: key, message: message)
            if line == nil { self.wholeErrors.append(error) } else { self.lineErrors.append(error) }
        }

        /// A problem with a `SUBGATE_*` variable.
        mutating func addEnvironment(variable: String, _ message: String) {
            self.environmentErrors.append(ConfigError(file: "environment", line: nil, key: variable, message: message))
        }

        func sorted() -> [ConfigError] {
            // Sorting by position keeps same-line errors in the order found (stable).
            func stable(_ errors: [ConfigError], by order: (ConfigError, ConfigError) -> Bool) -> [ConfigError] {
                errors.enumerated()
                    .sorted { a, b in
                        if order(a.element, b.element) { return true }
                        if order(b.element, a.element) { return false }
                        return a.offset < b.offset
                    }
                    .map(\.element)
            }
            return stable(self.lineErrors, by: { ($0.line ?? 0) < ($1.line ?? 0) })
                + stable(self.environmentErrors, by: { ($0.key ?? "") < ($1.key ?? "") })
                + self.wholeErrors
        }
    }

    // MARK: - Reading the file

    /// Splits the file into settings, reporting lines that are not `key = value`, unknown
    /// keys and duplicates. Values are not checked here.
    private static func settings(fromFile text: String, report: inout Report) -> [ConfigKey: Setting] {
        var scalars = Substring(text).unicodeScalars
        // Editors on Windows like to start UTF-8 files with a byte-order mark.
        if scalars.first == "\u{FEFF}" { scalars.removeFirst() }
        let body = Substring(scalars)

        var settings: [ConfigKey: Setting] = [:]
        // "\r\n" is a single Character in Swift, so it has to be named as a separator.
        let lines = body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, rawLine) in lines.enumerated() {
            let lineNumber = index + 1
            let line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }

            // The line itself is never quoted back: it may hold a secret.
            guard let equals = line.firstIndex(of: "=") else {
                report.add(line: lineNumber, key: nil, "this line has no `=`; write settings as `key = value`, and start comment lines with `#`")
                continue
            }
            let name = String(line[..<equals].trimmingWhitespace())
            let value = String(line[line.index(after: equals)...].trimmingWhitespace())
            guard !name.isEmpty else {
                report.add(line: lineNumber, key: nil, "this line has no key before `=`; write settings as `key = value`")
                continue
            }
            // A key is one word. `gateway_secret c2VjcmV0==` has its `=` inside the value, so the
            // "name" would carry part of a secret into the error: quote only the first word.
            if let space = name.firstIndex(where: { $0 == " " || $0 == "\t" }) {
                report.add(line: lineNumber, key: String(name[..<space]), "a key is a single word followed by `=`; write settings as `key = value`")
                continue
            }
            guard let key = ConfigKey(rawValue: name) else {
                report.add(line: lineNumber, key: name, self.unknownKeyMessage(name))
                continue
            }
            if let first = settings[key] {
                report.add(
                    line: lineNumber,
                    key: name,
                    "is set twice, on \(first.source.reference) and again here; keep one of them"
                )
                continue
            }
            settings[key] = Setting(value: value, source: .line(lineNumber))
        }
        return settings
    }

    private static func unknownKeyMessage(_ name: String) -> String {
        guard let suggestion = ConfigKey.suggestion(for: name) else {
            return "unknown key; docs/configuration.md lists every key"
        }
        if name.lowercased() == suggestion.rawValue {
            return "unknown key; keys are lower case: did you mean `\(suggestion.rawValue)`?"
        }
        return "unknown key; did you mean `\(suggestion.rawValue)`?"
    }

    // MARK: - Environment overrides

    private static func applyOverrides(_ environment: [String: String], to settings: inout [ConfigKey: Setting], report: inout Report) {
        let overridable = Dictionary(uniqueKeysWithValues: ConfigKey.allCases.map { ($0.environmentVariable, $0) })
        // Sorted so that errors come out in the same order on every run.
        for (variable, value) in environment.sorted(by: { $0.key < $1.key }) {
            // Compared in upper case so that `subgate_listen` is reported, not ignored.
            guard variable.uppercased().hasPrefix(ConfigKey.environmentPrefix) else { continue }
            if variable == ConfigKey.configPathVariable { continue }
            guard let key = overridable[variable] else {
                // Kubernetes injects service links for every Service of the namespace into every
                // pod (SUBGATE_SERVICE_HOST for one named `subgate`, SUBGATE_ADMIN_PORT for one
                // named `subgate-admin`…): not settings, and no reason to refuse to start.
                if Self.isKubernetesServiceLink(variable, value: value) { continue }
                var message = "unknown variable; every key can be overridden as SUBGATE_<KEY IN UPPER CASE>"
                if let suggestion = ConfigKey.environmentSuggestion(for: variable) {
                    message = "unknown variable; did you mean \(suggestion)?"
                }
                report.addEnvironment(variable: variable, message)
                continue
            }
            // Values from Kubernetes secrets and `.env` files often end in a newline.
            settings[key] = Setting(value: String(value.trimmingWhitespace()), source: .environment(variable: variable))
        }
    }

    /// The shapes Kubernetes gives service links of a Service named `subgate` or `subgate-*`:
    /// `<S>_SERVICE_HOST`, `<S>_SERVICE_PORT[_<NAME>]`, `<S>_PORT=tcp://…` and
    /// `<S>_PORT_<n>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]`. Only variables that are not keys get
    /// here, and a `…_PORT` whose value is not a `tcp://`-style address is still reported (it is
    /// more likely a typo, such as SUBGATE_LISTEN_PORT=8080).
    static func isKubernetesServiceLink(_ variable: String, value: String) -> Bool {
        let rest = variable.dropFirst(ConfigKey.environmentPrefix.count)
        if rest.hasPrefix("SERVICE_HOST") || rest.hasPrefix("SERVICE_PORT") || rest.contains("_SERVICE_HOST") || rest.contains("_SERVICE_PORT") {
            return true
        }
        // <S>_PORT_<digits>_<PROTO>[_PROTO|_PORT|_ADDR], the last "PORT_<digits>" in the name.
        let parts = Array(rest.split(separator: "_", omittingEmptySubsequences: false))
        if let port = parts.indices.last(where: { parts[$0] == "PORT" && $0 + 2 < parts.count && Int(parts[$0 + 1]) != nil }) {
            let tail = parts[(port + 3)...]
            if ["TCP", "UDP", "SCTP"].contains(parts[port + 2]) && parts[port + 1].allSatisfy(\.isASCIIDigit)
                && (tail.isEmpty || (tail.count == 1 && ["PROTO", "PORT", "ADDR"].contains(tail[tail.startIndex])))
            {
                return true
            }
        }
        // <S>_PORT=tcp://…
        if rest == "PORT" || rest.hasSuffix("_PORT") {
            return ["tcp://", "udp://", "sctp://"].contains { value.hasPrefix($0) }
        }
        return false
    }

    // MARK: - Values

    private static func checkPresent(_ setting: Setting) throws(ConfigValueProblem) {
        guard setting.value.isEmpty else { return }
        switch setting.source {
        case .line:
            throw ConfigValueProblem("has no value; give it one, or delete the line to keep the default")
        case .environment:
            throw ConfigValueProblem("is set but empty; give it a value, or unset it to keep the file's value or the default")
        }
    }

    /// Parses one value into its field. Secrets go only through `ConfigValue.secret` and
    /// `ConfigValue.sellerKey`, whose messages never contain the value.
    private static func apply(
        _ key: ConfigKey,
        _ value: String,
        to config: inout Config,
        readFile: (String) throws -> String
    ) throws(ConfigValueProblem) {
        switch key {
        case .listen:
            config.listen = try ConfigValue.hostPort(value)
        case .eventLoops:
            if value == "auto" {
                config.eventLoops = nil
            } else {
                do throws(ConfigValueProblem) {
                    config.eventLoops = try ConfigValue.integer(value, in: 1...256)
                } catch {
                    throw ConfigValueProblem(error.message + ", or auto for one per core")
                }
            }
        case .upstream:
            config.upstream = try ConfigValue.upstream(value)
        case .adminListen:
            config.adminListen = try ConfigValue.hostPort(value)
        case .adminToken:
            config.adminToken = try ConfigValue.secret(value)
        case .backend:
            config.backend = try ConfigValue.choice(value, of: "backend")
        case .enforce:
            config.enforce = try ConfigValue.choice(value, of: "enforcement mode")
        case .controlPlaneURL:
            config.controlPlaneURL = try ConfigValue.baseURL(value)
        case .sellerKey:
            config.sellerKey = try ConfigValue.sellerKey(value)
        case .sellerKeyFile:
            config.sellerKeyFile = value
            config.sellerKey = try self.readSellerKey(from: value, readFile: readFile)
        case .tokenHeader:
            config.tokenHeader = try ConfigValue.headerName(value)
        case .tokenPrefix:
            config.tokenPrefix = try ConfigValue.visibleASCII(value, example: "cro_sub_")
        case .forwardToken:
            config.forwardToken = try ConfigValue.bool(value)
        case .cacheTTL:
            if value == "auto" {
                config.cacheTTL = .auto
            } else {
                config.cacheTTL = .fixed(try ConfigValue.positiveDuration(value, form: "expected auto or a duration such as 30s or 1m"))
            }
        case .cacheShards:
            config.cacheShards = try ConfigValue.integer(value, in: 1...4096)
        case .cacheMaxEntries:
            config.cacheMaxEntries = try ConfigValue.integer(value, in: 1...Int.max)
        case .negativeTTL:
            config.negativeTTL = try ConfigValue.positiveDuration(value)
        case .idleEvict:
            config.idleEvict = try ConfigValue.positiveDuration(value)
        case .verifyRateLimit:
            config.verifyRateLimit = try ConfigValue.rate(value)
        case .usageRateLimit:
            config.usageRateLimit = try ConfigValue.rate(value)
        case .usageFlushInterval:
            config.usageFlushInterval = try ConfigValue.positiveDuration(value)
        case .usageCountOn:
            config.usageCountOn = try ConfigValue.choice(value, of: "billing rule")
        case .usageJournal:
            config.usageJournal = value == "off" ? nil : value
        case .journalSync:
            if value == "always" {
                config.journalSync = .always
            } else {
                config.journalSync = .interval(try ConfigValue.positiveDuration(value, form: "expected always or a duration such as 100ms or 1s"))
            }
        case .failMode:
            config.failMode = try ConfigValue.choice(value, of: "failure mode")
        case .staleMax:
            config.staleMax = try ConfigValue.positiveDuration(value)
        case .upstreamConnectTimeout:
            config.upstreamConnectTimeout = try ConfigValue.positiveDuration(value)
        case .upstreamTimeout:
            config.upstreamTimeout = try ConfigValue.positiveDuration(value)
        case .idleTimeout:
            config.idleTimeout = try ConfigValue.positiveDuration(value)
        case .headerReadTimeout:
            config.headerReadTimeout = try ConfigValue.positiveDuration(value)
        case .maxHeaderBytes:
            config.maxHeaderBytes = try ConfigValue.size(value, in: 1024...(1024 * 1024))
        case .maxBodyBytes:
            config.maxBodyBytes = try ConfigValue.size(value)
        case .maxConnections:
            config.maxConnections = try ConfigValue.integer(value, in: 1...Int.max)
        case .exposeUsageHeaders:
            config.exposeUsageHeaders = try ConfigValue.bool(value)
        case .drainDelay:
            config.drainDelay = try ConfigValue.duration(value)
        case .shutdownGrace:
            config.shutdownGrace = try ConfigValue.positiveDuration(value)
        case .accessLog:
            config.accessLog = try ConfigValue.bool(value)
        case .logLevel:
            config.logLevel = try ConfigValue.choice(value, of: "log level")
        case .logFormat:
            config.logFormat = try ConfigValue.choice(value, of: "log format")
        case .crovverURL:
            config.crovverURL = try ConfigValue.baseURL(value)
        case .crovverKey:
            config.crovverKey = try ConfigValue.secret(value)
        case .crovverTenantHeader:
            config.crovverTenantHeader = try ConfigValue.headerName(value)
        case .crovverPool:
            config.crovverPool = try ConfigValue.visibleASCII(value, example: "api_calls")
        case .crovverAmount:
            // Crovver's own ceiling per consume is 1e9; a request costs amount × its units.
            config.crovverAmount = try ConfigValue.integer(value, in: 1...1_000_000)
        case .gatewaySecret:
            config.gatewaySecret = try ConfigValue.secret(value)
        case .relayStore:
            config.relayStore = value == "off" ? nil : value
        case .relayTTL:
            config.relayTTL = try ConfigValue.positiveDuration(value, form: "expected a duration such as 24h or 30m")
        case .relayMaxEntries:
            config.relayMaxEntries = try ConfigValue.integer(value, in: 1...10_000_000)
        case .relayMaxAnswerBytes:
            config.relayMaxAnswerBytes = try ConfigValue.size(value, in: 0...(16 * 1024 * 1024))
        case .gatewayPricePerCall:
            config.gatewayPricePerCallMicros = try ConfigValue.dollars(value)
        }
    }

    /// The trimmed contents of `seller_key_file`, checked like `seller_key`.
    private static func readSellerKey(from path: String, readFile: (String) throws -> String) throws(ConfigValueProblem) -> Secret {
        let contents: String
        do {
            contents = try readFile(path)
        } catch {
            throw ConfigValueProblem("cannot read `\(path)` (\(error)); check the path and that Subgate's user may read it")
        }
        // Secret files written with `echo` or by an editor end in a newline.
        let key = String(contents.trimmingWhitespace())
        guard !key.isEmpty else {
            throw ConfigValueProblem("`\(path)` is empty; put the seller key (am_k_…) in it")
        }
        do throws(ConfigValueProblem) {
            return try ConfigValue.sellerKey(key)
        } catch {
            throw ConfigValueProblem("the key in `\(path)` is not usable: \(error.message)")
        }
    }

    // MARK: - The configuration as a whole

    private static func checkCombinations(
        of settings: [ConfigKey: Setting],
        invalid: Set<ConfigKey>,
        config: Config,
        report: inout Report
    ) {
        if settings[.upstream] == nil {
            report.add(
                line: nil,
                key: ConfigKey.upstream.rawValue,
                "is required; add `upstream = http://127.0.0.1:3000` naming the seller's service, or set SUBGATE_UPSTREAM"
            )
        }

        if let inline = settings[.sellerKey], let file = settings[.sellerKeyFile] {
            report.add(
                "is set together with seller_key (\(inline.source.reference)); keep only one of the two",
                key: .sellerKeyFile,
                at: file.source
            )
        }

        // With an unreadable `backend` it is unknown which credentials are required, and
        // guessing would add a second, misleading error.
        if !invalid.contains(.backend) {
            switch config.backend {
            case .crochet:
                if settings[.sellerKey] == nil, settings[.sellerKeyFile] == nil {
                    report.add(
                        line: nil,
                        key: nil,
                        "backend = crochet needs a seller key; add `seller_key_file = /path/to/key` (preferred) or `seller_key = am_k_…`, or set SUBGATE_SELLER_KEY_FILE or SUBGATE_SELLER_KEY"
                    )
                }
            case .crovver:
                if settings[.crovverKey] == nil {
                    report.add(
                        line: nil,
                        key: ConfigKey.crovverKey.rawValue,
                        "is required with backend = crovver; add `crovver_key = …` or set SUBGATE_CROVVER_KEY"
                    )
                }
            }
        }

        // Both listeners on one address would fail at bind time with a less helpful message.
        if !invalid.contains(.listen), !invalid.contains(.adminListen),
            config.listen == config.adminListen, config.listen.port != 0
        {
            let (key, other): (ConfigKey, ConfigKey) = settings[.adminListen] != nil ? (.adminListen, .listen) : (.listen, .adminListen)
            if let setting = settings[key] {
                report.add(
                    "is the same address as \(other.rawValue) (\(config.listen)); give the admin listener a port of its own",
                    key: key,
                    at: setting.source
                )
            }
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line breaks.
    fileprivate func trimmingWhitespace() -> SubSequence {
        guard let first = self.firstIndex(where: { !$0.isWhitespace }),
            let last = self.lastIndex(where: { !$0.isWhitespace })
        else { return self[self.endIndex...] }
        return self[first...last]
    }
}
