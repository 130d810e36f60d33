#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a small UTF-8 text file (the configuration, a seller key) for `ConfigParser.load`.
///
/// POSIX calls rather than Foundation so that a failure says exactly why, in the words of
/// `strerror` ("No such file or directory", "Permission denied", "Is a directory").
enum ConfigFileReader {
    /// Why a file could not be read; its description is a short reason without the path.
    struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        var reason: String
        var description: String { self.reason }
    }

    /// Larger files are refused: configuration and key files are tiny, and a path such as
    /// `/dev/zero` must not make start-up read forever.
    static let maximumBytes = 1 << 20

    static func read(_ path: String) -> Result<String, Failure> {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return .failure(Failure(reason: Self.lastErrorReason())) }
        defer { _ = close(descriptor) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                systemRead(descriptor, buffer.baseAddress, buffer.count)
            }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(Failure(reason: Self.lastErrorReason()))
            }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > Self.maximumBytes {
                return .failure(Failure(reason: "it is larger than 1 MiB, which is not a configuration or key file"))
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(Failure(reason: "it is not UTF-8 text"))
        }
        return .success(text)
    }

    private static func lastErrorReason() -> String {
        guard let message = strerror(errno) else { return "error \(errno)" }
        return String(cString: message)
    }
}

// `read` inside `ConfigFileReader` would name the static method; this reaches the libc one.
private func systemRead(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(descriptor, buffer, count)
}
