import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateCore
import SubgateSimulator
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 8, item 1, with the real `subgate` binary: what needs a process of its own — its
/// memory under hostile clients (VmRSS / VmHWM of that process alone, not of the test runner,
/// which holds the clients' buffers), a real full disk under its journal, and its exit codes on
/// bad configurations. The upstream and the control-plane simulator run in the test process.
@Suite(.serialized) struct FaultSuiteBinaryTests {
    typealias Running = LifecycleTests.Running

    // MARK: - Helpers

    /// Resident memory of `pid` in KiB, from /proc/PID/status: now (VmRSS) and peak (VmHWM).
    static func memory(of pid: Int32) -> (rss: Int, peak: Int) {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// The configuration of a proxy in front of `upstream`, verifying with `simulator`.
    static func config(upstream: TestUpstream, simulator: Simulator, _ extra: String = "") -> String {
        """
        listen = 127.0.0.1:0
        admin_listen = 127.0.0.1:0
        upstream = http://127.0.0.1:\(upstream.port)
        control_plane_url = \(simulator.baseURL)
        seller_key = am_k_demo
        access_log = off
        event_loops = 1

        """ + extra
    }

    /// The upstream, the simulator and their event loops, stopped by `stop()`.
    struct Backends {
        let group: MultiThreadedEventLoopGroup
        let upstream: TestUpstream
        let simulator: Simulator

        static func start() async throws -> Backends {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            return Backends(group: group, upstream: try await TestUpstream(group: group), simulator: try await Simulator.start(group: group))
        }

        func stop() async {
            await self.simulator.stop()
            await self.upstream.stop()
            try? await self.group.shutdownGracefully()
        }
    }

    /// One GET through the proxy with `token`.
    static func get(_ url: String, token: String? = nil, timeout: TimeAmount = .seconds(10)) async throws -> (status: UInt, headers: HTTPHeaders, body: String) {
        var request = HTTPClientRequest(url: url)
        if let token { request.headers.add(name: "x-subscription-token", value: token) }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let body = String(buffer: try await response.body.collect(upTo: 16 << 20))
        return (response.status.code, response.headers, body)
    }

    static func stopGracefully(_ running: Running) async throws {
        kill(running.process.processIdentifier, SIGTERM)
        let status = try await running.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "subgate must exit 0 on SIGTERM; output:\n\(running.log.suffix(2000))")
    }

    /// `ss -tn` lines for the proxy's and the upstream's ports (queues, for a failure message).
    static func sockets(port: Int, upstream: Int) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ss", "-tnoi", "( sport = :\(port) or dport = :\(port) or sport = :\(upstream) or dport = :\(upstream) )"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return "(ss failed)" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: - Size: huge heads, bounded memory

