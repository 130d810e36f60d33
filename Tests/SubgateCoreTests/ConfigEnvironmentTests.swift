import Testing

@testable import SubgateCore

/// SPEC §2: "Every key can be overridden by the environment variable `SUBGATE_<KEY IN UPPER CASE>`."
@Suite("Config parser: SUBGATE_* environment overrides")
struct ConfigEnvironmentTests {
    @Test("every key has its override variable, SUBGATE_ and the key in upper case")
    func everyKeyHasAVariable() {
        for key in ConfigKey.allCases {
            #expect(key.environmentVariable == "SUBGATE_" + key.rawValue.uppercased(), "\(key.rawValue) has the wrong variable name")
        }
    }

    @Test("an override wins over the file's value")
    func overrideWins() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal + "listen = 0.0.0.0:8080\n",
            environment: ["SUBGATE_LISTEN": "127.0.0.1:8181"]
        )
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8181), "SUBGATE_LISTEN must replace the file's listen")
    }

    @Test("an override wins over a bad value in the file, which is then not reported")
    func overrideReplacesBadFileValue() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal + "cache_ttl = forever\n",
            environment: ["SUBGATE_CACHE_TTL": "30s"]
        )
        #expect(config.cacheTTL == .fixed(.seconds(30)), "the override's value must be the one used")
    }

    @Test("an override sets a key the file does not mention, including the required ones")
    func overrideSuppliesRequiredKeys() throws {
        let config = try parsedConfig(
            "",
            environment: ["SUBGATE_UPSTREAM": "http://app:8000", "SUBGATE_SELLER_KEY": "am_k_from_env"]
        )
        #expect(config.upstream == UpstreamTarget(host: "app", port: 8000))
        #expect(config.sellerKey == Secret("am_k_from_env"))
    }

    @Test("override values are trimmed: secrets from files and .env often end in a newline")
    func overrideValuesAreTrimmed() throws {
        let config = try parsedConfig(
            "upstream = http://127.0.0.1:3000\n",
            environment: ["SUBGATE_SELLER_KEY": "  am_k_from_env\n", "SUBGATE_MAX_BODY_BYTES": "1m\r\n"]
        )
        #expect(config.sellerKey == Secret("am_k_from_env"), "the newline must not become part of the key")
        #expect(config.maxBodyBytes == 1_048_576)
    }

    @Test("a bad override is an error naming the variable, with file `environment` and no line")
    func badOverrideNamesVariable() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_LISTEN": "8080"])
        #expect(
            error.description
                == "environment: SUBGATE_LISTEN: `8080` has no port; expected host:port such as 0.0.0.0:8080, 127.0.0.1:9901 or [::1]:8080"
        )
        #expect(error.file == "environment" && error.line == nil && error.key == "SUBGATE_LISTEN", "got: \(error)")
    }

    @Test("an empty override is an error, not a silent reset to the default")
    func emptyOverride() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_LOG_LEVEL": ""])
        #expect(
            error.description
                == "environment: SUBGATE_LOG_LEVEL: is set but empty; give it a value, or unset it to keep the file's value or the default"
        )
    }

    @Test("a whitespace-only override counts as empty")
    func whitespaceOnlyOverride() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_ADMIN_TOKEN": " \n"])
        #expect(error.key == "SUBGATE_ADMIN_TOKEN" && error.message.hasPrefix("is set but empty"), "got: \(error)")
    }

    @Test("an unknown SUBGATE_ variable close to a real one is an error with a did-you-mean")
    func unknownVariableNearMiss() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_LISTN": "0.0.0.0:8080"])
        #expect(error.description == "environment: SUBGATE_LISTN: unknown variable; did you mean SUBGATE_LISTEN?")
    }

    @Test("an unknown SUBGATE_ variable far from every real one is an error without a suggestion")
    func unknownVariableFarMiss() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_FROBNICATE_EVERYTHING": "1"])
        #expect(
            error.description
                == "environment: SUBGATE_FROBNICATE_EVERYTHING: unknown variable; every key can be overridden as SUBGATE_<KEY IN UPPER CASE>"
        )
    }

    @Test("a lower-case subgate_ variable is reported, not ignored")
    func lowerCaseVariable() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["subgate_listen": "0.0.0.0:8080"])
        #expect(error.description == "environment: subgate_listen: unknown variable; did you mean SUBGATE_LISTEN?")
    }

    @Test("an unknown variable's value is never quoted (it may be a secret)")
    func unknownVariableValueNotEchoed() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_ADMIN_TOKN": "tok_very_secret"])
        #expect(error.message == "unknown variable; did you mean SUBGATE_ADMIN_TOKEN?", "got: \(error.message)")
        #expect(!error.description.contains("tok_very_secret"), "the value leaked: \(error)")
    }

    @Test("SUBGATE_CONFIG names the file for the CLI and is not a key")
    func configPathIsNotAKey() throws {
        #expect(ConfigKey.allCases.allSatisfy { $0.environmentVariable != "SUBGATE_CONFIG" }, "no key may be called `config`")
        let config = try parsedConfig(ConfigFixture.minimal, environment: ["SUBGATE_CONFIG": "/etc/subgate/subgate.conf"])
        #expect(config.upstream == UpstreamTarget(host: "127.0.0.1", port: 3000), "SUBGATE_CONFIG must not be an error or change anything")
    }

    @Test("a misspelt SUBGATE_CONFIG is suggested as SUBGATE_CONFIG")
    func configPathNearMiss() throws {
        let error = try onlyConfigError(ConfigFixture.minimal, environment: ["SUBGATE_CONFG": "/etc/subgate.conf"])
        #expect(error.description == "environment: SUBGATE_CONFG: unknown variable; did you mean SUBGATE_CONFIG?")
    }

    @Test("variables without the SUBGATE_ prefix are ignored, even if they look like keys")
    func otherVariablesIgnored() throws {
        let config = try parsedConfig(
            ConfigFixture.minimal,
            environment: ["PATH": "/usr/bin", "LISTEN": "nonsense", "UPSTREAM": "ftp://x", "XSUBGATE_LISTEN": "x"]
        )
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 8080))
    }

    @Test("Kubernetes service-link variables for Services named subgate or subgate-* do not stop the start")
    func kubernetesServiceLinks() throws {
        // With the default enableServiceLinks, every pod in a namespace holding a Service
        // called `subgate` gets these variables; a sidecar that refuses them cannot start.
        let serviceLinks = [
            "SUBGATE_SERVICE_HOST": "10.0.0.7",
            "SUBGATE_SERVICE_PORT": "8080",
            "SUBGATE_PORT": "tcp://10.0.0.7:8080",
            "SUBGATE_PORT_8080_TCP": "tcp://10.0.0.7:8080",
            "SUBGATE_PORT_8080_TCP_ADDR": "10.0.0.7",
            "SUBGATE_PORT_8080_TCP_PORT": "8080",
            "SUBGATE_PORT_8080_TCP_PROTO": "tcp",
        ]
        _ = try parsedConfig(ConfigFixture.minimal, environment: serviceLinks)
        // And for Services named subgate-* (subgate-admin here, with a named port).
        let prefixedLinks = [
            "SUBGATE_ADMIN_SERVICE_HOST": "10.0.0.8",
            "SUBGATE_ADMIN_SERVICE_PORT": "9901",
            "SUBGATE_ADMIN_SERVICE_PORT_HTTP": "9901",
            "SUBGATE_ADMIN_PORT": "tcp://10.0.0.8:9901",
            "SUBGATE_ADMIN_PORT_9901_TCP": "tcp://10.0.0.8:9901",
            "SUBGATE_ADMIN_PORT_9901_TCP_ADDR": "10.0.0.8",
            "SUBGATE_ADMIN_PORT_9901_TCP_PORT": "9901",
            "SUBGATE_ADMIN_PORT_9901_TCP_PROTO": "tcp",
        ]
        _ = try parsedConfig(ConfigFixture.minimal, environment: prefixedLinks)
        // A typo that only looks like a service link is still an error.
        for (variable, value) in [("SUBGATE_LISTN", "127.0.0.1:1"), ("SUBGATE_LISTEN_PORT", "8080"), ("SUBGATE_PORT_X_TCP", "tcp://1.2.3.4:1")] {
            #expect(throws: (any Error).self, "\(variable)=\(value) must still be refused") {
                _ = try parsedConfig(ConfigFixture.minimal, environment: [variable: value])
            }
        }
    }

    @Test("several bad overrides are reported in variable-name order, after the file's lines")
    func overridesOrdered() throws {
        let errors = configErrors(
            ConfigFixture.minimal + "colour = blue\n",
            environment: ["SUBGATE_MAX_CONNECTIONS": "0", "SUBGATE_BACKEND": "stripe", "SUBGATE_ZZZ": "1"]
        )
        #expect(
            errors.map(\.key) == ["colour", "SUBGATE_BACKEND", "SUBGATE_MAX_CONNECTIONS", "SUBGATE_ZZZ"],
            "got:\n\(ConfigErrors(errors))"
        )
    }

    @Test("seller_key from the environment and seller_key_file in the file is the both-given error")
    func sellerKeyFromEnvironmentAndFileInFile() throws {
        let error = try onlyConfigError(
            "upstream = http://127.0.0.1:3000\nseller_key_file = /run/secrets/key\n",
            environment: ["SUBGATE_SELLER_KEY": "am_k_env"],
            files: ["/run/secrets/key": "am_k_file\n"]
        )
        #expect(
            error.description
                == "subgate.conf:2: seller_key_file: is set together with seller_key (SUBGATE_SELLER_KEY); keep only one of the two"
        )
    }

    @Test("seller_key_file from the environment and seller_key in the file is the both-given error")
    func sellerKeyFileFromEnvironment() throws {
        let error = try onlyConfigError(
            ConfigFixture.minimal,
            environment: ["SUBGATE_SELLER_KEY_FILE": "/run/secrets/key"],
            files: ["/run/secrets/key": "am_k_file\n"]
        )
        #expect(
            error.description
                == "environment: SUBGATE_SELLER_KEY_FILE: is set together with seller_key (line 2); keep only one of the two"
        )
    }
}
