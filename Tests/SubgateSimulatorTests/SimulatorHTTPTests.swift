import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SubgateSimulator
import Testing

/// SPEC §7 over real loopback sockets: the simulator as Subgate and the other tests see it.
@Suite struct SimulatorHTTPTests {
    /// An answer, read whole.
    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: String

        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any] ?? [:]
        }
        var errorCode: String? { (self.json["error"] as? [String: Any])?["code"] as? String }
    }

    static func withSimulator(ratePerMinute: Int = 300, _ body: (Simulator) async throws -> Void) async throws {
        let simulator = try await Simulator.start(ratePerMinute: ratePerMinute, group: MultiThreadedEventLoopGroup.singleton)
        do {
            try await body(simulator)
        } catch {
            await simulator.stop()
            throw error
        }
        await simulator.stop()
    }

    static func send(
        _ url: String,
        method: HTTPMethod = .POST,
        key: String? = "am_k_demo",
        headers extra: [(String, String)] = [],
        json: String? = nil,
        timeout: TimeAmount = .seconds(5)
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let key { request.headers.add(name: "authorization", value: "Bearer \(key)") }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Answer(status: Int(response.status.code), headers: headers, body: String(buffer: body))
    }

    static func verify(_ simulator: Simulator, _ hash: String, key: String? = "am_k_demo") async throws -> Answer {
        try await self.send(simulator.baseURL + "/subscriptions/tokens/verify", key: key, json: #"{"token_hash":"\#(hash)"}"#)
    }

    static func usage(_ simulator: Simulator, _ hash: String, _ count: Int) async throws -> Answer {
        try await self.send(simulator.baseURL + "/subscriptions/tokens/usage", json: #"{"token_hash":"\#(hash)","count":\#(count)}"#)
    }

    @Test("verify and usage over a socket answer the seed's shapes and update the Swift API's view")
    func verifyAndUsage() async throws {
        try await Self.withSimulator { simulator in
            #expect(simulator.baseURL == "http://127.0.0.1:\(simulator.port)/api/v1")
            let (_, hash) = simulator.createToken(usageLimit: 3, listingID: "lst_h", subscriberID: "usr_h")
            let verified = try await Self.verify(simulator, hash)
            #expect(verified.status == 200 && verified.headers["content-type"] == "application/json")
            #expect(
                verified.body == #"{"valid":true,"data":{"listing_id":"lst_h","status":"active","usage_count":0,"usage_limit":3,"remaining":3,"expires_at":null,"subscriber_id":"usr_h"}}"#,
                "\(verified.body)"
            )
            let used = try await Self.usage(simulator, hash, 3)
            #expect(used.status == 200 && (used.json["data"] as? [String: Any])?["status"] as? String == "expired", "auto-expiry at the limit: \(used.body)")
            #expect(simulator.tokenState(hash: hash)?.status == "expired" && simulator.tokenState(hash: hash)?.remaining == 0)
            #expect(simulator.acceptedUnits(hash: hash) == 3 && simulator.totalAcceptedUnits == 3)
            #expect(simulator.usageReports == [SimulatedUsageReport(tokenHash: hash, count: 3, status: 200)])
            #expect(try await Self.verify(simulator, hash).body == #"{"valid":false}"#)
            #expect(simulator.callCount(.verify) == 2 && simulator.callCount(.usage) == 1 && simulator.maxCallsPerMinute(.verify) == 2)
        }
    }

    @Test("a missing or unknown seller key answers 401 UNAUTHORIZED in the seed's error body")
    func unauthorized() async throws {
        try await Self.withSimulator { simulator in
            let (_, hash) = simulator.createToken()
            for key in [nil, "am_k_nobody"] {
                let answer = try await Self.verify(simulator, hash, key: key)
                #expect(answer.status == 401 && answer.errorCode == "UNAUTHORIZED" && answer.json["success"] as? Bool == false, "\(answer.body)")
            }
            #expect(simulator.callCount(.verify) == 2, "rejected calls are counted")
        }
    }

    @Test("over the per-minute budget answers 429 RATE_LIMITED with a Retry-After header")
    func rateLimited() async throws {
        try await Self.withSimulator(ratePerMinute: 2) { simulator in
            let (_, hash) = simulator.createToken()
            let start = ContinuousClock.now
            #expect(try await Self.verify(simulator, hash).status == 200)
            #expect(try await Self.verify(simulator, hash).status == 200)
            let limited = try await Self.verify(simulator, hash)
            // A loaded machine may take seconds over these calls: the window is 60 s from the first.
            let elapsed = Int((ContinuousClock.now - start).components.seconds) + 1
            #expect(limited.status == 429 && limited.errorCode == "RATE_LIMITED", "\(limited.body)")
            let retryAfter = limited.headers["retry-after"].flatMap(Int.init) ?? 0
            #expect((59 - elapsed...60).contains(retryAfter), "the first call leaves the 60 s window in about a minute (\(elapsed) s after it): \(retryAfter)")
            #expect(try await Self.usage(simulator, hash, 1).status == 200, "usage has its own budget")
        }
    }

    @Test("faults injected through the admin API answer their status, are counted, and clear")
    func adminFaults() async throws {
        try await Self.withSimulator { simulator in
            let created = try await Self.send(simulator.rootURL + "/_sim/tokens", key: nil, json: #"{"usage_limit":null}"#)
            #expect(created.status == 201, "\(created.body)")
            let hash = created.json["token_hash"] as? String ?? ""
            #expect(simulator.tokenState(hash: hash)?.usageLimit == nil)
            let fault = try await Self.send(simulator.rootURL + "/_sim/faults", key: nil, json: #"{"endpoint":"usage","status":503,"retry_after":2}"#)
            #expect(fault.status == 201, "\(fault.body)")
            let faulted = try await Self.usage(simulator, hash, 5)
            #expect(faulted.status == 503 && faulted.errorCode == "INTERNAL_ERROR" && faulted.headers["retry-after"] == "2", "\(faulted.body)")
            #expect(try await Self.send(simulator.rootURL + "/_sim/faults", method: .DELETE, key: nil).body == #"{"cleared":1}"#)
            #expect(try await Self.usage(simulator, hash, 5).status == 200)
            let usage = try await Self.send(simulator.rootURL + "/_sim/usage", method: .GET, key: nil)
            #expect(usage.body.contains(#""totals":{"\#(hash)":5}"#), "the faulted report is listed but not totalled: \(usage.body)")
            #expect(simulator.usageReports.map(\.status) == [503, 200])
            let calls = try await Self.send(simulator.rootURL + "/_sim/calls", method: .GET, key: nil)
            #expect(((calls.json["usage"] as? [String: Any])?["total"] as? Int) == 2, "\(calls.body)")
        }
    }

    @Test("a drop fault closes the connection unanswered; a latency fault delays the answer")
    func dropAndLatency() async throws {
        try await Self.withSimulator { simulator in
            let (_, hash) = simulator.createToken()
            simulator.injectFault(SimulatedFault(endpoint: .usage, drop: true))
            await #expect(throws: (any Error).self, "no answer comes") {
                _ = try await Self.usage(simulator, hash, 1)
            }
            simulator.clearFaults()
            #expect(simulator.usageReports.first?.status == 0, "recorded as dropped")
            #expect(simulator.tokenState(hash: hash)?.usageCount == 0, "a dropped report applies nothing")
            simulator.injectFault(SimulatedFault(endpoint: .verify, latency: .milliseconds(300), times: 1))
            let started = ContinuousClock.now
            let slow = try await Self.verify(simulator, hash)
            let elapsed = ContinuousClock.now - started
            #expect(slow.status == 200 && slow.json["valid"] as? Bool == true)
            #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(3), "\(elapsed)")
        }
    }

    @Test("rotate over a socket: the buyer's Bearer cro_sub_ token; the old one verifies false")
    func rotate() async throws {
        try await Self.withSimulator { simulator in
            let (raw, hash) = simulator.createToken(usageCount: 9)
            let rotated = try await Self.send(simulator.baseURL + "/subscriptions/tokens/rotate", key: raw)
            #expect(rotated.status == 200, "\(rotated.body)")
            let newHash = (rotated.json["data"] as? [String: Any])?["token_hash"] as? String ?? ""
            #expect(try await Self.verify(simulator, hash).body == #"{"valid":false}"#)
            #expect(simulator.tokenState(hash: newHash)?.usageCount == 9)
            #expect(simulator.rotate(hash: hash) == nil, "a revoked token does not rotate again")
            #expect(simulator.rotate(hash: newHash)?.hasPrefix("cro_sub_") == true)
            #expect(simulator.callCount(.rotate) == 1, "the Swift API's rotation is not a call")
        }
    }

    @Test("stop closes the listener and open connections")
    func stop() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let simulator = try await Simulator.start(group: group)
        let (_, hash) = simulator.createToken()
        #expect(try await Self.verify(simulator, hash).status == 200)
        let idle = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: simulator.port).get()
        await simulator.stop()
        let deadline = ContinuousClock.now + .seconds(5)
        while idle.isActive && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!idle.isActive, "an open connection is closed by stop")
        await #expect(throws: (any Error).self, "nothing listens after stop") {
            _ = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: simulator.port).get()
        }
    }
}