    @Test("SPEC §2 max_header_bytes: 10 MB heads and 1000-field heads answer 431, and the proxy's peak RSS grows by less than 16 MiB (real binary, VmHWM)")
    func hugeHeadsKeepMemoryBounded() async throws {
        let backends = try await Backends.start()
        let running = try Running(arguments: ["run"], config: Self.config(upstream: backends.upstream, simulator: backends.simulator, "usage_journal = off\n"))
        do {
            let port = try await running.port(of: "proxy")
            let pid = running.process.processIdentifier
            let token = backends.simulator.createToken(usageLimit: nil)
            for _ in 0..<20 {
                let status = try await Self.get("http://127.0.0.1:\(port)/hello", token: token.token).status
                #expect(status == 200)
            }
            let before = Self.memory(of: pid)

            // Four clients each send a 10 MB head (one endless field) at once; four more send
            // 1000 small fields. Buffering them would cost the proxy 40 MB.
            let huge = Array(("GET /hello HTTP/1.1\r\nHost: a.example\r\nX-Big: " + String(repeating: "a", count: 10 * 1024 * 1024)).utf8)
            let manyFields = "GET /hello HTTP/1.1\r\nHost: a.example\r\n" + (0..<1000).map { "X-F\($0): v\r\n" }.joined() + "\r\n"
            var clients: [(name: String, connection: RawConnection)] = []
            for index in 0..<4 {
                let connection = try await RawConnection.open(port: port, group: backends.group, keepAtMost: 64 * 1024)
                clients.append(("10 MB head #\(index)", connection))
                Task { try? await connection.send(huge) }
            }
            for index in 0..<4 {
                let connection = try await RawConnection.open(port: port, group: backends.group)
                clients.append(("1000 fields #\(index)", connection))
                try? await connection.send(manyFields)
            }
            let allClosed = await HostileInputTests.waitFor(timeout: .seconds(15)) { clients.allSatisfy { $0.connection.isClosed } }
            #expect(allClosed, "every hostile connection must be closed; open: \(clients.filter { !$0.connection.isClosed }.map(\.name))")
            for (name, connection) in clients {
                let answers = RawResponse.parseAll(connection.text)
                #expect(
                    answers.count == 1 && answers[0].isRejection(status: 431, code: "HEADERS_TOO_LARGE"),
                    "\(name): expected one 431 HEADERS_TOO_LARGE, got \(answers)"
                )
                await connection.close()
            }
            let after = Self.memory(of: pid)
            let growth = after.peak - before.peak
            #expect(before.peak > 0 && after.peak > 0, "could not read /proc/\(pid)/status")
            #expect(growth < 16 * 1024, "the proxy's peak RSS grew by \(growth) KiB (from \(before.peak) to \(after.peak) KiB) under 8 hostile heads")
            print("FaultSuite: huge heads: proxy VmHWM \(before.peak) → \(after.peak) KiB (+\(growth) KiB), VmRSS now \(after.rss) KiB")
            #expect(backends.upstream.requests.count == 20, "no hostile head may reach the upstream")
            do { let status = try await Self.get("http://127.0.0.1:\(port)/hello", token: token.token).status; #expect(status == 200, "the proxy must serve on") }
            try await Self.stopGracefully(running)
        } catch {
            await backends.stop()
            throw error
        }
        await backends.stop()
    }

    // MARK: - Slow reader: back-pressure

