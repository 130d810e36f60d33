import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateSimulator
import Testing

/// SPEC §1 (commands, exit codes) and §4 (SIGTERM drain), against the real `subgate` binary.
@Suite(.serialized) struct LifecycleTests {
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

    /// A running `subgate` with its stdout captured in a file.
    final class Running {
        let process = Process()
        let output: URL
        let directory: URL

        init(arguments: [String], config: String?) throws {
            self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-test-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
            self.output = self.directory.appendingPathComponent("out.log")
            FileManager.default.createFile(atPath: self.output.path, contents: nil)
            var args = arguments
            if let config {
                let path = self.directory.appendingPathComponent("subgate.conf")
                try config.write(to: path, atomically: true, encoding: .utf8)
                args += ["--config", path.path]
            }
            self.process.executableURL = LifecycleTests.binary
            self.process.arguments = args
            self.process.currentDirectoryURL = self.directory
            let handle = try FileHandle(forWritingTo: self.output)
            self.process.standardOutput = handle
            self.process.standardError = handle
            try self.process.run()
        }

        var log: String { (try? String(contentsOf: self.output, encoding: .utf8)) ?? "" }

        /// Waits for a `<what> listening` log line and returns its port.
        func port(of what: String, timeout: Duration = .seconds(20)) async throws -> Int {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                for line in self.log.split(separator: "\n") where line.contains("\"\(what) listening\"") {
                    if let range = line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                        return Int(line[range].split(separator: ":").last ?? "") ?? 0
                    }
                }
                if !self.process.isRunning { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw TestFailure("subgate did not report '\(what) listening'; its output:\n\(self.log)")
        }

        func waitForExit(timeout: Duration) async throws -> Int32 {
            let deadline = ContinuousClock.now + timeout
            while self.process.isRunning && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            if self.process.isRunning {
                self.process.terminate()
                throw TestFailure("subgate did not exit within \(timeout); its output:\n\(self.log)")
            }
            return self.process.terminationStatus
        }

        deinit {
            if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
            // Reaps it (at once: it has exited or was just killed). Foundation's Process on Linux
            // releases its run-loop source, which holds the Process, only in waitUntilExit();
            // polling isRunning alone leaked every Process (LeakSanitizer; reproduced outside
            // the package).
            self.process.waitUntilExit()
            try? FileManager.default.removeItem(at: self.directory)
        }
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static func run(_ arguments: [String], config: String? = nil) async throws -> (status: Int32, output: String) {
        let running = try Running(arguments: arguments, config: config)
        let status = try await running.waitForExit(timeout: .seconds(20))
        return (status, running.log)
    }

    /// A request with `token` in `x-subscription-token`.
    static func request(_ url: String, token: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "x-subscription-token", value: token)
        return request
    }

    @Test("SPEC §4: SIGTERM → /readyz 503 at once, accepting for drain_delay, in-flight request completes, pending usage flushed, exit 0")
    func sigtermDrains() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TestUpstream(group: group)
        let simulator = try await Simulator.start(group: group)
        defer { Task { await simulator.stop(); await upstream.stop(); try? await group.shutdownGracefully() } }
        let token = simulator.createToken(usageLimit: nil)
        let running = try Running(arguments: ["run"], config: """
            listen = 127.0.0.1:0
            admin_listen = 127.0.0.1:0
            upstream = http://127.0.0.1:\(upstream.port)
            control_plane_url = \(simulator.baseURL)
            seller_key = am_k_demo
            usage_flush_interval = 1h
            drain_delay = 3s
            shutdown_grace = 10s
            """)
        // drain_delay 3 s: the request "during drain_delay" below must get there in time even
        // on a loaded machine (with 1 s it was refused once at load average 11).
        let port = try await running.port(of: "proxy")
        let adminPort = try await running.port(of: "admin")
        let base = "http://127.0.0.1:\(port)"
        #expect(try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(adminPort)/readyz"), timeout: .seconds(5)).status == .ok)

        // A slow request is in flight when SIGTERM arrives.
        let slow = Task { try await HTTPClient.shared.execute(Self.request(base + "/slow?ms=2000", token: token.token), timeout: .seconds(15)) }
        try await Task.sleep(for: .milliseconds(400))
        kill(running.process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(200))

