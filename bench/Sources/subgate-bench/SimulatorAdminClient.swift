import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SubgateBenchCore
import Synchronization

/// The bench's calls to the control-plane simulator's admin API (docs/simulator.md) and to
/// Subgate's admin listener. Never on the measured path.
///
/// The simulator's admin API (`/_sim`, docs/simulator.md). `--admin-prefix auto` (the default
/// everywhere) checks with `GET /_sim/calls` that a simulator answers there; another path can
/// be given for a simulator that serves it elsewhere.
struct SimulatorAdminClient: Sendable {
    /// Tried in this order by `auto`.
    static let knownPrefixes = ["/_sim"]

    let root: String
    let prefix: String
    let client: HTTPClient

    /// `root`: `http://127.0.0.1:PORT` (a trailing `/api/v1` or `/` is dropped). `prefix`:
    /// `auto`, or a path such as `/_sim`.
    static func connect(root: String, prefix: String, client: HTTPClient) async throws -> SimulatorAdminClient {
        var base = root
        for suffix in ["/", "/api/v1", "/"] where base.hasSuffix(suffix) { base = String(base.dropLast(suffix.count)) }
        guard case .success = BenchTarget.parse(base + "/") else {
            throw LoadPlanProblem("simulator '\(root)' must be http://127.0.0.1:PORT (loopback only).")
        }
        if prefix != "auto" {
            let clean = prefix.hasPrefix("/") ? prefix : "/" + prefix
            return SimulatorAdminClient(root: base, prefix: clean.hasSuffix("/") ? String(clean.dropLast()) : clean, client: client)
        }
        for candidate in Self.knownPrefixes {
            if let (status, _) = try? await Self.call(client, .GET, base + candidate + "/calls", body: nil), status == 200 {
                return SimulatorAdminClient(root: base, prefix: candidate, client: client)
            }
        }
        throw LoadPlanProblem("the simulator at \(base) answers neither \(Self.knownPrefixes.map { $0 + "/calls" }.joined(separator: " nor ")); is it running? (or pass --admin-prefix)")
    }

    // MARK: - Tokens

    /// Creates `count` tokens (`usageLimit` nil: unlimited) with `concurrency` calls in flight;
    /// returns the raw tokens in creation order. `progress` gets the number done now and then.
    func createTokens(count: Int, usageLimit: Int?, concurrency: Int, progress: (@Sendable (Int) -> Void)? = nil) async throws -> [String] {
        let body = "{\"usage_limit\":\(usageLimit.map(String.init) ?? "null")}"
        let url = self.root + self.prefix + "/tokens"
        var tokens = [String?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var next = 0
            func start() {
                guard next < count else { return }
                let index = next
                next += 1
                group.addTask {
                    let (status, answer) = try await Self.call(self.client, .POST, url, body: body)
                    guard status == 201, let token = Self.stringField("token", in: answer) else {
                        throw LoadPlanProblem("the simulator answered \(status) to POST \(url): \(String(answer.prefix(200)))")
                    }
                    return (index, token)
                }
            }
            for _ in 0..<max(1, concurrency) { start() }
            var done = 0
            while let (index, token) = try await group.next() {
                tokens[index] = token
                done += 1
                if done % 50_000 == 0 { progress?(done) }
                start()
            }
        }
        return tokens.compactMap { $0 }
    }

    func reset() async throws {
        let (status, answer) = try await Self.call(self.client, .POST, self.root + self.prefix + "/reset", body: "{}")
        guard status == 200 else { throw LoadPlanProblem("the simulator answered \(status) to reset: \(answer.prefix(200))") }
    }

    // MARK: - Counts

    struct Counts: Sendable {
        var verifyCalls: Int
        var usageCalls: Int
        var verifyMaxPerMinute: Int
        var usageMaxPerMinute: Int
        var acceptedUnits: Int
    }

    func counts() async throws -> Counts {
        let calls = try await self.json(self.prefix + "/calls")
        let usage = try await self.json(self.prefix + "/usage")
        func endpoint(_ name: String, _ field: String) -> Int {
            ((calls[name] as? [String: Any])?[field] as? NSNumber)?.intValue ?? 0
        }
        let totals = usage["totals"] as? [String: Any] ?? [:]
        let accepted = totals.values.reduce(0) { $0 + (($1 as? NSNumber)?.intValue ?? 0) }
        return Counts(
            verifyCalls: endpoint("verify", "total"),
            usageCalls: endpoint("usage", "total"),
            verifyMaxPerMinute: endpoint("verify", "max_per_minute"),
            usageMaxPerMinute: endpoint("usage", "max_per_minute"),
            acceptedUnits: accepted
        )
    }

    private func json(_ path: String) async throws -> [String: Any] {
        let (status, answer) = try await Self.call(self.client, .GET, self.root + path, body: nil, limit: 1 << 30)
        guard status == 200, let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any] else {
            throw LoadPlanProblem("the simulator answered \(status) to GET \(path) with no JSON object")
        }
        return object
    }

    // MARK: - HTTP

    static func call(_ client: HTTPClient, _ method: HTTPMethod, _ url: String, body: String?, limit: Int = 1 << 20) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await client.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: limit)
        return (Int(response.status.code), String(buffer: bytes))
    }

    /// The string value of `"name":"…"` in a flat JSON answer (the admin answers are ours to know).
    static func stringField(_ name: String, in text: String) -> String? {
        guard let range = text.range(of: "\"\(name)\":\"") else { return nil }
        let rest = text[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }
}

/// Subgate's admin listener: flush until nothing is pending.
struct SubgateAdminClient: Sendable {
    let root: String
    let client: HTTPClient

    /// `POST /flush` until `pending_units` is 0 or `timeout` passes; (flushes, pending units left).
    func flushUntilSettled(timeout: Duration) async throws -> (flushes: Int, pending: Int) {
        let deadline = ContinuousClock.now + timeout
        var flushes = 0
        while true {
            let (status, answer) = try await SimulatorAdminClient.call(self.client, .POST, self.root + "/flush", body: nil)
            flushes += 1
            guard status == 200, let object = try? JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any] else {
                throw LoadPlanProblem("Subgate's admin answered \(status) to POST /flush: \(answer.prefix(200))")
            }
            let pending = (object["pending_units"] as? NSNumber)?.intValue ?? -1
            if pending == 0 { return (flushes, 0) }
            if ContinuousClock.now >= deadline { return (flushes, pending) }
            // A flush sends what the usage budget allows now; the next one takes the refill.
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
