/// Stops the run with `message` when a property of the code under test does not hold.
///
/// `fatalError` traps, libFuzzer's deadly-signal handler writes the input to a `crash-…` file,
/// and the message (printed first) says which property failed. Only with
/// `SWIFT_BACKTRACE=enable=no` (scripts/fuzz.sh sets it): the backtracer would swallow the
/// signal otherwise (shared/KNOWN.md).
@inline(__always)
public func invariant(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() {
        fatalError("fuzz invariant violated: \(message())", file: file, line: line)
    }
}

/// Byte-level ASCII helpers: the oracles compare bytes, never through `String`'s Unicode-aware
/// comparisons, so that they state the contract independently of the code under test (and
/// libFuzzer's comparison tracing sees the bytes; it sees nothing inside the standard library).
public enum Bytes {
    /// `A`…`Z` as `a`…`z`; every other byte as it is.
    @inline(__always)
    public static func lower(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    /// Whether `a` and `b` are the same bytes ignoring ASCII case (RFC 9110 field names).
    public static func equalsIgnoringASCIICase(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        guard a.count == b.count else { return false }
        for i in 0..<a.count where Self.lower(a[i]) != Self.lower(b[i]) { return false }
        return true
    }

    /// Whether `value`'s bytes start with `prefix`'s bytes, ignoring ASCII case.
    public static func hasPrefixIgnoringASCIICase(_ value: some StringProtocol, _ prefix: some StringProtocol) -> Bool {
        let v = Array(value.utf8)
        let p = Array(prefix.utf8)
        guard v.count >= p.count else { return false }
        for i in 0..<p.count where Self.lower(v[i]) != Self.lower(p[i]) { return false }
        return true
    }

    /// Whether `value`'s bytes start with `prefix`'s bytes exactly.
    public static func hasPrefix(_ value: some StringProtocol, _ prefix: some StringProtocol) -> Bool {
        let v = Array(value.utf8)
        let p = Array(prefix.utf8)
        guard v.count >= p.count else { return false }
        for i in 0..<p.count where v[i] != p[i] { return false }
        return true
    }

    /// The bytes as ASCII-lowercased text (other bytes unchanged).
    public static func lowercased(_ value: some StringProtocol) -> [UInt8] {
        value.utf8.map(Self.lower)
    }

    /// `value` without leading and trailing spaces and tabs (OWS, RFC 9110 §5.6.3), as bytes.
    public static func trimmingOWS(_ value: some StringProtocol) -> ArraySlice<UInt8> {
        var bytes = ArraySlice(value.utf8)
        while let first = bytes.first, first == 0x20 || first == 0x09 { bytes.removeFirst() }
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        return bytes
    }

    /// `bytes` equal `literal` ignoring ASCII case.
    public static func equalsIgnoringASCIICase(_ bytes: some Collection<UInt8>, literal: String) -> Bool {
        let l = Array(literal.utf8)
        guard bytes.count == l.count else { return false }
        for (a, b) in zip(bytes, l) where Self.lower(a) != Self.lower(b) { return false }
        return true
    }

    /// Whether `value` contains `needle` as a run of bytes.
    public static func contains(_ value: some StringProtocol, _ needle: some StringProtocol) -> Bool {
        let v = Array(value.utf8)
        let n = Array(needle.utf8)
        guard !n.isEmpty else { return true }
        guard v.count >= n.count else { return false }
        outer: for start in 0...(v.count - n.count) {
            for i in 0..<n.count where v[start + i] != n[i] { continue outer }
            return true
        }
        return false
    }

    /// Lowercase hex, two digits a byte, written independently of Subgate's own encoder.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Splits fuzz bytes the way the targets read them.
public enum FuzzInput {
    /// `bytes` split at every `separator` (empty pieces kept).
    public static func split(_ bytes: UnsafeBufferPointer<UInt8>, separator: UInt8) -> [ArraySlice<UInt8>] {
        Array(bytes).split(separator: separator, omittingEmptySubsequences: false)
    }

    /// Text from arbitrary bytes; invalid UTF-8 is repaired (U+FFFD), as `String(decoding:)`
    /// does wherever bytes become text.
    public static func text(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}
