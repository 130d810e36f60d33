import FuzzSupport
import SubgateCore

// Input: the configuration file's bytes, optionally followed by a NUL byte and environment
// variables, one `NAME=VALUE` per line. Invalid UTF-8 is repaired as `String(decoding:)` does
// (the file reader refuses it before the parser; the parser takes any `String`).
//
// Properties (SPEC §2): the parser returns a `Config` or a non-empty list of errors, each
// naming a line that exists, or the environment variable it came from, in reading order;
// no error quotes a secret; `effectiveSettings()` redacts every secret; and the effective
// settings, written back as a file, parse to the same `Config`.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let (fileBytes, environment) = ConfigCheck.split(input)
    let text = FuzzInput.text(fileBytes)
    let result = ConfigParser.parse(text, file: ConfigCheck.file, environment: environment, readFile: ConfigCheck.readFile)
    let check = ConfigCheck(text: text, environment: environment)
    switch result {
    case .failure(let errors):
        check.checkErrors(errors.errors)
    case .success(let config):
        check.checkEffectiveSettings(config)
        check.checkRoundTrip(config)
    }
    return 0
}

extension ConfigCheck {
    /// The file part and the `NAME=VALUE` lines after the first NUL byte.
    static func split(_ input: [UInt8]) -> ([UInt8], [String: String]) {
        guard let nul = input.firstIndex(of: 0) else { return (input, [:]) }
        var environment: [String: String] = [:]
        for line in input[(nul + 1)...].split(separator: UInt8(ascii: "\n")) {
            guard let equals = line.firstIndex(of: UInt8(ascii: "=")) else { continue }
            environment[FuzzInput.text(line[..<equals])] = FuzzInput.text(line[(equals + 1)...])
        }
        return (Array(input[..<nul]), environment)
    }
}

struct ConfigCheck {
    static let file = "fuzz.conf"
    static let secretKeys = ["admin_token", "seller_key", "crovver_key", "gateway_secret"]

    /// `seller_key_file`: unreadable when the path starts with `!`, empty with `~`, not a
    /// seller key with `^`, else a valid key.
    struct Unreadable: Error, CustomStringConvertible {
        var description: String { "No such file or directory" }
    }

    static func readFile(_ path: String) throws -> String {
        switch path.utf8.first {
        case UInt8(ascii: "!"): throw Unreadable()
        case UInt8(ascii: "~"): return "\n"
        case UInt8(ascii: "^"): return "not a seller key\n"
        default: return "am_k_fromfile\n"
        }
    }

    let text: String
    let environment: [String: String]

