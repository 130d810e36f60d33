// Foundation only for pow, once per rank when the table is built; never per draw.
import Foundation

/// Draws ranks 0..<count with P(rank k) ∝ 1 / (k + 1)^exponent: a few tokens take most of
/// the traffic and a long tail is seen rarely, as with real subscribers.
///
/// The cumulative distribution is computed once (count doubles), so a draw is one uniform
/// number and a binary search: O(log count), no allocation.
public struct ZipfSampler: Sendable {
    public let count: Int
    public let exponent: Double
    /// `cdf[k]` = P(rank ≤ k); the last element is exactly 1.
    public let cdf: [Double]

    /// `count` ≥ 1; `exponent` ≥ 0 (0 is uniform).
    public init(count: Int, exponent: Double) {
        precondition(count >= 1 && exponent >= 0 && exponent.isFinite, "ZipfSampler needs count ≥ 1 and a finite exponent ≥ 0")
        self.count = count
        self.exponent = exponent
        var weights = [Double](repeating: 0, count: count)
        var sum = 0.0
        for k in 0..<count {
            let weight = exponent == 0 ? 1 : 1 / pow(Double(k + 1), exponent)
            sum += weight
            weights[k] = sum
        }
        for k in 0..<count { weights[k] /= sum }
        weights[count - 1] = 1
        self.cdf = weights
    }

    /// The probability of one rank (for tests and reports).
    public func probability(of rank: Int) -> Double {
        rank == 0 ? self.cdf[0] : self.cdf[rank] - self.cdf[rank - 1]
    }

    /// The rank whose cumulative probability first exceeds `u` ∈ [0, 1).
    public func rank(for u: Double) -> Int {
        var low = 0
        var high = self.count - 1
        while low < high {
            let mid = (low + high) >> 1
            if self.cdf[mid] > u { high = mid } else { low = mid + 1 }
        }
        return low
    }

    public func sample(using random: inout BenchRandom) -> Int {
        self.rank(for: random.unit())
    }
}
