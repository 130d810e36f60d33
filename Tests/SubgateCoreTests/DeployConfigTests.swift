import Foundation
import Testing

@testable import SubgateCore

/// `deploy/subgate.conf`, the reference configuration every deployment in `deploy/` uses:
/// it must name every key the parser knows (SPEC §2), state the parser's own defaults, and
/// load with the real parser. The key list and the defaults come from `ConfigKey` and
/// `Config()`, never from a copy, so a key added to the parser fails here until the file
/// documents it.
@Suite("deploy/subgate.conf: complete, true to the parser's defaults, and loadable")
struct DeployConfigTests {
    static let relativePath = "deploy/subgate.conf"

    static func text() throws -> String {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent(Self.relativePath), encoding: .utf8)
    }

    // MARK: - Every key is there

    @Test("SPEC §2: every key the parser knows appears in deploy/subgate.conf, set or as `# key = …`")
    func everyKeyIsDocumented() throws {
        let missing = DeployConfigDocument(try Self.text()).missingKeys()
        #expect(
            missing.isEmpty,
            "\(Self.relativePath) does not mention \(missing.map { "`\($0)`" }.joined(separator: ", ")); add each with a one-line comment ending in its [default: …]"
        )
    }

    @Test("each key appears once (a set line and a commented-out line for one key would be ambiguous)")
    func noKeyTwice() throws {
        let document = DeployConfigDocument(try Self.text())
        for key in ConfigKey.allCases {
            let lines = document.entries.filter { $0.key == key.rawValue }.map(\.line)
            #expect(lines.count <= 1, "`\(key.rawValue)` appears on lines \(lines) of \(Self.relativePath)")
        }
    }

    @Test("the comment above each key states the parser's own default")
    func defaultsAreTheParsers() throws {
        let problems = DeployConfigDocument(try Self.text()).defaultProblems()
        #expect(problems.isEmpty, "\(Self.relativePath):\n\(problems.joined(separator: "\n"))")
    }

    // MARK: - It loads

    @Test("the file loads with the real parser, reading the seller key from the mounted secret path")
    func loadsWithTheParser() throws {
        var requested: [String] = []
        let result = ConfigParser.parse(try Self.text(), file: Self.relativePath, environment: [:]) { path in
            requested.append(path)
            return "am_k_deploy_test\n"
        }
        let config = try result.get()
        #expect(requested == ["/run/secrets/subgate/seller_key"])
        #expect(config.sellerKey == Secret("am_k_deploy_test"))
        // The paths and ports the Dockerfile, compose file, Kubernetes manifests and systemd
        // unit are written against.
        #expect(config.usageJournal == "/var/lib/subgate/usage.journal")
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 8080))
        #expect(config.adminListen == HostPort(host: "0.0.0.0", port: 9901))
        #expect(config.upstream == UpstreamTarget(host: "127.0.0.1", port: 3000))
        #expect(config.drainDelay < config.shutdownGrace, "drain_delay is spent inside shutdown_grace")
    }

    // MARK: - The checks can fail

    @Test("removing any one key from the text makes the completeness check name exactly that key")
    func removedKeyIsReported() throws {
        let text = try Self.text()
        // On an incomplete file every removal would also report the keys already missing;
        // the completeness test names those.
        try #require(DeployConfigDocument(text).missingKeys().isEmpty)
        for key in ConfigKey.allCases {
            let without = DeployConfigDocument.removingLines(of: key.rawValue, from: text)
            #expect(without != text, "could not find `\(key.rawValue)` to remove")
            #expect(DeployConfigDocument(without).missingKeys() == [key.rawValue])
        }
    }

    @Test("a wrong default in a comment, or a missing one, is reported naming the key")
    func wrongDefaultIsReported() throws {
        let text = try Self.text()
        let wrong = text.replacingOccurrences(of: "[default: 10s]\nnegative_ttl", with: "[default: 30s]\nnegative_ttl")
        #expect(wrong != text)
        let problems = DeployConfigDocument(wrong).defaultProblems()
        #expect(problems.count == 1 && problems[0].contains("negative_ttl") && problems[0].contains("10s"), "\(problems)")

        let bare = text.replacingOccurrences(of: " [default: 64]\ncache_shards", with: "\ncache_shards")
        #expect(bare != text)
        let bareProblems = DeployConfigDocument(bare).defaultProblems()
        #expect(bareProblems.count == 1 && bareProblems[0].contains("cache_shards"), "\(bareProblems)")
    }

    @Test("the reader tells settings from prose: a sentence mentioning a key does not count as the key")
    func proseIsNotAKey() {
        let document = DeployConfigDocument("# with usage_journal = off nothing is journaled\n# listen=0.0.0.0:1 \nupstream = http://x:1\n")
        #expect(document.entries.map(\.key) == ["listen", "upstream"])
        #expect(document.entries.map(\.isSet) == [false, true])
    }
}

