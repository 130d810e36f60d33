import Testing

@testable import SubgateCore

// MARK: - Fixtures shared by the Config*Tests files

/// Runs the real `ConfigParser.parse` on a string, with an in-memory environment and an
/// in-memory set of files for `seller_key_file`.
enum ConfigFixture {
    /// The file name every error of a string-parsed configuration starts with.
    static let file = "subgate.conf"

    /// The two lines every valid `backend = crochet` configuration needs.
    static let requiredLines = [
        "upstream = http://127.0.0.1:3000",
        "seller_key = am_k_fixture",
    ]

    /// The smallest configuration that parses.
    static let minimal = Self.requiredLines.joined(separator: "\n") + "\n"

    /// What the in-memory `readFile` throws for a path it does not hold; its description
    /// becomes part of the parser's message, as `strerror`'s text does for the real reader.
    struct MissingFile: Error, CustomStringConvertible {
        var description: String { "No such file or directory" }
    }

    static func parse(
        _ text: String,
        environment: [String: String] = [:],
        files: [String: String] = [:]
    ) -> Result<Config, ConfigErrors> {
        ConfigParser.parse(text, file: Self.file, environment: environment) { path in
            guard let contents = files[path] else { throw MissingFile() }
            return contents
        }
    }

    /// `key = value` on line 1, followed by the required lines except one for the same key,
    /// so that the only problem is the value under test and it is on line 1.
    static func withLine(key: String, value: String) -> String {
        let others = Self.requiredLines.filter { !$0.hasPrefix(key + " ") }
        return (["\(key) = \(value)"] + others).joined(separator: "\n") + "\n"
    }
}

/// The parsed configuration; a rejection is thrown as `ConfigErrors`, whose description
/// lists every problem, so the test's failure says what the parser objected to.
func parsedConfig(
    _ text: String,
    environment: [String: String] = [:],
    files: [String: String] = [:]
) throws -> Config {
    try ConfigFixture.parse(text, environment: environment, files: files).get()
}

/// Every error the parser reports; records an issue when the configuration parsed.
func configErrors(
    _ text: String,
    environment: [String: String] = [:],
    files: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
) -> [ConfigError] {
    switch ConfigFixture.parse(text, environment: environment, files: files) {
    case .success:
        Issue.record("expected the configuration to be rejected, but it parsed:\n\(text)", sourceLocation: sourceLocation)
        return []
    case .failure(let errors):
        return errors.errors
    }
}

/// The one error the parser reports; fails the test when there is none or more than one.
func onlyConfigError(
    _ text: String,
    environment: [String: String] = [:],
    files: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> ConfigError {
    let errors = configErrors(text, environment: environment, files: files, sourceLocation: sourceLocation)
    try #require(
        errors.count == 1,
        "expected exactly one error, got \(errors.count):\n\(ConfigErrors(errors))",
        sourceLocation: sourceLocation
    )
    return errors[0]
}

// MARK: - Lines, keys and the file's layout (SPEC §2)

/// The file-level rules of SPEC §2: one `key = value` per line, comments, blank lines,
/// trimming, and the errors for lines that are not a known `key = value`.
@Suite("Config parser: lines and keys")
struct ConfigParserTests {
    // MARK: Accepted layouts

    @Test("the minimal file parses, and unset keys keep SPEC §2's defaults")
    func minimalFileParses() throws {
        let config = try parsedConfig(ConfigFixture.minimal)
        var expected = Config()
        expected.upstream = UpstreamTarget(host: "127.0.0.1", port: 3000)
        expected.sellerKey = Secret("am_k_fixture")
        #expect(config == expected, "a file naming only upstream and seller_key must leave every other field at its default")
    }

