import Crypto
import Foundation

/// Raw subscription tokens and their hashes (seed 000, section 1, "Hash the incoming token").
enum RawToken {
    /// The buyer-facing prefix.
    static let prefix = "cro_sub_"

    /// `cro_sub_` and 32 random lowercase hex digits (128 bits).
    static func generate() -> String {
        self.prefix + self.randomHex(bytes: 16)
    }

    /// `tok_` and 16 random hex digits.
    static func generateID() -> String {
        "tok_" + self.randomHex(bytes: 8)
    }

    /// Lowercase hex SHA-256 of the UTF-8 bytes: the only form the store keeps.
    static func hash(_ raw: String) -> String {
        self.hex(SHA256.hash(data: Data(raw.utf8)))
    }

    /// `count` random bytes as lowercase hex (ids the simulator hands out).
    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return self.hex((0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