    /// Lines as the file has them: separated by LF (a CRLF ends with one too).
    var lineCount: Int { self.text.utf8.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) } }

    func checkErrors(_ errors: [ConfigError]) {
        invariant(!errors.isEmpty, "a failed parse reports no error")
        let context = "file: \(String(reflecting: self.text)); environment: \(String(reflecting: self.environment)); errors:\n\(errors.map(\.description).joined(separator: "\n"))"
        // 0 = file lines, 1 = environment, 2 = the configuration as a whole.
        var lastGroup = 0
        var lastLine = 0
        var lastVariable = ""
        for error in errors {
            invariant(!error.message.isEmpty, "an error without a message; \(context)")
            let group: Int
            if error.file == Self.file, let line = error.line {
                invariant((1...self.lineCount).contains(line), "an error names line \(line) of a \(self.lineCount)-line file; \(context)")
                group = 0
                if lastGroup == 0 { invariant(line >= lastLine, "line errors out of order; \(context)") }
                lastLine = line
            } else if error.file == "environment" {
                invariant(error.line == nil, "an environment error with a line; \(context)")
                guard let variable = error.key, self.environment[variable] != nil else {
                    invariant(false, "an environment error that names no variable of the environment; \(context)")
                    return
                }
                group = 1
                if lastGroup == 1 { invariant(variable >= lastVariable, "environment errors out of order; \(context)") }
                lastVariable = variable
            } else {
                invariant(error.file == Self.file && error.line == nil, "an error from nowhere (\(error.file)); \(context)")
                group = 2
            }
            invariant(group >= lastGroup, "errors not in reading order (file lines, environment, whole); \(context)")
            lastGroup = group
        }
        self.checkNoSecretQuoted(errors, context: context)
    }

    /// No error about a secret line or variable quotes what follows its key. Only values of 16
    /// bytes or more are checked: a shorter one can be part of a fixed sentence by chance.
    func checkNoSecretQuoted(_ errors: [ConfigError], context: String) {
        let lines = Array(self.text.utf8).split(separator: 0x0A, omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            var bytes = line.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0xEF || $0 == 0xBB || $0 == 0xBF }
            guard let key = Self.secretKeys.first(where: { bytes.starts(with: Array($0.utf8)) }) else { continue }
            bytes = bytes.dropFirst(key.utf8.count)
            guard let next = bytes.first, next == 0x20 || next == 0x09 || next == UInt8(ascii: "=") else { continue }
            let material = Self.trimmed(bytes.drop { $0 == 0x20 || $0 == 0x09 || $0 == UInt8(ascii: "=") })
            guard material.count >= 16 else { continue }
            let secret = String(decoding: material, as: UTF8.self)
            for error in errors where error.file == Self.file && error.line == index + 1 {
                invariant(!Bytes.contains(error.description, secret), "an error quotes the value of \(key) on line \(index + 1); \(context)")
            }
        }
        for key in Self.secretKeys {
            let variable = "SUBGATE_" + key.uppercased()
            guard let value = self.environment[variable] else { continue }
            let material = Self.trimmed(Array(value.utf8)[...])
            guard material.count >= 16 else { continue }
            let secret = String(decoding: material, as: UTF8.self)
            for error in errors where error.file == "environment" && error.key == variable {
                invariant(!Bytes.contains(error.description, secret), "an error quotes the value of \(variable); \(context)")
            }
        }
    }

    static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var bytes = bytes
        while let last = bytes.last, last == 0x20 || last == 0x09 || last == 0x0D { bytes.removeLast() }
        return bytes
    }

    /// `subgate check`'s listing: every key once, in order; secrets as `<redacted>` or `(unset)`.
    func checkEffectiveSettings(_ config: Config) {
        let settings = config.effectiveSettings()
        invariant(Set(settings.map(\.key)).count == settings.count, "a key is listed twice: \(settings.map(\.key))")
        let secrets: [String: Secret?] = [
            "admin_token": config.adminToken, "seller_key": config.sellerKey,
            "crovver_key": config.crovverKey, "gateway_secret": config.gatewaySecret,
        ]
        for (key, secret) in secrets {
            let shown = settings.first { $0.key == key }?.value
            invariant(shown == (secret == nil ? "(unset)" : "<redacted>"), "\(key) is shown as \(String(reflecting: shown))")
        }
    }

    /// What `subgate check` prints, written back as a file with the secrets filled in, parses
    /// without any environment to the same configuration.
    func checkRoundTrip(_ config: Config) {
        var lines: [String] = []
        for (key, value) in config.effectiveSettings() {
            switch key {
            case "admin_token": config.adminToken.map { lines.append("\(key) = \($0.value)") }
            case "crovver_key": config.crovverKey.map { lines.append("\(key) = \($0.value)") }
            case "gateway_secret": config.gatewaySecret.map { lines.append("\(key) = \($0.value)") }
            case "seller_key": if config.sellerKeyFile == nil { config.sellerKey.map { lines.append("\(key) = \($0.value)") } }
            case "seller_key_file": config.sellerKeyFile.map { lines.append("\(key) = \($0)") }
            case "gateway_price_per_call": if config.gatewayPricePerCallMicros != nil { lines.append("\(key) = \(value)") }
            default: lines.append("\(key) = \(value)")
            }
        }
        let rendered = lines.joined(separator: "\n") + "\n"
        let context = "file: \(String(reflecting: self.text)); environment: \(String(reflecting: self.environment)); rendered:\n\(rendered)"
        switch ConfigParser.parse(rendered, file: "rendered.conf", environment: [:], readFile: Self.readFile) {
        case .failure(let errors):
            invariant(false, "the effective settings do not parse back: \(errors); \(context)")
        case .success(let again):
            invariant(again == config, "the effective settings parse back to another configuration; \(context)")
            let before = config.effectiveSettings().map { "\($0.key) = \($0.value)" }
            let after = again.effectiveSettings().map { "\($0.key) = \($0.value)" }
            invariant(before.map { Array($0.utf8) } == after.map { Array($0.utf8) }, "the effective settings change on a round trip: \(after); \(context)")
        }
    }
}