    @Test("SPEC §3 step 6 back-pressure: a client that reads nothing while the upstream streams 256 MiB stalls the upstream's writes, and the proxy's RSS stays bounded (real binary)")
    func slowReaderStallsTheUpstream() async throws {
        let backends = try await Backends.start()
        let running = try Running(arguments: ["run"], config: Self.config(upstream: backends.upstream, simulator: backends.simulator, "usage_journal = off\n"))
        do {
            let port = try await running.port(of: "proxy")
            let admin = "http://127.0.0.1:\(try await running.port(of: "admin"))"
            let pid = running.process.processIdentifier
            let token = backends.simulator.createToken(usageLimit: nil)
            // Warm up the streaming path with a whole 8 MiB answer read at full speed.
            let warm = try await Self.get("http://127.0.0.1:\(port)/large?mb=8", token: token.token)
            #expect(warm.status == 200 && warm.body.utf8.count == 8 << 20, "the warm-up answer was \(warm.status), \(warm.body.utf8.count) bytes")
            let baseline = backends.upstream.wire.largeBytesWritten
            let before = Self.memory(of: pid)

            let total = 256 << 20
            let reader = try await RawConnection.open(port: port, group: backends.group, autoRead: false, receiveBufferSize: 64 * 1024, keepAtMost: 4096)
            try await reader.send("GET /large?mb=256 HTTP/1.1\r\nHost: a.example\r\nX-Subscription-Token: \(token.token)\r\n\r\n")

            // Wait until the upstream's writes make no progress for a whole second (at most 20 s).
            var last = -1
            var lastChange = ContinuousClock.now
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                let written = backends.upstream.wire.largeBytesWritten - baseline
                if written != last {
                    last = written
                    lastChange = ContinuousClock.now
                } else if written > 0 && ContinuousClock.now - lastChange >= .seconds(1) {
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let stalledAt = backends.upstream.wire.largeBytesWritten - baseline
            let during = Self.memory(of: pid)
            let growth = during.peak - before.peak
            print("FaultSuite: slow reader: upstream stalled after \(stalledAt >> 10) KiB of \(total >> 10) KiB; proxy VmHWM \(before.peak) → \(during.peak) KiB (+\(growth) KiB)")
            #expect(ContinuousClock.now - lastChange >= .seconds(1), "the upstream's writes never stalled: \(stalledAt) bytes written and still going")
            // Everything in flight sits in socket buffers (the kernel's, up to tens of MiB on
            // loopback with autotuning) and one NIO write buffer: far below the answer's size.
            #expect(stalledAt < 64 << 20, "the upstream got \(stalledAt >> 20) MiB of 256 MiB out to a client that reads nothing")
            #expect(growth < 32 * 1024, "the proxy's peak RSS grew by \(growth) KiB while holding a stalled 256 MiB answer")

            // It was back-pressure, not a dead connection: reading resumes the stream.
            try await reader.startReading()
            let resumed = await HostileInputTests.waitFor(timeout: .seconds(10)) {
                backends.upstream.wire.largeBytesWritten - baseline >= stalledAt + (4 << 20)
            }
            #expect(
                resumed,
                "the upstream did not resume once the client read again: it wrote \(backends.upstream.wire.largeBytesWritten - baseline) bytes, the client read \(reader.snapshot.totalBytes); sockets:\n\(Self.sockets(port: port, upstream: backends.upstream.port))"
            )
            let closedBefore = backends.upstream.wire.connectionsClosed
            await reader.close()
            let aborted = await HostileInputTests.waitFor(timeout: .seconds(5)) { backends.upstream.wire.connectionsClosed > closedBefore }
            if !aborted {
                let status = (try? await Self.get(admin + "/status", timeout: .seconds(2)))?.body ?? "(no /status)"
                Issue.record("the upstream connection must be closed when the client leaves mid-answer; client read \(reader.snapshot.totalBytes) bytes, closed \(reader.isClosed); proxy /status: \(status)")
            }
            try await Self.stopGracefully(running)
        } catch {
            await backends.stop()
            throw error
        }
        await backends.stop()
    }

    // MARK: - Disk

