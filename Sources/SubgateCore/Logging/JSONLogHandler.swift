#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOConcurrencyHelpers

/// A swift-log backend that writes one JSON object per line (`log_format = json`).
///
/// swift-log ships only a text backend; a JSON one is a few lines and keeps Foundation's
/// encoder off the request path. Only the executable bootstraps it (STYLE §6).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let sink: LineSink

    public init(label: String, level: Logger.Level, sink: LineSink = .standardOutput) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        self.sink.write(Self.format(event: event, handlerMetadata: self.metadata, label: self.label, now: Self.now()))
    }

    /// The JSON line for one record (pure; tests call it directly).
    public static func format(event: LogEvent, handlerMetadata: Logger.Metadata, label: String, now: String) -> String {
        var line = "{\"ts\":\"\(now)\",\"level\":\"\(event.level.rawValue)\",\"msg\":\(JSONString.quote(event.message.description))"
        var merged = handlerMetadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        for key in merged.keys.sorted() {
            guard let value = merged[key] else { continue }
            line += ",\(JSONString.quote(key)):\(Self.encode(value))"
        }
        line += "}\n"
        return line
    }

    static func encode(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): return JSONString.quote(s)
        case .stringConvertible(let c):
            let s = c.description
            // Numbers stay numbers so log pipelines can aggregate them.
            if !s.isEmpty, s.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 46 }), s.first != "." {
                return s
            }
            return JSONString.quote(s)
        case .array(let values): return "[" + values.map(Self.encode).joined(separator: ",") + "]"
        case .dictionary(let dict):
            return "{" + dict.sorted { $0.key < $1.key }.map { "\(JSONString.quote($0.key)):\(Self.encode($0.value))" }.joined(separator: ",") + "}"
        }
    }

    /// UTC time as `2026-11-23T09:02:00.123Z`.
    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var seconds = time_t(ts.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }
}

/// Where log lines go: standard output, written whole under a lock so lines never interleave.
public final class LineSink: Sendable {
    private let lock = NIOLock()
    private let fd: Int32

    public init(fileDescriptor: Int32) { self.fd = fileDescriptor }

    public static let standardOutput = LineSink(fileDescriptor: 1)
    public static let standardError = LineSink(fileDescriptor: 2)

    public func write(_ line: String) {
        self.lock.withLock {
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { raw in
                    Glibc.write(self.fd, raw.baseAddress! + offset, raw.count - offset)
                }
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
