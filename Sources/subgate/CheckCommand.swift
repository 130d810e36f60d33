import ArgumentParser
import SubgateCore

/// `subgate check --config FILE`: validates a configuration and prints the effective
/// settings with secrets redacted; exits 0 or 1 (SPEC §1).
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a configuration file and print the effective settings (secrets redacted)."
    )

    @OptionGroup var configOption: ConfigOption

    func run() async throws {
        let config = try self.configOption.loadOrExit()
        print("# \(self.configOption.resolvedPath): OK")
        for (key, value) in config.effectiveSettings() {
            print("\(key) = \(value)")
        }
    }
}
