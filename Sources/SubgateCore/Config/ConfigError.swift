/// One configuration problem, located by file, line and key.
///
/// Rendered as `file:line: key: message`, leaving out the parts that are `nil`:
/// `subgate.conf:7: cache_ttl: `5` has no unit; write 5s, 5ms, 5m or 5h`. A problem in an
/// environment override has `file == "environment"`, no line, and the variable as its key:
/// `environment: SUBGATE_LISTEN: has no port; …`. The message never contains a secret.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration file's path as given, or `environment` for an override.
    public var file: String
    /// 1-based line number; `nil` for overrides and for problems of the file as a whole.
    public var line: Int?
    /// The key as written in the file, or the `SUBGATE_*` variable; `nil` for a line
    /// without a usable key and for problems involving several keys.
    public var key: String?
    /// A sentence saying what is wrong and what to do about it.
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = self.file
        if let line { s += ":\(line)" }
        if let key { s += ": \(key)" }
        return s + ": " + self.message
    }
}

/// Every problem found in one configuration, in the order a reader fixes them: the file's
/// lines top to bottom, then environment overrides by variable name, then problems of the
/// configuration as a whole (a required key that is missing).
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    /// Never empty when returned by `ConfigParser`.
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) { self.errors = errors }

    /// One error per line.
    public var description: String { self.errors.map(\.description).joined(separator: "\n") }
}
