/// Where the load goes: `http://HOST:PORT/PATH` on this machine only. The bench never sends
/// traffic off the loopback (127.0.0.0/8, `localhost`, `[::1]`).
public struct BenchTarget: Sendable, Equatable {
    public let host: String
    public let port: Int
    /// Starts with `/`; may carry a query.
    public let path: String

    public init(host: String, port: Int, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    /// The `Host` header value.
    public var authority: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }

    public var url: String { "http://\(self.authority)\(self.path)" }

    /// Parses `http://host:port[/path]`; the problem in a sentence when it is not one.
    public static func parse(_ text: String) -> Result<BenchTarget, LoadPlanProblem> {
        guard text.hasPrefix("http://") else {
            return .failure(LoadPlanProblem("'\(text)' is not an http:// URL; write it as http://127.0.0.1:8080/ (plain HTTP, loopback)."))
        }
        let rest = text.dropFirst("http://".count)
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = authorityEnd == rest.endIndex ? "/" : String(rest[authorityEnd...])
        let host: Substring
        let portText: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]"), authority[authority.index(after: close)...].hasPrefix(":") else {
                return .failure(LoadPlanProblem("'\(text)' needs a port, as in http://[::1]:8080/."))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            portText = authority[authority.index(close, offsetBy: 2)...]
        } else {
            guard let colon = authority.lastIndex(of: ":") else {
                return .failure(LoadPlanProblem("'\(text)' needs a port, as in http://127.0.0.1:8080/."))
            }
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            return .failure(LoadPlanProblem("'\(text)' has no valid port (1-65535)."))
        }
        guard Self.isLoopback(String(host)) else {
            return .failure(LoadPlanProblem("'\(text)' is not on this machine; the bench only sends to 127.0.0.0/8, localhost or [::1]."))
        }
        guard !path.contains(" "), !path.contains("\r"), !path.contains("\n") else {
            return .failure(LoadPlanProblem("'\(text)' has a space or line break in its path; percent-encode it."))
        }
        return .success(BenchTarget(host: String(host), port: port, path: path))
    }

    /// 127.0.0.0/8, `localhost` or `::1`.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { part in UInt8(part) != nil }
    }
}
