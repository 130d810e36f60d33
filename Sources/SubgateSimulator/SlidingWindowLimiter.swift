import Foundation

/// A sliding-window rate limit: at most `limit` admitted calls per key in any `window`.
///
/// Only admitted calls use the budget, so a client that keeps calling while limited is
/// let in again as soon as its oldest admitted call leaves the window.
struct SlidingWindowLimiter: Sendable {
    /// The outcome of one call.
    enum Decision: Sendable, Equatable {
        /// Within the budget; the call is counted.
        case admitted
        /// Over it; `retryAfter` whole seconds until a slot frees (at least 1).
        case limited(retryAfter: Int)
    }

    /// What a budget belongs to: an endpoint and a seller key (verify, usage) or a subscriber (rotate).
    struct Key: Hashable, Sendable {
        var endpoint: SimulatedEndpoint
        var owner: String
    }

    let window: TimeInterval
    /// Admitted calls per key, oldest first.
    private var admitted: [Key: [Date]] = [:]

    init(window: TimeInterval = 60) {
        self.window = window
    }

    mutating func admit(_ key: Key, limit: Int, now: Date) -> Decision {
        var times = self.admitted[key] ?? []
        let horizon = now.addingTimeInterval(-self.window)
        times.removeAll(notAfter: horizon)
        defer { self.admitted[key] = times.isEmpty ? nil : times }
        guard times.count >= limit else {
            times.append(now)
            return .admitted
        }
        // The slot frees when the call `limit` places back leaves the window.
        let frees = times[times.count - limit].addingTimeInterval(self.window)
        return .limited(retryAfter: max(1, Int(frees.timeIntervalSince(now).rounded(.up))))
    }
}

extension Array where Element == Date {
    /// Drops the times at or before `horizon` from the front of an ascending list: what
    /// has left a sliding window.
    mutating func removeAll(notAfter horizon: Date) {
        let firstInside = self.firstIndex { $0 > horizon } ?? self.endIndex
        self.removeFirst(firstInside)
    }
}
