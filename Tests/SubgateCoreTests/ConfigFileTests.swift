import Foundation
import Testing

@testable import SubgateCore

/// A fresh directory under the system's temporary directory, removed by `remove()`.
struct TemporaryConfigDirectory {
    let path: String

    init() throws {
        self.path = FileManager.default.temporaryDirectory
            .appendingPathComponent("subgate-config-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    /// Writes `bytes` to `name` inside the directory and returns the file's path.
    @discardableResult
    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let file = self.path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try self.write(name, bytes: Array(text.utf8))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// `ConfigParser.load`: the configuration file and `seller_key_file` read from disk.
@Suite("Config parser: loading files from disk")
struct ConfigFileTests {
    @Test("a configuration file on disk loads, and seller_key_file is read from disk")
    func loadsFromDisk() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let keyFile = try directory.write("seller_key", "am_k_from_disk\n")
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key_file = \(keyFile)\n")

        let config = try ConfigParser.load(file: file, environment: [:]).get()
        #expect(config.sellerKey == Secret("am_k_from_disk"), "the key file's newline must be trimmed")
        #expect(config.sellerKeyFile == keyFile)
    }

    @Test("a file with a byte-order mark and CRLF endings loads")
    func bomAndCRLFFromDisk() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let text = "# saved by Notepad\r\nlisten = 127.0.0.1:8181\r\nupstream = http://127.0.0.1:3000\r\nseller_key = am_k_x\r\n"
        let file = try directory.write("subgate.conf", bytes: [0xEF, 0xBB, 0xBF] + Array(text.utf8))

        let config = try ConfigParser.load(file: file, environment: [:]).get()
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8181))
        #expect(config.sellerKey == Secret("am_k_x"), "no CR may be left on the key")
    }

    @Test("errors from a loaded file carry the path as given")
    func errorsCarryPath() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key = am_k_x\ncache_ttl = 5\n")

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("cache_ttl = 5 must be rejected")
            return
        }
        #expect(errors.description == "\(file):3: cache_ttl: `5` has no unit; write 5s, 5ms, 5m or 5h")
    }

    @Test("a missing configuration file is one error naming it and saying what to do")
    func missingConfigurationFile() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let file = directory.path + "/absent.conf"

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("a missing file must be rejected")
            return
        }
        #expect(
            errors.errors.map(\.description) == [
                "\(file): cannot read the configuration file (No such file or directory); check the path, pass another with --config FILE, or set SUBGATE_CONFIG"
            ]
        )
    }

    @Test("a directory given as the configuration file is rejected with its reason")
    func directoryAsConfigurationFile() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }

        let result = ConfigParser.load(file: directory.path, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("a directory must be rejected")
            return
        }
        #expect(errors.errors.count == 1)
        #expect(errors.errors.first?.message.hasPrefix("cannot read the configuration file (Is a directory)") == true, "got:\n\(errors)")
    }

    @Test("a configuration file that is not UTF-8 is rejected")
    func notUTF8() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        // Latin-1 `é` in a comment: a file saved in the wrong encoding.
        let file = try directory.write("subgate.conf", bytes: Array("# caf".utf8) + [0xE9] + Array("\nupstream = http://a:1\n".utf8))

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("a Latin-1 file must be rejected")
            return
        }
        #expect(errors.errors.first?.message.hasPrefix("cannot read the configuration file (it is not UTF-8 text)") == true, "got:\n\(errors)")
    }

    @Test("a file over 1 MiB (such as /dev/zero) is refused instead of read forever")
    func tooLarge() {
        let result = ConfigFileReader.read("/dev/zero")
        #expect(
            result == .failure(ConfigFileReader.Failure(reason: "it is larger than 1 MiB, which is not a configuration or key file"))
        )
    }

    @Test("a missing seller_key_file on disk is an error on its line with strerror's reason")
    func missingSellerKeyFileOnDisk() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let keyFile = directory.path + "/no_such_key"
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key_file = \(keyFile)\n")

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("a missing key file must be rejected")
            return
        }
        #expect(
            errors.description
                == "\(file):2: seller_key_file: cannot read `\(keyFile)` (No such file or directory); check the path and that Subgate's user may read it"
        )
    }

    @Test("a directory as seller_key_file is unreadable")
    func directoryAsSellerKeyFile() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key_file = \(directory.path)\n")

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("a directory as key file must be rejected")
            return
        }
        #expect(errors.errors.first?.message == "cannot read `\(directory.path)` (Is a directory); check the path and that Subgate's user may read it")
    }

    @Test("a seller_key_file without read permission is unreadable", .enabled(if: getuid() != 0, "root reads every file"))
    func unreadableSellerKeyFile() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let keyFile = try directory.write("seller_key", "am_k_x\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: keyFile)
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key_file = \(keyFile)\n")

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("an unreadable key file must be rejected")
            return
        }
        #expect(errors.errors.first?.message.contains("(Permission denied)") == true, "got:\n\(errors)")
    }

    @Test("an empty seller_key_file on disk is rejected")
    func emptySellerKeyFileOnDisk() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let keyFile = try directory.write("seller_key", "\n")
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\nseller_key_file = \(keyFile)\n")

        let result = ConfigParser.load(file: file, environment: [:])
        guard case .failure(let errors) = result else {
            Issue.record("an empty key file must be rejected")
            return
        }
        #expect(errors.description == "\(file):2: seller_key_file: `\(keyFile)` is empty; put the seller key (am_k_…) in it")
    }

    @Test("SUBGATE_SELLER_KEY_FILE points at a file on disk")
    func sellerKeyFileFromEnvironmentOnDisk() throws {
        let directory = try TemporaryConfigDirectory()
        defer { directory.remove() }
        let keyFile = try directory.write("seller_key", "am_k_env_file")
        let file = try directory.write("subgate.conf", "upstream = http://127.0.0.1:3000\n")

        let config = try ConfigParser.load(file: file, environment: ["SUBGATE_SELLER_KEY_FILE": keyFile]).get()
        #expect(config.sellerKey == Secret("am_k_env_file"))
    }
}
