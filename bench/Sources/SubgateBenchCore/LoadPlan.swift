/// A problem with the bench's options, as a sentence that says what to write instead.
public struct LoadPlanProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

/// The options of `subgate-bench load` as typed, before checking.
public struct LoadOptions: Sendable, Equatable {
    public var url: String = "http://127.0.0.1:8080/"
    public var connections: Int = 64
    /// Requests per second for an open loop; nil for a closed loop.
    public var rate: Double?
    public var duration: String = "10s"
    public var warmup: String = "2s"
    public var timeout: String = "10s"
    public var drain: String = "10s"
    public var threads: Int = 1
    /// `hot`, `zipf`, `uniform` or `sequential` (alias `cold`).
    public var mix: String = "hot"
    public var zipfExponent: Double = 1.0
    /// Valid tokens to use (the first N of the file, or N created on the simulator); nil: all of the file.
    public var tokenCount: Int?
    /// Tokens available from the file or the simulator (set by the caller once they are loaded).
    public var tokensAvailable: Int = 0
    public var invalidShare: Double = 0
    public var noTokenShare: Double = 0
    public var invalidTokens: Int = 1000
    public var requestBytes: Int = 0
    public var answerBytes: Int?
    public var usagePerAnswer: Int?
    public var tokenHeader: String = "x-subscription-token"
    public var seed: UInt64 = 1
    /// `fast` (the bench's own framer) or `nio` (NIO's HTTPResponseDecoder).
    public var decoder: String = "fast"

    public init() {}
}

/// A checked, complete description of one load run.
public struct LoadPlan: Sendable, Equatable {
    /// Closed: each connection sends its next request when the last answer ends.
    /// Open: a fixed total rate, latency from each request's due time.
    public enum Loop: Sendable, Equatable {
        case closed
        case open(OpenLoopSchedule)
    }

    public static let maxDuration: Duration = .seconds(3600)
    public static let maxConnections = 10_000

    public let target: BenchTarget
    public let connections: Int
    public let loop: Loop
    public let duration: Duration
    public let warmup: Duration
    public let timeout: Duration
    /// How long, after sending stops, the run waits for answers still in flight.
    public let drain: Duration
    public let threads: Int
    public let mix: TokenMix
    public let requestBytes: Int
    public let answerBytes: Int?
    public let usagePerAnswer: Int?
    public let tokenHeader: String
    public let seed: UInt64
    /// How answers are parsed: `ResponseFramer` (fast) or NIO's `HTTPResponseDecoder`.
    public let decoder: AnswerDecoder

    /// Which parser finds the answers' ends.
    public enum AnswerDecoder: String, Sendable, Equatable {
        case fast
        case nio
    }

