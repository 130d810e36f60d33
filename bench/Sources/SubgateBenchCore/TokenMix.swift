/// Which token each request carries.
///
/// Every request draws its class first: no token (`noTokenShare`), an invalid token
/// (`invalidShare`, uniformly from a pool of made-up `cro_sub_` tokens the control plane
/// does not know), else a valid token chosen by `selection`.
public struct TokenMix: Sendable, Equatable {
    /// How a valid token is chosen among the `validTokens` the run has.
    public enum Selection: Sendable, Equatable {
        /// Always the first token: one warm cache entry.
        case hot
        /// Ranks drawn Zipf with this exponent (token 0 the most popular).
        case zipf(exponent: Double)
        /// Every token equally often.
        case uniform
        /// Every request the next token never sent before (a cold cache on every request);
        /// the run ends early when the tokens run out.
        case sequential
    }

    public var selection: Selection
    public var validTokens: Int
    public var invalidShare: Double
    public var noTokenShare: Double
    public var invalidTokens: Int

    public init(selection: Selection, validTokens: Int, invalidShare: Double = 0, noTokenShare: Double = 0, invalidTokens: Int = 1000) {
        self.selection = selection
        self.validTokens = validTokens
        self.invalidShare = invalidShare
        self.noTokenShare = noTokenShare
        self.invalidTokens = invalidTokens
    }

    /// A request's token, as an index into `RequestCatalog`.
    public enum Pick: Sendable, Equatable {
        case noToken
        case invalid(Int)
        case valid(Int)
    }

    /// Whether requests without a valid token are drawn at all.
    public var validOnly: Bool { self.invalidShare == 0 && self.noTokenShare == 0 }
}

/// Draws `TokenMix.Pick`s: one per event loop (not shared between threads). `sequential`
/// hands each loop its own stride of the token list so no token is sent twice.
public struct TokenPicker: Sendable {
    public let mix: TokenMix
    private var random: BenchRandom
    private let zipf: ZipfSampler?
    private var nextSequential: Int
    private let sequentialStride: Int

    /// `stream`/`streams`: this loop's index and the number of loops.
    public init(mix: TokenMix, seed: UInt64, stream: Int = 0, streams: Int = 1, zipf: ZipfSampler? = nil) {
        self.mix = mix
        self.random = BenchRandom(seed: seed, stream: UInt64(stream))
        if case .zipf(let exponent) = mix.selection {
            self.zipf = zipf ?? ZipfSampler(count: mix.validTokens, exponent: exponent)
        } else {
            self.zipf = nil
        }
        self.nextSequential = stream
        self.sequentialStride = max(1, streams)
    }

    /// The next request's token; nil when `sequential` has used every token.
    public mutating func next() -> TokenMix.Pick? {
        if !self.mix.validOnly {
            let u = self.random.unit()
            if u < self.mix.noTokenShare { return .noToken }
            if u < self.mix.noTokenShare + self.mix.invalidShare {
                return .invalid(Int(self.random.next() % UInt64(max(1, self.mix.invalidTokens))))
            }
        }
        switch self.mix.selection {
        case .hot:
            return .valid(0)
        case .zipf:
            return .valid(self.zipf?.sample(using: &self.random) ?? 0)
        case .uniform:
            return .valid(Int(self.random.next() % UInt64(self.mix.validTokens)))
        case .sequential:
            guard self.nextSequential < self.mix.validTokens else { return nil }
            defer { self.nextSequential += self.sequentialStride }
            return .valid(self.nextSequential)
        }
    }
}