    @Test("comment lines, indented comments and blank lines are ignored")
    func commentsAndBlankLines() throws {
        let text = """
            # Subgate configuration

            # listen = this is not parsed, so its bad value is no error
               # an indented comment
            \t
            upstream = http://127.0.0.1:3000

            seller_key = am_k_fixture
            #
            """
        let config = try parsedConfig(text)
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 8080), "a commented-out listen line must not change the default")
    }

    @Test("whitespace around keys and values is trimmed, spaces and tabs alike")
    func whitespaceIsTrimmed() throws {
        let text = "   listen\t=   127.0.0.1:8181  \t\n\tupstream=http://127.0.0.1:3000\nseller_key =am_k_fixture   \n"
        let config = try parsedConfig(text)
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8181), "`   listen\\t=   127.0.0.1:8181  ` must read as listen = 127.0.0.1:8181")
        #expect(config.upstream == UpstreamTarget(host: "127.0.0.1", port: 3000), "`upstream=…` without spaces must parse")
        #expect(config.sellerKey == Secret("am_k_fixture"), "the seller key must be read without its trailing spaces")
    }

    @Test("only the first `=` separates key and value; the rest belongs to the value")
    func valueMayContainEquals() throws {
        let config = try parsedConfig(ConfigFixture.minimal + "admin_token = abc==\n")
        #expect(config.adminToken == Secret("abc=="), "a base64-padded token must keep its trailing `==`")
    }

    @Test("CRLF line endings are accepted")
    func crlfLineEndings() throws {
        let text = "listen = 127.0.0.1:8181\r\nupstream = http://127.0.0.1:3000\r\nseller_key = am_k_fixture\r\n"
        let config = try parsedConfig(text)
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8181), "a CRLF file must parse as if it had LF endings")
        #expect(config.sellerKey == Secret("am_k_fixture"), "the CR must not become part of the seller key")
    }

    @Test("CRLF line endings keep line numbers right in errors")
    func crlfLineNumbers() throws {
        let text = "# comment\r\n\r\nupstream = http://127.0.0.1:3000\r\nseller_key = am_k_fixture\r\nlisten = nowhere\r\n"
        let error = try onlyConfigError(text)
        #expect(error.line == 5, "the bad listen is on line 5 of a CRLF file, got \(String(describing: error.line))")
    }

    @Test("a UTF-8 byte-order mark before the first key is ignored")
    func byteOrderMark() throws {
        let text = "\u{FEFF}listen = 127.0.0.1:8181\nupstream = http://127.0.0.1:3000\nseller_key = am_k_fixture\n"
        let config = try parsedConfig(text)
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8181), "a BOM must not turn the first key into an unknown `\\u{FEFF}listen`")
    }

    @Test("a byte-order mark and CRLF together, as Windows editors write them")
    func byteOrderMarkWithCRLF() throws {
        let text = "\u{FEFF}# written on Windows\r\nupstream = http://127.0.0.1:3000\r\nseller_key = am_k_fixture\r\n"
        let config = try parsedConfig(text)
        #expect(config.sellerKey == Secret("am_k_fixture"), "a BOM + CRLF file must parse with the key intact")
    }

    @Test("a file without a final newline parses")
    func noFinalNewline() throws {
        let config = try parsedConfig("upstream = http://127.0.0.1:3000\nseller_key = am_k_fixture")
        #expect(config.sellerKey == Secret("am_k_fixture"), "the last line must be read even without a newline after it")
    }

    // MARK: Lines that are not `key = value`

    @Test("a line without `=` is an error naming its line, without quoting it")
    func lineWithoutEquals() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "listen 0.0.0.0:8080\n")
        #expect(
            error.description
                == "subgate.conf:3: this line has no `=`; write settings as `key = value`, and start comment lines with `#`"
        )
        #expect(error.key == nil, "a line without `=` has no key to name")
    }

    @Test("a YAML-style `key: value` line is reported as a line without `=`")
    func yamlStyleLine() throws {
        let error = try onlyConfigError("listen: 0.0.0.0:8080\n" + ConfigFixture.minimal)
        #expect(error.line == 1, "the YAML line is line 1")
        #expect(error.message.contains("has no `=`"), "got: \(error)")
    }

    @Test("a line with nothing before `=` is an empty-key error")
    func emptyKey() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "   = 8080\n")
        #expect(error.description == "subgate.conf:3: this line has no key before `=`; write settings as `key = value`")
    }

    @Test("a key with no value is an error, not an empty setting")
    func keyWithoutValue() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "listen =\n")
        #expect(error.description == "subgate.conf:3: listen: has no value; give it one, or delete the line to keep the default")
    }

    // MARK: Unknown and duplicated keys

    @Test("an unknown key close to a real one gets a did-you-mean")
    func unknownKeyNearMiss() throws {
        let error = try onlyConfigError("upstrem = http://127.0.0.1:3000\nseller_key = am_k_fixture\nupstream = http://127.0.0.1:3000\n")
        #expect(error.description == "subgate.conf:1: upstrem: unknown key; did you mean `upstream`?")
    }

    @Test("a transposition and a missing underscore are near misses too", arguments: [
        ("admin_tokne", "admin_token"),
        ("sellerkey", "seller_key"),
        ("cache-ttl", "cache_ttl"),
        ("max_body_byte", "max_body_bytes"),
    ])
    func unknownKeyNearMisses(typed: String, meant: String) throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "\(typed) = 1\n")
        #expect(error.key == typed, "the error must name the key as written")
        #expect(error.message == "unknown key; did you mean `\(meant)`?", "`\(typed)` should suggest `\(meant)`, got: \(error.message)")
    }

    @Test("an unknown key far from every real one gets no suggestion")
    func unknownKeyFarMiss() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "colour = blue\n")
        #expect(error.description == "subgate.conf:3: colour: unknown key; docs/configuration.md lists every key")
    }

    @Test("a long unrelated key gets no suggestion")
    func unknownLongKeyFarMiss() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "frobnicate_everything_now = yes\n")
        #expect(error.message == "unknown key; docs/configuration.md lists every key", "got: \(error.message)")
    }

    @Test("keys are case-sensitive, and an upper-case key says so")
    func upperCaseKey() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "LISTEN = 0.0.0.0:8080\n")
        #expect(error.description == "subgate.conf:3: LISTEN: unknown key; keys are lower case: did you mean `listen`?")
    }

    @Test("an unknown key's value is not checked, and the rest of the file still is")
    func unknownKeyValueIgnored() throws {
        let errors = configErrors("colour = 10\nlisten = nowhere\n" + ConfigFixture.minimal)
        #expect(errors.map(\.line) == [1, 2], "the unknown key and the bad listen must both be reported, got:\n\(ConfigErrors(errors))")
    }

    @Test("a duplicated key is an error on its second line, naming the first")
    func duplicatedKey() throws {
        let error = try onlyConfigError("listen = 0.0.0.0:8080\n" + ConfigFixture.minimal + "listen = 0.0.0.0:8081\n")
        #expect(error.description == "subgate.conf:4: listen: is set twice, on line 1 and again here; keep one of them")
    }

    @Test("a key set twice to the same value is still a duplicate")
    func duplicatedKeySameValue() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "seller_key = am_k_fixture\n")
        #expect(error.line == 3 && error.key == "seller_key", "got: \(error)")
        #expect(error.message.contains("is set twice, on line 2"), "got: \(error.message)")
    }

    @Test("a duplicated secret's error does not echo either value")
    func duplicatedSecretNotEchoed() throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "seller_key = am_k_second_secret\n")
        #expect(!error.description.contains("am_k_second_secret"), "the duplicate's value leaked: \(error)")
        #expect(!error.description.contains("am_k_fixture"), "the first value leaked: \(error)")
    }

    // MARK: Required keys and combinations

    @Test("a file without upstream is rejected, and the error says how to add it")
    func upstreamRequired() throws {
        let error = try onlyConfigError("seller_key = am_k_fixture\n")
        #expect(
            error.description
                == "subgate.conf: upstream: is required; add `upstream = http://127.0.0.1:3000` naming the seller's service, or set SUBGATE_UPSTREAM"
        )
        #expect(error.line == nil, "a missing key has no line")
    }

    @Test("an empty file reports both missing upstream and missing seller key")
    func emptyFile() throws {
        let errors = configErrors("")
        #expect(errors.map(\.key) == ["upstream", nil], "got:\n\(ConfigErrors(errors))")
        #expect(errors.last?.message.contains("backend = crochet needs a seller key") == true, "got:\n\(ConfigErrors(errors))")
    }

    @Test("an invalid upstream is one error, not also 'upstream is required'")
    func invalidUpstreamIsNotMissing() throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: "upstream", value: "nowhere"))
        #expect(error.line == 1 && error.key == "upstream", "got: \(error)")
    }

    @Test("backend = crochet without any seller key is rejected")
    func crochetNeedsSellerKey() throws {
        let error = try onlyConfigError("upstream = http://127.0.0.1:3000\n")
        #expect(
            error.description
                == "subgate.conf: backend = crochet needs a seller key; add `seller_key_file = /path/to/key` (preferred) or `seller_key = am_k_…`, or set SUBGATE_SELLER_KEY_FILE or SUBGATE_SELLER_KEY"
        )
    }

    @Test("backend = crovver needs crovver_key and no seller key")
    func crovverNeedsCrovverKey() throws {
        let error = try onlyConfigError("upstream = http://127.0.0.1:3000\nbackend = crovver\n")
        #expect(
            error.description
                == "subgate.conf: crovver_key: is required with backend = crovver; add `crovver_key = …` or set SUBGATE_CROVVER_KEY"
        )
        let config = try parsedConfig("upstream = http://127.0.0.1:3000\nbackend = crovver\ncrovver_key = ck_live_1\n")
        #expect(config.backend == .crovver && config.sellerKey == nil, "crovver with its key and no seller key must parse")
    }

    @Test("an unreadable backend adds no guess about which key is missing")
    func badBackendAddsNoCredentialError() throws {
        let error = try onlyConfigError("upstream = http://127.0.0.1:3000\nbackend = stripe\n")
        #expect(error.line == 2 && error.key == "backend", "only the backend line is wrong, got: \(error)")
    }

    @Test("listen and admin_listen on one address is an error on the key that was set")
    func listenersCollide() throws {
        let admin = try onlyConfigError(ConfigFixture.minimal + "listen = 127.0.0.1:8080\nadmin_listen = 127.0.0.1:8080\n")
        #expect(
            admin.description
                == "subgate.conf:4: admin_listen: is the same address as listen (127.0.0.1:8080); give the admin listener a port of its own"
        )
        // Only listen set, onto the admin listener's default address.
        let listen = try onlyConfigError(ConfigFixture.minimal + "listen = 127.0.0.1:9901\n")
        #expect(
            listen.description
                == "subgate.conf:3: listen: is the same address as admin_listen (127.0.0.1:9901); give the admin listener a port of its own"
        )
    }

    @Test("both listeners on port 0 do not collide: the OS picks two ports")
    func listenersOnPortZero() throws {
        let config = try parsedConfig(ConfigFixture.minimal + "listen = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n")
        #expect(config.listen.port == 0 && config.adminListen.port == 0)
    }

    // MARK: Reporting

    @Test("every problem is reported in one pass, file lines first, then overrides, then the whole")
    func severalErrorsTogether() throws {
        let text = """
            listen = 8080
            colour = blue
            no equals here
            cache_ttl = 5
            listen = 0.0.0.0:8080
            """
        let errors = configErrors(text, environment: ["SUBGATE_MAX_BODY_BYTES": "lots", "SUBGATE_BACKEND": "crochet"])
        let rendered = errors.map(\.description)
        #expect(
            rendered == [
                "subgate.conf:1: listen: `8080` has no port; expected host:port such as 0.0.0.0:8080, 127.0.0.1:9901 or [::1]:8080",
                "subgate.conf:2: colour: unknown key; docs/configuration.md lists every key",
                "subgate.conf:3: this line has no `=`; write settings as `key = value`, and start comment lines with `#`",
                "subgate.conf:4: cache_ttl: `5` has no unit; write 5s, 5ms, 5m or 5h",
                "subgate.conf:5: listen: is set twice, on line 1 and again here; keep one of them",
                "environment: SUBGATE_MAX_BODY_BYTES: `lots` is not a size; expected a number of bytes, or a size with k or m (1024-based) such as 16k or 10m",
                "subgate.conf: upstream: is required; add `upstream = http://127.0.0.1:3000` naming the seller's service, or set SUBGATE_UPSTREAM",
                "subgate.conf: backend = crochet needs a seller key; add `seller_key_file = /path/to/key` (preferred) or `seller_key = am_k_…`, or set SUBGATE_SELLER_KEY_FILE or SUBGATE_SELLER_KEY",
            ],
            "got:\n\(rendered.joined(separator: "\n"))"
        )
    }

    @Test("errors render as `file:line: key: message`, leaving out the parts that are absent")
    func errorTextFormat() {
        #expect(ConfigError(file: "a.conf", line: 7, key: "cache_ttl", message: "m").description == "a.conf:7: cache_ttl: m")
        #expect(ConfigError(file: "a.conf", line: 7, key: nil, message: "m").description == "a.conf:7: m")
        #expect(ConfigError(file: "a.conf", line: nil, key: "upstream", message: "m").description == "a.conf: upstream: m")
        #expect(ConfigError(file: "environment", line: nil, key: "SUBGATE_LISTEN", message: "m").description == "environment: SUBGATE_LISTEN: m")
        let both = ConfigErrors([
            ConfigError(file: "a.conf", line: 1, key: "listen", message: "one"),
            ConfigError(file: "a.conf", line: nil, key: nil, message: "two"),
        ])
        #expect(both.description == "a.conf:1: listen: one\na.conf: two", "ConfigErrors prints one error per line")
    }

    @Test("the file name in errors is the one passed to parse, as the user gave it")
    func fileNameAsGiven() throws {
        let result = ConfigParser.parse("listen = x\n", file: "./deploy/prod.conf", environment: [:]) { _ in "" }
        guard case .failure(let errors) = result else {
            Issue.record("a file without upstream must be rejected")
            return
        }
        #expect(errors.errors.first?.description.hasPrefix("./deploy/prod.conf:1: listen: ") == true, "got:\n\(errors)")
    }
}
