import Logging
import NIOCore
import NIOPosix
import SubgateCore
import Testing

@testable import SubgateProxy

/// The verdict cache without sockets: bounded eviction and miss coalescing.
@Suite struct VerdictCacheTests {
    @Test("a full shard evicts its least recently used idle entry, never one holding unreported or reserved usage")
    func evictionKeepsUsage() {
        let t0 = ContinuousClock.now
        let cache = VerdictCache(shards: 1, maxEntries: 3)
        cache.withShard(of: "a") { shard in
            var billed = TokenEntry(lastUsed: t0)  // oldest, but holds a billed unit
            billed.unreported = 2
            VerdictCache.insert(billed, for: "billed", into: &shard, limit: 3)
            var inFlight = TokenEntry(lastUsed: t0 + .seconds(1))  // holds a reservation
            inFlight.reserved = 1
            VerdictCache.insert(inFlight, for: "in-flight", into: &shard, limit: 3)
            VerdictCache.insert(TokenEntry(lastUsed: t0 + .seconds(2)), for: "idle-old", into: &shard, limit: 3)
            VerdictCache.insert(TokenEntry(lastUsed: t0 + .seconds(3)), for: "idle-new", into: &shard, limit: 3)
            #expect(shard.entries["idle-old"] == nil, "the least recently used entry without usage goes first")
            #expect(shard.entries["billed"]?.unreported == 2 && shard.entries["in-flight"]?.reserved == 1)
            #expect(shard.entries["idle-new"] != nil)
            var busy = TokenEntry(lastUsed: t0 + .seconds(4))
            busy.unreported = 1
            shard.entries["idle-new"] = busy
            VerdictCache.insert(TokenEntry(lastUsed: t0 + .seconds(5)), for: "newest", into: &shard, limit: 3)
            #expect(shard.entries.count == 4, "with every entry holding usage the bound is exceeded rather than a unit lost")
        }
    }

    @Test("concurrent misses for one hash park on one verify; a failed verify is not cached")
    func missesCoalesce() async throws {
        var config = Config()
        config.controlPlaneURL = "http://127.0.0.1:1/api/v1"  // refuses: the verify fails fast
        config.sellerKey = Secret("am_k_test")
        config.usageJournal = nil
        let readiness = Readiness()
        let (enforcer, _) = try await EnforcementSetup.make(config: config, readiness: readiness, logger: Logger(label: "test"))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let hash = TokenHash.hex("cro_sub_coalesce")
        var futures: [EventLoopFuture<VerdictCache.VerifyResult>] = []
        for _ in 0..<20 {
            guard case .wait(let future) = enforcer.admit(hash: hash, on: loop) else {
                Issue.record("a miss must wait for the verify")
                return
            }
            futures.append(future)
        }
        let parked = enforcer.cache.withShard(of: hash) { $0.waiters[hash]?.count ?? 0 }
        // The verify may already have failed and released them; if not, all 20 share one.
        #expect(parked == 20 || parked == 0, "waiters: \(parked)")
        let deadline = ContinuousClock.now + .seconds(10)
        while enforcer.cache.withShard(of: hash, { $0.waiters[hash] != nil }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        for future in futures {
            let result = try await future.get()
            guard case .failed = result else {
                Issue.record("a refused connection must fail the verify, not verify the token")
                continue
            }
        }
        #expect(enforcer.cache.withShard(of: hash) { $0.entries[hash]?.verifiedAt } == nil, "a failure is never remembered as a verdict")
        if case .reject(let rejection) = enforcer.admitAfterVerify(hash: hash, result: .failed(retryAfterSeconds: 3)) {
            #expect(rejection.code == "VERIFICATION_UNAVAILABLE" && rejection.extraHeaders.contains { $0 == ("retry-after", "3") })
        } else {
            Issue.record("fail_mode = closed must answer 503")
        }
        await enforcer.client.shutdown()
        try await group.shutdownGracefully()
    }
}

@Suite struct AutoTTLRateTests {
    @Test("cache_ttl auto: a burst after a lull gets a cache at once; a lull keeps it until the window's average falls")
    func fastRiseSlowFall() {
        let idleThenBurst: [Double] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 400]
        #expect(AutoTTL.ttl(requestsPerSecond: EnforcementService.measuredRate(idleThenBurst)) == .seconds(30))
        let busyThenQuiet: [Double] = [40, 40, 40, 40, 40, 40, 40, 40, 40, 0]
        #expect(AutoTTL.ttl(requestsPerSecond: EnforcementService.measuredRate(busyThenQuiet)) == .seconds(60), "one quiet second must not drop the cache")
        #expect(AutoTTL.ttl(requestsPerSecond: EnforcementService.measuredRate(Array(repeating: 0.5, count: 10))) == .zero)
        #expect(EnforcementService.measuredRate([]) == 0)
    }
}
