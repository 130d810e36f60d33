import Foundation

/// Every call that reached one endpoint, rejected and faulted ones included (`/_sim/calls`).
struct EndpointCallLog: Sendable {
    /// Calls since the simulator started (or was reset).
    private(set) var total = 0
    /// Calls per whole minute since the start: index 0 is the first minute.
    private(set) var perMinute: [Int] = []
    /// The most calls seen in any 60-second sliding window, which is what a
    /// "300 requests/minute" budget limits.
    private(set) var maxPerMinute = 0
    /// Calls within the last 60 s, oldest first, for `maxPerMinute`.
    private var recent: [Date] = []

    mutating func record(at now: Date, since start: Date) {
        self.total += 1
        let minute = Self.minute(of: now, since: start)
        self.pad(to: minute)
        self.perMinute[minute] += 1
        let horizon = now.addingTimeInterval(-60)
        self.recent.removeAll(notAfter: horizon)
        self.recent.append(now)
        self.maxPerMinute = max(self.maxPerMinute, self.recent.count)
    }

    /// `perMinute` up to and including the current minute (quiet minutes as 0).
    func perMinute(upTo now: Date, since start: Date) -> [Int] {
        var copy = self
        copy.pad(to: Self.minute(of: now, since: start))
        return copy.perMinute
    }

    private mutating func pad(to minute: Int) {
        if self.perMinute.count <= minute {
            self.perMinute.append(contentsOf: repeatElement(0, count: minute + 1 - self.perMinute.count))
        }
    }

    private static func minute(of now: Date, since start: Date) -> Int {
        max(0, Int(now.timeIntervalSince(start) / 60))
    }
}
