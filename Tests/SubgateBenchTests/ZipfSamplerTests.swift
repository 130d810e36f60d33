import Testing

@testable import SubgateBenchCore

/// Issue 5: "K distinct tokens drawn Zipf (precompute a CDF; deterministic seed)".
@Suite("Zipf sampler")
struct ZipfSamplerTests {
    @Test("the CDF ends at 1 and rank k has weight 1/k^s over the harmonic sum")
    func probabilities() {
        let zipf = ZipfSampler(count: 10, exponent: 1)
        let harmonic = (1...10).reduce(0.0) { $0 + 1 / Double($1) }
        #expect(zipf.cdf.last == 1)
        for rank in 0..<10 {
            #expect(abs(zipf.probability(of: rank) - 1 / Double(rank + 1) / harmonic) < 1e-12)
        }
        #expect(zipf.cdf == zipf.cdf.sorted())
    }

    @Test("exponent 0 is uniform")
    func uniform() {
        let zipf = ZipfSampler(count: 4, exponent: 0)
        for rank in 0..<4 { #expect(abs(zipf.probability(of: rank) - 0.25) < 1e-12) }
    }

    @Test("rank(for:) maps the unit interval onto the ranks, ends included")
    func rankEdges() {
        let zipf = ZipfSampler(count: 1000, exponent: 1.1)
        #expect(zipf.rank(for: 0) == 0)
        #expect(zipf.rank(for: 0.999_999_999_999) == 999)
        #expect(zipf.rank(for: zipf.cdf[0]) == 1)
        #expect(ZipfSampler(count: 1, exponent: 1).rank(for: 0.7) == 0)
    }

    @Test("200 000 draws over 10 000 ranks follow the distribution (top ranks within 3 %, head share within 1 point)")
    func drawsFollowTheDistribution() {
        let zipf = ZipfSampler(count: 10_000, exponent: 1)
        var random = BenchRandom(seed: 42)
        let draws = 200_000
        var counts = [Int](repeating: 0, count: 10_000)
        for _ in 0..<draws { counts[zipf.sample(using: &random)] += 1 }
        for rank in 0..<5 {
            let expected = zipf.probability(of: rank) * Double(draws)
            #expect(abs(Double(counts[rank]) - expected) / expected < 0.03, "rank \(rank): \(counts[rank]) vs \(expected)")
        }
        // The 100 hottest of 10 000 tokens take ≈ 52.9 % of the traffic at s = 1.
        let head = Double(counts[0..<100].reduce(0, +)) / Double(draws)
        #expect(abs(head - zipf.cdf[99]) < 0.01)
        // The tail is reached too.
        #expect(counts[5000...].reduce(0, +) > 0)
    }

    @Test("the same seed gives the same draws; another stream gives others")
    func deterministic() {
        let zipf = ZipfSampler(count: 10_000, exponent: 1)
        func draws(seed: UInt64, stream: UInt64) -> [Int] {
            var random = BenchRandom(seed: seed, stream: stream)
            return (0..<100).map { _ in zipf.sample(using: &random) }
        }
        #expect(draws(seed: 7, stream: 0) == draws(seed: 7, stream: 0))
        #expect(draws(seed: 7, stream: 0) != draws(seed: 7, stream: 1))
        #expect(draws(seed: 7, stream: 0) != draws(seed: 8, stream: 0))
    }

    @Test("unit() stays in [0, 1)")
    func unitRange() {
        var random = BenchRandom(seed: 1)
        var low = 1.0
        var high = 0.0
        for _ in 0..<100_000 {
            let u = random.unit()
            low = min(low, u)
            high = max(high, u)
        }
        #expect(low >= 0 && low < 0.001)
        #expect(high < 1 && high > 0.999)
    }
}
