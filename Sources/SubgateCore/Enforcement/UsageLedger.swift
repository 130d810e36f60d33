import Foundation

/// Billable units waiting to be reported, per token hash (SPEC §4). Plain value: the flusher
/// keeps it under a lock and journals every change.
public struct UsageLedger: Sendable, Equatable {
    /// The most one usage report may carry (seed 000: `count` 1…1000).
    public static let maxReportCount = 1000

    public private(set) var pending: [String: Int] = [:]
    /// Kept as a running sum: it is read on every settlement (the pending-units gauge).
    public private(set) var totalUnits = 0

    public init(pending: [String: Int] = [:]) {
        self.pending = pending.filter { $0.value > 0 }
        self.totalUnits = self.pending.values.reduce(0, +)
    }

    public mutating func add(_ hash: String, units: Int) {
        guard units > 0 else { return }
        self.pending[hash, default: 0] += units
        self.totalUnits += units
    }

    /// Takes up to `maxReports` reports out of the ledger: totals over 1000 are split, and when
    /// the budget is short the largest totals go first (they matter most to `remaining`).
    public mutating func takeReports(maxReports: Int) -> [UsageReport] {
        guard maxReports > 0, !self.pending.isEmpty else { return [] }
        let order = self.pending.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var reports: [UsageReport] = []
        for (hash, total) in order {
            var left = total
            while left > 0 && reports.count < maxReports {
                let count = min(left, Self.maxReportCount)
                reports.append(UsageReport(hash: hash, count: count))
                left -= count
                self.totalUnits -= count
            }
            self.pending[hash] = left > 0 ? left : nil
            if reports.count == maxReports { break }
        }
        return reports
    }

    /// Puts a report's units back (not accepted; retried later).
    public mutating func restore(_ report: UsageReport) {
        self.add(report.hash, units: report.count)
    }
}

public struct UsageReport: Sendable, Equatable {
    public var hash: String
    public var count: Int

    public init(hash: String, count: Int) {
        self.hash = hash
        self.count = count
    }
}

/// Which answers are billed, and how many units (SPEC §3 step 7).
public enum Billing {
    /// The most units one answer may bill through `x-subgate-usage`.
    public static let maxUnitsPerAnswer = 1_000_000

    public static func isBillable(status: UInt, countOn: UsageCountOn) -> Bool {
        switch countOn {
        case .success: return status >= 200 && status < 400
        case .non5xx: return status < 500
        case .all: return true
        }
    }

    /// Units for an answer: the upstream's `x-subgate-usage` (0…1000000) when present and
    /// valid, else 1. `nil` when the header is present but not a valid count, so the caller
    /// can log it (and bill 1).
    public static func units(header: String?) -> Int? {
        guard let header else { return 1 }
        guard let n = Int(header.trimmingCharacters(in: [" ", "\t"])), n >= 0, n <= Self.maxUnitsPerAnswer else { return nil }
        return n
    }
}

/// `cache_ttl = auto`: the seed's table from the measured total request rate.
public enum AutoTTL {
    public static func ttl(requestsPerSecond: Double) -> Duration {
        if requestsPerSecond < 1 { return .zero }
        if requestsPerSecond <= 50 { return .seconds(60) }
        return .seconds(30)
    }
}