        let ready = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(adminPort)/readyz"), timeout: .seconds(5))
        #expect(ready.status == .serviceUnavailable, "readiness must fail at once on SIGTERM")
        // Within drain_delay new connections are still accepted and served.
        // A client of its own, for a new connection. It is shut down before any failure is
        // thrown: an HTTPClient released unshut traps in debug builds and takes the whole
        // test process (every other suite) down with it.
        let fresh = HTTPClient(eventLoopGroupProvider: .shared(group))
        let during: Result<HTTPClientResponse, any Error>
        do {
            during = .success(try await fresh.execute(Self.request(base + "/hello", token: token.token), timeout: .seconds(5)))
        } catch {
            during = .failure(error)
        }
        try await fresh.shutdown()
        let served = try during.get()
        #expect(served.status == .ok, "a request during drain_delay must still be served")

        let answer = try await slow.value
        #expect(answer.status == .ok, "the in-flight request must complete")
        #expect(String(buffer: try await answer.body.collect(upTo: 1024)) == #"{"slow":2000}"#)
        let status = try await running.waitForExit(timeout: .seconds(12))
        #expect(status == 0, "subgate must exit 0 after a graceful drain; output:\n\(running.log)")
        #expect(running.log.contains("proxy drained"))
        // usage_flush_interval = 1h: only the final flush on SIGTERM can have reported these.
        #expect(simulator.acceptedUnits(hash: token.hash) == 2, "the 2 served units must be flushed before exit; output:\n\(running.log)")
        #expect(!running.log.contains(token.token), "the raw token reached the log")
    }

    @Test("SPEC §1: a bad config exits 1 with file, line and key on stderr; nothing starts")
    func badConfigExitsOne() async throws {
        let result = try await Self.run(["run"], config: "upstream = http://127.0.0.1:1\nseller_key = am_k_x\nlisten_port = 80\n")
        #expect(result.status == 1)
        #expect(result.output.contains("subgate.conf:3: listen_port:"), "the error must name file, line and key: \(result.output)")
        #expect(result.output.contains("listen"), "a near-miss gets a did-you-mean: \(result.output)")
    }

    @Test("SPEC §1: check prints effective settings with secrets redacted and exits 0")
    func checkRedactsSecrets() async throws {
        let result = try await Self.run(["check"], config: "upstream = http://127.0.0.1:3000\nseller_key = am_k_supersecret\nadmin_token = hunter2hunter2\n")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("upstream = http://127.0.0.1:3000"))
        #expect(!result.output.contains("supersecret"), "the seller key leaked: \(result.output)")
        #expect(!result.output.contains("hunter2"), "the admin token leaked: \(result.output)")
    }

    @Test("SPEC §1: --help answers on every command; bad usage exits 64")
    func helpAndUsage() async throws {
        for command in [[], ["run"], ["check"], ["healthcheck"], ["simulate"]] {
            let result = try await Self.run(command + ["--help"])
            #expect(result.status == 0, "\(command) --help exited \(result.status)")
            #expect(result.output.contains("USAGE"), "\(command) --help printed no usage")
        }
        let bad = try await Self.run(["run", "--no-such-flag"])
        #expect(bad.status == 64, "bad usage must exit 64 (EX_USAGE), got \(bad.status)")
    }

    @Test("SPEC §1: healthcheck exits 0 against a live admin listener and 1 when nothing answers")
    func healthcheck() async throws {
        let running = try Running(arguments: ["run"], config: """
            listen = 127.0.0.1:0
            admin_listen = 127.0.0.1:0
            upstream = http://127.0.0.1:1
            seller_key = am_k_health
            usage_journal = off
            """)
        let adminPort = try await running.port(of: "admin")
        let healthy = try await Self.run(["healthcheck"], config: "upstream = http://127.0.0.1:1\nseller_key = am_k_x\nadmin_listen = 127.0.0.1:\(adminPort)\n")
        #expect(healthy.status == 0, "\(healthy.output)")
        kill(running.process.processIdentifier, SIGTERM)
        _ = try await running.waitForExit(timeout: .seconds(10))
        let dead = try await Self.run(["healthcheck"], config: "upstream = http://127.0.0.1:1\nseller_key = am_k_x\nadmin_listen = 127.0.0.1:\(adminPort)\n")
        #expect(dead.status == 1, "healthcheck must fail when nothing listens: \(dead.output)")
    }

    @Test("SPEC §5: admin listener — /healthz open, the rest behind admin_token, Prometheus metrics, /status JSON")
    func adminListener() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let upstream = try await TestUpstream(group: group)
        let simulator = try await Simulator.start(group: group)
        defer { Task { await simulator.stop(); await upstream.stop(); try? await group.shutdownGracefully() } }
        let token = simulator.createToken(usageLimit: nil)
        let running = try Running(arguments: ["run"], config: """
            listen = 127.0.0.1:0
            admin_listen = 127.0.0.1:0
            upstream = http://127.0.0.1:\(upstream.port)
            control_plane_url = \(simulator.baseURL)
            seller_key = am_k_demo
            admin_token = s3cret-admin-token
            usage_journal = off
            """)
        let port = try await running.port(of: "proxy")
        let admin = "http://127.0.0.1:\(try await running.port(of: "admin"))"
        _ = try await HTTPClient.shared.execute(Self.request("http://127.0.0.1:\(port)/hello", token: token.token), timeout: .seconds(5))

        #expect(try await HTTPClient.shared.execute(HTTPClientRequest(url: admin + "/healthz"), timeout: .seconds(5)).status == .ok)
        #expect(try await HTTPClient.shared.execute(HTTPClientRequest(url: admin + "/metrics"), timeout: .seconds(5)).status == .unauthorized,
                "metrics must need the admin token")
        var wrong = HTTPClientRequest(url: admin + "/status")
        wrong.headers.add(name: "authorization", value: "Bearer s3cret-admin-tokeX")
        #expect(try await HTTPClient.shared.execute(wrong, timeout: .seconds(5)).status == .unauthorized)

        func authorized(_ path: String) async throws -> (HTTPResponseStatus, String) {
            var request = HTTPClientRequest(url: admin + path)
            request.headers.add(name: "authorization", value: "Bearer s3cret-admin-token")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
            return (response.status, String(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
        let (metricsStatus, metrics) = try await authorized("/metrics")
        #expect(metricsStatus == .ok)
        #expect(metrics.contains(#"subgate_requests_total{outcome="forwarded"} 1"#), "metrics: \(metrics)")
        #expect(metrics.contains("subgate_request_duration_seconds_count 1"))
        #expect(metrics.contains("subgate_upstream_duration_seconds_count 1"))
        #expect(metrics.contains("subgate_open_connections"))
        let (readyStatus, ready) = try await authorized("/readyz")
        #expect(readyStatus == .ok, "\(ready)")
        let (statusStatus, status) = try await authorized("/status")
        #expect(statusStatus == .ok)
        #expect(status.contains("\"ready\":true") && status.contains("\"open_connections\":"), "status: \(status)")
        for field in ["cache_entries", "pending_units", "journal_bytes", "control_plane", "last_flush", "next_flush", "verify_budget_left", "usage_budget_left"] {
            #expect(status.contains("\"\(field)\":"), "/status lacks \(field): \(status)")
        }
        for field in ["backend", "ready", "pending_units"] {
            #expect(status.components(separatedBy: "\"\(field)\":").count == 2, "/status names \(field) exactly once: \(status)")
        }
        #expect(metrics.contains("subgate_cache_lookups_total"), "enforcement metrics missing: \(metrics)")
        var flushRequest = HTTPClientRequest(url: admin + "/flush")
        flushRequest.method = .POST
        flushRequest.headers.add(name: "authorization", value: "Bearer s3cret-admin-token")
        let flushed = try await HTTPClient.shared.execute(flushRequest, timeout: .seconds(10))
        let flushBody = String(buffer: try await flushed.body.collect(upTo: 4096))
        #expect(flushed.status == .ok && flushBody.contains("\"reported_units\":1"), "POST /flush: \(flushBody)")
        #expect(simulator.acceptedUnits(hash: token.hash) == 1)
        #expect(!running.log.contains("s3cret-admin-token"), "the admin token reached the log")
        kill(running.process.processIdentifier, SIGTERM)
        #expect(try await running.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("SPEC §5: /readyz is 503 with the reason when the upstream refuses connections")
    func readyzFollowsUpstream() async throws {
        let running = try Running(arguments: ["run"], config: """
            listen = 127.0.0.1:0
            admin_listen = 127.0.0.1:0
            upstream = http://127.0.0.1:1
            seller_key = am_k_ready
            usage_journal = off
            """)
        let admin = "http://127.0.0.1:\(try await running.port(of: "admin"))"
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: admin + "/readyz"), timeout: .seconds(5))
        #expect(response.status == .serviceUnavailable)
        let body = String(buffer: try await response.body.collect(upTo: 4096))
        #expect(body.contains("does not accept connections"), "the reason must be given: \(body)")
        kill(running.process.processIdentifier, SIGTERM)
        #expect(try await running.waitForExit(timeout: .seconds(10)) == 0)
    }
}