    /// Runs a command, returns its exit status.
    @discardableResult
    static func command(_ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A tmpfs of `kilobytes` on a fresh directory, or nil when this process may not mount one.
    static func mountTmpfs(kilobytes: Int) -> String? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("subgate-tmpfs-\(UUID().uuidString)").path
        guard (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil else { return nil }
        guard Self.command(["mount", "-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", directory]) == 0 else {
            try? FileManager.default.removeItem(atPath: directory)
            return nil
        }
        return directory
    }

    static func unmount(_ directory: String) {
        if Self.command(["umount", directory]) != 0 { Self.command(["umount", "-l", directory]) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Whether a tmpfs can be mounted here (root with CAP_SYS_ADMIN, as on this machine).
    static let canMountTmpfs: Bool = {
        guard getuid() == 0, let directory = Self.mountTmpfs(kilobytes: 16) else { return false }
        Self.unmount(directory)
        return true
    }()

    /// Writes zeros to `path` until the file system is full; returns the bytes written.
    static func fill(_ path: String) -> Int {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { return -1 }
        defer { close(descriptor) }
        let block = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while true {
            let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written <= 0 { break }
            total += written
        }
        return total
    }

    @Test(
        "SPEC §4 + docs/enforcement.md: a full journal disk → /readyz 503 naming the journal, requests 503 USAGE_JOURNAL_UNAVAILABLE with Retry-After; space back → served again; no unit served is lost, even across a SIGKILL",
        .enabled(if: FaultSuiteBinaryTests.canMountTmpfs, "needs root allowed to mount a tmpfs (a real full disk)")
    )
    func fullJournalDisk() async throws {
        let mount = try #require(Self.mountTmpfs(kilobytes: 128), "could not mount a tmpfs")
        defer { Self.unmount(mount) }
        let journal = mount + "/usage.journal"
        let backends = try await Backends.start()
        do {
            let settings = "usage_journal = \(journal)\njournal_sync = 50ms\nfail_mode = closed\n"
            let running = try Running(arguments: ["run"], config: Self.config(upstream: backends.upstream, simulator: backends.simulator, settings + "usage_flush_interval = 1h\n"))
            let port = try await running.port(of: "proxy")
            let admin = "http://127.0.0.1:\(try await running.port(of: "admin"))"
            let base = "http://127.0.0.1:\(port)"
            let token = backends.simulator.createToken(usageLimit: nil)
            var served = 0
            do { let status = try await Self.get(base + "/hello", token: token.token).status; #expect(status == 200) }
            served += 1

            let filled = Self.fill(mount + "/filler")
            #expect(filled >= 0, "could not write the filler file")
            // The journal's last page still has room for some records; keep asking until the
            // commit that needs a new page fails and the proxy notices (within a poll tick).
            var refusal: (status: UInt, headers: HTTPHeaders, body: String)?
            let giveUp = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < giveUp {
                let answer = try await Self.get(base + "/hello", token: token.token)
                if answer.status == 200 {
                    served += 1
                } else {
                    refusal = answer
                    break
                }
            }
            let refused = try #require(refusal, "requests were still served 15 s after the disk filled (\(served) served)")
            #expect(refused.status == 503 && refused.body.contains("\"USAGE_JOURNAL_UNAVAILABLE\""), "a full journal disk: \(refused.status) \(refused.body)")
            #expect(refused.headers.first(name: "retry-after").flatMap { Int($0) } != nil, "the 503 must carry Retry-After: \(refused.headers)")
            let notReady = try await Self.get(admin + "/readyz")
            #expect(notReady.status == 503 && notReady.body.contains("No space left on device"), "/readyz must fail naming the journal's error: \(notReady.status) \(notReady.body)")
            let status = try await Self.get(admin + "/status")
            #expect(status.body.contains("\"journal_failure\":\"") && status.body.contains("No space left on device"), "/status must show journal_failure: \(status.body)")

            // Space comes back: the kept records are written, readiness and service return.
            try FileManager.default.removeItem(atPath: mount + "/filler")
            var ready = false
            let recoverBy = ContinuousClock.now + .seconds(5)
            while !ready && ContinuousClock.now < recoverBy {
                ready = try await Self.get(admin + "/readyz").status == 200
                if !ready { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(ready, "/readyz must recover within 5 s of the disk having room again")
            do { let status = try await Self.get(base + "/hello", token: token.token).status; #expect(status == 200, "requests must be served again") }
            served += 1

            // A crash after the journal caught up (well past journal_sync) loses nothing: the next
            // process replays the journal and reports every unit served, those of the full-disk
            // period included.
            try await Task.sleep(for: .milliseconds(500))
            kill(running.process.processIdentifier, SIGKILL)
            _ = try await running.waitForExit(timeout: .seconds(5))
            #expect(backends.simulator.acceptedUnits(hash: token.hash) == 0, "nothing should have been reported before the crash (usage_flush_interval = 1h)")
            let restarted = try Running(arguments: ["run"], config: Self.config(upstream: backends.upstream, simulator: backends.simulator, settings + "usage_flush_interval = 1s\n"))
            _ = try await restarted.port(of: "proxy")
            let reported = await HostileInputTests.waitFor(timeout: .seconds(10)) { backends.simulator.acceptedUnits(hash: token.hash) >= served }
            #expect(reported && backends.simulator.acceptedUnits(hash: token.hash) == served, "the restart reported \(backends.simulator.acceptedUnits(hash: token.hash)) units of the \(served) served")
            print("FaultSuite: full disk: \(served) units served around a full disk, \(backends.simulator.acceptedUnits(hash: token.hash)) reported after SIGKILL and restart")
            try await Self.stopGracefully(restarted)
        } catch {
            await backends.stop()
            throw error
        }
        await backends.stop()
    }

    @Test("SPEC §1: a usage_journal that cannot be created (a path through a regular file) exits 1 with one line naming usage_journal and the reason; nothing listens")
    func uncreatableJournalExitsOne() async throws {
        let scratch = try UsageJournalTests.Scratch()
        let file = scratch.directory.appendingPathComponent("not-a-directory").path
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let result = try await LifecycleTests.run(["run"], config: """
            listen = 127.0.0.1:0
            admin_listen = 127.0.0.1:0
            upstream = http://127.0.0.1:1
            seller_key = am_k_journal
            usage_journal = \(file)/usage.journal
            """)
        #expect(result.status == 1, "a journal that cannot be opened is a start-up failure (exit 1), got \(result.status): \(result.output)")
        #expect(result.output.contains("usage_journal") && result.output.contains("\(file)/usage.journal"), "the error must name the key and the path: \(result.output)")
        #expect(result.output.contains("Not a directory"), "the error must give the reason: \(result.output)")
        #expect(!result.output.contains("listening"), "nothing may listen on a failed start: \(result.output)")
    }

    // MARK: - Configuration

    /// A configuration file with one error, and where it is.
    struct BadConfig: Sendable, CustomTestStringConvertible {
        let name: String
        let text: String
        let line: Int
        let key: String
        var testDescription: String { self.name }
    }

    static let badConfigs = [
        BadConfig(name: "an unknown key", text: "upstream = http://127.0.0.1:3000\nseller_key = am_k_x\nlisten_prot = 8080\n", line: 3, key: "listen_prot"),
        BadConfig(name: "a duplicated key", text: "upstream = http://127.0.0.1:3000\nseller_key = am_k_x\nupstream = http://127.0.0.1:3001\n", line: 3, key: "upstream"),
        BadConfig(name: "a port out of range", text: "upstream = http://127.0.0.1:3000\nseller_key = am_k_x\nlisten = 0.0.0.0:70000\n", line: 3, key: "listen"),
        BadConfig(name: "a port that is not a number", text: "upstream = http://127.0.0.1:http\nseller_key = am_k_x\n", line: 1, key: "upstream"),
        BadConfig(
            name: "a BOM and CRLF line endings, with an unknown key on line 3",
            text: "\u{FEFF}upstream = http://127.0.0.1:3000\r\nseller_key = am_k_x\r\nlisten_prot = 8080\r\n", line: 3, key: "listen_prot"
        ),
    ]

    @Test("SPEC §1, §2: a bad configuration exits 1 from both check and run, with one line naming the file, the line and the key", arguments: badConfigs)
    func badConfigurationExitsOne(_ bad: BadConfig) async throws {
        for command in ["check", "run"] {
            let result = try await LifecycleTests.run([command], config: bad.text)
            #expect(result.status == 1, "\(command), \(bad.name): expected exit 1, got \(result.status): \(result.output)")
            #expect(result.output.contains("subgate.conf:\(bad.line): \(bad.key):"), "\(command), \(bad.name): the error must read `subgate.conf:\(bad.line): \(bad.key): …`: \(result.output)")
            #expect(!result.output.contains("listening"), "\(command), \(bad.name): nothing may start on a bad config: \(result.output)")
        }
    }

    @Test("SPEC §2: a file with a byte-order mark and CRLF line endings is accepted by check (exit 0)")
    func bomAndCRLFAreAccepted() async throws {
        let result = try await LifecycleTests.run(["check"], config: "\u{FEFF}upstream = http://127.0.0.1:3000\r\nseller_key = am_k_x\r\nlisten = 127.0.0.1:8081\r\n")
        #expect(result.status == 0, "a BOM and CRLF must be accepted: \(result.output)")
        #expect(result.output.contains("upstream = http://127.0.0.1:3000") && result.output.contains("listen = 127.0.0.1:8081"), "check must print the effective settings: \(result.output)")
    }
}
