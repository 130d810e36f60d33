import NIOCore

/// Every request the run can send, encoded once into one buffer before the clock starts, so
/// sending is a slice (a reference count, no copy, no formatting) per request.
///
/// Index 0 has no token; `1...invalid` carry the made-up invalid tokens; the valid tokens
/// follow in file order.
public struct RequestCatalog: Sendable {
    /// Request header the bench upstream reads for its answer's body size.
    public static let answerBytesHeader = "x-bench-answer-bytes"
    /// Request header the bench upstream turns into `x-subgate-usage` on its answer.
    public static let usageHeader = "x-bench-usage"

    private let storage: ByteBuffer
    private let offsets: [Int]
    public let invalidCount: Int
    public let validCount: Int
    /// Whether requests are POSTs with a body.
    public let hasBody: Bool

    /// `validTokens`, `invalidTokens`: raw token strings.
    public init(plan: LoadPlan, validTokens: [String], invalidTokens: [String]) {
        var method = "GET"
        var common = ""
        if let answer = plan.answerBytes { common += "\(Self.answerBytesHeader): \(answer)\r\n" }
        if let usage = plan.usagePerAnswer { common += "\(Self.usageHeader): \(usage)\r\n" }
        var body: [UInt8] = []
        if plan.requestBytes > 0 {
            method = "POST"
            common += "content-type: application/octet-stream\r\ncontent-length: \(plan.requestBytes)\r\n"
            body = [UInt8](repeating: UInt8(ascii: "x"), count: plan.requestBytes)
        }
        let prefix = Array("\(method) \(plan.target.path) HTTP/1.1\r\nhost: \(plan.target.authority)\r\nuser-agent: subgate-bench\r\n".utf8)
        let tokenLine = Array("\(plan.tokenHeader): ".utf8)
        let suffix = Array((common + "\r\n").utf8) + body
        let all = [nil] + invalidTokens.map { Optional($0) } + validTokens.map { Optional($0) }
        let averageToken = validTokens.first?.utf8.count ?? 40
        var buffer = ByteBufferAllocator().buffer(capacity: all.count * (prefix.count + tokenLine.count + averageToken + 2 + suffix.count))
        var offsets: [Int] = []
        offsets.reserveCapacity(all.count + 1)
        for token in all {
            offsets.append(buffer.writerIndex)
            buffer.writeBytes(prefix)
            if let token {
                buffer.writeBytes(tokenLine)
                buffer.writeString(token)
                buffer.writeBytes([UInt8(ascii: "\r"), UInt8(ascii: "\n")])
            }
            buffer.writeBytes(suffix)
        }
        offsets.append(buffer.writerIndex)
        self.storage = buffer
        self.offsets = offsets
        self.invalidCount = invalidTokens.count
        self.validCount = validTokens.count
        self.hasBody = plan.requestBytes > 0
    }

    /// The encoded request for a pick (shares the catalog's storage).
    @inlinable
    public func request(_ pick: TokenMix.Pick) -> ByteBuffer {
        self.request(at: self.index(pick))
    }

    public func index(_ pick: TokenMix.Pick) -> Int {
        switch pick {
        case .noToken: return 0
        case .invalid(let i): return 1 + i
        case .valid(let i): return 1 + self.invalidCount + i
        }
    }

    public func request(at index: Int) -> ByteBuffer {
        let start = self.offsets[index]
        // The slice cannot fail: the offsets were taken from this buffer.
        return self.storage.getSlice(at: start, length: self.offsets[index + 1] - start) ?? ByteBuffer()
    }

    /// Bytes of the whole catalog (what the generator holds in memory for it).
    public var bytes: Int { self.storage.readableBytes }
}

/// Made-up tokens with the Crochet prefix that no control plane issued (random 128 bits from
/// the run's seed): the "invalid token" share of a mix.
public enum InvalidTokens {
    public static func make(count: Int, seed: UInt64, prefix: String = "cro_sub_") -> [String] {
        var random = BenchRandom(seed: seed, stream: 0xBAD)
        let hex = Array("0123456789abcdef".utf8)
        return (0..<count).map { _ in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(32)
            for _ in 0..<2 {
                var word = random.next()
                for _ in 0..<16 {
                    bytes.append(hex[Int(word & 0xF)])
                    word >>= 4
                }
            }
            return prefix + String(decoding: bytes, as: UTF8.self)
        }
    }
}
