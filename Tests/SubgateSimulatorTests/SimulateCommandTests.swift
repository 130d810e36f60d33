import Foundation
import SubgateSimulator
import Testing

/// `subgate simulate` (SPEC §1, §7), against the real binary `swift build` produced. Part of
/// `SimulatorHTTPTests` so that the suite filter runs it too.
extension SimulatorHTTPTests {
    /// The `subgate` binary `swift build` produced beside this test bundle.
    static let binary: URL = {
        // SwiftPM links every test target into one executable (Linux) or bundle (macOS) in the
        // build directory, beside the products it built. Looking there, rather than at a fixed
        // `.build/debug`, runs the binary of the same build: a `--scratch-path` build, or a
        // sanitized one (scripts/sanitize.sh), never picks up a stale or uninstrumented copy.
        #if os(macOS)
        let bundle = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }?.bundleURL
        let directory = bundle?.deletingLastPathComponent() ?? Bundle.main.bundleURL
        #else
        // The directory of the test executable. (Not `Bundle.allBundles`: on Linux each call
        // leaks an array inside Foundation, which LeakSanitizer reports.)
        let directory = Bundle.main.bundleURL
        #endif
        return directory.appendingPathComponent("subgate")
    }()

    /// Runs `subgate` with its stdout and stderr in a temporary file.
    final class Subgate {
        let process = Process()
        let output: URL

        init(_ arguments: [String]) throws {
            self.output = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-simulate-\(UUID().uuidString).log")
            FileManager.default.createFile(atPath: self.output.path, contents: nil)
            let handle = try FileHandle(forWritingTo: self.output)
            self.process.executableURL = SimulatorHTTPTests.binary
            self.process.arguments = arguments
            self.process.standardOutput = handle
            self.process.standardError = handle
            try self.process.run()
        }

        var log: String { (try? String(contentsOf: self.output, encoding: .utf8)) ?? "" }

        /// The output's lines once it has `count` of them (or the process ended, or 20 s passed).
        func lines(count: Int) async throws -> [String] {
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let lines = self.log.split(separator: "\n").map(String.init)
                if lines.count >= count || !self.process.isRunning { return lines }
                try await Task.sleep(for: .milliseconds(50))
            }
            return self.log.split(separator: "\n").map(String.init)
        }

        func exitStatus(within timeout: Duration) async throws -> Int32? {
            let deadline = ContinuousClock.now + timeout
            while self.process.isRunning && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            return self.process.isRunning ? nil : self.process.terminationStatus
        }

        deinit {
            if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
            // Reaps it (at once: it has exited or was just killed). Foundation's Process on Linux
            // releases its run-loop source, which holds the Process, only in waitUntilExit();
            // polling isRunning alone leaked every Process (LeakSanitizer; reproduced outside
            // the package).
            self.process.waitUntilExit()
            try? FileManager.default.removeItem(at: self.output)
        }
    }

    @Test("subgate simulate prints its address and seed tokens, serves them, and exits 0 on SIGTERM")
    func simulateCommand() async throws {
        let subgate = try Subgate(["simulate", "--listen", "127.0.0.1:0", "--seed-tokens", "2", "--rate-limit", "50"])
        let lines = try await subgate.lines(count: 3)
        guard lines.count >= 3, let url = lines[0].split(separator: " ").last, lines[0].hasPrefix("simulator listening on http://127.0.0.1:") else {
            Issue.record("unexpected output:\n\(subgate.log)")
            return
        }
        #expect(lines[1].hasPrefix("cro_sub_") && lines[2].hasPrefix("cro_sub_") && lines[1] != lines[2], "two raw tokens, one per line")
        let hash = sha256Hex(lines[1])
        let answer = try await Self.send("\(url)/api/v1/subscriptions/tokens/verify", json: #"{"token_hash":"\#(hash)"}"#)
        #expect(answer.status == 200 && answer.json["valid"] as? Bool == true, "a seeded token belongs to am_k_demo: \(answer.body)")
        kill(subgate.process.processIdentifier, SIGTERM)
        #expect(try await subgate.exitStatus(within: .seconds(10)) == 0, "SIGTERM stops it cleanly:\n\(subgate.log)")
    }

    @Test("subgate simulate --help describes the admin API; a bad --listen exits 64")
    func simulateUsage() async throws {
        let help = try Subgate(["simulate", "--help"])
        #expect(try await help.exitStatus(within: .seconds(10)) == 0)
        for route in [
            "/_sim/sellers", "/_sim/tokens", "/_sim/usage", "/_sim/listings", "/_sim/relays", "/_sim/payments/ID/settle", "/_sim/ledger",
            "/_sim/tenants", "/_sim/crovver-keys", "/_sim/calls", "/_sim/faults", "/_sim/reset", "drop_after_commit", "/credits/consume",
            "/gateway/:listingId", "--rate-limit", "--seed-tokens", "--seed FILE",
        ] {
            #expect(help.log.contains(route), "--help mentions \(route)")
        }
        let bad = try Subgate(["simulate", "--listen", "localhost"])
        #expect(try await bad.exitStatus(within: .seconds(10)) == 64, "EX_USAGE:\n\(bad.log)")
        #expect(bad.log.contains("--listen 'localhost': `localhost` has no port"))
        #expect(!help.log.contains("/_admin"), "the admin prefix is /_sim now")
    }

    @Test("subgate simulate --seed creates the example file's fixtures and prints its tokens by name")
    func simulateSeedFile() async throws {
        let subgate = try Subgate(["simulate", "--listen", "127.0.0.1:0", "--seed", SimulatorSeedParserTests.exampleFile])
        let lines = try await subgate.lines(count: 6)
        guard lines.count >= 6, let url = lines[0].split(separator: " ").last else {
            Issue.record("unexpected output:\n\(subgate.log)")
            return
        }
        let names: [String] = lines[1...5].map { line in String(line.prefix { $0 != " " }) }
        #expect(names == ["token.healthy", "token.unlimited", "token.almost_used_up", "token.expired", "token.rotated"], "\(lines)")
        #expect(lines[1] == "token.healthy = cro_sub_0123456789abcdef0123456789abcdef")
        let verify = try await Self.send("\(url)/api/v1/subscriptions/tokens/verify", key: "am_k_acme", json: #"{"token_hash":"\#(sha256Hex("cro_sub_0123456789abcdef0123456789abcdef"))"}"#)
        #expect(verify.status == 200 && verify.json["valid"] as? Bool == true, "the seeded seller's own token: \(verify.body)")
        let consume = try await Self.send(
            "\(url)/api/public/credits/consume",
            key: "sk_test_acme",
            json: #"{"tenantId":"workspace_123","poolKey":"api_calls","amount":1,"idempotencyKey":"cli-1"}"#
        )
        #expect(consume.body == #"{"success":true,"data":{"result":"allowed","remaining":1349,"alreadyProcessed":false,"poolKey":"api_calls"}}"#, "\(consume.body)")
        kill(subgate.process.processIdentifier, SIGTERM)
        #expect(try await subgate.exitStatus(within: .seconds(10)) == 0, "SIGTERM stops it cleanly:\n\(subgate.log)")
    }

    @Test("subgate simulate --seed with a bad line exits 1 naming the file, the line and the key")
    func simulateBadSeedFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-seed-\(UUID().uuidString).conf")
        try "# fixture\ntoken.a.usage_limit = 5\ntoken.a.usage_limt = 5\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let subgate = try Subgate(["simulate", "--listen", "127.0.0.1:0", "--seed", file.path])
        #expect(try await subgate.exitStatus(within: .seconds(10)) == 1, "a bad seed file is a start-up failure:\n\(subgate.log)")
        #expect(subgate.log.contains("\(file.path):3: token.a.usage_limt: unknown field `usage_limt`"), "\(subgate.log)")
        #expect(!subgate.log.contains("simulator listening"), "nothing starts on a bad seed file")
        let missing = try Subgate(["simulate", "--listen", "127.0.0.1:0", "--seed", "/nonexistent/seed.conf"])
        #expect(try await missing.exitStatus(within: .seconds(10)) == 1)
        #expect(missing.log.contains("/nonexistent/seed.conf: cannot read the seed file"), "\(missing.log)")
    }
}