    /// Checks every option; the first problem found, as a sentence.
    public init(_ options: LoadOptions) throws(LoadPlanProblem) {
        switch BenchTarget.parse(options.url) {
        case .success(let target): self.target = target
        case .failure(let problem): throw problem
        }
        guard (1...Self.maxConnections).contains(options.connections) else {
            throw LoadPlanProblem("--connections must be between 1 and \(Self.maxConnections).")
        }
        self.connections = options.connections
        guard (1...64).contains(options.threads) else {
            throw LoadPlanProblem("--threads must be between 1 and 64.")
        }
        guard options.threads <= options.connections else {
            throw LoadPlanProblem("--threads (\(options.threads)) must not exceed --connections (\(options.connections)): each thread needs a connection.")
        }
        self.threads = options.threads
        if let rate = options.rate {
            guard rate.isFinite, rate > 0 else {
                throw LoadPlanProblem("--rate must be a positive number of requests per second (omit it for a closed loop).")
            }
            guard rate <= 10_000_000 else { throw LoadPlanProblem("--rate above 10000000 requests per second is not plausible on one machine.") }
            self.loop = .open(OpenLoopSchedule(rate: rate, connections: options.connections))
        } else {
            self.loop = .closed
        }
        self.duration = try Self.duration(options.duration, "--duration", allowZero: false)
        self.warmup = try Self.duration(options.warmup, "--warmup", allowZero: true)
        self.timeout = try Self.duration(options.timeout, "--timeout", allowZero: false)
        self.drain = try Self.duration(options.drain, "--drain", allowZero: true)

        let selection: TokenMix.Selection
        switch options.mix {
        case "hot": selection = .hot
        case "zipf":
            guard options.zipfExponent.isFinite, (0...10).contains(options.zipfExponent) else {
                throw LoadPlanProblem("--zipf-exponent must be between 0 and 10 (1.0 is the classic Zipf law).")
            }
            selection = .zipf(exponent: options.zipfExponent)
        case "uniform": selection = .uniform
        case "sequential", "cold": selection = .sequential
        default:
            throw LoadPlanProblem("--mix '\(options.mix)' is unknown; use hot, zipf, uniform or cold (every request a never-seen token).")
        }
        for (name, share) in [("--invalid-share", options.invalidShare), ("--no-token-share", options.noTokenShare)] {
            guard share.isFinite, (0...1).contains(share) else {
                throw LoadPlanProblem("\(name) must be a fraction between 0 and 1, as in 0.05 for 5 %.")
            }
        }
        guard options.invalidShare + options.noTokenShare <= 1 else {
            throw LoadPlanProblem("--invalid-share plus --no-token-share must not exceed 1.")
        }
        guard (1...1_000_000).contains(options.invalidTokens) else {
            throw LoadPlanProblem("--invalid-tokens must be between 1 and 1000000.")
        }
        let validShare = 1 - options.invalidShare - options.noTokenShare
        var validTokens = options.tokensAvailable
        if let count = options.tokenCount {
            guard count >= 1 else { throw LoadPlanProblem("--token-count must be at least 1.") }
            guard count <= options.tokensAvailable || options.tokensAvailable == 0 else {
                throw LoadPlanProblem("--token-count \(count) asks for more tokens than the \(options.tokensAvailable) available; create more (subgate-bench tokens) or lower it.")
            }
            validTokens = options.tokensAvailable == 0 ? count : min(count, options.tokensAvailable)
        }
        if validShare > 0 && validTokens == 0 {
            throw LoadPlanProblem("valid tokens are needed: give --tokens-file FILE or --tokens-from SIMULATOR_URL (or set --no-token-share/--invalid-share to 1).")
        }
        self.mix = TokenMix(
            selection: selection,
            validTokens: max(validTokens, 1),
            invalidShare: options.invalidShare,
            noTokenShare: options.noTokenShare,
            invalidTokens: options.invalidTokens
        )
        guard (0...1 << 30).contains(options.requestBytes) else {
            throw LoadPlanProblem("--request-bytes must be between 0 and 1073741824.")
        }
        self.requestBytes = options.requestBytes
        if let answer = options.answerBytes, !(0...1 << 30).contains(answer) {
            throw LoadPlanProblem("--answer-bytes must be between 0 and 1073741824.")
        }
        self.answerBytes = options.answerBytes
        if let usage = options.usagePerAnswer, !(0...1_000_000).contains(usage) {
            throw LoadPlanProblem("--usage must be between 0 and 1000000 (SPEC §3: x-subgate-usage).")
        }
        self.usagePerAnswer = options.usagePerAnswer
        let header = options.tokenHeader
        guard !header.isEmpty, header.utf8.allSatisfy({ Self.isTokenChar($0) }) else {
            throw LoadPlanProblem("--token-header '\(header)' is not a valid header name.")
        }
        self.tokenHeader = header.lowercased()
        self.seed = options.seed
        guard let decoder = AnswerDecoder(rawValue: options.decoder) else {
            throw LoadPlanProblem("--decoder '\(options.decoder)' is unknown; use fast (the bench's framer) or nio (NIO's HTTPResponseDecoder).")
        }
        self.decoder = decoder
    }

    /// Units the target should bill per billable answer (the bench upstream honours `--usage`).
    public var unitsPerBillableAnswer: Int { self.usagePerAnswer ?? 1 }

    private static func duration(_ text: String, _ name: String, allowZero: Bool) throws(LoadPlanProblem) -> Duration {
        guard let duration = BenchDuration.parse(text) else {
            throw LoadPlanProblem("\(name) '\(text)' is not a duration; write it as 10s, 500ms or 2m.")
        }
        guard allowZero || duration > .zero else { throw LoadPlanProblem("\(name) must be longer than zero.") }
        guard duration <= Self.maxDuration else { throw LoadPlanProblem("\(name) must be at most 1h: every bench phase is bounded in time.") }
        return duration
    }

    /// RFC 9110 `tchar`.
    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
