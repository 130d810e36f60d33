/// The value syntaxes of the configuration file (SPEC §2): durations, sizes, rates,
/// booleans, choices, addresses, URLs, header names and secrets.
///
/// Each function takes an already trimmed, non-empty value and either returns it parsed or
/// throws a `ConfigValueProblem` that says which form was expected. Functions that parse
/// secrets never put the value in their message; the others quote it, because seeing
/// `10` next to "has no unit" is the fastest way to the fix.
enum ConfigValue {
    // MARK: - Expected forms, repeated in errors

    static let durationForm = "expected a duration such as 10s, 100ms, 5m or 1h"
    static let sizeForm = "expected a number of bytes, or a size with k or m (1024-based) such as 16k or 10m"
    static let rateForm = "expected a rate such as 300/min or 5/s"
    static let boolForm = "expected true or false (on/off and yes/no work too)"
    static let hostPortForm = "expected host:port such as 0.0.0.0:8080, 127.0.0.1:9901 or [::1]:8080"
    static let upstreamForm = "expected http://host:port such as http://127.0.0.1:3000"
    static let baseURLForm = "expected an http:// or https:// URL such as https://getcrochet.ai/api/v1"

    /// The longest duration accepted (8760h, a year). Anything longer is a typo, and NIO
    /// keeps deadlines in signed 64-bit nanoseconds (≈ 292 years), so an unbounded value
    /// could crash the proxy long after it passed validation.
    static let maximumDurationMilliseconds = 365 * 24 * 3_600_000

    // MARK: - Checks every value gets

