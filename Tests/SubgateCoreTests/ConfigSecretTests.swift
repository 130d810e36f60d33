import Testing

@testable import SubgateCore

/// SPEC §2: secrets (`seller_key`, `crovver_key`, `admin_token`, `gateway_secret`) are never
/// printed or logged; `seller_key_file` reads the key from a file.
@Suite("Config parser: secrets and seller_key_file")
struct ConfigSecretTests {
    static let upstream = "upstream = http://127.0.0.1:3000\n"

    // MARK: - seller_key and seller_key_file

    @Test("seller_key_file is read, and its trailing newline trimmed")
    func sellerKeyFileTrailingNewline() throws {
        let config = try parsedConfig(
            Self.upstream + "seller_key_file = /run/secrets/crochet_seller_key\n",
            files: ["/run/secrets/crochet_seller_key": "am_k_from_file\n"]
        )
        #expect(config.sellerKey == Secret("am_k_from_file"), "the key must be the file's contents without the newline")
        #expect(config.sellerKeyFile == "/run/secrets/crochet_seller_key", "the path is kept for `subgate check`")
    }

    @Test("seller_key_file written on Windows: CRLF and surrounding spaces are trimmed")
    func sellerKeyFileCRLF() throws {
        let config = try parsedConfig(Self.upstream + "seller_key_file = k\n", files: ["k": "  am_k_from_file\r\n"])
        #expect(config.sellerKey == Secret("am_k_from_file"))
    }

