/// A small, fast, seedable generator (xoshiro256**, seeded through SplitMix64), so a bench
/// run's token sequence is reproducible from `--seed` and drawing costs a few nanoseconds.
/// Not for secrets.
public struct BenchRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// The same seed gives the same sequence; `stream` separates generators that share a
    /// seed (one per event loop).
    public init(seed: UInt64, stream: UInt64 = 0) {
        var mixer = seed ^ (stream &* 0x9E37_79B9_7F4A_7C15)
        func splitMix() -> UInt64 {
            mixer &+= 0x9E37_79B9_7F4A_7C15
            var z = mixer
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        self.s0 = splitMix()
        self.s1 = splitMix()
        self.s2 = splitMix()
        self.s3 = splitMix()
    }

    @inlinable
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(self.s1 &* 5, 7) &* 9
        let t = self.s1 << 17
        self.s2 ^= self.s0
        self.s3 ^= self.s1
        self.s1 ^= self.s2
        self.s0 ^= self.s3
        self.s2 ^= t
        self.s3 = Self.rotl(self.s3, 45)
        return result
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    public mutating func unit() -> Double {
        Double(self.next() >> 11) * 0x1.0p-53
    }
}