/// `deploy/subgate.conf` read as documentation: which keys it names (set, or commented out as
/// `# key = …`) and the default each one's comment states.
struct DeployConfigDocument {
    /// One key as it appears in the file.
    struct Entry {
        /// The key as written.
        var key: String
        /// 1-based line number.
        var line: Int
        /// `key = value` (true) or `# key = value` (false).
        var isSet: Bool
        /// The comment line directly above, without its `#`, if there is one.
        var comment: String?
    }

    let entries: [Entry]

    init(_ text: String) {
        let known = Set(ConfigKey.allCases.map(\.rawValue))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
        var entries: [Entry] = []
        for (index, line) in lines.enumerated() {
            guard let (key, isSet) = Self.setting(in: line), known.contains(key) else { continue }
            var comment: String? = nil
            if index > 0 {
                let above = lines[index - 1].trimmingCharacters(in: .whitespaces)
                if above.hasPrefix("#"), Self.setting(in: above).map({ !known.contains($0.key) }) ?? true {
                    comment = String(above.dropFirst()).trimmingCharacters(in: .whitespaces)
                }
            }
            entries.append(Entry(key: key, line: index + 1, isSet: isSet, comment: comment))
        }
        self.entries = entries
    }

    /// `key = …` or `# key = …`, where key is a single word: the key and whether it is set.
    static func setting(in line: String) -> (key: String, isSet: Bool)? {
        var rest = Substring(line.trimmingCharacters(in: .whitespaces))
        let isSet = !rest.hasPrefix("#")
        if !isSet { rest = rest.dropFirst().drop(while: { $0 == " " }) }
        guard let equals = rest.firstIndex(of: "=") else { return nil }
        let key = rest[..<equals].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty, key.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "_" }) else { return nil }
        return (key, isSet)
    }

    /// Keys of `ConfigKey` that the file does not name, in the SPEC table's order.
    func missingKeys() -> [String] {
        let named = Set(self.entries.map(\.key))
        return ConfigKey.allCases.map(\.rawValue).filter { !named.contains($0) }
    }

    /// Keys whose comment does not end in `[default: X]` with X the parser's default as
    /// `subgate check` renders it (`unset` for a key with no default; `[required]` for upstream).
    func defaultProblems() -> [String] {
        let defaults = Config()
        var problems: [String] = []
        for entry in self.entries {
            guard let key = ConfigKey(rawValue: entry.key) else { continue }
            let expected: String
            if key == .upstream {
                expected = "[required]"
            } else {
                let rendered = defaults.renderedValue(of: key)
                expected = "[default: \(rendered == "(unset)" ? "unset" : rendered)]"
            }
            guard let comment = entry.comment else {
                problems.append("line \(entry.line): `\(entry.key)` has no comment line above it; end one with \(expected)")
                continue
            }
            if !comment.hasSuffix(expected) {
                problems.append("line \(entry.line - 1): the comment for `\(entry.key)` must end with \(expected)")
            }
        }
        return problems
    }

    /// The text without the lines that set or comment out `key` (for proving the check fails).
    static func removingLines(of key: String, from text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { Self.setting(in: String($0))?.key != key }
            .joined(separator: "\n")
    }
}
