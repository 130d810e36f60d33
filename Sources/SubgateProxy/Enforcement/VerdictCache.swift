import NIOConcurrencyHelpers
import NIOCore
import SubgateCore

/// The sharded verdict cache (`cache_shards`, `cache_max_entries`). Each shard is a
/// dictionary of `TokenEntry` values behind its own lock, held only for a lookup or an
/// update (no I/O, no allocation beyond the dictionary's): event loops reach it without
/// waiting on each other in practice, and never on the control plane. Requests that miss
/// park an `EventLoopPromise` on their own loop; the one verify per hash completes them all.
final class VerdictCache: Sendable {
    /// What a request parked on a miss learns when the verify ends.
    enum VerifyResult: Sendable {
        /// A definitive answer is in the entry now.
        case verified
        /// No definitive answer (timeout, 5xx, 429, 401, breaker open); `retryAfter` for the 503.
        case failed(retryAfterSeconds: Int)
        /// `backend = crovver`: the synchronous consume this request started took its credits
        /// (`warning`: a soft-limit pool is now below zero).
        case crovverPaid(warning: Bool)
    }

    struct Shard {
        var entries: [String: TokenEntry] = [:]
        /// Requests waiting on a verify, per hash. A key present means a verify is in flight.
        var waiters: [String: [EventLoopPromise<VerifyResult>]] = [:]
        /// Hashes with a background refresh in flight.
        var refreshing: Set<String> = []
    }

    private let shards: [NIOLockedValueBox<Shard>]
    private let perShardLimit: Int

    init(shards: Int, maxEntries: Int) {
        let count = max(1, shards)
        self.shards = (0..<count).map { _ in NIOLockedValueBox(Shard()) }
        self.perShardLimit = max(1, maxEntries / count)
    }

    /// The shard of a hash: its first hex digits are uniformly distributed already.
    private func shard(_ hash: String) -> NIOLockedValueBox<Shard> {
        var index = 0
        for byte in hash.utf8.prefix(6) {
            index = index &* 16 &+ Int(byte & 0x0f) &+ Int(byte >> 6) &* 9
        }
        return self.shards[index % self.shards.count]
    }

    /// Runs `body` on the hash's shard under its lock.
    func withShard<R>(of hash: String, _ body: (inout Shard) -> R) -> R {
        self.shard(hash).withLockedValue(body)
    }

    /// Inserts a new entry, evicting the shard's least recently used entry that holds no
    /// unreported usage when the shard is full (an entry with usage is never evicted: the
    /// bound may be exceeded rather than lose a billed unit).
    static func insert(_ entry: TokenEntry, for hash: String, into shard: inout Shard, limit: Int) {
        if shard.entries.count >= limit {
            var victim: (String, ContinuousClock.Instant)?
            for (key, candidate) in shard.entries where !candidate.holdsUsage && shard.waiters[key] == nil {
                if victim == nil || candidate.lastUsed < victim!.1 { victim = (key, candidate.lastUsed) }
            }
            if let victim { shard.entries[victim.0] = nil }
        }
        shard.entries[hash] = entry
    }

    /// Updates the hash's entry, creating it (within the shard's bound, see `insert`) when absent.
    func upsert(_ hash: String, in shard: inout Shard, now: ContinuousClock.Instant, _ body: (inout TokenEntry) -> Void) {
        if var entry = shard.entries[hash] {
            body(&entry)
            shard.entries[hash] = entry
        } else {
            var entry = TokenEntry(lastUsed: now)
            body(&entry)
            Self.insert(entry, for: hash, into: &shard, limit: self.perShardLimit)
        }
    }

    var count: Int { self.shards.reduce(0) { $0 + $1.withLockedValue { $0.entries.count } } }

    /// Every shard in turn (the poller's scan).
    func forEachShard(_ body: (inout Shard) -> Void) {
        for shard in self.shards { shard.withLockedValue(body) }
    }
}
