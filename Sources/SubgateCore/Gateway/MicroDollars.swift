/// US-dollar amounts in whole micro-dollars (1 = $0.000001): the gateway's prices, fees
/// and ledger, in the simulator and in Subgate's `/status`. Integers, so that $1.00 is exactly $0.049 fee plus $0.951 to the seller;
/// no binary floating point ever touches money.
public enum MicroDollars {
    /// Micro-dollars per dollar.
    public static let perDollar = 1_000_000
    /// The largest price a listing may have: $1,000,000 a call.
    public static let maxPrice = 1_000_000 * perDollar

    /// Parses a decimal dollar amount such as `0.25`, `1`, `1.000001` (no sign, no
    /// exponent, at most six decimals); nil when it is not one or exceeds `maxPrice`.
    public static func parse(_ text: String) -> Int? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.count <= 7, whole.allSatisfy(\.isASCIIDigit) else { return nil }
        var micros = (Int(whole) ?? 0) * perDollar
        if parts.count == 2 {
            let fraction = parts[1]
            guard !fraction.isEmpty, fraction.count <= 6, fraction.allSatisfy(\.isASCIIDigit) else { return nil }
            micros += (Int(fraction) ?? 0) * Self.power(of: 10, 6 - fraction.count)
        }
        return micros <= maxPrice ? micros : nil
    }

    /// `1.00`, `0.049`, `0.951`, `0.000001`: at least two decimals, at most six, no
    /// trailing zeros beyond the second.
    public static func format(_ micros: Int) -> String {
        let sign = micros < 0 ? "-" : ""
        let magnitude = micros.magnitude
        let whole = magnitude / UInt(perDollar)
        var fraction = String(magnitude % UInt(perDollar))
        fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(sign)\(whole).\(fraction)"
    }

    /// The marketplace fee on `gross` at `perMille` (49 = 4.9 %), rounded half up to the
    /// micro-dollar; the seller gets the rest, so fee + seller = gross always.
    public static func split(_ gross: Int, feePerMille: Int) -> (fee: Int, seller: Int) {
        let fee = (gross * feePerMille + 500) / 1000
        return (fee, gross - fee)
    }

    private static func power(of base: Int, _ exponent: Int) -> Int {
        (0..<exponent).reduce(1) { value, _ in value * base }
    }
}

extension Character {
    /// `0`…`9` only (not other scripts' digits).
    public var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