    @Test("seller_key and seller_key_file together are rejected on the file line, naming the other")
    func bothGiven() throws {
        let error = try onlyConfigError(
            Self.upstream + "seller_key = am_k_inline\nseller_key_file = /run/secrets/key\n",
            files: ["/run/secrets/key": "am_k_file"]
        )
        #expect(
            error.description == "subgate.conf:3: seller_key_file: is set together with seller_key (line 2); keep only one of the two"
        )
        #expect(!error.description.contains("am_k_inline") && !error.description.contains("am_k_file"), "a key leaked: \(error)")
    }

    @Test("backend = crochet with neither seller_key nor seller_key_file is rejected")
    func neitherGivenForCrochet() throws {
        let error = try onlyConfigError(Self.upstream + "backend = crochet\n")
        #expect(error.line == nil && error.key == nil, "a missing combination has no line or key, got: \(error)")
        #expect(error.message.hasPrefix("backend = crochet needs a seller key;"), "got: \(error.message)")
    }

    @Test("an unreadable seller_key_file names the path and the reason")
    func unreadableSellerKeyFile() throws {
        let error = try onlyConfigError(Self.upstream + "seller_key_file = /run/secrets/missing\n")
        #expect(
            error.description
                == "subgate.conf:2: seller_key_file: cannot read `/run/secrets/missing` (No such file or directory); check the path and that Subgate's user may read it"
        )
    }

    @Test("an empty seller_key_file is rejected", arguments: ["", "\n", "  \r\n\t"])
    func emptySellerKeyFile(contents: String) throws {
        let error = try onlyConfigError(Self.upstream + "seller_key_file = /run/secrets/key\n", files: ["/run/secrets/key": contents])
        #expect(error.description == "subgate.conf:2: seller_key_file: `/run/secrets/key` is empty; put the seller key (am_k_…) in it")
    }

    @Test("a seller_key_file holding something other than a seller key is rejected without quoting it")
    func sellerKeyFileWrongContents() throws {
        let error = try onlyConfigError(
            Self.upstream + "seller_key_file = /run/secrets/key\n",
            files: ["/run/secrets/key": "cro_sub_buyer_token_oops\n"]
        )
        #expect(
            error.description
                == "subgate.conf:2: seller_key_file: the key in `/run/secrets/key` is not usable: seller keys start with am_k_; check you pasted the seller key, not a buyer token"
        )
        #expect(!error.description.contains("cro_sub_buyer_token_oops"), "the file's contents leaked: \(error)")
    }

    @Test("a seller_key_file with two lines is rejected without quoting either")
    func sellerKeyFileTwoLines() throws {
        let error = try onlyConfigError(
            Self.upstream + "seller_key_file = k\n",
            files: ["k": "am_k_first_secret\nam_k_second_secret\n"]
        )
        #expect(error.message.hasPrefix("the key in `k` is not usable: "), "got: \(error.message)")
        #expect(!error.description.contains("first_secret") && !error.description.contains("second_secret"), "leaked: \(error)")
    }

    @Test("seller_key that is not am_k_… is rejected", arguments: [
        ("sk_live_abc", "seller keys start with am_k_; check you pasted the seller key, not a buyer token"),
        ("am_k_", "has nothing after am_k_; paste the whole seller key"),
        ("am_k_ab cd", "contains a space or a non-ASCII character, which an HTTP header cannot carry; copy the secret again without it"),
    ])
    func badSellerKey(value: String, message: String) throws {
        let error = try onlyConfigError(ConfigFixture.withLine(key: "seller_key", value: value))
        #expect(error.description == "subgate.conf:1: seller_key: \(message)")
    }

    @Test("secrets with a space or non-ASCII character are rejected", arguments: ["admin_token", "crovver_key", "gateway_secret"])
    func badSecret(key: String) throws {
        let error = try onlyConfigError(ConfigFixture.minimal + "\(key) = tök en\n")
        #expect(
            error.description
                == "subgate.conf:3: \(key): contains a space or a non-ASCII character, which an HTTP header cannot carry; copy the secret again without it"
        )
    }

    // MARK: - Never printed

    static let secrets = [
        "am_k_SELLER_SECRET_1", "CROVVER_SECRET_2", "ADMIN_SECRET_3", "GATEWAY_SECRET_4",
    ]

    @Test("effectiveSettings() shows every secret as <redacted> and never its value")
    func effectiveSettingsRedactSecrets() throws {
        let config = try parsedConfig(
            Self.upstream + """
                seller_key = am_k_SELLER_SECRET_1
                crovver_key = CROVVER_SECRET_2
                admin_token = ADMIN_SECRET_3
                gateway_secret = GATEWAY_SECRET_4
                """
        )
        let settings = config.effectiveSettings()
        for (key, value) in settings {
            for secret in Self.secrets {
                #expect(!value.contains(secret), "effectiveSettings() prints \(key) = \(value), which contains a secret")
            }
        }
        let shown = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0.value) })
        for key in ["seller_key", "crovver_key", "admin_token", "gateway_secret"] {
            #expect(shown[key] == "<redacted>", "\(key) must show as <redacted> when set, got \(String(describing: shown[key]))")
        }
    }

    @Test("the seller key read from seller_key_file is redacted too; the path is shown")
    func sellerKeyFromFileRedacted() throws {
        let config = try parsedConfig(Self.upstream + "seller_key_file = /run/secrets/k\n", files: ["/run/secrets/k": "am_k_FILE_SECRET\n"])
        let shown = Dictionary(uniqueKeysWithValues: config.effectiveSettings().map { ($0.key, $0.value) })
        #expect(shown["seller_key"] == "<redacted>")
        #expect(shown["seller_key_file"] == "/run/secrets/k")
        #expect(!config.effectiveSettings().contains { $0.value.contains("am_k_FILE_SECRET") }, "the file's key leaked")
    }

    @Test("unset secrets show as (unset)")
    func unsetSecrets() throws {
        let shown = Dictionary(uniqueKeysWithValues: try parsedConfig(ConfigFixture.minimal).effectiveSettings().map { ($0.key, $0.value) })
        for key in ["crovver_key", "admin_token", "gateway_secret", "seller_key_file"] {
            #expect(shown[key] == "(unset)", "\(key) must show as (unset), got \(String(describing: shown[key]))")
        }
    }

    @Test("printing a Config or a Secret, plainly or for debugging, never shows a secret")
    func describingConfigRedacts() throws {
        let config = try parsedConfig(
            Self.upstream + """
                seller_key = am_k_SELLER_SECRET_1
                crovver_key = CROVVER_SECRET_2
                admin_token = ADMIN_SECRET_3
                gateway_secret = GATEWAY_SECRET_4
                """
        )
        for rendering in [String(describing: config), String(reflecting: config), "\(config.adminToken as Any)"] {
            for secret in Self.secrets {
                #expect(!rendering.contains(secret), "a rendering of Config contains a secret: \(rendering)")
            }
        }
        #expect("\(Secret("s3cret"))" == "<redacted>")
        #expect(String(reflecting: Secret("s3cret")) == "<redacted>")
    }

    @Test("no error message quotes a secret, whichever way it fails")
    func errorsNeverQuoteSecrets() throws {
        let secret = "SECRET_VALUE_9"
        let cases: [(text: String, environment: [String: String])] = [
            // Each secret key with each value problem.
            (Self.upstream + "seller_key = \"am_k_\(secret)\"\n", [:]),
            (Self.upstream + "seller_key = wrong_\(secret)\n", [:]),
            (Self.upstream + "seller_key = am_k_\(secret) # note\n", [:]),
            (ConfigFixture.minimal + "admin_token = '\(secret)'\n", [:]),
            (ConfigFixture.minimal + "admin_token = \(secret)\u{7}\n", [:]),
            (ConfigFixture.minimal + "crovver_key = \(secret) \(secret)\n", [:]),
            (ConfigFixture.minimal + "gateway_secret = ünï_\(secret)\n", [:]),
            // Duplicates, a line without `=`, an unknown key holding a secret.
            (ConfigFixture.minimal + "admin_token = a\nadmin_token = \(secret)\n", [:]),
            (ConfigFixture.minimal + "am_k_\(secret)\n", [:]),
            (ConfigFixture.minimal + "admin_tokn = \(secret)\n", [:]),
            // The same problems arriving through the environment.
            (ConfigFixture.minimal, ["SUBGATE_ADMIN_TOKEN": "\"\(secret)\""]),
            (ConfigFixture.minimal, ["SUBGATE_SELLER_KEY": "x_\(secret)"]),
            (ConfigFixture.minimal, ["SUBGATE_GATEWAY_SECRET": "a \(secret)"]),
            (ConfigFixture.minimal, ["SUBGATE_CROVVER_KEYS": secret]),
            // A secret in the upstream URL's user-info.
            ("upstream = http://user:\(secret)@127.0.0.1:3000\nseller_key = am_k_x\n", [:]),
            ("upstream = http://127.0.0.1:3000\nseller_key = am_k_x\ncontrol_plane_url = https://u:\(secret)@cp.example\n", [:]),
        ]
        for (text, environment) in cases {
            let errors = configErrors(text, environment: environment)
            #expect(!errors.isEmpty, "expected an error for:\n\(text)\(environment)")
            for error in errors {
                #expect(!error.description.contains(secret), "an error quotes the secret: \(error)")
            }
        }
    }

    @Test("a secret written with a space instead of `=` is not quoted back as an unknown key")
    func secretBeforeEqualsNotQuoted() throws {
        // `gateway_secret c2VjcmV0==`: the `=` of the base64 padding makes everything before
        // it the key, and unknown keys are quoted as written.
        let error = try onlyConfigError(ConfigFixture.minimal + "gateway_secret c2VjcmV0aGVyZQ==\n")
        #expect(error.line == 3, "got: \(error)")
        #expect(!error.description.contains("c2VjcmV0aGVyZQ"), "the secret leaked: \(error)")
        #expect(error.key == "gateway_secret", "the error should name the key word: \(error)")
    }
}
