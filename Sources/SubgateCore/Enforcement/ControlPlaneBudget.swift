import Foundation

/// Subgate's own ceiling on calls to one control-plane endpoint (`verify_rate_limit`,
/// `usage_rate_limit`), plus the pause a `Retry-After` imposes.
///
/// A token bucket whose burst is taken out of the rate: with burst `B` and refill
/// `(N − B) per window`, no window of that length ever holds more than `N` calls, so a
/// `300/min` ceiling is a promise the control plane's own 300/min limiter will agree with.
/// Misses are served before refreshes: a refresh only takes a token while more than
/// `missReserve` are left.
public struct TokenBucket: Sendable {
    public let limit: Rate
    public let burst: Double
    public let missReserve: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant
    /// No call before this instant (`Retry-After`).
    public private(set) var pausedUntil: ContinuousClock.Instant?

    public enum Priority: Sendable { case miss, refresh }

    public init(limit: Rate, now: ContinuousClock.Instant) {
        self.limit = limit
        let burst = max(1, min(Double(limit.count) / 10, 30))
        self.burst = burst
        self.missReserve = min(burst - 1, max(1, burst / 2))
        self.tokens = burst
        self.updated = now
    }

    private var refillPerSecond: Double {
        max(Double(self.limit.count) - self.burst, 1) / max(self.limit.per.inSeconds, 0.001)
    }

    private mutating func refill(_ now: ContinuousClock.Instant) {
        guard now > self.updated else { return }
        self.tokens = min(self.burst, self.tokens + (now - self.updated).inSeconds * self.refillPerSecond)
        self.updated = now
    }

    /// Takes one call's worth if allowed now.
    public mutating func take(_ priority: Priority, now: ContinuousClock.Instant) -> Bool {
        if let paused = self.pausedUntil {
            if now < paused { return false }
            self.pausedUntil = nil
        }
        self.refill(now)
        let floor = priority == .miss ? 1 : 1 + self.missReserve
        guard self.tokens >= floor else { return false }
        self.tokens -= 1
        return true
    }

    /// How long until a call of `priority` could be allowed.
    public mutating func wait(_ priority: Priority, now: ContinuousClock.Instant) -> Duration {
        self.refill(now)
        var wait = Duration.zero
        if let paused = self.pausedUntil, paused > now { wait = paused - now }
        let floor = priority == .miss ? 1 : 1 + self.missReserve
        if self.tokens < floor {
            let seconds = (floor - self.tokens) / self.refillPerSecond
            wait = max(wait, .nanoseconds(Int64(seconds * 1e9)))
        }
        return wait
    }

    /// How many calls of `priority` `take` would allow now, one after another: 0 while a
    /// `Retry-After` pause lasts; a refresh leaves `missReserve` behind.
    public mutating func available(_ priority: Priority, now: ContinuousClock.Instant) -> Int {
        if let paused = self.pausedUntil, now < paused { return 0 }
        self.refill(now)
        let reserve = priority == .miss ? 0 : self.missReserve
        return max(0, Int((self.tokens - reserve).rounded(.down)))
    }

    /// Whether a `Retry-After` pause holds every call back now.
    public func isPaused(now: ContinuousClock.Instant) -> Bool {
        self.pausedUntil.map { now < $0 } ?? false
    }

    /// Tokens left now (for `/status`).
    public mutating func available(now: ContinuousClock.Instant) -> Int {
        self.refill(now)
        return Int(self.tokens)
    }

    /// The control plane said 429 with `Retry-After`: no call on this endpoint until then.
    public mutating func pause(for duration: Duration, now: ContinuousClock.Instant) {
        let until = now + duration
        if let current = self.pausedUntil, current >= until { return }
        self.pausedUntil = until
    }
}

/// Exponential back-off with jitter ("equal jitter": half the delay fixed, half random), so
/// many Subgates retrying after one outage do not return in lock-step.
public struct Backoff: Sendable {
    public var base: Duration
    public var cap: Duration
    public private(set) var attempts = 0

    public init(base: Duration = .milliseconds(500), cap: Duration = .seconds(30)) {
        self.base = base
        self.cap = cap
    }

    /// The delay before the next attempt; `random` returns a value in 0..<1.
    public mutating func next(random: () -> Double = { Double.random(in: 0..<1) }) -> Duration {
        let exponent = min(self.attempts, 30)
        self.attempts += 1
        let ceiling = min(self.cap, self.base * (1 << exponent))
        let half = ceiling / 2
        return half + half * random()
    }

    public mutating func reset() { self.attempts = 0 }
}

/// Stops requests from waiting on a dead control plane (SPEC §3 step 4): after `threshold`
/// consecutive failures it opens, and requests are decided from the cache and `fail_mode` at
/// once; after a back-off one probe is let through (half-open); success closes it.
public struct CircuitBreaker: Sendable {
    public enum State: String, Sendable { case closed, open, halfOpen = "half_open" }

    public let threshold: Int
    public private(set) var state: State = .closed
    public private(set) var consecutiveFailures = 0
    public private(set) var openUntil: ContinuousClock.Instant?
    private var backoff: Backoff
    private var probeInFlight = false

    public init(threshold: Int = 5, backoff: Backoff = Backoff(base: .seconds(1), cap: .seconds(30))) {
        self.threshold = threshold
        self.backoff = backoff
    }

    /// Whether a call may go out now (and, when half-open, claims the single probe).
    public mutating func allowCall(now: ContinuousClock.Instant) -> Bool {
        switch self.state {
        case .closed:
            return true
        case .open:
            guard let until = self.openUntil, now >= until else { return false }
            self.state = .halfOpen
            self.probeInFlight = true
            return true
        case .halfOpen:
            if self.probeInFlight { return false }
            self.probeInFlight = true
            return true
        }
    }

    /// Whether requests should wait for the control plane at all.
    public func isOpen(now: ContinuousClock.Instant) -> Bool {
        switch self.state {
        case .closed: return false
        case .open: return (self.openUntil.map { now < $0 }) ?? false
        case .halfOpen: return self.probeInFlight
        }
    }

    public mutating func recordSuccess() {
        self.state = .closed
        self.consecutiveFailures = 0
        self.openUntil = nil
        self.probeInFlight = false
        self.backoff.reset()
    }

    public mutating func recordFailure(now: ContinuousClock.Instant, random: () -> Double = { Double.random(in: 0..<1) }) {
        self.consecutiveFailures += 1
        self.probeInFlight = false
        if self.state == .halfOpen || self.consecutiveFailures >= self.threshold {
            self.state = .open
            self.openUntil = now + self.backoff.next(random: random)
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, capped so a confused
/// control plane cannot silence Subgate for a day.
public enum RetryAfter {
    public static let cap = Duration.seconds(300)

    public static func parse(_ value: String?, now: Date, cap: Duration = RetryAfter.cap) -> Duration? {
        guard let raw = value?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
        if let seconds = Int(raw) {
            return min(cap, .seconds(max(0, seconds)))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: raw) else { return nil }
        let seconds = date.timeIntervalSince(now)
        return min(cap, .milliseconds(Int64(max(0, seconds) * 1000)))
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (for rates).
    public var inSeconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
