import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// `subgate demo` (SPEC §1, issue 3): the real binary, on ephemeral ports, walked through the
/// scenario it prints — as a newcomer pasting its `curl` lines would.
@Suite("subgate demo")
struct DemoCommandTests {
    /// The simulator's admin API prefix (docs/simulator.md).
    static let simulatorAdmin = "/_sim"

    /// What the banner says, parsed the way a reader would: `name  value` lines.
    struct Banner {
        var proxy: String
        var admin: String
        var simulator: String
        var tokens: [String: String]
        var crovverTenant: String?

        init?(_ text: String) {
            var urls: [String: String] = [:]
            var tokens: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard words.count >= 2 else { continue }
                let (name, value) = (String(words[0]), String(words[1]))
                if ["proxy", "admin", "simulator"].contains(name), value.hasPrefix("http://") { urls[name] = value }
                if ["healthy", "three-left", "expiring", "revoked"].contains(name), value.hasPrefix("cro_sub_") { tokens[name] = value }
                if name == "tenant" { self.crovverTenant = value }
            }
            guard let proxy = urls["proxy"], let admin = urls["admin"], let simulator = urls["simulator"], tokens.count == 4 else { return nil }
            (self.proxy, self.admin, self.simulator, self.tokens) = (proxy, admin, simulator, tokens)
        }
    }

    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var body: String

        /// The `error.code` of a Subgate rejection body, or nil.
        var code: String? {
            guard let json = try? JSONSerialization.jsonObject(with: Data(self.body.utf8)) as? [String: Any],
                  let error = json["error"] as? [String: Any] else { return nil }
            return error["code"] as? String
        }
    }

    static func send(_ url: String, method: HTTPMethod = .GET, token: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "x-subscription-token", value: token) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return Answer(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
    }

    @Test("the printed scenario: healthy 200; three-left 200 ×3 then 429; expiring 200 then 403 TOKEN_EXPIRED; revoked 403; no token 401; usage reaches the simulator; Ctrl-C exits 0")
    func walkTheScenario() async throws {
        let demo = try SimulatorHTTPTests.Subgate([
            "demo",
            "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--simulator-listen", "127.0.0.1:0", "--upstream-listen", "127.0.0.1:0",
            "--expiring-after", "10", "--flush-interval", "1",
        ])
        let deadline = ContinuousClock.now + .seconds(30)
        var banner: Banner?
        while banner == nil, demo.process.isRunning, ContinuousClock.now < deadline {
            banner = demo.log.contains("Ctrl-C") ? Banner(demo.log) : nil
            try await Task.sleep(for: .milliseconds(50))
        }
        guard let banner else {
            Issue.record("subgate demo printed no usable banner (proxy, admin, simulator and four tokens):\n\(demo.log)")
            return
        }
        let quote = banner.proxy + "/v1/quote"

        // First, while it is still valid: the expiring token is served.
        let early = try await Self.send(quote, token: banner.tokens["expiring"])
        #expect(early.status == 200, "the expiring token is served before it expires: \(early.status) \(early.body)")
        var expiringServed = early.status == 200 ? 1 : 0

        let healthy = try await Self.send(quote, token: banner.tokens["healthy"])
        #expect(healthy.status == 200 && healthy.body.contains("\"quote\""), "healthy token: \(healthy.status) \(healthy.body)")
        #expect(healthy.headers.first(name: "x-subscription-remaining") == "999", "the healthy token had 1000 uses: \(healthy.headers)")

        for use in 1...3 {
            let answer = try await Self.send(quote, token: banner.tokens["three-left"])
            #expect(answer.status == 200, "use \(use) of 3: \(answer.status) \(answer.body)")
        }
        let fourth = try await Self.send(quote, token: banner.tokens["three-left"])
        #expect(fourth.status == 429 && fourth.code == "USAGE_LIMIT_REACHED", "a fourth use: \(fourth.status) \(fourth.body)")

        let revoked = try await Self.send(quote, token: banner.tokens["revoked"])
        #expect(revoked.status == 403 && revoked.code == "TOKEN_INVALID", "revoked token: \(revoked.status) \(revoked.body)")

        let missing = try await Self.send(quote)
        #expect(missing.status == 401 && missing.code == "MISSING_TOKEN", "no token: \(missing.status) \(missing.body)")

        // Then, past its expires_at (10 s after start): 403 TOKEN_EXPIRED.
        var late = try await Self.send(quote, token: banner.tokens["expiring"])
        while late.status == 200, ContinuousClock.now < deadline {
            expiringServed += 1
            try await Task.sleep(for: .milliseconds(250))
            late = try await Self.send(quote, token: banner.tokens["expiring"])
        }
        #expect(late.status == 403 && late.code == "TOKEN_EXPIRED", "the expiring token after its expires_at: \(late.status) \(late.body)")

        // The control plane was told: flush now, then read what the simulator accepted.
        let flushed = try await Self.send(banner.admin + "/flush", method: .POST)
        #expect(flushed.status == 200, "POST /flush: \(flushed.status) \(flushed.body)")
        let usage = try await Self.send(banner.simulator + Self.simulatorAdmin + "/usage")
        let reports = (try? JSONSerialization.jsonObject(with: Data(usage.body.utf8)) as? [String: Any])?["reports"] as? [[String: Any]] ?? []
        /// Units the simulator answered with `status` for this demo token.
        func units(_ name: String, status: Int) -> Int {
            let hash = Self.hash(banner.tokens[name] ?? "")
            return reports.filter { $0["token_hash"] as? String == hash && $0["status"] as? Int == status }.compactMap { $0["count"] as? Int }.reduce(0, +)
        }
        #expect(units("healthy", status: 200) == 1, "healthy: 1 billed request reported; simulator says \(usage.body)")
        #expect(units("three-left", status: 200) == 3, "three-left: 3 billed requests reported; simulator says \(usage.body)")
        // Units served just before expires_at may reach the control plane after it, which then
        // refuses them (403: the seed's answer for usage on an expired token). Every served
        // unit was reported: accepted, or refused by the control plane. How many of each
        // depends on where the 5 s flush fell against the 10 s lifetime (on a loaded machine
        // all of them can arrive late), so only the sum is asserted.
        #expect(
            units("expiring", status: 200) + units("expiring", status: 403) == expiringServed && expiringServed >= 1,
            "expiring: its \(expiringServed) served requests reported; simulator says \(usage.body)"
        )
        #expect(reports.allSatisfy { $0["token_hash"] as? String != Self.hash(banner.tokens["revoked"] ?? "") }, "a refused request is never billed; simulator says \(usage.body)")

        // The printed Crovver tenant exists in the simulator, with 8 credits in api_calls.
        var consume = HTTPClientRequest(url: banner.simulator + "/api/public/credits/consume")
        consume.method = .POST
        consume.headers.add(name: "authorization", value: "Bearer sk_test_demo")
        consume.headers.add(name: "content-type", value: "application/json")
        consume.body = .bytes(ByteBuffer(string: #"{"tenantId":"\#(banner.crovverTenant ?? "-")","poolKey":"api_calls","amount":1,"idempotencyKey":"demo-test-1"}"#))
        let consumed = try await HTTPClient.shared.execute(consume, timeout: .seconds(10))
        let consumedBody = String(buffer: try await consumed.body.collect(upTo: 1 << 16))
        #expect(consumed.status == .ok && consumedBody.contains(#""result":"allowed""#) && consumedBody.contains(#""remaining":7"#),
                "the demo's Crovver tenant \(banner.crovverTenant ?? "(not printed)") consumes from 8 credits: \(consumedBody)")

        kill(demo.process.processIdentifier, SIGINT)
        #expect(try await demo.exitStatus(within: .seconds(30)) == 0, "Ctrl-C exits 0:\n\(demo.log)")
        #expect(demo.log.contains("the simulator accepted"), "it says what the simulator accepted:\n\(demo.log)")
        let logLines = demo.log.split(separator: "\n").filter { $0.first?.isNumber == true }
        #expect(!logLines.isEmpty, "the demo logs each request")
        for (name, token) in banner.tokens {
            #expect(!logLines.contains { $0.contains(token) }, "the raw \(name) token is in the banner only, never in a log line")
        }
    }

    static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