    /// Rejects what no key accepts: control characters and values wrapped in quotes.
    ///
    /// Safe for secrets: neither message contains the value.
    static func checkCommonShape(_ text: String) throws(ConfigValueProblem) {
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw ConfigValueProblem("contains a control character (a tab or a stray carriage return, perhaps); remove it")
        }
        // Values are not quoted, so `"abc"` would silently become a secret with quotes in it.
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            throw ConfigValueProblem("is written in quotes, but values take no quotes; remove them")
        }
    }

    // MARK: - Numbers

    /// A whole decimal number within `range`.
    static func integer(_ text: String, in range: ClosedRange<Int>) throws(ConfigValueProblem) -> Int {
        let expected = range.upperBound == Int.max
            ? "expected a whole number of at least \(range.lowerBound)"
            : "expected a whole number from \(range.lowerBound) to \(range.upperBound)"
        switch self.unsigned(text) {
        case .value(let number):
            guard range.contains(number) else { throw ConfigValueProblem("`\(text)` is out of range; \(expected)") }
            return number
        case .tooLarge:
            throw ConfigValueProblem("`\(text)` is too large; \(expected)")
        case .notANumber:
            if text.hasPrefix("-") { throw ConfigValueProblem("`\(text)` is negative; \(expected)") }
            throw ConfigValueProblem("`\(text)` is not a whole number; \(expected)")
        }
    }

    /// A duration with a unit: `100ms`, `10s`, `5m`, `1h`; a bare `0` means zero.
    static func duration(_ text: String, form: String = Self.durationForm) throws(ConfigValueProblem) -> Duration {
        if text.hasPrefix("-") { throw ConfigValueProblem("`\(text)` is negative; \(form)") }
        let numberEnd = text.firstIndex(where: { !$0.isASCIIDigit }) ?? text.endIndex
        let digits = text[..<numberEnd]
        let unit = text[numberEnd...]
        let amount: Int
        switch self.unsigned(digits) {
        case .value(let number): amount = number
        case .tooLarge: throw ConfigValueProblem("`\(text)` is too long; the longest duration accepted is 8760h (a year)")
        case .notANumber: throw ConfigValueProblem("`\(text)` is not a duration; \(form)")
        }
        let millisecondsPerUnit: Int
        switch unit {
        case "":
            guard amount == 0 else {
                throw ConfigValueProblem("`\(text)` has no unit; write \(text)s, \(text)ms, \(text)m or \(text)h")
            }
            return .zero
        case "ms": millisecondsPerUnit = 1
        case "s": millisecondsPerUnit = 1000
        case "m": millisecondsPerUnit = 60_000
        case "h": millisecondsPerUnit = 3_600_000
        default:
            if unit.hasPrefix(".") || unit.hasPrefix(",") {
                throw ConfigValueProblem("`\(text)` is not a whole number; use a smaller unit instead (1500ms, not 1.5s)")
            }
            if unit.first?.isWhitespace == true {
                throw ConfigValueProblem("`\(text)` has a space before its unit; write it without one, such as 10s")
            }
            throw ConfigValueProblem("`\(text)` has an unknown unit `\(unit)`; use ms, s, m or h, as in 100ms, 10s, 5m or 1h")
        }
        let (milliseconds, overflow) = amount.multipliedReportingOverflow(by: millisecondsPerUnit)
        guard !overflow, milliseconds <= Self.maximumDurationMilliseconds else {
            throw ConfigValueProblem("`\(text)` is too long; the longest duration accepted is 8760h (a year)")
        }
        return .milliseconds(milliseconds)
    }

    /// A duration longer than zero.
    static func positiveDuration(_ text: String, form: String = Self.durationForm) throws(ConfigValueProblem) -> Duration {
        let duration = try self.duration(text, form: form)
        guard duration > .zero else { throw ConfigValueProblem("must be longer than zero; \(form)") }
        return duration
    }

    /// A size in bytes: plain (`4096`) or with a 1024-based `k` or `m` suffix (`16k`, `10m`).
    static func size(_ text: String) throws(ConfigValueProblem) -> Int {
        if text.hasPrefix("-") { throw ConfigValueProblem("`\(text)` is negative; \(Self.sizeForm)") }
        var digits = Substring(text)
        var multiplier = 1
        switch text.last {
        case "k":
            multiplier = 1024
            digits = digits.dropLast()
        case "m":
            multiplier = 1024 * 1024
            digits = digits.dropLast()
        default:
            break
        }
        switch self.unsigned(digits) {
        case .value(let number):
            let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { throw ConfigValueProblem("`\(text)` is too large; \(Self.sizeForm)") }
            return bytes
        case .tooLarge:
            throw ConfigValueProblem("`\(text)` is too large; \(Self.sizeForm)")
        case .notANumber:
            if text != text.lowercased() {
                throw ConfigValueProblem("`\(text)` is not a size; sizes use a lower-case k or m, such as 16k or 10m")
            }
            throw ConfigValueProblem("`\(text)` is not a size; \(Self.sizeForm)")
        }
    }

    /// A size within `range`, with the bounds rendered in the file's own syntax.
    static func size(_ text: String, in range: ClosedRange<Int>) throws(ConfigValueProblem) -> Int {
        let bytes = try self.size(text)
        guard range.contains(bytes) else {
            let expected = range.upperBound == Int.max
                ? "expected at least \(ConfigRendering.size(range.lowerBound))"
                : "expected from \(ConfigRendering.size(range.lowerBound)) to \(ConfigRendering.size(range.upperBound))"
            throw ConfigValueProblem("`\(text)` is out of range; \(expected)")
        }
        return bytes
    }

    /// A rate: `N/min` or `N/s` with N ≥ 1.
    static func rate(_ text: String) throws(ConfigValueProblem) -> Rate {
        guard let slash = text.firstIndex(of: "/") else {
            throw ConfigValueProblem("`\(text)` is not a rate; \(Self.rateForm)")
        }
        let per: Duration
        switch text[text.index(after: slash)...] {
        case "min": per = .seconds(60)
        case "s": per = .seconds(1)
        default: throw ConfigValueProblem("`\(text)` has an unknown period; use /min or /s, as in 300/min or 5/s")
        }
        let countText = text[..<slash]
        switch self.unsigned(countText) {
        case .value(let count):
            guard count >= 1 else { throw ConfigValueProblem("`\(text)` allows no calls at all; \(Self.rateForm), at least 1") }
            return Rate(count: count, per: per)
        case .tooLarge:
            throw ConfigValueProblem("`\(text)` is too large; \(Self.rateForm)")
        case .notANumber:
            if countText.hasPrefix("-") { throw ConfigValueProblem("`\(text)` is negative; \(Self.rateForm)") }
            throw ConfigValueProblem("`\(text)` is not a rate; \(Self.rateForm)")
        }
    }

    // MARK: - Words

    /// `true`/`false`, `on`/`off` or `yes`/`no`.
    static func bool(_ text: String) throws(ConfigValueProblem) -> Bool {
        switch text {
        case "true", "on", "yes": return true
        case "false", "off", "no": return false
        default:
            if ["true", "on", "yes", "false", "off", "no"].contains(text.lowercased()) {
                throw ConfigValueProblem("`\(text)` must be written in lower case: \(text.lowercased())")
            }
            throw ConfigValueProblem("`\(text)` is not a boolean; \(Self.boolForm)")
        }
    }

    /// One of an enum's raw values, spelled exactly.
    static func choice<Choice: RawRepresentable & CaseIterable>(
        _ text: String,
        of what: String
    ) throws(ConfigValueProblem) -> Choice where Choice.RawValue == String {
        if let choice = Choice(rawValue: text) { return choice }
        if Choice(rawValue: text.lowercased()) != nil {
            throw ConfigValueProblem("`\(text)` must be written in lower case: \(text.lowercased())")
        }
        let names = Choice.allCases.map(\.rawValue)
        let article = what.first.map { "aeiou".contains($0) } == true ? "an" : "a"
        throw ConfigValueProblem("`\(text)` is not \(article) \(what); expected \(self.oneOf(names))")
    }

    // MARK: - Addresses and URLs

    /// `host:port` or `[ipv6]:port` to listen on; port 0 asks the OS for a free one.
    static func hostPort(_ text: String) throws(ConfigValueProblem) -> HostPort {
        let authority = try self.authority(Substring(text), form: Self.hostPortForm)
        guard let portText = authority.port else {
            throw ConfigValueProblem("`\(text)` has no port; \(Self.hostPortForm)")
        }
        let port = try self.port(portText, lowest: 0, form: Self.hostPortForm)
        return HostPort(host: authority.host, port: port)
    }

    /// The seller's service: `http://host[:port][/]`.
    ///
    /// Messages quote at most the host or port, never the whole URL: a URL can carry a
    /// password in its user-info part.
    static func upstream(_ text: String) throws(ConfigValueProblem) -> UpstreamTarget {
        let lowered = text.lowercased()
        if lowered.hasPrefix("https://") {
            throw ConfigValueProblem(
                "is https://, but Subgate speaks plain HTTP to its sidecar upstream; terminate TLS in front of Subgate or point upstream at the plain port"
            )
        }
        guard lowered.hasPrefix("http://") else {
            if lowered.contains("://") {
                throw ConfigValueProblem("uses a scheme other than http://; \(Self.upstreamForm)")
            }
            throw ConfigValueProblem("has no http:// in front; \(Self.upstreamForm)")
        }
        let parts = try self.urlParts(text.dropFirst("http://".count), form: Self.upstreamForm)
        if parts.hasQueryOrFragment {
            throw ConfigValueProblem("has a query or fragment; upstream takes only http://host:port (each request brings its own path and query)")
        }
        guard parts.path.isEmpty || parts.path == "/" else {
            throw ConfigValueProblem("has a path; upstream takes only http://host:port, because each request is forwarded with its own path")
        }
        var port = 80
        if let portText = parts.authority.port {
            port = try self.port(portText, lowest: 1, form: Self.upstreamForm)
        }
        return UpstreamTarget(host: parts.authority.host, port: port)
    }

    /// A control-plane base URL (`http://` or `https://`, a host, an optional path); trailing
    /// slashes are removed so that paths can be appended with `/`.
    static func baseURL(_ text: String) throws(ConfigValueProblem) -> String {
        let lowered = text.lowercased()
        let schemeLength: Int
        if lowered.hasPrefix("https://") {
            schemeLength = "https://".count
        } else if lowered.hasPrefix("http://") {
            schemeLength = "http://".count
        } else {
            throw ConfigValueProblem("is not an http:// or https:// URL; \(Self.baseURLForm)")
        }
        let parts = try self.urlParts(text.dropFirst(schemeLength), form: Self.baseURLForm)
        if parts.hasQueryOrFragment {
            throw ConfigValueProblem("has a query or fragment; a base URL ends with its path, \(Self.baseURLForm)")
        }
        if let portText = parts.authority.port {
            _ = try self.port(portText, lowest: 1, form: Self.baseURLForm)
        }
        if parts.path.contains(where: { $0 == " " }) {
            throw ConfigValueProblem("has a space in its path; encode it as %20")
        }
        var url = Substring(text)
        while url.hasSuffix("/") { url = url.dropLast() }
        return String(url)
    }

    // MARK: - HTTP names and secrets

    /// Headers a subscription token or tenant id must not travel in: they describe the
    /// connection or the message framing, and proxies (Subgate included) consume or rewrite them.
    /// Every `proxy-…` field is hop-by-hop as well (`HeaderRewrite`).
    static let reservedHeaderNames: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "host", "content-length", "proxy",
    ]

    /// Headers Subgate itself reads or writes on the way upstream. A token in one is taken as
    /// that header rather than removed: in `x-request-id` it became the logged request id and
    /// reached the upstream with `forward_token = false`, in `x-forwarded-for` it was relayed in
    /// the chain (found by the fuzz/ `request-head` target).
    static let proxyHeaderNames: Set<String> = [
        "x-request-id", "x-forwarded-for", "x-forwarded-proto", "expect",
        GatewayRelay.secretHeader, GatewayRelay.relayIDHeader,
    ]

    /// An HTTP field name (RFC 9110 token), returned in lower case.
    static func headerName(_ text: String) throws(ConfigValueProblem) -> String {
        guard text.utf8.allSatisfy(Self.isTokenCharacter) else {
            throw ConfigValueProblem(
                "`\(text)` is not an HTTP header name; use letters, digits and - (RFC 9110 token characters), such as x-subscription-token"
            )
        }
        let name = text.lowercased()
        if name.hasPrefix("x-subgate-") {
            throw ConfigValueProblem("`\(text)` starts with x-subgate-, and Subgate removes those headers from every client request; choose another name")
        }
        if Self.reservedHeaderNames.contains(name) || name.hasPrefix("proxy-") {
            throw ConfigValueProblem("`\(text)` describes the connection or message framing, and proxies consume or rewrite it; choose a header of its own such as x-subscription-token")
        }
        if Self.proxyHeaderNames.contains(name) {
            throw ConfigValueProblem("`\(text)` is a header Subgate reads or writes itself (request ids, forwarding, Expect, gateway relays), so a value in it would be logged or forwarded as that header; choose a header of its own such as x-subscription-token")
        }
        return name
    }

    /// A non-empty run of visible ASCII (the token prefix; a Crovver pool key).
    static func visibleASCII(_ text: String, example: String) throws(ConfigValueProblem) -> String {
        guard text.utf8.allSatisfy(Self.isVisibleASCII) else {
            throw ConfigValueProblem("`\(text)` contains a space or a non-ASCII character; expected visible ASCII such as \(example)")
        }
        return text
    }

    /// A price in US dollars (`0.25`, `$1`, at most 6 decimal places) as micro-dollars: money is
    /// never a floating-point number here.
    static func dollars(_ text: String) throws(ConfigValueProblem) -> Int {
        guard let micros = MicroDollars.parse(text.hasPrefix("$") ? String(text.dropFirst()) : text), micros > 0 else {
            throw ConfigValueProblem("`\(text)` is not a price; expected US dollars per call such as 0.25 or 1 (more than 0, at most 6 decimal places)")
        }
        return micros
    }

    /// A secret (admin token, Crovver key, gateway secret). Never echoed.
    static func secret(_ text: String) throws(ConfigValueProblem) -> Secret {
        // Every secret is sent in an HTTP header, where a space or non-ASCII byte would be
        // rejected by the other side or cut the value short.
        guard text.utf8.allSatisfy(Self.isVisibleASCII) else {
            throw ConfigValueProblem("contains a space or a non-ASCII character, which an HTTP header cannot carry; copy the secret again without it")
        }
        return Secret(text)
    }

    /// A Crochet seller key, `am_k_…`. Never echoed.
    static func sellerKey(_ text: String) throws(ConfigValueProblem) -> Secret {
        guard text.hasPrefix("am_k_") else {
            throw ConfigValueProblem("seller keys start with am_k_; check you pasted the seller key, not a buyer token")
        }
        guard text.count > "am_k_".count else {
            throw ConfigValueProblem("has nothing after am_k_; paste the whole seller key")
        }
        return try self.secret(text)
    }

    // MARK: - Helpers

    /// A host and an optional port text, split from `host`, `host:port`, `[v6]` or `[v6]:port`.
    private struct Authority {
        var host: String
        var port: Substring?
    }

    /// The authority, path and whether a query or fragment follows, of a URL after its scheme.
    private struct URLParts {
        var authority: Authority
        var path: Substring
        var hasQueryOrFragment: Bool
    }

    private static func urlParts(_ afterScheme: Substring, form: String) throws(ConfigValueProblem) -> URLParts {
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
        let authorityText = afterScheme[..<authorityEnd]
        if authorityText.contains("@") {
            throw ConfigValueProblem("has a user name or password (user@host), which is not supported; remove it")
        }
        let authority = try self.authority(authorityText, form: form)
        let rest = afterScheme[authorityEnd...]
        let pathEnd = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? rest.endIndex
        return URLParts(authority: authority, path: rest[..<pathEnd], hasQueryOrFragment: pathEnd != rest.endIndex)
    }

    private static func authority(_ text: Substring, form: String) throws(ConfigValueProblem) -> Authority {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ConfigValueProblem("has a `[` without its `]`; \(form)")
            }
            let host = text[text.index(after: text.startIndex)..<close]
            guard !host.isEmpty, host.contains(":"), host.utf8.allSatisfy(Self.isIPv6Character) else {
                throw ConfigValueProblem("`[\(host)]` is not an IPv6 address; \(form)")
            }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return Authority(host: String(host), port: nil) }
            guard rest.first == ":" else { throw ConfigValueProblem("has something other than :port after `]`; \(form)") }
            return Authority(host: String(host), port: rest.dropFirst())
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 {
            throw ConfigValueProblem("looks like an IPv6 address without brackets; write it as [::1]:8080")
        }
        let host: Substring
        var port: Substring? = nil
        if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw ConfigValueProblem("has no host; \(form)") }
        guard host.utf8.allSatisfy(Self.isHostNameCharacter) else {
            throw ConfigValueProblem("`\(host)` is not a host name or IP address; \(form)")
        }
        return Authority(host: String(host), port: port)
    }

    private static func port(_ text: Substring, lowest: Int, form: String) throws(ConfigValueProblem) -> Int {
        guard case .value(let port) = self.unsigned(text) else {
            if text.isEmpty { throw ConfigValueProblem("has an empty port after `:`; \(form)") }
            throw ConfigValueProblem("port `\(text)` is not a number; \(form)")
        }
        guard (lowest...65535).contains(port) else {
            throw ConfigValueProblem("port \(port) is out of range; ports run from \(lowest) to 65535")
        }
        return port
    }

    /// The result of reading a run of ASCII digits.
    private enum UnsignedNumber {
        case value(Int)
        case notANumber
        case tooLarge
    }

    private static func unsigned(_ text: some StringProtocol) -> UnsignedNumber {
        // `Int.init` alone would also take `+5`; only plain digits are a number here.
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .notANumber
        }
        guard let number = Int(text) else { return .tooLarge }
        return .value(number)
    }

    /// `a`, `a or b`, `a, b or c`.
    static func oneOf(_ names: [String]) -> String {
        guard let last = names.last else { return "" }
        if names.count == 1 { return "`\(last)`" }
        return names.dropLast().map { "`\($0)`" }.joined(separator: ", ") + " or `\(last)`"
    }

    private static func isVisibleASCII(_ byte: UInt8) -> Bool { byte > 0x20 && byte < 0x7F }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    private static func isHostNameCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            // `_` is not valid in DNS names, but Docker Compose service names use it.
            return byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        }
    }

    private static func isIPv6Character(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
        }
    }
}

extension HostPort {
    /// Parses `host:port` or `[ipv6]:port` (port 0 allowed) with the config's own rules, for
    /// command-line options; the error is the same sentence `subgate check` would give.
    public static func parse(_ text: String) -> Result<HostPort, HostPortError> {
        do {
            return .success(try ConfigValue.hostPort(text))
        } catch {
            return .failure(HostPortError(message: error.message))
        }
    }
}

public struct HostPortError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}
